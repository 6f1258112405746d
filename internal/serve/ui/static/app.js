// The router: every page is a path the server answers with index.html, and moving between
// pages rewrites the history instead of reloading, so deep links and the back button both work.

import { searchPage } from "./search.js";
import { tracePage } from "./trace.js";
import { lintsPage } from "./lints.js";
import { servicesPage } from "./services.js";
import { comparePage } from "./compare.js";
import { el } from "./util.js";
import { connect, drawControls, loginPage } from "./session.js";

const main = document.getElementById("main");
let current = null; // { abort, destroy }

function navigate(url, { replace = false } = {}) {
  const u = new URL(url, location.href);
  if (u.href !== location.href) {
    if (replace) history.replaceState(null, "", u);
    else history.pushState(null, "", u);
  }
  render();
}

async function render() {
  if (current) {
    current.abort.abort();
    if (current.destroy) current.destroy();
  }
  const abort = new AbortController();
  const me = { abort, destroy: null };
  current = me;
  const root = document.documentElement;
  root.dataset.state = "loading";
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  for (const a of document.querySelectorAll(".topbar nav a")) {
    const active = (a.dataset.page === "search" && (path === "/" || path === "/search")) ||
      (a.dataset.page === "lints" && path === "/lints") ||
      (a.dataset.page === "services" && path === "/services") ||
      (a.dataset.page === "compare" && path === "/compare");
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  let result;
  try {
    if (path === "/" || path === "/search") {
      result = await searchPage(main, params, abort.signal, navigate);
    } else if (path === "/lints") {
      result = await lintsPage(main, params, abort.signal, navigate);
    } else if (path === "/services") {
      result = await servicesPage(main, params, abort.signal);
    } else if (path === "/compare") {
      result = await comparePage(main, params, abort.signal, navigate);
    } else if (path.startsWith("/trace/")) {
      const id = decodeURIComponent(path.slice("/trace/".length)).trim().toLowerCase();
      result = await tracePage(main, id, params, abort.signal);
    } else {
      main.replaceChildren(el("div", { class: "page" }, el("h1", {}, "Not found"),
        el("p", {}, el("a", { href: "/search", "data-nav": "" }, "Search traces"))));
    }
  } catch (err) {
    if (err && err.name === "AbortError") return;
    main.replaceChildren(el("div", { class: "page" }, el("div", { class: "error-box", role: "alert" }, String(err && err.message || err))));
    root.dataset.state = "error";
    throw err;
  }
  if (current !== me) return;
  me.destroy = result && result.destroy;
  root.dataset.state = "ready";
  // When the page finished drawing, in ms since navigation: what the benchmark reads.
  root.dataset.readyMs = String(Math.round(performance.now()));
}

// Links marked data-nav stay inside the app; a modified click (new tab, new window) is left to
// the browser.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const u = new URL(a.href, location.href);
  if (u.origin !== location.origin) return;
  e.preventDefault();
  navigate(u.href);
  window.scrollTo(0, 0);
});

window.addEventListener("popstate", render);

document.querySelector(".goto").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = e.target.elements.id;
  const id = input.value.trim().replace(/^0x/i, "");
  if (!id) return;
  input.value = "";
  input.blur();
  navigate(`/trace/${encodeURIComponent(id)}`);
});

document.querySelector(".theme-toggle").addEventListener("click", () => {
  const root = document.documentElement;
  const dark = root.dataset.theme
    ? root.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  root.dataset.theme = dark ? "light" : "dark";
  try { localStorage.setItem("ariadne-theme", root.dataset.theme); } catch { /* blocked storage: theme lasts for this page */ }
});

// start asks the server how to read it before drawing a page: with authentication on and no
// accepted token, the login form comes first; with tenants, the picker goes in the top bar.
async function start() {
  const refused = await connect();
  if (refused) {
    loginPage(main, refused, start);
    document.documentElement.dataset.state = "ready";
    return;
  }
  drawControls(document.querySelector(".topbar"), render);
  render();
}

start();
