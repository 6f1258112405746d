// The compare page: a latency heatmap over time of one service's (or span name's) spans, where
// brushing a rectangle selects the spans in that time range and duration band, and what sets
// them apart from the rest of the heatmap is ranked beside it (GET /api/analysis/compare), each
// value with links to example traces.
//
// The heatmap is drawn on a canvas (counts only: no span text is painted there); everything
// from the spans reaches the DOM through el(), as text.

import { getHeatmap, getCompare } from "./api.js";
import { el, fmtDuration, fmtTime, anyValue } from "./util.js";

const RANGES = [["15m", 900], ["1h", 3600], ["6h", 6 * 3600], ["24h", 86400]];
const COLUMNS = 60;
const PLOT_W = 660;
const LEFT = 70; // y-axis labels
const BOTTOM = 22; // x-axis labels
const TOP = 6;

export async function comparePage(main, params, signal, navigate) {
  const service = (params.get("service") || "").trim();
  const name = (params.get("name") || "").trim();
  const range = RANGES.find(([r]) => r === params.get("range")) ? params.get("range") : "1h";
  document.title = "Compare · Ariadne";

  const svcInput = el("input", { type: "text", name: "service", value: service, placeholder: "service.name", "aria-label": "Service", spellcheck: "false" });
  const nameInput = el("input", { type: "text", name: "name", value: name, placeholder: "span name (optional)", "aria-label": "Span name", spellcheck: "false" });
  const rangeSelect = el("select", { name: "range", "aria-label": "Time range" },
    RANGES.map(([r]) => el("option", { value: r, selected: r === range }, `last ${r}`)));
  const form = el("form", { class: "cmp-form" }, svcInput, nameInput, rangeSelect, el("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (svcInput.value.trim()) p.set("service", svcInput.value.trim());
    if (nameInput.value.trim()) p.set("name", nameInput.value.trim());
    p.set("range", rangeSelect.value);
    navigate(`/compare?${p}`);
  });
  const mapBox = el("div", { class: "cmp-map" });
  const info = el("p", { class: "muted cmp-info", "aria-live": "polite" });
  const results = el("section", { class: "cmp-results", "aria-live": "polite" });
  main.replaceChildren(el("div", { class: "page compare-page" },
    el("div", { class: "page-head" }, el("h1", {}, "Compare")),
    el("p", { class: "muted intro" }, "What do the slow requests have in common? Pick a service, then drag a rectangle over the heatmap: the spans in it are compared with the rest."),
    form, el("div", { class: "cmp-body" }, el("div", { class: "cmp-left" }, mapBox, info), results)));

  if (!service && !name) {
    mapBox.replaceChildren(el("p", { class: "empty" }, "Name a service (and optionally a span name) to draw its latency heatmap."));
    return { ready: true };
  }
  const conds = [];
  if (service) conds.push(`resource.service.name = ${JSON.stringify(service)}`);
  if (name) conds.push(`name = ${JSON.stringify(name)}`);
  const filter = `{ ${conds.join(" && ")} }`;
  const secs = RANGES.find(([r]) => r === range)[1];
  const endNs = Date.now() * 1e6;
  const startNs = endNs - secs * 1e9;

  mapBox.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  let hm;
  try {
    hm = await getHeatmap({ q: filter, start: nsParam(startNs), end: nsParam(endNs), columns: COLUMNS }, signal);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    mapBox.replaceChildren(el("div", { class: "error-box", role: "alert" }, `Heatmap: ${err.message}`));
    return { ready: true };
  }
  if (!hm.total) {
    mapBox.replaceChildren(el("p", { class: "empty" }, `No spans match ${filter} in the last ${range}.`));
    return { ready: true };
  }
  const heat = drawHeatmap(hm, (sel) => runCompare(sel));
  mapBox.replaceChildren(heat.root);
  info.textContent = `${plural(hm.total, "span")} of ${filter}. Drag over the heatmap to select.`;
  results.replaceChildren(el("p", { class: "muted cmp-hint" }, "Brush a region (for example the slow band) to see what its spans share."));

  let seq = 0;
  async function runCompare(sel) {
    const me = ++seq;
    const selection = `{ ${conds.join(" && ")} && duration > ${sel.minNs}ns && duration < ${sel.maxNs}ns }`;
    info.textContent = `Selected ${fmtDuration(sel.minNs)} – ${fmtDuration(sel.maxNs)}, ${fmtTime(sel.startNs / 1e6).slice(11, 19)} – ${fmtTime(sel.endNs / 1e6).slice(11, 19)}: ${selection}`;
    results.dataset.state = "loading";
    results.replaceChildren(el("p", { class: "muted" }, "Comparing…"));
    let res;
    try {
      res = await getCompare({ q: selection, baseline: filter, start: nsParam(sel.startNs), end: nsParam(sel.endNs), limit: 20 }, signal);
    } catch (err) {
      if (err.name === "AbortError") return;
      if (me !== seq) return;
      results.replaceChildren(el("div", { class: "error-box", role: "alert" }, `Compare: ${err.message}`));
      results.dataset.state = "error";
      return;
    }
    if (me !== seq) return;
    results.replaceChildren(...resultParts(res));
    results.dataset.state = "ready";
  }
  return { ready: true, destroy: heat.destroy };
}

