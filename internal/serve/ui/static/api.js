// The query API, on the same origin as the UI, read with the session's token and tenant.

import { headers, session } from "./session.js";

export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function getJSON(path, signal) {
  let resp;
  try {
    resp = await fetch(path, { headers: headers(), signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new APIError(0, `cannot reach Ariadne: ${err.message}`);
  }
  if (!resp.ok) {
    const text = (await resp.text()).trim();
    throw new APIError(resp.status, text || `${resp.status} ${resp.statusText}`);
  }
  return resp.json();
}

export function getTrace(id, signal) {
  return getJSON(`/api/v2/traces/${encodeURIComponent(id)}`, signal);
}

export function getAnalysis(id, signal) {
  return getJSON(`/api/analysis/traces/${encodeURIComponent(id)}`, signal);
}

// The compare page's latency heatmap and its ranked differences (internal/compare).
export function getHeatmap({ q, start, end, columns }, signal) {
  const p = new URLSearchParams({ q, start, end, columns: String(columns) });
  return getJSON(`/api/analysis/heatmap?${p}`, signal);
}

export function getCompare({ q, baseline, start, end, limit }, signal) {
  const p = new URLSearchParams({ q, baseline, start, end, limit: String(limit) });
  return getJSON(`/api/analysis/compare?${p}`, signal);
}

export function getLintReport({ since, service }, signal) {
  const p = new URLSearchParams();
  if (since) p.set("since", since);
  if (service) p.set("service", service);
  return getJSON(`/api/analysis/lints?${p}`, signal);
}

// The service graph and the operations' RED numbers, counted since the server started; both
// answer 404 when the metrics generator is disabled.
export function getServiceGraph(signal) {
  return getJSON("/api/servicegraph", signal);
}

export function getOperations(service, signal) {
  return getJSON(`/api/services/${encodeURIComponent(service)}/operations`, signal);
}

export function search({ q, start, end, limit, spss }, signal) {
  const p = new URLSearchParams();
  p.set("q", q);
  if (start) p.set("start", String(start));
  if (end) p.set("end", String(end));
  if (limit) p.set("limit", String(limit));
  if (spss) p.set("spss", String(spss));
  return getJSON(`/api/search?${p}`, signal);
}

// Tag names and values only feed autocompletion and quick filters, so they are fetched once
// per page and a failure leaves the suggestions empty instead of breaking the page.
const tagCache = new Map();

// Keyed by tenant too: switching tenants must not suggest another tenant's values.
export function searchTags() {
  const key = `${session.tenant}\u0000`;
  if (!tagCache.has(key)) {
    tagCache.set(key, getJSON("/api/v2/search/tags").then((r) => r.scopes || []).catch(() => []));
  }
  return tagCache.get(key);
}

export function tagValues(tag) {
  const key = `${session.tenant}\u0000${tag}`;
  if (!tagCache.has(key)) {
    tagCache.set(key, getJSON(`/api/v2/search/tag/${encodeURIComponent(tag)}/values`)
      .then((r) => r.tagValues || [])
      .catch(() => []));
  }
  return tagCache.get(key);
}
