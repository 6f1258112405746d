// The search page. The TraceQL box is the one source of truth: quick filters write a query into
// it (so people learn the syntax from them), and the URL holds the query and the time range so
// a search can be shared and reloaded.

import { search, searchTags, tagValues } from "./api.js";
import { el, fmtDuration, fmtTime, fmtAgo, serviceChip, anyValue, nsBig } from "./util.js";

const RANGES = [
  ["15m", "Last 15 minutes", 900],
  ["1h", "Last hour", 3600],
  ["6h", "Last 6 hours", 6 * 3600],
  ["24h", "Last 24 hours", 86400],
  ["7d", "Last 7 days", 7 * 86400],
  ["30d", "Last 30 days", 30 * 86400],
  ["custom", "Custom…", 0],
];

const INTRINSICS = ["name", "status", "duration", "kind", "statusMessage", "rootName", "rootServiceName", "traceDuration"];
const DURATION = /^\d+(\.\d+)?(ns|us|µs|ms|s|m|h)$/;

export function searchPage(main, params, signal, navigate) {
  const state = {
    q: params.get("q") || "{}",
    range: params.get("range") || (params.get("start") ? "custom" : "1h"),
    start: params.get("start") || "",
    end: params.get("end") || "",
    limit: params.get("limit") || "20",
  };

  const qBox = el("input", {
    type: "text", class: "traceql", value: state.q, spellcheck: "false", autocomplete: "off",
    "aria-label": "TraceQL query", placeholder: '{ resource.service.name = "task-api" && duration > 100ms }',
    role: "combobox", "aria-autocomplete": "list", "aria-expanded": "false", "aria-controls": "ac-list",
  });
  const ac = new Autocomplete(qBox);

  const svc = el("select", { "aria-label": "Service" }, el("option", { value: "" }, "Any service"));
  const spanName = el("input", { type: "text", placeholder: "Span name", "aria-label": "Span name", list: "span-names" });
  const names = el("datalist", { id: "span-names" });
  const minDur = el("input", { type: "text", class: "dur-in", placeholder: "min e.g. 100ms", "aria-label": "Minimum duration" });
  const maxDur = el("input", { type: "text", class: "dur-in", placeholder: "max e.g. 2s", "aria-label": "Maximum duration" });
  const status = el("select", { "aria-label": "Status" },
    el("option", { value: "" }, "Any status"),
    el("option", { value: "error" }, "Error"),
    el("option", { value: "ok" }, "Ok"),
    el("option", { value: "unset" }, "Unset"));
  const range = el("select", { "aria-label": "Time range" },
    RANGES.map(([v, label]) => el("option", { value: v, selected: v === state.range }, label)));
  const startIn = el("input", { type: "datetime-local", "aria-label": "From", step: "1" });
  const endIn = el("input", { type: "datetime-local", "aria-label": "To", step: "1" });
  if (state.start) startIn.value = toLocalInput(Number(state.start) * 1000);
  if (state.end) endIn.value = toLocalInput(Number(state.end) * 1000);
  const custom = el("span", { class: "custom-range", hidden: state.range !== "custom" }, startIn, "–", endIn);
  const limit = el("select", { "aria-label": "Result limit" },
    ["20", "50", "100", "500"].map((v) => el("option", { value: v, selected: v === state.limit }, `${v} results`)));

  const results = el("div", { class: "results", "aria-live": "polite" });
  const form = el("form", { class: "search-form", role: "search" },
    el("div", { class: "q-row" },
      el("div", { class: "q-wrap" }, qBox, ac.list),
      el("button", { type: "submit", class: "primary" }, "Search")),
    el("div", { class: "quick" },
      el("span", { class: "quick-label" }, "Quick filters"),
      svc, spanName, names, minDur, maxDur, status,
      el("span", { class: "spacer" }),
      range, custom, limit));

  // Quick filters are read back from the query when it is one plain filter of ours, so a shared
  // link shows the same controls it was made with.
  const quickService = readQuick(state.q, { svc, spanName, minDur, maxDur, status });

  const writeQuery = () => {
    const parts = [];
    if (svc.value) parts.push(`resource.service.name = ${JSON.stringify(svc.value)}`);
    if (spanName.value.trim()) parts.push(`name = ${JSON.stringify(spanName.value.trim())}`);
    for (const [input, op] of [[minDur, ">="], [maxDur, "<="]]) {
      const v = input.value.trim().replace("µs", "us");
      input.classList.toggle("invalid", v !== "" && !DURATION.test(v));
      if (v && DURATION.test(v)) parts.push(`duration ${op} ${v}`);
    }
    if (status.value) parts.push(`status = ${status.value}`);
    qBox.value = parts.length ? `{ ${parts.join(" && ")} }` : "{}";
  };
  for (const c of [svc, status]) c.addEventListener("change", () => { writeQuery(); form.requestSubmit(); });
  for (const c of [spanName, minDur, maxDur]) {
    c.addEventListener("change", () => { writeQuery(); form.requestSubmit(); });
  }
  range.addEventListener("change", () => {
    custom.hidden = range.value !== "custom";
    if (range.value === "custom" && !startIn.value) {
      startIn.value = toLocalInput(Date.now() - 3600e3);
      endIn.value = toLocalInput(Date.now());
    }
    form.requestSubmit();
  });
  for (const c of [startIn, endIn, limit]) c.addEventListener("change", () => form.requestSubmit());

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ac.close();
    const p = new URLSearchParams();
    p.set("q", qBox.value.trim() || "{}");
    p.set("range", range.value);
    if (range.value === "custom") {
      if (startIn.value) p.set("start", String(Math.floor(new Date(startIn.value).getTime() / 1000)));
      if (endIn.value) p.set("end", String(Math.floor(new Date(endIn.value).getTime() / 1000)));
    }
    if (limit.value !== "20") p.set("limit", limit.value);
    navigate(`/search?${p}`);
  });

  main.replaceChildren(el("div", { class: "page search-page" },
    el("h1", { class: "visually-hidden" }, "Search traces"),
    form, results));
  document.title = "Search · Ariadne";

  tagValues("resource.service.name").then((vals) => {
    for (const v of vals) if (v.value !== quickService) svc.append(el("option", { value: v.value }, v.value));
  });
  tagValues("name").then((vals) => names.replaceChildren(...vals.map((v) => el("option", { value: v.value }))));

  return run(results, state, signal).then(() => ({ ready: true }));
}

