// The span details panel: everything a span carries, laid out in the order people read it
// when something went wrong: status and exception first, then timing, attributes, events,
// links, and the resource it came from.

import { el, fmtDuration, fmtOffset, anyValue, copyButton, kindName, serviceChip } from "./util.js";
import { exceptionsOf } from "./model.js";

const STATUS = ["unset", "ok", "error"];

export function spanDetails(span, trace, { onClose, lintsFor }) {
  const dur = span.end - span.start;
  const status = STATUS[span.status.code || 0] || "unset";
  const excs = exceptionsOf(span);
  const otherEvents = span.events;

  return el("aside", { class: "details", "aria-label": "Span details", dataset: { spanId: span.id } },
    el("div", { class: "details-head" },
      el("h2", { class: "details-title", title: span.name }, span.name),
      el("button", { class: "icon", type: "button", "aria-label": "Close details", title: "Close (Esc)", onclick: onClose }, "×")),
    el("div", { class: "details-sub" },
      serviceChip(span.service),
      el("span", { class: "muted" }, kindName(span.kind)),
      el("span", {}, fmtDuration(dur)),
      el("span", { class: "muted" }, `at ${fmtDuration(span.start)}`)),

    el("section", { class: "d-section" },
      el("h3", {}, "Status"),
      el("div", { class: `status status-${status}` },
        el("span", { class: "badge " + (status === "error" ? "err" : status === "ok" ? "ok" : "") }, status),
        span.status.message ? el("span", { class: "status-msg" }, span.status.message) : null)),

    excs.length ? el("section", { class: "d-section exceptions" },
      el("h3", {}, excs.length > 1 ? `Exceptions (${excs.length})` : "Exception"),
      excs.map((x) => el("div", { class: "exception" },
        el("div", { class: "exc-head" },
          el("span", { class: "exc-type" }, x.type || "exception"),
          el("span", { class: "muted" }, " " + fmtOffset(x.offset))),
        x.message ? el("div", { class: "exc-message" }, x.message) : null,
        x.stacktrace ? el("pre", { class: "stacktrace" }, x.stacktrace) : null))) : null,

    lintSection(lintsFor(span.id)),

    el("section", { class: "d-section" },
      el("h3", {}, "Span attributes"),
      attrTable(span.attributes)),

    el("section", { class: "d-section" },
      el("h3", {}, `Events (${otherEvents.length})`),
      otherEvents.length
        ? el("ol", { class: "events" }, otherEvents.map((e) => el("li", { class: "event-item", dataset: { name: e.name } },
          el("div", {}, el("span", { class: "offset" }, fmtOffset(e.offset)), " ", el("strong", {}, e.name)),
          e.attributes.length && e.name !== "exception" ? attrTable(e.attributes) : null)))
        : el("p", { class: "muted" }, "None.")),

    el("section", { class: "d-section" },
      el("h3", {}, `Links (${span.links.length})`),
      span.links.length
        ? el("ul", { class: "links" }, span.links.map((l) => el("li", {},
          el("a", { href: `/trace/${l.traceId}?span=${l.spanId}`, class: "mono", "data-nav": "" },
            l.traceId === trace.id ? `span ${l.spanId} (this trace)` : `trace ${l.traceId} · span ${l.spanId}`),
          (l.attributes || []).length ? attrTable(l.attributes) : null)))
        : el("p", { class: "muted" }, "None.")),

    el("section", { class: "d-section" },
      el("h3", {}, "Resource"),
      attrTable(span.resource),
      span.scope && span.scope.name
        ? el("p", { class: "muted scope" }, "Scope ", el("span", { class: "mono" }, span.scope.name),
          span.scope.version ? ` ${span.scope.version}` : "")
        : null),

    el("section", { class: "d-section" },
      el("h3", {}, "IDs"),
      el("dl", { class: "ids" },
        idRow("Span", span.id),
        span.parentId ? idRow("Parent", span.parentId) : null,
        idRow("Trace", span.traceId))));
}

function idRow(label, id) {
  return [el("dt", {}, label), el("dd", {}, el("code", {}, id), " ", copyButton(id))];
}

function attrTable(attrs) {
  if (!attrs || !attrs.length) return el("p", { class: "muted" }, "None.");
  const sorted = attrs.slice().sort((a, b) => a.key.localeCompare(b.key));
  return el("table", { class: "attrs" }, el("tbody", {}, sorted.map((a) =>
    el("tr", {}, el("th", { scope: "row" }, a.key), el("td", {}, anyValue(a.value))))));
}

function lintSection(findings) {
  if (!findings.length) return null;
  return el("section", { class: "d-section" },
    el("h3", {}, "Instrumentation problems"),
    el("ul", { class: "lint-list" }, findings.map((f) => el("li", {},
      el("span", { class: `badge sev-${f.severity}` }, f.severity), " ",
      el("strong", {}, f.rule), " ", f.message,
      f.fix ? el("div", { class: "fix" }, "Fix: ", f.fix) : null))));
}
