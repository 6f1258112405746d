// The trace page: header, why-slow, the trace's lints, the waterfall and the span details.

import { getTrace, getAnalysis } from "./api.js";
import { buildTrace } from "./model.js";
import { Waterfall } from "./waterfall.js";
import { spanDetails } from "./details.js";
import { el, fmtDuration, fmtTime, fmtAgo, copyButton, serviceChip, debounce } from "./util.js";

export async function tracePage(main, id, params, signal) {
  // Anything in the address bar reaches this page; what is not a trace ID is answered here,
  // as text, without asking the server.
  if (!/^[0-9a-f]{1,32}$/.test(id)) {
    main.replaceChildren(el("div", { class: "page" },
      el("h1", {}, "Not a trace ID"),
      el("p", { class: "error-box" }, `“${id}” is not a trace ID: a trace ID is 1 to 32 hexadecimal digits.`),
      el("p", {}, el("a", { href: "/search", "data-nav": "" }, "Search traces"))));
    return { ready: true };
  }
  main.replaceChildren(el("div", { class: "page loading" }, `Loading trace ${id}…`));
  const [tr, an] = await Promise.allSettled([getTrace(id, signal), getAnalysis(id, signal)]);
  if (signal.aborted) return;
  if (tr.status === "rejected") {
    const e = tr.reason;
    main.replaceChildren(el("div", { class: "page" },
      el("h1", {}, "Trace not found"),
      el("p", { class: "error-box" }, e.status === 404 ? `No trace with ID ${id}. It may have expired or not arrived yet.` : e.message),
      el("p", {}, el("a", { href: "/search", "data-nav": "" }, "Search traces"))));
    return { ready: true };
  }
  const trace = buildTrace(tr.value);
  if (!trace.id) trace.id = id;
  const analysis = an.status === "fulfilled" ? an.value : null;
  document.title = `${trace.root ? trace.root.name : id} · Ariadne`;

  // The analysis sends unix nanoseconds as JSON numbers, which a double rounds to a few hundred
  // nanoseconds: close enough to draw, not to compare.
  const t0 = Number(trace.startBig);
  const critical = new Map();
  for (const seg of (analysis && analysis.criticalPath && analysis.criticalPath.segments) || []) {
    if (!critical.has(seg.spanID)) critical.set(seg.spanID, []);
    critical.get(seg.spanID).push({ start: Math.max(seg.startUnixNano - t0, 0), end: Math.max(seg.endUnixNano - t0, 0) });
  }
  const why = (analysis && analysis.whySlow) || {};
  const lints = (analysis && analysis.lints) || [];
  const lintSpans = new Map();
  for (const f of lints) for (const sid of f.spanIDs || []) lintSpans.set(sid, (lintSpans.get(sid) || 0) + 1);

  const body = el("div", { class: "trace-body" });
  let detailsEl = null;
  const closeDetails = () => {
    if (detailsEl) detailsEl.remove();
    detailsEl = null;
    wf.selectedId = null;
    wf.render();
    const u = new URL(location.href);
    u.searchParams.delete("span");
    history.replaceState(history.state, "", u);
  };
  const wf = new Waterfall(trace, {
    critical,
    slowest: why.topSpanID || "",
    lintSpans,
    onSelect(span) {
      const d = spanDetails(span, trace, {
        onClose: () => { closeDetails(); wf.scroller.focus(); },
        lintsFor: (sid) => lints.filter((f) => (f.spanIDs || []).includes(sid)),
      });
      if (detailsEl) detailsEl.replaceWith(d);
      else body.append(d);
      detailsEl = d;
      const u = new URL(location.href);
      u.searchParams.set("span", span.id);
      history.replaceState(history.state, "", u);
    },
  });
  body.prepend(wf.root);

  const filterInput = el("input", {
    type: "search", class: "filter", placeholder: "Filter spans (name, service, attribute, ID)",
    "aria-label": "Filter spans in this trace",
  });
  const filterCount = el("span", { class: "muted filter-count", "aria-live": "polite" });
  filterInput.addEventListener("input", debounce(() => {
    const n = wf.setFilter(filterInput.value);
    filterCount.textContent = n === null ? "" : `${n} of ${trace.spans.length} spans match`;
  }, 120));
  filterInput.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "Enter") {
      e.preventDefault();
      wf.scroller.focus();
    }
  });

  const collapseAll = () => {
    for (const s of trace.order) if (s.children.length && s.depth > 0) wf.collapsed.add(s.id);
    wf.recompute();
  };
  const expandAll = () => {
    wf.collapsed.clear();
    wf.recompute();
  };

  const page = el("div", { class: "page trace-page", dataset: { traceId: trace.id } },
    header(trace),
    // A trace within its operation's usual time has nothing to explain: the same sentence, as
    // a quiet note rather than a "Why slow" banner.
    why.sentence ? el("div", { class: why.withinUsual ? "why usual" : "why", role: "note" },
      el("span", { class: "why-label" }, why.withinUsual ? "Usual time" : "Why slow"),
      el("span", { class: "why-text" }, why.sentence),
      why.topSpanID && trace.byId.has(why.topSpanID)
        ? el("button", { type: "button", class: "link", onclick: () => wf.select(trace.byId.get(why.topSpanID), { scroll: true }) }, "Show span")
        : null) : null,
    trace.missingParents || trace.rootCount > 1 || orphanRoot(trace) ? el("div", { class: "notice" },
      trace.rootCount > 1 ? `${trace.rootCount} root spans. ` : "",
      trace.missingParents ? `${trace.missingParents} parent span(s) missing: their children are shown under “missing parent”.` : "",
      orphanRoot(trace) ? `The trace starts at “${trace.root.name}”, an internal span, not at a request's entry (server or consumer) span: ` +
        "its parent is probably missing because the context was dropped on the way, so the work that called it is in another trace." : "") : null,
    lints.length ? lintPanel(lints, trace, (sid) => wf.select(trace.byId.get(sid), { scroll: true })) : null,
    el("div", { class: "toolbar" },
      filterInput, filterCount,
      el("span", { class: "spacer" }),
      el("span", { class: "legend" },
        el("span", { class: "lg lg-crit" }), "critical path",
        el("span", { class: "lg lg-slow" }), "slowest",
        el("span", { class: "lg lg-err" }), "error",
        el("span", { class: "lg lg-ev" }), "event"),
      el("button", { type: "button", onclick: collapseAll }, "Collapse all"),
      el("button", { type: "button", onclick: expandAll }, "Expand all")),
    body);
  page.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && detailsEl) closeDetails();
    if (e.key === "/" && document.activeElement !== filterInput && !(e.target instanceof HTMLInputElement)) {
      e.preventDefault();
      filterInput.focus();
    }
  });
  main.replaceChildren(page);
  wf.render();

  const want = params.get("span");
  if (want && trace.byId.has(want)) wf.select(trace.byId.get(want), { scroll: true });
  wf.scroller.focus({ preventScroll: true });
  return { ready: true, destroy: () => wf.destroy() };
}