async function run(results, state, signal) {
  const now = Math.floor(Date.now() / 1000);
  let start, end;
  if (state.range === "custom") {
    start = Number(state.start) || now - 3600;
    end = Number(state.end) || now;
  } else {
    const r = RANGES.find((x) => x[0] === state.range) || RANGES[1];
    start = now - r[2];
    end = now;
  }
  results.replaceChildren(el("p", { class: "muted" }, "Searching…"));
  const limit = Number(state.limit) || 20;
  let resp;
  try {
    resp = await search({ q: state.q, start, end, limit, spss: 3 }, signal);
  } catch (err) {
    if (err.name === "AbortError") return;
    results.replaceChildren(el("div", { class: "error-box", role: "alert" },
      err.status === 400 ? el("strong", {}, "The query has a problem: ") : el("strong", {}, "Search failed: "),
      err.message));
    return;
  }
  const traces = (resp.traces || []).slice();
  // An error badge needs to know which traces failed; Tempo's results carry that only in
  // serviceStats, which not every server sends, so ask for the failing ones too.
  let failed = null;
  if (traces.length && !traces.some((t) => t.serviceStats)) {
    failed = await search({ q: "{ status = error }", start, end, limit: 1000, spss: 1 }, signal)
      .then((r) => new Set((r.traces || []).map((t) => t.traceID)))
      .catch(() => null);
  }
  if (signal.aborted) return;
  traces.sort((a, b) => {
    const d = nsBig(b.startTimeUnixNano) - nsBig(a.startTimeUnixNano);
    return d > 0n ? 1 : d < 0n ? -1 : 0;
  });
  if (!traces.length) {
    results.replaceChildren(el("p", { class: "empty" }, "No traces match this query in this time range."));
    return;
  }
  const slowest = Math.max(...traces.map(durationNanos), 1);
  results.replaceChildren(
    el("p", { class: "muted result-count" }, `${traces.length} trace${traces.length > 1 ? "s" : ""}, newest first`),
    el("table", { class: "results-table" },
      el("thead", {}, el("tr", {},
        el("th", {}, "Trace"), el("th", {}, "Start"), el("th", { class: "dur-col" }, "Duration"),
        el("th", { class: "num" }, "Matched spans"), el("th", {}, "Services"))),
      el("tbody", {}, traces.map((t) => resultRow(t, slowest, failed)))));
}