function nsParam(ns) {
  return String(Math.round(ns));
}

// drawHeatmap paints the counts (colour by log count) and lets the user brush a rectangle of
// whole cells; onSelect gets its time range and duration band.
function drawHeatmap(hm, onSelect) {
  const cols = hm.counts.length;
  const rows = hm.boundsNanos.length - 1;
  const cellW = PLOT_W / cols;
  const cellH = Math.max(4, Math.min(14, Math.floor(300 / rows)));
  const plotH = rows * cellH;
  const width = LEFT + PLOT_W + 8;
  const height = TOP + plotH + BOTTOM;
  const canvas = el("canvas", { class: "cmp-canvas", width, height, role: "img",
    "aria-label": `Latency heatmap: ${cols} time columns by ${rows} duration rows, ${hm.total} spans` });
  // Where the cells are, for whoever drives the page without eyes (the browser tests).
  Object.assign(canvas.dataset, { left: LEFT, top: TOP, cellW, cellH, rows, cols });
  const ctx = canvas.getContext("2d");
  const dark = matchMedia("(prefers-color-scheme: dark)").matches || document.documentElement.dataset.theme === "dark";
  const logMax = Math.log1p(hm.max);
  let brush = null; // {c0, r0, c1, r1} in cells
  let drag = null;

  const paint = () => {
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = dark ? "#15181d" : "#f6f7f9";
    ctx.fillRect(LEFT, TOP, PLOT_W, plotH);
    for (let c = 0; c < cols; c++) {
      for (let r = 0; r < rows; r++) {
        const n = hm.counts[c][r];
        if (!n) continue;
        const v = Math.log1p(n) / logMax; // 0..1
        ctx.fillStyle = `hsl(${220 - 200 * v} 80% ${dark ? 30 + 35 * v : 75 - 35 * v}%)`;
        // Row 0 is the fastest, drawn at the bottom.
        ctx.fillRect(LEFT + c * cellW, TOP + (rows - 1 - r) * cellH, Math.ceil(cellW), cellH);
      }
    }
    ctx.fillStyle = dark ? "#c8ccd2" : "#444";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const every = Math.max(1, Math.round(rows / 8));
    // The bottom edge's label would sit on the time axis: labels start one step up.
    for (let r = every; r <= rows; r += every) {
      ctx.fillText(fmtDuration(hm.boundsNanos[r]), LEFT - 6, TOP + (rows - r) * cellH);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const c of [0, Math.floor(cols / 2), cols]) {
      const t = hm.startUnixNano + c * hm.stepNanos;
      ctx.fillText(fmtTime(t / 1e6).slice(11, 19), Math.min(LEFT + c * cellW, width - 30), TOP + plotH + 5);
    }
    const b = brush || drag;
    if (b) {
      const [c0, c1] = [Math.min(b.c0, b.c1), Math.max(b.c0, b.c1)];
      const [r0, r1] = [Math.min(b.r0, b.r1), Math.max(b.r0, b.r1)];
      ctx.strokeStyle = dark ? "#fff" : "#111";
      ctx.lineWidth = 2;
      ctx.setLineDash(drag ? [4, 3] : []);
      ctx.strokeRect(LEFT + c0 * cellW, TOP + (rows - 1 - r1) * cellH, (c1 - c0 + 1) * cellW, (r1 - r0 + 1) * cellH);
      ctx.setLineDash([]);
    }
  };

  const cellAt = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const x = (ev.clientX - rect.left) * (width / rect.width) - LEFT;
    const y = (ev.clientY - rect.top) * (height / rect.height) - TOP;
    return {
      c: Math.min(cols - 1, Math.max(0, Math.floor(x / cellW))),
      r: Math.min(rows - 1, Math.max(0, rows - 1 - Math.floor(y / cellH))),
    };
  };
  const onDown = (ev) => {
    if (ev.button !== 0) return;
    ev.preventDefault();
    const { c, r } = cellAt(ev);
    drag = { c0: c, r0: r, c1: c, r1: r };
    paint();
  };
  const onMove = (ev) => {
    if (!drag) return;
    const { c, r } = cellAt(ev);
    drag.c1 = c;
    drag.r1 = r;
    paint();
  };
  const onUp = (ev) => {
    if (!drag) return;
    onMove(ev);
    brush = drag;
    drag = null;
    paint();
    const c0 = Math.min(brush.c0, brush.c1), c1 = Math.max(brush.c0, brush.c1);
    const r0 = Math.min(brush.r0, brush.r1), r1 = Math.max(brush.r0, brush.r1);
    canvas.dataset.brush = `${c0},${r0},${c1},${r1}`;
    onSelect({
      startNs: hm.startUnixNano + c0 * hm.stepNanos,
      endNs: Math.min(hm.startUnixNano + (c1 + 1) * hm.stepNanos, hm.endUnixNano),
      minNs: hm.boundsNanos[r0],
      maxNs: hm.boundsNanos[r1 + 1],
    });
  };
  canvas.addEventListener("mousedown", onDown);
  window.addEventListener("mousemove", onMove);
  window.addEventListener("mouseup", onUp);
  paint();

  const legend = el("div", { class: "cmp-legend muted small" },
    el("span", { class: "cmp-swatch low" }), " few spans ",
    el("span", { class: "cmp-swatch high" }), ` many (most in one cell: ${hm.max})`);
  return {
    root: el("div", { class: "cmp-heat" }, canvas, legend),
    destroy: () => {
      window.removeEventListener("mousemove", onMove);
      window.removeEventListener("mouseup", onUp);
    },
  };
}

