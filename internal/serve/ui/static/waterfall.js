// The waterfall: one row per span on a shared time axis. Only the rows in view (plus a margin)
// exist in the DOM, so a 10,000-span trace costs the same to scroll as a 10-span one; rows have
// a fixed height, which is what lets a scroll offset map straight to a row index.

import { el, fmtDuration, fmtOffset, anyValue, serviceColor } from "./util.js";
import { matches } from "./model.js";

const ROW = 26;
const OVERSCAN = 12;

export class Waterfall {
  // opts: { onSelect(span), critical: Map<spanId, [{start, end}]> (ns since the trace's start),
  //         slowest: spanId, lintSpans: Map<spanId, n> }
  constructor(trace, opts) {
    this.trace = trace;
    this.opts = opts;
    this.collapsed = new Set();
    this.filter = "";
    this.hits = null; // spans matching the filter
    this.focusIndex = -1;
    this.selectedId = null;
    this.rows = [];

    this.axis = el("div", { class: "wf-axis", "aria-hidden": "true" });
    this.spacer = el("div", { class: "wf-spacer" });
    this.layer = el("div", { class: "wf-layer" });
    this.spacer.append(this.layer);
    this.scroller = el("div", {
      class: "wf-scroll", tabindex: "0", role: "tree",
      "aria-label": "Spans; arrow keys move, left and right collapse and expand, Enter opens details",
    }, this.spacer);
    this.minimap = el("canvas", { class: "wf-minimap", title: "Minimap: click or drag to move" });
    this.viewport = el("div", { class: "wf-viewport" });
    this.mapBox = el("div", { class: "wf-mapbox" }, this.minimap, this.viewport);
    this.tooltip = el("div", { class: "tooltip", role: "tooltip", hidden: true });
    this.root = el("div", { class: opts.critical.size ? "waterfall has-crit" : "waterfall" },
      el("div", { class: "wf-head" },
        el("div", { class: "wf-head-name" }, "Span"),
        this.axis),
      el("div", { class: "wf-body" }, this.scroller, this.mapBox),
      this.tooltip);

    this.scroller.addEventListener("scroll", () => this.schedule());
    this.scroller.addEventListener("keydown", (e) => this.onKey(e));
    this.scroller.addEventListener("click", (e) => this.onClick(e));
    this.scroller.addEventListener("mouseover", (e) => this.onHover(e));
    this.scroller.addEventListener("mouseleave", () => { this.tooltip.hidden = true; });
    this.bindMinimap();
    this.resizeObserver = new ResizeObserver(() => { this.drawMinimap(); this.schedule(); });
    this.resizeObserver.observe(this.scroller);
    this.recompute();
  }

  destroy() {
    this.resizeObserver.disconnect();
  }

  setFilter(text) {
    this.filter = text.trim().toLowerCase();
    this.recompute();
    return this.hits ? this.hits.size : null;
  }