function resultRow(t, slowest, failed) {
  const startMs = Number(nsBig(t.startTimeUnixNano) / 1000000n);
  const dur = durationNanos(t);
  const sets = t.spanSets || (t.spanSet ? [t.spanSet] : []);
  const matched = sets.reduce((n, s) => n + (Number(s.matched) || (s.spans || []).length), 0);
  const services = new Set();
  let errors = 0;
  if (t.serviceStats) {
    for (const [name, st] of Object.entries(t.serviceStats)) {
      services.add(name);
      errors += Number(st.errorCount) || 0;
    }
  }
  if (t.rootServiceName) services.add(t.rootServiceName);
  for (const set of sets) {
    for (const sp of set.spans || []) {
      for (const a of sp.attributes || []) {
        if (a.key === "service.name" || a.key === "resource.service.name") services.add(anyValue(a.value));
        if (a.key === "status" && anyValue(a.value) === "error") errors = Math.max(errors, 1);
      }
    }
  }
  if (failed && failed.has(t.traceID)) errors = Math.max(errors, 1);
  const href = `/trace/${t.traceID}`;
  return el("tr", { class: errors ? "result has-error" : "result", dataset: { traceId: t.traceID, start: String(t.startTimeUnixNano || "0") } },
    el("td", { class: "r-trace" },
      el("a", { href, "data-nav": "", class: "r-link" },
        el("span", { class: "r-service" }, t.rootServiceName || "<root span not yet received>"),
        el("span", { class: "r-name" }, t.rootTraceName || "")),
      errors ? el("span", { class: "badge err", title: "This trace has error spans" }, "error") : null,
      el("div", { class: "mono muted r-id" }, t.traceID)),
    el("td", { class: "r-start" }, el("div", {}, fmtAgo(startMs)), el("div", { class: "muted small" }, fmtTime(startMs))),
    el("td", { class: "dur-col" },
      el("div", { class: "r-bar-wrap", title: fmtDuration(dur) },
        el("div", { class: errors ? "r-bar err" : "r-bar", style: { width: `${Math.max((dur / slowest) * 100, 0.5)}%` } })),
      el("span", { class: "r-dur" }, fmtDuration(dur))),
    el("td", { class: "num r-spans" }, String(matched)),
    el("td", { class: "r-services" }, el("span", { class: "chips" }, [...services].filter(Boolean).map(serviceChip))));
}

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

