// Who the UI reads as: the token (when the server asks for one) and the tenant (when it keeps
// tenants apart). Both live in sessionStorage, so they last as long as the tab and never leave
// this origin except as headers on the UI's own API calls.

import { el } from "./util.js";

const TOKEN = "ariadne-token";
const TENANT = "ariadne-tenant";

function load(k) {
  try { return sessionStorage.getItem(k) || ""; } catch { return ""; }
}

function store(k, v) {
  try {
    if (v) sessionStorage.setItem(k, v);
    else sessionStorage.removeItem(k);
  } catch { /* blocked storage: the value lasts for this page */ }
}

export const session = { token: load(TOKEN), tenant: load(TENANT), multitenancy: false, auth: false, tenants: [] };

// headers go on every API call. X-Ariadne-UI asks the server to challenge for a bearer token
// only, so the browser's own Basic-auth prompt never covers the login form.
export function headers() {
  const h = { Accept: "application/json", "X-Ariadne-UI": "1" };
  if (session.token) h.Authorization = `Bearer ${session.token}`;
  if (session.multitenancy && session.tenant) h["X-Scope-OrgID"] = session.tenant;
  return h;
}

// connect asks the server how it wants to be read; it answers null when the UI may go on, or
// the refusal ({status, message}) when it needs a (different) token.
export async function connect() {
  let resp;
  try {
    resp = await fetch("/api/status/tenants", { headers: headers() });
  } catch (err) {
    return { status: 0, message: `cannot reach Ariadne: ${err.message}` };
  }
  if (!resp.ok) return { status: resp.status, message: (await resp.text()).trim() || resp.statusText };
  const st = await resp.json();
  session.multitenancy = !!st.multitenancy;
  session.auth = !!st.auth;
  session.tenants = st.tenants || [];
  if (session.multitenancy) {
    const choices = tenantChoices();
    if (!choices.some((c) => c.value === session.tenant)) session.tenant = choices.length ? choices[0].value : "";
    store(TENANT, session.tenant);
  }
  return null;
}

// tenantChoices are the tenants the caller may read, and all of them at once (Tempo's a|b).
function tenantChoices() {
  const cs = session.tenants.map((t) => ({ value: t, label: t }));
  if (session.tenants.length > 1) cs.push({ value: session.tenants.join("|"), label: "all of these" });
  return cs;
}

// loginPage asks for a token; refused is why the last one did not do (null on first visit).
export function loginPage(main, refused, onSignedIn) {
  const input = el("input", { type: "password", name: "token", autocomplete: "current-password", spellcheck: "false",
    "aria-label": "Token", required: true });
  const why = refused && refused.status
    ? (session.token
      ? `The token was not accepted (${refused.status}): ${refused.message}`
      : `This Ariadne needs a token to read traces (${refused.status}).`)
    : refused ? refused.message : "";
  const form = el("form", { class: "login-form" },
    el("label", {}, "Token ", input),
    el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    document.documentElement.dataset.state = "loading";
    session.token = input.value.trim();
    store(TOKEN, session.token);
    onSignedIn();
  });
  main.replaceChildren(el("div", { class: "page login" },
    el("h1", {}, "Sign in"),
    why ? el("div", { class: "error-box", role: "alert" }, why) : null,
    el("p", {}, "Paste a token with the read role. It is kept in this tab only (sessionStorage) and sent as Authorization: Bearer."),
    form));
  input.focus();
}

// drawControls puts the tenant picker and the sign-out button in the top bar.
export function drawControls(bar, onChange) {
  for (const old of bar.querySelectorAll(".session-control")) old.remove();
  const before = bar.querySelector(".theme-toggle");
  if (session.multitenancy) {
    const sel = el("select", { class: "session-control tenant-picker", "aria-label": "Tenant", title: "Tenant (X-Scope-OrgID)" },
      tenantChoices().map((c) => el("option", { value: c.value, selected: c.value === session.tenant }, c.label)));
    if (!session.tenants.length) sel.append(el("option", { value: "", selected: true }, "no tenants yet"));
    sel.addEventListener("change", () => {
      session.tenant = sel.value;
      store(TENANT, session.tenant);
      onChange();
    });
    bar.insertBefore(sel, before);
  }
  if (session.auth) {
    const out = el("button", { type: "button", class: "session-control sign-out" }, "Sign out");
    out.addEventListener("click", () => {
      store(TOKEN, "");
      store(TENANT, "");
      location.assign("/");
    });
    bar.insertBefore(out, before);
  }
}