function resultParts(res) {
  const parts = [el("p", { class: "muted small cmp-sides" },
    `${plural(res.selectionSpans, "span")} selected, ${res.baselineSpans} in the baseline (the rest of the heatmap in that time).`)];
  const values = res.values || [];
  const significant = values.filter((v) => v.significant);
  if (!res.selectionSpans) {
    parts.push(el("p", { class: "empty" }, "No spans in the selection."));
    return parts;
  }
  if (!significant.length) {
    parts.push(el("p", { class: "empty" }, "Nothing sets the selection apart: no attribute value is significantly more common in it than in the baseline."));
  }
  if (values.length) {
    parts.push(el("table", { class: "report-table cmp-table" },
      el("caption", { class: "visually-hidden" }, "Attribute values over-represented in the selection, most significant first"),
      el("thead", {}, el("tr", {},
        el("th", {}, "Attribute"), el("th", {}, "Value"), el("th", { class: "num" }, "Selection"), el("th", { class: "num" }, "Baseline"),
        el("th", { class: "num" }, "Score"), el("th", {}, "Examples"))),
      el("tbody", {}, values.map((v) => el("tr", { class: v.significant ? "cmp-row significant" : "cmp-row", dataset: { key: v.key } },
        el("td", { class: "cmp-key" }, v.key),
        el("td", { class: "cmp-value" }, valueText(v)),
        el("td", { class: "num", title: `${v.selection} of ${res.selectionSpans} selected spans` }, `${pct(v.selectionPct)} (${v.selection})`),
        el("td", { class: "num", title: `${v.baseline} of ${res.baselineSpans} baseline spans` }, `${pct(v.baselinePct)} (${v.baseline})`),
        el("td", { class: "num" }, v.score.toFixed(1)),
        el("td", { class: "cmp-examples" }, (v.exampleTraceIDs || []).map((id) =>
          el("a", { href: `/trace/${encodeURIComponent(id)}`, "data-nav": "", class: "cmp-example", title: `Trace ${id}` }, id.slice(0, 8)))))))));
  }
  const shifts = (res.shifts || []).filter((s) => s.significant);
  if (shifts.length) {
    parts.push(el("h3", {}, "Numbers that shift"),
      el("table", { class: "report-table cmp-shifts" },
        el("thead", {}, el("tr", {}, el("th", {}, "Attribute"), el("th", { class: "num" }, "Selection p50"), el("th", { class: "num" }, "Baseline p50"), el("th", { class: "num" }, "D"))),
        el("tbody", {}, shifts.map((s) => el("tr", {},
          el("td", {}, s.key),
          el("td", { class: "num" }, num(s.key, s.selection.p50)),
          el("td", { class: "num" }, num(s.key, s.baseline.p50)),
          el("td", { class: "num" }, s.d.toFixed(2)))))));
  }
  return parts;
}

function valueText(v) {
  return v.value ? anyValue(v.value) : v.text;
}

function num(key, x) {
  return key === "duration" ? fmtDuration(x) : String(Math.round(x * 100) / 100);
}

function plural(n, what) {
  return `${n} ${what}${n === 1 ? "" : "s"}`;
}

function pct(p) {
  return `${Math.round(p * 10) / 10}%`;
}