// readQuick fills the quick filters from a query they could have written, and returns the
// service it names; any other query leaves them empty rather than guessing.
function readQuick(q, { svc, spanName, minDur, maxDur, status }) {
  let service = "";
  const m = /^\{\s*(.*?)\s*\}$/.exec(q.trim());
  if (!m || !m[1]) return "";
  for (const part of m[1].split(/\s*&&\s*/)) {
    let x;
    if ((x = /^resource\.service\.name = ("(?:[^"\\]|\\.)*")$/.exec(part))) service = JSON.parse(x[1]);
    else if ((x = /^name = ("(?:[^"\\]|\\.)*")$/.exec(part))) spanName.value = JSON.parse(x[1]);
    else if ((x = /^duration >= (\S+)$/.exec(part))) minDur.value = x[1];
    else if ((x = /^duration <= (\S+)$/.exec(part))) maxDur.value = x[1];
    else if ((x = /^status = (error|ok|unset)$/.exec(part))) status.value = x[1];
    else {
      spanName.value = minDur.value = maxDur.value = status.value = "";
      return "";
    }
  }
  if (service) svc.append(el("option", { value: service, selected: true }, service));
  return service;
}

// Autocomplete suggests attribute names where an attribute can start and that attribute's
// values after a comparison operator, from the tag endpoints.
class Autocomplete {
  constructor(input) {
    this.input = input;
    this.list = el("ul", { class: "ac-list", id: "ac-list", role: "listbox", hidden: true });
    this.items = [];
    this.active = -1;
    this.seq = 0;
    input.addEventListener("input", () => this.update());
    input.addEventListener("focus", () => this.update());
    input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
    input.addEventListener("keydown", (e) => this.onKey(e));
    // The Enter that picked a suggestion must not also submit the form, which the browser does
    // on the keypress that follows the keydown.
    input.addEventListener("keypress", (e) => {
      if (e.key === "Enter" && this.swallowEnter) e.preventDefault();
      this.swallowEnter = false;
    });
    this.list.addEventListener("mousedown", (e) => {
      const li = e.target.closest("li");
      if (!li) return;
      e.preventDefault();
      this.accept(Number(li.dataset.i));
    });
  }

  context() {
    const text = this.input.value;
    const caret = this.input.selectionStart ?? text.length;
    const before = text.slice(0, caret);
    const tok = /[\w.\-:/"]*$/.exec(before)[0];
    const lead = before.slice(0, before.length - tok.length).trimEnd();
    const open = before.lastIndexOf("{") > before.lastIndexOf("}");
    if (!open) return null;
    const op = /([\w.\-:/]+)\s*(=|!=|=~|!~|<=|>=|<|>)$/.exec(lead);
    if (op) return { kind: "value", attr: op[1], tok, from: caret - tok.length, caret };
    if (/(\{|&&|\|\||\()$/.test(lead)) return { kind: "attr", tok, from: caret - tok.length, caret };
    return null;
  }

  async update() {
    const seq = ++this.seq;
    const ctx = this.context();
    if (!ctx) return this.close();
    let cands = [];
    if (ctx.kind === "attr") {
      const scopes = await searchTags();
      cands = INTRINSICS.map((n) => ({ text: n, note: "intrinsic" }));
      for (const s of scopes) {
        if (s.name === "intrinsic") continue;
        for (const t of s.tags || []) cands.push({ text: `${s.name}.${t}`, note: s.name });
      }
    } else {
      const vals = await tagValues(ctx.attr);
      cands = vals.map((v) => ({
        text: v.type === "string" ? JSON.stringify(v.value) : String(v.value),
        note: v.type,
      }));
    }
    if (seq !== this.seq) return;
    const needle = ctx.tok.replace(/^"/, "").toLowerCase();
    const seen = new Set();
    this.items = cands.filter((c) => {
      if (seen.has(c.text)) return false;
      seen.add(c.text);
      return c.text.replace(/^"/, "").toLowerCase().includes(needle) && c.text !== ctx.tok;
    }).slice(0, 12);
    this.ctx = ctx;
    this.active = this.items.length ? 0 : -1;
    this.draw();
  }

  draw() {
    if (!this.items.length) return this.close();
    this.list.replaceChildren(...this.items.map((c, i) => el("li", {
      role: "option", id: `ac-${i}`, "aria-selected": String(i === this.active), class: i === this.active ? "active" : "",
      dataset: { i: String(i) },
    }, el("span", { class: "mono" }, c.text), el("span", { class: "muted" }, c.note))));
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.input.setAttribute("aria-activedescendant", this.active >= 0 ? `ac-${this.active}` : "");
  }

  close() {
    this.list.hidden = true;
    this.items = [];
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  accept(i) {
    const c = this.items[i];
    if (!c) return;
    const v = this.input.value;
    const insert = c.text + " ";
    this.input.value = v.slice(0, this.ctx.from) + insert + v.slice(this.ctx.caret);
    const pos = this.ctx.from + insert.length;
    this.input.setSelectionRange(pos, pos);
    this.close();
    this.input.focus();
  }

  onKey(e) {
    this.swallowEnter = false;
    if (this.list.hidden) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const n = this.items.length;
      this.active = (this.active + (e.key === "ArrowDown" ? 1 : -1) + n) % n;
      this.draw();
    } else if ((e.key === "Enter" || e.key === "Tab") && this.active >= 0) {
      e.preventDefault();
      this.swallowEnter = e.key === "Enter";
      this.accept(this.active);
    } else if (e.key === "Escape") {
      this.close();
    }
  }
}

// durationNanos is a result's duration: Ariadne's durationNanos when present (Tempo's durationMs
// is whole milliseconds, 0 for a sub-millisecond trace).
function durationNanos(t) {
  if (t.durationNanos !== undefined && t.durationNanos !== "") return Number(t.durationNanos) || 0;
  return (Number(t.durationMs) || 0) * 1e6;
}