function header(trace) {
  const root = trace.root;
  return el("header", { class: "trace-head" },
    el("h1", {},
      root ? serviceChip(root.service) : null,
      el("span", { class: "root-name" }, root ? root.name : "(empty trace)")),
    el("div", { class: "facts" },
      fact("Trace ID", el("span", {}, el("code", {}, trace.id), " ", copyButton(trace.id))),
      fact("Start", el("span", { title: fmtAgo(trace.startUnixMs) }, fmtTime(trace.startUnixMs))),
      fact("Duration", fmtDuration(trace.duration)),
      fact("Spans", String(trace.spans.length)),
      fact("Services", el("span", { class: "chips" }, trace.services.map(serviceChip))),
      fact("Errors", trace.errorCount
        ? el("span", { class: "badge err" }, `${trace.errorCount} error span${trace.errorCount > 1 ? "s" : ""}`)
        : el("span", { class: "muted" }, "none"))));
}

function fact(label, value) {
  return el("div", { class: "fact" }, el("span", { class: "fact-label" }, label), el("span", { class: "fact-value" }, value));
}

// lintPanel groups findings by rule: a trace with thousands of spans can have thousands of
// findings of one rule, and a list of them would bury the other rules (and cost the page).
const SPAN_REFS = 12;
function lintPanel(lints, trace, onSpan) {
  const rules = new Map();
  for (const f of lints) {
    if (!rules.has(f.rule)) rules.set(f.rule, []);
    rules.get(f.rule).push(f);
  }
  const ref = (sid) => {
    const s = trace.byId.get(sid);
    return el("button", {
      type: "button", class: "span-ref", dataset: { spanId: sid }, disabled: !s, title: sid,
      onclick: () => onSpan(sid),
    }, s ? s.name : sid);
  };
  return el("details", { class: "lints-panel", open: rules.size <= 3 && lints.length <= 6 },
    el("summary", {}, `${lints.length} instrumentation problem${lints.length > 1 ? "s" : ""} in this trace`),
    el("ul", { class: "lint-list" }, [...rules].map(([rule, fs]) => {
      const f = fs[0];
      const ids = [...new Set(fs.flatMap((x) => x.spanIDs || []))];
      return el("li", { class: "lint", dataset: { rule } },
        el("span", { class: `badge sev-${f.severity}` }, f.severity), " ",
        el("strong", {}, rule), fs.length > 1 ? el("span", { class: "muted" }, ` ×${fs.length}`) : null, " ",
        el("span", {}, f.message),
        f.fix ? el("div", { class: "fix" }, "Fix: ", f.fix) : null,
        ids.length ? el("div", { class: "lint-spans" }, ids.slice(0, SPAN_REFS).map(ref),
          ids.length > SPAN_REFS ? el("span", { class: "muted" }, `and ${ids.length - SPAN_REFS} more`) : null) : null);
    })));
}

// orphanRoot tells whether the trace's one root is an internal span (kind 1): an entry point of
// real work is a server, consumer or (for a job) a producer or client span, so an internal root
// means the caller's context did not reach it.
function orphanRoot(trace) {
  return trace.rootCount === 1 && !trace.missingParents && trace.root && trace.root.kind === 1 && trace.spans.length > 0;
}
