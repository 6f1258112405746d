// Small helpers shared by every page. Everything user-supplied reaches the DOM through
// textContent or attributes set by el(), never through innerHTML, so span names and attribute
// values cannot inject markup.

export function el(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k === "style" && typeof v === "object") Object.assign(e.style, v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else e.append(c instanceof Node ? c : String(c));
  }
}

// fmtDuration picks a unit so that a value reads with at most three significant digits, the
// way people compare durations at a glance (250 ms, 1.2 s, 40 µs).
export function fmtDuration(ns) {
  if (!Number.isFinite(ns)) return "–";
  const a = Math.abs(ns);
  if (a === 0) return "0 ms";
  if (a < 1e3) return `${round(ns)} ns`;
  if (a < 1e6) return `${round(ns / 1e3)} µs`;
  if (a < 1e9) return `${round(ns / 1e6)} ms`;
  if (a < 60e9) return `${round(ns / 1e9)} s`;
  const m = Math.floor(a / 60e9);
  const s = Math.round((a - m * 60e9) / 1e9);
  return `${ns < 0 ? "-" : ""}${m} min ${s} s`;
}

function round(v) {
  const a = Math.abs(v);
  if (a >= 100) return String(Math.round(v));
  if (a >= 10) return String(Math.round(v * 10) / 10);
  return String(Math.round(v * 100) / 100);
}

// fmtOffset is the guide's "t=15ms" notation for a time inside a span.
export function fmtOffset(ns) {
  return "t=" + fmtDuration(ns).replace(" ", "");
}

export function fmtTime(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtAgo(ms, now = Date.now()) {
  const s = Math.round((now - ms) / 1000);
  if (s < 0) return "in the future";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// Services keep one colour everywhere (search results, waterfall, chips) because it is derived
// from the name, not from the order in which a page happens to meet them.
const HUES = [210, 150, 32, 280, 190, 330, 95, 255, 15, 170, 55, 300];
export function serviceHue(name) {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return HUES[(h >>> 0) % HUES.length];
}
export function serviceColor(name) {
  return `hsl(${serviceHue(name)} 62% 52%)`;
}

export function serviceChip(name) {
  return el("span", { class: "chip", title: name },
    el("span", { class: "dot", style: { background: serviceColor(name) } }), name);
}

// anyValue renders an OTLP/JSON AnyValue as text. int64s arrive as strings and stay strings, so
// large values keep every digit.
export function anyValue(v) {
  if (!v) return "";
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return String(v.intValue);
  if ("doubleValue" in v) return String(v.doubleValue);
  if ("boolValue" in v) return String(v.boolValue);
  if ("arrayValue" in v) return "[" + (v.arrayValue.values || []).map(quoted).join(", ") + "]";
  if ("kvlistValue" in v) {
    return "{" + (v.kvlistValue.values || []).map((kv) => `${kv.key}: ${quoted(kv.value)}`).join(", ") + "}";
  }
  if ("bytesValue" in v) return "0x" + base64ToHex(v.bytesValue);
  return "";
}

function quoted(v) {
  return v && "stringValue" in v ? JSON.stringify(v.stringValue) : anyValue(v);
}

function base64ToHex(b64) {
  try {
    return Array.from(atob(b64), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
  } catch {
    return b64;
  }
}

export function attrMap(attrs) {
  const m = new Map();
  for (const a of attrs || []) m.set(a.key, a.value);
  return m;
}

export function attrString(attrs, key) {
  for (const a of attrs || []) if (a.key === key) return anyValue(a.value);
  return undefined;
}

// copyButton copies text; the clipboard API needs a secure context and permission, so a hidden
// textarea is the fallback, and a failure is shown on the button rather than thrown.
export function copyButton(text, label = "Copy") {
  const b = el("button", { class: "copy", type: "button", title: `Copy ${text}`, "aria-label": `Copy ${text}` }, label);
  b.addEventListener("click", async (ev) => {
    ev.stopPropagation();
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        ok = true;
      }
    } catch {
      ok = false;
    }
    if (!ok) {
      const ta = el("textarea", { style: { position: "fixed", opacity: "0" } });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      try { ok = document.execCommand("copy"); } catch { ok = false; }
      ta.remove();
    }
    b.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { b.textContent = label; }, 1200);
  });
  return b;
}

export function kindName(k) {
  return ["unspecified", "internal", "server", "client", "producer", "consumer"][k] || "unspecified";
}

// nsBig parses the decimal nanosecond strings of OTLP/JSON. Unix nanoseconds need 61 bits, more
// than a double holds exactly, so they are kept as BigInt until made relative to the trace.
export function nsBig(s) {
  if (s === undefined || s === null || s === "") return 0n;
  try {
    return BigInt(s);
  } catch {
    return 0n;
  }
}

export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
