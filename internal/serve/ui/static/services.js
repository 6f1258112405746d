// The service map: who calls whom, how often, how often it fails and how slowly, from the
// metrics generator's service graph; a node opens that service's operations (RED) table. The
// numbers are counted since the server started, not over a time range, because that is all the
// generator keeps.

import { getServiceGraph, getOperations } from "./api.js";
import { el, fmtDuration, fmtTime, fmtAgo, serviceColor, serviceChip } from "./util.js";

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 176;
const NODE_H = 54;
const GAP_X = 210; // room between layers for an edge's two-line label
const ROW = 118;
const PAD = 24;

// Search's time ranges, shortest first: a traces link asks for the shortest one that still
// covers the whole time the counts were gathered over.
const SEARCH_RANGES = [["15m", 900], ["1h", 3600], ["6h", 6 * 3600], ["24h", 86400], ["7d", 7 * 86400], ["30d", 30 * 86400]];

const KIND_LABEL = { service: "service", database: "database", messaging: "messaging system", user: "entry point" };

const COLUMNS = [
  { key: "spanName", label: "Operation", num: false },
  { key: "spanKind", label: "Kind", num: false },
  { key: "calls", label: "Calls", num: true },
  { key: "ratePerSecond", label: "Rate", num: true },
  { key: "errorShare", label: "Error %", num: true },
  { key: "avgNanos", label: "Avg", num: true },
  { key: "p50Nanos", label: "p50", num: true },
  { key: "p95Nanos", label: "p95", num: true },
];

export async function servicesPage(main, params, signal) {
  let selected = params.get("service") || "";
  let graph = null;
  // The sort survives refreshes and moving between services: someone hunting the slowest
  // operation keeps looking at p95 first.
  const sort = { key: "calls", desc: true };

  const refresh = el("button", { type: "button", class: "refresh" }, "Refresh");
  const since = el("p", { class: "muted intro sm-since" });
  const mapBox = el("div", { class: "sm-map", "aria-label": "Service map" }, el("p", { class: "muted" }, "Loading…"));
  const panel = el("section", { class: "sm-panel", "aria-live": "polite" });
  main.replaceChildren(el("div", { class: "page services-page" },
    el("div", { class: "page-head" },
      el("h1", {}, "Service map"),
      el("span", { class: "spacer" }),
      refresh),
    since, mapBox, panel));
  document.title = "Service map · Ariadne";

  const select = (name) => {
    selected = name;
    const u = new URL(location.href);
    if (name) u.searchParams.set("service", name);
    else u.searchParams.delete("service");
    history.replaceState(history.state, "", u);
    for (const g of mapBox.querySelectorAll(".sm-node")) g.classList.toggle("selected", g.dataset.name === name);
    for (const g of mapBox.querySelectorAll(".sm-edge")) {
      g.classList.toggle("dim", !!name && g.dataset.client !== name && g.dataset.server !== name);
    }
    return showPanel();
  };

  const showPanel = async () => {
    const name = selected;
    if (!graph) return;
    const node = graph.nodes.find((n) => n.name === name);
    if (!node) {
      panel.dataset.state = "ready";
      panel.replaceChildren(el("p", { class: "muted sm-hint" },
        name ? `${name} has made or received no calls since the server started.` : graph.nodes.length ? "Select a node to see its operations and connections." : ""));
      return;
    }
    panel.dataset.state = "loading";
    let ops = null;
    let opsErr = null;
    if (node.kind === "service") {
      panel.replaceChildren(panelHead(node, graph), el("p", { class: "muted" }, "Loading operations…"));
      try {
        ops = (await getOperations(name, signal)).operations || [];
      } catch (err) {
        if (err.name === "AbortError") return;
        opsErr = err;
      }
      if (name !== selected) return;
    }
    const parts = [panelHead(node, graph)];
    if (opsErr) parts.push(el("div", { class: "error-box", role: "alert" }, `Operations: ${opsErr.message}`));
    else if (ops) {
      // Sorting redraws only the table, from the numbers already fetched.
      const sinceUnix = graph.sinceUnix;
      let table;
      const draw = () => {
        const t = opsTable(name, ops, sort, sinceUnix, draw);
        if (table) table.replaceWith(t);
        table = t;
      };
      draw();
      parts.push(table);
    }
    parts.push(connections(node, graph));
    panel.replaceChildren(...parts);
    panel.dataset.state = "ready";
  };

  const load = async () => {
    let g;
    try {
      g = await getServiceGraph(signal);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      graph = null;
      since.textContent = "";
      mapBox.replaceChildren(el("div", { class: "error-box", role: "alert" },
        err.status === 404 ? el("strong", {}, "The service map is not available: ") : el("strong", {}, "Cannot load the service map: "),
        err.message));
      panel.replaceChildren();
      return;
    }
    graph = { sinceUnix: g.sinceUnix || 0, nodes: g.nodes || [], edges: g.edges || [] };
    const startMs = graph.sinceUnix * 1000;
    since.textContent = `Counted since the server started, ${fmtTime(startMs).slice(0, 19)} (${fmtAgo(startMs)}): rates are averages over that time, p95 is of the client's view where there is one. Updated ${fmtTime(Date.now()).slice(11, 19)}.`;
    if (!graph.nodes.length) {
      mapBox.replaceChildren(el("p", { class: "empty" },
        "No calls between services since the server started. Send traces with client and server spans, then refresh."));
    } else {
      mapBox.replaceChildren(drawMap(graph, select));
      backLabels(mapBox);
    }
    await select(selected);
  };

  refresh.addEventListener("click", async () => {
    refresh.disabled = true;
    try {
      await load();
    } catch (err) {
      if (err.name !== "AbortError") throw err;
    } finally {
      refresh.disabled = false;
    }
  });

  await load();
  return { ready: true };
}

