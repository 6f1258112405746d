// Turns an OTLP/JSON trace into the tree the trace page draws. Real traces are often broken
// (a service that never exported, a clock that jumps, a parent that arrives late), so nothing
// here assumes one root or a complete tree: spans whose parent is absent hang under a
// synthetic "missing parent" node, and a parent loop is cut rather than followed forever.

import { anyValue, attrString, nsBig } from "./util.js";

export function buildTrace(json) {
  const rss = (json && json.trace ? json.trace.resourceSpans : json && json.resourceSpans) || [];
  const spans = [];
  const byId = new Map();
  let minStart = null;
  let maxEnd = null;
  for (const rs of rss) {
    const resAttrs = (rs.resource && rs.resource.attributes) || [];
    const service = attrString(resAttrs, "service.name") || "unknown_service";
    for (const ss of rs.scopeSpans || []) {
      for (const sp of ss.spans || []) {
        if (!sp.spanId || byId.has(sp.spanId)) continue;
        const start = nsBig(sp.startTimeUnixNano);
        let end = nsBig(sp.endTimeUnixNano);
        if (end < start) end = start;
        const span = {
          id: sp.spanId,
          traceId: sp.traceId,
          parentId: sp.parentSpanId || "",
          name: sp.name || "(no name)",
          kind: sp.kind || 0,
          service,
          resource: resAttrs,
          scope: ss.scope || {},
          attributes: sp.attributes || [],
          events: sp.events || [],
          links: sp.links || [],
          status: sp.status || {},
          startBig: start,
          endBig: end,
          start: 0, // ns since the trace's start, set below
          end: 0,
          error: (sp.status && sp.status.code) === 2,
          children: [],
          parent: null,
          depth: 0,
          synthetic: false,
        };
        spans.push(span);
        byId.set(span.id, span);
        if (minStart === null || start < minStart) minStart = start;
        if (maxEnd === null || end > maxEnd) maxEnd = end;
      }
    }
  }
  if (minStart === null) minStart = maxEnd = 0n;
  for (const s of spans) {
    s.start = Number(s.startBig - minStart);
    s.end = Number(s.endBig - minStart);
    s.events = s.events.map((e) => ({
      name: e.name || "",
      attributes: e.attributes || [],
      offset: Number(nsBig(e.timeUnixNano) - s.startBig),
    }));
  }

  const roots = [];
  const missing = new Map(); // absent parent ID -> synthetic node
  for (const s of spans) {
    const p = s.parentId ? byId.get(s.parentId) : undefined;
    if (!s.parentId) {
      roots.push(s);
    } else if (p) {
      s.parent = p;
      p.children.push(s);
    } else {
      let m = missing.get(s.parentId);
      if (!m) {
        m = syntheticParent(s.parentId, s.traceId);
        missing.set(s.parentId, m);
        roots.push(m);
      }
      s.parent = m;
      m.children.push(s);
    }
  }
  // A parent loop (a→b→a) leaves spans unreachable from every root; find them by walking from
  // the roots and attach what is left under a synthetic node too.
  const seen = new Set();
  walk(roots, (s) => seen.add(s));
  for (const s of spans) {
    if (seen.has(s)) continue;
    let m = missing.get(s.parentId);
    if (!m) {
      m = syntheticParent(s.parentId, s.traceId);
      m.name = "missing parent (loop)";
      missing.set(s.parentId, m);
      roots.push(m);
    }
    if (s.parent) s.parent.children = s.parent.children.filter((c) => c !== s);
    s.parent = m;
    m.children.push(s);
    walk([s], (x) => seen.add(x));
  }
  for (const m of missing.values()) {
    m.start = Math.min(...m.children.map((c) => c.start));
    m.end = Math.max(...m.children.map((c) => c.end));
  }

  const byStart = (a, b) => a.start - b.start || a.end - b.end;
  roots.sort(byStart);
  const order = [];
  walk(roots, (s, depth) => {
    s.depth = depth;
    s.children.sort(byStart);
    order.push(s);
  });

  const realRoots = roots.filter((r) => !r.synthetic);
  const root = realRoots[0] || spans.slice().sort(byStart)[0];
  const services = [];
  for (const s of order) if (!s.synthetic && !services.includes(s.service)) services.push(s.service);
  return {
    id: (spans[0] && spans[0].traceId) || "",
    spans,
    byId,
    roots,
    order,
    root,
    rootCount: realRoots.length,
    missingParents: missing.size,
    services,
    errorCount: spans.filter((s) => s.error).length,
    startUnixMs: Number(minStart / 1000000n),
    startBig: minStart,
    duration: Number(maxEnd - minStart),
  };
}

function syntheticParent(parentId, traceId) {
  return {
    id: parentId, traceId, parentId: "", name: "missing parent", kind: 0, service: "",
    resource: [], scope: {}, attributes: [], events: [], links: [], status: {},
    start: 0, end: 0, error: false, children: [], parent: null, depth: 0, synthetic: true,
  };
}

// walk visits in depth-first order without recursion: a 10,000-span chain would otherwise
// overflow the stack.
export function walk(roots, fn) {
  const stack = [];
  for (let i = roots.length - 1; i >= 0; i--) stack.push([roots[i], 0]);
  while (stack.length) {
    const [s, d] = stack.pop();
    fn(s, d);
    for (let i = s.children.length - 1; i >= 0; i--) stack.push([s.children[i], d + 1]);
  }
}

// exceptionOf reads the OpenTelemetry exception event of a span (semantic conventions:
// exception.type, exception.message, exception.stacktrace).
export function exceptionsOf(span) {
  return span.events
    .filter((e) => e.name === "exception")
    .map((e) => {
      const get = (k) => {
        const a = e.attributes.find((x) => x.key === k);
        return a ? anyValue(a.value) : "";
      };
      return {
        type: get("exception.type"),
        message: get("exception.message"),
        stacktrace: get("exception.stacktrace"),
        escaped: get("exception.escaped"),
        offset: e.offset,
      };
    });
}

// matches is the trace page's text filter: a span matches when the text occurs in its name, its
// service, its ID or any attribute key or value.
export function matches(span, needle) {
  if (span.synthetic) return false;
  if (span.name.toLowerCase().includes(needle)) return true;
  if (span.service.toLowerCase().includes(needle)) return true;
  if (span.id.includes(needle)) return true;
  for (const a of span.attributes) {
    if (a.key.toLowerCase().includes(needle)) return true;
    if (anyValue(a.value).toLowerCase().includes(needle)) return true;
  }
  return false;
}
