// The per-service lint report: which instrumentation problems each service has, how often, and
// an example trace for each, so a team can go from "what is wrong" to the span that shows it.

import { getLintReport } from "./api.js";
import { el, serviceChip } from "./util.js";

const SINCE = [["15m", "Last 15 minutes"], ["1h", "Last hour"], ["6h", "Last 6 hours"], ["24h", "Last 24 hours"], ["168h", "Last 7 days"]];

export async function lintsPage(main, params, signal, navigate) {
  const since = params.get("since") || "1h";
  const service = params.get("service") || "";
  const sinceSel = el("select", { "aria-label": "Time range" },
    SINCE.map(([v, l]) => el("option", { value: v, selected: v === since }, l)));
  const svcSel = el("select", { "aria-label": "Service" }, el("option", { value: "" }, "All services"));
  const go = () => {
    const p = new URLSearchParams();
    if (sinceSel.value !== "1h") p.set("since", sinceSel.value);
    if (svcSel.value) p.set("service", svcSel.value);
    const qs = p.toString();
    navigate(qs ? `/lints?${qs}` : "/lints");
  };
  sinceSel.addEventListener("change", go);
  svcSel.addEventListener("change", go);
  const body = el("div", { class: "lint-report" }, el("p", { class: "muted" }, "Loading…"));
  main.replaceChildren(el("div", { class: "page lints-page" },
    el("div", { class: "page-head" },
      el("h1", {}, "Instrumentation report"),
      el("span", { class: "spacer" }), svcSel, sinceSel),
    el("p", { class: "muted intro" }, "Problems in how services are instrumented, found in the traces they sent. Each rule links to an example span."),
    body));
  document.title = "Instrumentation report · Ariadne";

  let rep;
  try {
    rep = await getLintReport({ since, service }, signal);
  } catch (err) {
    if (err.name === "AbortError") return;
    body.replaceChildren(el("div", { class: "error-box", role: "alert" }, err.message));
    return { ready: true };
  }
  const services = rep.services || [];
  const names = new Set(services.map((s) => s.service));
  if (service) names.add(service);
  for (const n of [...names].sort()) svcSel.append(el("option", { value: n, selected: n === service }, n));

  const head = el("p", { class: "muted" }, `${rep.tracesExamined || 0} traces examined.`);
  if (!services.length) {
    body.replaceChildren(head, el("p", { class: "empty" }, "No instrumentation problems found."));
    return { ready: true };
  }
  body.replaceChildren(head, ...services.map((s) => el("section", { class: "svc-report", dataset: { service: s.service } },
    el("h2", {}, serviceChip(s.service), el("span", { class: "muted" }, ` ${s.findings} finding${s.findings === 1 ? "" : "s"}`)),
    el("table", { class: "report-table" },
      el("thead", {}, el("tr", {},
        el("th", {}, "Rule"), el("th", {}, "Severity"), el("th", { class: "num" }, "Findings"),
        el("th", { class: "num" }, "Spans"), el("th", { class: "num" }, "Traces"), el("th", {}, "Fix"), el("th", {}, "Example"))),
      el("tbody", {}, (s.rules || []).map((r) => el("tr", { dataset: { rule: r.rule } },
        el("td", { class: "mono" }, r.rule),
        el("td", {}, el("span", { class: `badge sev-${r.severity}` }, r.severity)),
        el("td", { class: "num" }, String(r.findings ?? "")),
        el("td", { class: "num" }, String(r.count ?? "")),
        el("td", { class: "num" }, String(r.traces ?? "")),
        el("td", { class: "fix" }, r.fix || ""),
        el("td", {}, r.exampleTraceID
          ? el("a", {
            href: `/trace/${r.exampleTraceID}${r.exampleSpanID ? `?span=${r.exampleSpanID}` : ""}`,
            "data-nav": "", class: "mono",
          }, r.exampleTraceID.slice(0, 12) + "…")
          : ""))))))));
  return { ready: true };
}