// layout puts every node in a layer by its longest call path from an entry point, so callers
// sit left of what they call, then orders each layer by its neighbours' average position a few
// times over, which removes most crossings in graphs of the size people draw by hand.
function layout(nodes, edges) {
  const names = nodes.map((n) => n.name);
  const out = new Map(names.map((n) => [n, []]));
  const inn = new Map(names.map((n) => [n, []]));
  for (const e of edges) {
    if (e.client === e.server || !out.has(e.client) || !out.has(e.server)) continue;
    out.get(e.client).push(e.server);
    inn.get(e.server).push(e.client);
  }
  const rank = (n) => (nodes.find((x) => x.name === n).kind === "user" ? 0 : 1);
  const starts = [...names].sort((a, b) => rank(a) - rank(b) || inn.get(a).length - inn.get(b).length || a.localeCompare(b));

  // Services that call each other form cycles; the edges that close one are drawn backwards
  // instead of making the layering impossible.
  const back = new Set();
  const state = new Map();
  const order = [];
  const visit = (n) => {
    state.set(n, 1);
    for (const m of out.get(n)) {
      if (state.get(m) === 1) back.add(`${n}\u0000${m}`);
      else if (!state.has(m)) visit(m);
    }
    state.set(n, 2);
    order.push(n);
  };
  for (const n of starts) if (!state.has(n)) visit(n);
  order.reverse();

  const layer = new Map(names.map((n) => [n, 0]));
  for (const n of order) {
    for (const m of out.get(n)) {
      if (!back.has(`${n}\u0000${m}`)) layer.set(m, Math.max(layer.get(m), layer.get(n) + 1));
    }
  }
  const layers = [];
  for (const n of [...names].sort()) {
    const l = layer.get(n);
    (layers[l] ||= []).push(n);
  }
  for (let i = 0; i < layers.length; i++) layers[i] ||= [];

  const pos = new Map();
  const index = () => layers.forEach((ns) => ns.forEach((n, i) => pos.set(n, i)));
  index();
  const bary = (n, nb) => {
    const ps = nb.get(n).filter((m) => pos.has(m)).map((m) => pos.get(m));
    return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : pos.get(n);
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    const nb = sweep % 2 ? out : inn;
    const seq = sweep % 2 ? [...layers.keys()].reverse() : [...layers.keys()];
    for (const l of seq) {
      const b = new Map(layers[l].map((n) => [n, bary(n, nb)]));
      layers[l].sort((x, y) => b.get(x) - b.get(y) || x.localeCompare(y));
      index();
    }
  }

  const tallest = Math.max(...layers.map((ns) => ns.length), 1);
  const at = new Map();
  layers.forEach((ns, l) => {
    const top = PAD + ((tallest - ns.length) * ROW) / 2;
    ns.forEach((n, i) => at.set(n, { x: PAD + l * (NODE_W + GAP_X), y: top + i * ROW, layer: l }));
  });
  return {
    at,
    back,
    width: PAD * 2 + layers.length * NODE_W + (layers.length - 1) * GAP_X,
    height: PAD * 2 + (tallest - 1) * ROW + NODE_H,
  };
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(e.dataset, v);
    // Styles go through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (k === "style") Object.assign(e.style, v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function drawMap(graph, select) {
  const { nodes, edges } = graph;
  const L = layout(nodes, edges);
  // Backward edges loop under the nodes, so leave them room.
  const height = L.height + (L.back.size ? 60 : 0);
  const root = svg("svg", {
    class: "sm-svg", width: L.width, height, viewBox: `0 0 ${L.width} ${height}`, role: "group",
    // A graph a little wider than the window shrinks to fit; a much wider one keeps its text
    // legible and scrolls.
    style: { minWidth: `${Math.round(L.width * 0.75)}px` },
    "aria-label": `Service map: ${nodes.length} nodes, ${edges.length} connections`,
  });
  root.append(svg("defs", {},
    ["ok", "err"].map((k) => svg("marker", {
      id: `sm-arrow-${k}`, class: `sm-arrow ${k}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    }, svg("path", { d: "M0,0 L10,5 L0,10 z" })))));

  const edgeLayer = svg("g", { class: "sm-edges" });
  const labelLayer = svg("g", { class: "sm-labels" });
  for (const e of edges) {
    const a = L.at.get(e.client);
    const b = L.at.get(e.server);
    if (!a || !b) continue;
    let d, mid;
    if (e.client === e.server) {
      const x = a.x + NODE_W - 30;
      d = `M${x},${a.y} C${x},${a.y - 40} ${x + 50},${a.y - 40} ${x + 30},${a.y}`;
      mid = { x: x + 30, y: a.y - 36 };
    } else if (b.layer > a.layer) {
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x - 2, y2 = b.y + NODE_H / 2;
      const c = Math.max((x2 - x1) / 2, 40);
      d = `M${x1},${y1} C${x1 + c},${y1} ${x2 - c},${y2} ${x2},${y2}`;
      // An edge that skips layers would put its label among the nodes it passes; it goes in
      // the gap before its target instead.
      mid = b.layer - a.layer > 1 ? pointAtX([x1, y1], [x1 + c, y1], [x2 - c, y2], [x2, y2], x2 - GAP_X / 2) : { x: (x1 + x2) / 2, y: (y1 + y2) / 2 };
    } else {
      const x1 = a.x + NODE_W / 2, y1 = a.y + NODE_H, x2 = b.x + NODE_W / 2, y2 = b.y + NODE_H + 2;
      const low = L.height + 30;
      d = `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`;
      mid = { x: (x1 + x2) / 2, y: (y1 + y2) / 8 + (low * 3) / 4 };
    }
    const bad = e.failed > 0;
    const p95 = e.clientP95Nanos || e.serverP95Nanos;
    const title = `${e.client} → ${e.server}${e.connectionType ? ` (${e.connectionType})` : ""}\n` +
      `${e.requests} request${e.requests === 1 ? "" : "s"}, ${e.failed} failed (${fmtPct(e.errorShare)}), ${fmtRate(e.ratePerSecond)} req/s\n` +
      `p95 as the client saw it: ${e.clientP95Nanos ? fmtDuration(e.clientP95Nanos) : "–"}; as the server did: ${e.serverP95Nanos ? fmtDuration(e.serverP95Nanos) : "–"}`;
    const data = { client: e.client, server: e.server, requests: String(e.requests), failed: String(e.failed) };
    edgeLayer.append(svg("g", { class: bad ? "sm-edge err" : "sm-edge", dataset: data },
      svg("title", {}, title),
      svg("path", { d, "marker-end": `url(#sm-arrow-${bad ? "err" : "ok"})` })));
    labelLayer.append(svg("g", { class: bad ? "sm-edge sm-label err" : "sm-edge sm-label", dataset: data },
      svg("title", {}, title),
      svg("text", { x: mid.x, y: mid.y - 4, "text-anchor": "middle" },
        svg("tspan", { class: "rate" }, `${fmtRate(e.ratePerSecond)} req/s`),
        svg("tspan", { class: "errs" }, ` · ${fmtPct(e.errorShare)} err`)),
      svg("text", { x: mid.x, y: mid.y + 10, "text-anchor": "middle" },
        svg("tspan", { class: "p95" }, `p95 ${p95 ? fmtDuration(p95) : "–"}`),
        svg("tspan", { class: "reqs" }, ` · ${e.requests} req`))));
  }

  const nodeLayer = svg("g", { class: "sm-nodes" });
  for (const n of nodes) {
    const p = L.at.get(n.name);
    const label = n.name.length > 22 ? n.name.slice(0, 21) + "…" : n.name;
    const g = svg("g", {
      class: `sm-node kind-${n.kind}`, transform: `translate(${p.x},${p.y})`, tabindex: 0, role: "button",
      "aria-label": `${n.name}, ${KIND_LABEL[n.kind] || n.kind}`, dataset: { name: n.name, kind: n.kind },
    },
    svg("title", {}, `${n.name} (${KIND_LABEL[n.kind] || n.kind})`),
    shape(n),
    svg("text", { class: "sm-name", x: n.kind === "service" ? 18 : NODE_W / 2, y: n.kind === "database" ? 31 : 25, "text-anchor": n.kind === "service" ? "start" : "middle" }, label),
    svg("text", { class: "sm-kind", x: n.kind === "service" ? 18 : NODE_W / 2, y: n.kind === "database" ? 45 : 41, "text-anchor": n.kind === "service" ? "start" : "middle" }, KIND_LABEL[n.kind] || n.kind));
    g.addEventListener("click", () => select(n.name));
    g.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        select(n.name);
      }
    });
    nodeLayer.append(g);
  }
  root.append(edgeLayer, nodeLayer, labelLayer);
  return root;
}

// backLabels puts a plate behind each edge label so the line it sits on does not run through
// the text; text has a size only once it is in the document, hence after drawing.
// Labels that would cover each other are pushed down until they do not; a leader line is not
// worth it at the sizes this page draws.
function backLabels(box) {
  const placed = [];
  for (const g of box.querySelectorAll(".sm-label")) {
    const b = g.getBBox();
    if (!b.width) continue;
    const r = { x: b.x - 6, y: b.y - 2, w: b.width + 12, h: b.height + 4 };
    let dy = 0;
    for (let moved = true; moved;) {
      moved = false;
      for (const p of placed) {
        if (r.x < p.x + p.w && p.x < r.x + r.w && r.y + dy < p.y + p.h && p.y < r.y + dy + r.h) {
          dy = p.y + p.h + 2 - r.y;
          moved = true;
        }
      }
    }
    r.y += dy;
    placed.push(r);
    if (dy) g.setAttribute("transform", `translate(0,${dy})`);
    g.insertBefore(svg("rect", { class: "sm-label-bg", x: r.x, y: r.y - dy, width: r.w, height: r.h, rx: 5 }), g.querySelector("text"));
  }
}

// pointAtX finds the point of a left-to-right cubic Bézier at x, by bisection on its
// parameter: x grows along these curves, so there is one such point.
function pointAtX(p0, p1, p2, p3, x) {
  const at = (t, i) => {
    const u = 1 - t;
    return u * u * u * p0[i] + 3 * u * u * t * p1[i] + 3 * u * t * t * p2[i] + t * t * t * p3[i];
  };
  let lo = 0, hi = 1;
  for (let k = 0; k < 30; k++) {
    const m = (lo + hi) / 2;
    if (at(m, 0) < x) lo = m;
    else hi = m;
  }
  return { x, y: at(lo, 1) };
}

// shape draws a node so its kind reads without the label: a database is a cylinder, a
// messaging system a queue with pointed ends, the entry point a pill.
function shape(n) {
  const w = NODE_W, h = NODE_H;
  switch (n.kind) {
    case "database": {
      const ry = 7;
      return svg("g", { class: "sm-shape" },
        svg("path", { class: "body", d: `M0,${ry} A${w / 2},${ry} 0 0 1 ${w},${ry} V${h - ry} A${w / 2},${ry} 0 0 1 0,${h - ry} Z` }),
        svg("path", { class: "rim", d: `M0,${ry} A${w / 2},${ry} 0 0 0 ${w},${ry}` }));
    }
    case "messaging":
      return svg("g", { class: "sm-shape" },
        svg("path", { class: "body", d: `M12,0 H${w - 12} L${w},${h / 2} L${w - 12},${h} H12 L0,${h / 2} Z` }));
    case "user":
      return svg("g", { class: "sm-shape" },
        svg("rect", { class: "body", width: w, height: h, rx: h / 2 }));
    default:
      return svg("g", { class: "sm-shape" },
        svg("rect", { class: "body", width: w, height: h, rx: 8 }),
        svg("rect", { class: "stripe", x: 0, y: 0, width: 6, height: h, rx: 3, style: { fill: serviceColor(n.name) } }));
  }
}

function panelHead(node, graph) {
  const head = el("div", { class: "sm-panel-head" },
    el("h2", {}, node.kind === "service" ? serviceChip(node.name) : el("span", { class: "chip" }, node.name),
      el("span", { class: "muted" }, ` ${KIND_LABEL[node.kind] || node.kind}`)));
  if (node.kind === "service") {
    head.append(el("span", { class: "spacer" }),
      el("a", { class: "traces-link", href: searchHref(graph.sinceUnix, node.name), "data-nav": "" }, `Traces of ${node.name} →`));
  }
  return head;
}

function opsTable(service, ops, sort, sinceUnix, redraw) {
  if (!ops.length) {
    return el("p", { class: "empty" }, `No spans from ${service} since the server started.`);
  }
  const col = COLUMNS.find((c) => c.key === sort.key) || COLUMNS[2];
  const rows = ops.slice().sort((a, b) => {
    const x = a[col.key], y = b[col.key];
    const d = col.num ? (Number(x) || 0) - (Number(y) || 0) : String(x).localeCompare(String(y));
    return (sort.desc ? -d : d) || a.spanName.localeCompare(b.spanName);
  });
  const th = (c) => {
    const on = c.key === sort.key;
    const b = el("button", { type: "button", class: "sort" }, c.label, el("span", { class: "sort-mark", "aria-hidden": "true" }, on ? (sort.desc ? " ▾" : " ▴") : ""));
    b.addEventListener("click", () => {
      if (on) sort.desc = !sort.desc;
      else {
        sort.key = c.key;
        sort.desc = c.num;
      }
      redraw();
    });
    return el("th", { class: c.num ? "num" : "", "aria-sort": on ? (sort.desc ? "descending" : "ascending") : "none", dataset: { key: c.key } }, b);
  };
  return el("table", { class: "report-table ops-table" },
    el("caption", { class: "visually-hidden" }, `Operations of ${service}, counted since the server started`),
    el("thead", {}, el("tr", {}, COLUMNS.map(th))),
    el("tbody", {}, rows.map((o) => el("tr", { dataset: { op: o.spanName, kind: o.spanKind }, class: o.errors ? "has-error" : "" },
      el("td", { class: "op-name" }, el("a", { href: searchHref(sinceUnix, service, o.spanName), "data-nav": "", title: `Traces with ${o.spanName} in ${service}` }, o.spanName)),
      el("td", { class: "muted" }, kindLabel(o.spanKind)),
      el("td", { class: "num calls" }, String(o.calls)),
      el("td", { class: "num rate" }, `${fmtRate(o.ratePerSecond)}/s`),
      el("td", { class: o.errors ? "num errs bad" : "num errs", title: `${o.errors} of ${o.calls} failed` }, fmtPct(o.errorShare)),
      el("td", { class: "num" }, fmtDuration(o.avgNanos)),
      el("td", { class: "num" }, fmtDuration(o.p50Nanos)),
      el("td", { class: "num" }, fmtDuration(o.p95Nanos))))));
}

// connections lists a node's edges in words, which is all there is to say about a database or
// the entry point, and the exact numbers behind the labels on the map.
function connections(node, graph) {
  const ins = graph.edges.filter((e) => e.server === node.name);
  const outs = graph.edges.filter((e) => e.client === node.name);
  const row = (e, other) => el("tr", { class: e.failed ? "has-error" : "" },
    el("td", {}, other),
    el("td", { class: "muted" }, e.connectionType ? e.connectionType.replace(/_/g, " ") : "call"),
    el("td", { class: "num" }, String(e.requests)),
    el("td", { class: "num" }, `${fmtRate(e.ratePerSecond)}/s`),
    el("td", { class: e.failed ? "num bad" : "num" }, fmtPct(e.errorShare)),
    el("td", { class: "num" }, e.clientP95Nanos ? fmtDuration(e.clientP95Nanos) : "–"),
    el("td", { class: "num" }, e.serverP95Nanos ? fmtDuration(e.serverP95Nanos) : "–"));
  const table = (title, list, side) => el("div", { class: "sm-conn" },
    el("h3", {}, title),
    list.length
      ? el("table", { class: "report-table conn-table" },
        el("thead", {}, el("tr", {},
          el("th", {}, side), el("th", {}, "Type"), el("th", { class: "num" }, "Requests"), el("th", { class: "num" }, "Rate"),
          el("th", { class: "num" }, "Error %"), el("th", { class: "num" }, "p95 client"), el("th", { class: "num" }, "p95 server"))),
        el("tbody", {}, list.map((e) => row(e, side === "Caller" ? e.client : e.server))))
      : el("p", { class: "muted small" }, "None."));
  return el("div", { class: "sm-conns" },
    table("Called by", ins, "Caller"),
    table("Calls", outs, "Callee"));
}

function searchHref(sinceUnix, service, spanName) {
  const parts = [`resource.service.name = ${JSON.stringify(service)}`];
  if (spanName) parts.push(`name = ${JSON.stringify(spanName)}`);
  const age = Date.now() / 1000 - (sinceUnix || 0);
  const range = (SEARCH_RANGES.find(([, s]) => s >= age) || SEARCH_RANGES[SEARCH_RANGES.length - 1])[0];
  const p = new URLSearchParams();
  p.set("q", `{ ${parts.join(" && ")} }`);
  p.set("range", range);
  return `/search?${p}`;
}

function kindLabel(k) {
  return String(k || "").replace(/^SPAN_KIND_/, "").toLowerCase() || "–";
}

function fmtRate(r) {
  const v = Number(r) || 0;
  if (v === 0) return "0";
  if (v < 0.001) return "<0.001";
  if (v >= 100) return String(Math.round(v));
  if (v >= 10) return v.toFixed(1);
  if (v >= 1) return v.toFixed(2);
  return String(Number(v.toPrecision(2)));
}

function fmtPct(share) {
  const p = (Number(share) || 0) * 100;
  if (p === 0) return "0%";
  if (p < 0.1) return "<0.1%";
  return `${p >= 10 ? Math.round(p) : Math.round(p * 10) / 10}%`;
}