  // recompute rebuilds the list of visible rows: the depth-first order minus collapsed
  // subtrees; with a filter, the matching spans and their ancestors, so a hit keeps its place
  // in the tree.
  recompute() {
    const focused = this.rows[this.focusIndex];
    let keep = null;
    if (this.filter) {
      this.hits = new Set();
      keep = new Set();
      for (const s of this.trace.order) {
        if (matches(s, this.filter)) {
          this.hits.add(s);
          for (let p = s; p && !keep.has(p); p = p.parent) keep.add(p);
        }
      }
    } else {
      this.hits = null;
    }
    const rows = [];
    const stack = [];
    for (let i = this.trace.roots.length - 1; i >= 0; i--) stack.push(this.trace.roots[i]);
    while (stack.length) {
      const s = stack.pop();
      if (keep && !keep.has(s)) continue;
      rows.push(s);
      if (this.collapsed.has(s.id) && !keep) continue;
      for (let i = s.children.length - 1; i >= 0; i--) stack.push(s.children[i]);
    }
    this.rows = rows;
    this.index = new Map(rows.map((s, i) => [s, i]));
    this.focusIndex = focused && this.index.has(focused) ? this.index.get(focused) : Math.min(this.focusIndex, rows.length - 1);
    this.spacer.style.height = `${rows.length * ROW}px`;
    this.drawAxis();
    this.drawMinimap();
    this.render();
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.render();
    });
  }

  render() {
    const top = this.scroller.scrollTop;
    const h = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + h) / ROW) + OVERSCAN);
    this.layer.style.transform = `translateY(${first * ROW}px)`;
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(this.row(this.rows[i], i));
    this.layer.replaceChildren(frag);
    this.moveViewport();
    // The header's axis must end where the rows' time column ends: leave room for the
    // scrollbar and the minimap, whose widths only the layout knows.
    const gutter = this.scroller.offsetWidth - this.scroller.clientWidth + (this.mapBox.hidden ? 0 : this.mapBox.offsetWidth);
    if (gutter !== this.gutter) {
      this.gutter = gutter;
      this.root.style.setProperty("--gutter", `${gutter}px`);
    }
  }

  row(s, i) {
    const total = this.trace.duration || 1;
    const o = this.opts;
    const crit = o.critical.has(s.id);
    const cls = ["row"];
    if (s.synthetic) cls.push("missing");
    if (s.error) cls.push("error");
    if (crit) cls.push("crit");
    if (s.id === o.slowest) cls.push("slowest");
    if (s.id === this.selectedId) cls.push("selected");
    if (i === this.focusIndex) cls.push("focused");
    if (this.hits && this.hits.has(s)) cls.push("hit");

    const hasKids = s.children.length > 0;
    const open = hasKids && (!this.collapsed.has(s.id) || this.filter);
    const twisty = hasKids
      ? el("button", { class: "twisty", type: "button", tabindex: "-1", "aria-label": open ? "Collapse" : "Expand" }, open ? "▾" : "▸")
      : el("span", { class: "twisty" });

    const left = (s.start / total) * 100;
    const width = Math.max(((s.end - s.start) / total) * 100, 0);
    const color = s.synthetic ? "" : serviceColor(s.service);
    const dur = s.end - s.start;
    const bar = el("div", {
      class: "bar",
      style: { left: `${left}%`, width: `max(${width}%, 2px)`, ...(s.error || s.synthetic ? {} : { background: color }) },
    });
    if (!s.synthetic) {
      for (let k = 0; k < s.events.length; k++) {
        const ev = s.events[k];
        const at = dur > 0 ? Math.min(Math.max(ev.offset / dur, 0), 1) * 100 : 0;
        bar.append(el("span", {
          class: ev.name === "exception" ? "event exc" : "event",
          style: { left: `${at}%` },
          dataset: { event: String(k), name: ev.name, offsetMs: String(Math.round(ev.offset / 1e4) / 100) },
        }));
      }
    }
    // The time column keeps a margin on its right, so the label always fits after the bar.
    const durLabel = el("span", { class: "dur", style: { left: `calc(${left + width}% + 4px)` } },
      s.synthetic ? "" : fmtDuration(dur));

    const lints = o.lintSpans.get(s.id);
    return el("div", {
      class: cls.join(" "),
      role: "treeitem",
      "aria-level": String(s.depth + 1),
      "aria-expanded": hasKids ? String(Boolean(open)) : undefined,
      "aria-selected": String(s.id === this.selectedId),
      dataset: { spanId: s.id, parentId: s.parent ? s.parent.id : "", depth: String(s.depth), index: String(i) },
    },
    el("div", { class: "row-name", style: { paddingLeft: `${6 + s.depth * 14}px` } },
      twisty,
      s.synthetic ? el("span", { class: "badge warn" }, "?") : el("span", { class: "dot", style: { background: color } }),
      el("span", { class: "name", title: s.synthetic ? `No span ${s.id} in this trace` : s.name }, s.name),
      s.synthetic ? el("span", { class: "svc" }, s.id) : el("span", { class: "svc" }, s.service),
      s.error ? el("span", { class: "err-mark", title: `error${s.status.message ? ": " + s.status.message : ""}`, "aria-label": "error" }, "!") : null,
      s.id === o.slowest ? el("span", { class: "badge slow", title: "Most of the trace's time is spent here" }, "slow") : null,
      lints ? el("span", { class: "badge lint", title: `${lints} instrumentation problem(s)` }, "lint") : null),
    el("div", { class: "row-time" }, this.gridLines(), crit ? this.critSegments(s, total) : null, bar, durLabel));
  }

  // The critical path runs through parts of a span (the time not covered by a child on the
  // path), so it is drawn as those parts, not as the whole bar.
  critSegments(s, total) {
    return this.opts.critical.get(s.id).map((seg) => el("span", {
      class: "crit-seg",
      style: { left: `${(seg.start / total) * 100}%`, width: `max(${((seg.end - seg.start) / total) * 100}%, 2px)` },
    }));
  }

  gridLines() {
    return this.gridTpl.cloneNode(true);
  }

  // Ticks fall on round durations (1, 2 or 5 times a power of ten), which people can read off
  // and add up; the rows' grid lines use the same positions.
  drawAxis() {
    const total = this.trace.duration || 1;
    const raw = total / 5;
    const pow = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw * 0.75) || raw;
    const ticks = [];
    for (let t = 0; t <= total * 1.0001 && ticks.length < 12; t += step) ticks.push(t);
    this.axis.replaceChildren(...ticks.map((t) =>
      el("span", { class: "tick", style: { left: `${(t / total) * 100}%` } }, fmtDuration(t))));
    this.gridTpl = el("div", { class: "grid" }, ticks.slice(1).map((t) => el("span", { style: { left: `${(t / total) * 100}%` } })));
  }

  bindMinimap() {
    let dragging = false;
    const jump = (e) => {
      const r = this.minimap.getBoundingClientRect();
      const f = Math.min(Math.max((e.clientY - r.top) / r.height, 0), 1);
      this.scroller.scrollTop = f * this.rows.length * ROW - this.scroller.clientHeight / 2;
    };
    this.mapBox.addEventListener("pointerdown", (e) => {
      dragging = true;
      this.mapBox.setPointerCapture(e.pointerId);
      jump(e);
    });
    this.mapBox.addEventListener("pointermove", (e) => { if (dragging) jump(e); });
    this.mapBox.addEventListener("pointerup", () => { dragging = false; });
  }

  // The minimap only appears when the rows do not fit; each row is a line at most a few pixels
  // high, so the whole trace's shape shows at once.
  drawMinimap() {
    const h = this.scroller.clientHeight;
    const need = this.rows.length * ROW > h + 1 && h > 0;
    this.mapBox.hidden = !need;
    if (!need) return;
    const w = 72;
    const dpr = window.devicePixelRatio || 1;
    this.minimap.width = w * dpr;
    this.minimap.height = h * dpr;
    this.minimap.style.height = `${h}px`;
    const ctx = this.minimap.getContext("2d");
    ctx.scale(dpr, dpr);
    const n = this.rows.length;
    const rh = h / n;
    const total = this.trace.duration || 1;
    for (let i = 0; i < n; i++) {
      const s = this.rows[i];
      ctx.fillStyle = s.error ? "#d93025" : s.synthetic ? "#999" : serviceColor(s.service);
      const x = (s.start / total) * w;
      ctx.fillRect(x, i * rh, Math.max(((s.end - s.start) / total) * w, 1), Math.max(rh - (rh > 2 ? 1 : 0), 0.5));
    }
  }

  moveViewport() {
    if (this.mapBox.hidden) return;
    const total = this.rows.length * ROW || 1;
    const h = this.scroller.clientHeight;
    this.viewport.style.top = `${(this.scroller.scrollTop / total) * h}px`;
    this.viewport.style.height = `${Math.max((h / total) * h, 4)}px`;
  }

  onClick(e) {
    const rowEl = e.target.closest(".row");
    if (!rowEl) return;
    const i = Number(rowEl.dataset.index);
    const s = this.rows[i];
    if (e.target.closest(".twisty") && s.children.length) {
      this.toggle(s);
      return;
    }
    this.focusIndex = i;
    this.select(s);
  }

  toggle(s, open) {
    const isOpen = !this.collapsed.has(s.id);
    if (open === undefined) open = !isOpen;
    if (open) this.collapsed.delete(s.id);
    else this.collapsed.add(s.id);
    if (open !== isOpen) this.recompute();
  }

  select(s, { scroll = false } = {}) {
    if (!s) return;
    // Open the ancestors so a deep-linked span is in the list.
    let changed = false;
    for (let p = s.parent; p; p = p.parent) if (this.collapsed.delete(p.id)) changed = true;
    if (changed || !this.index.has(s)) {
      if (this.filter && !this.index.has(s)) this.filter = "";
      this.recompute();
    }
    this.selectedId = s.id;
    if (this.index.has(s)) this.focusIndex = this.index.get(s);
    if (scroll) this.scrollTo(this.focusIndex, true);
    this.render();
    if (!s.synthetic) this.opts.onSelect(s);
  }

  scrollTo(i, center) {
    const top = i * ROW;
    const h = this.scroller.clientHeight;
    if (center) this.scroller.scrollTop = top - h / 2 + ROW;
    else if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (top + ROW > this.scroller.scrollTop + h) this.scroller.scrollTop = top + ROW - h;
  }

  onKey(e) {
    if (!this.rows.length) return;
    if (this.focusIndex < 0 && ["ArrowDown", "ArrowUp", "ArrowLeft", "ArrowRight", "PageDown", "PageUp"].includes(e.key)) {
      // The first key press only shows where the keyboard is.
      e.preventDefault();
      this.focusIndex = 0;
      this.render();
      return;
    }
    const i = Math.max(this.focusIndex, 0);
    const s = this.rows[i];
    let next = i;
    switch (e.key) {
      case "ArrowDown": next = Math.min(i + 1, this.rows.length - 1); break;
      case "ArrowUp": next = Math.max(i - 1, 0); break;
      case "PageDown": next = Math.min(i + Math.floor(this.scroller.clientHeight / ROW), this.rows.length - 1); break;
      case "PageUp": next = Math.max(i - Math.floor(this.scroller.clientHeight / ROW), 0); break;
      case "Home": next = 0; break;
      case "End": next = this.rows.length - 1; break;
      case "ArrowRight":
        if (s.children.length && this.collapsed.has(s.id)) this.toggle(s, true);
        else if (s.children.length) next = i + 1;
        break;
      case "ArrowLeft":
        if (s.children.length && !this.collapsed.has(s.id) && !this.filter) this.toggle(s, false);
        else if (s.parent && this.index.has(s.parent)) next = this.index.get(s.parent);
        break;
      case "Enter":
      case " ":
        this.select(s);
        break;
      default:
        return;
    }
    e.preventDefault();
    this.focusIndex = next;
    this.scrollTo(next, false);
    this.render();
  }

  onHover(e) {
    const m = e.target.closest(".event");
    if (!m) {
      if (!e.target.closest(".tooltip")) this.tooltip.hidden = true;
      return;
    }
    const s = this.rows[Number(m.closest(".row").dataset.index)];
    const ev = s.events[Number(m.dataset.event)];
    this.tooltip.replaceChildren(
      el("div", { class: "tt-title" }, ev.name, " ", el("span", { class: "muted" }, fmtOffset(ev.offset))),
      ev.attributes.length
        ? el("dl", { class: "tt-attrs" }, ev.attributes.flatMap((a) => [
          el("dt", {}, a.key),
          el("dd", {}, truncate(anyValue(a.value), 300)),
        ]))
        : el("div", { class: "muted" }, "no attributes"));
    this.tooltip.hidden = false;
    const r = m.getBoundingClientRect();
    const host = this.root.getBoundingClientRect();
    const tw = this.tooltip.offsetWidth;
    let x = r.left - host.left + 8;
    if (x + tw > host.width) x = Math.max(host.width - tw - 4, 0);
    this.tooltip.style.left = `${x}px`;
    this.tooltip.style.top = `${r.bottom - host.top + 4}px`;
  }
}

function truncate(s, n) {
  return s.length > n ? s.slice(0, n) + "…" : s;
}
