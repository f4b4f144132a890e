// gpt2 explore: the shared core of the page's modules. The one state object, DOM and number
// helpers, and the fetch helper; every request goes to the server that sent the page (its JSON API
// is documented in docs/explorer.md). Plain JavaScript modules: no build step, no library.

export const $ = (id) => document.getElementById(id);

export const state = {
  info: null, // GET /api/info
  engine: null, // the engine of the page's traces
  history: [], // {ids, promptLength, draw, run, trace, next}
  index: -1, // the sequence shown: history[index]
  attention: null, // attention[l][h]: Float32Array(T * T) of the sequence shown
  layer: 0, // the layer of the head view and the zoom
  heads: new Set(), // the heads the head view draws
  zoom: null, // {layer, head}
  zoomGeometry: null, // {margin, cell} of the zoom canvas
  focus: null, // the query position the head view isolates
  seq: 0, // bumped by every request that replaces the sequence; stale answers are dropped
  bpeCache: new Map(), // token text -> /api/bpe answer
  positions: null, // the last /api/embeddings/positions answer
  comparison: null, // {key, answer}: the last /api/compare and the sequence it was for
};

/** The sequence shown, or undefined before the first trace. */
export const current = () => state.history[state.index];

/** A key naming a sequence of ids, to tell whether a result belongs to the sequence shown. */
export const idsKey = (ids) => ids.join(",");

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A token's text as it should read in a label: whitespace made visible. */
export function show(text) {
  return text.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/^ /, "␣");
}

export function fmt(x, digits = 4) {
  if (x === null || x === undefined) return "–";
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(2);
  return x.toFixed(digits);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// body[data-pending] counts requests in flight (the browser tests wait for 0).
function busy(delta) {
  const n = Number(document.body.dataset.pending || "0") + delta;
  document.body.dataset.pending = String(n);
}

/** GET `path` (no body) or POST `body` as JSON; the answer's JSON, or an Error with the server's message. */
export async function api(path, body) {
  busy(1);
  try {
    const init = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const response = await fetch(path, init);
    const text = await response.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      throw new Error(`${path}: ${response.status} ${response.statusText}`);
    }
    if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
    Object.defineProperty(data, "_bytes", { value: text.length, enumerable: false });
    return data;
  } finally {
    busy(-1);
  }
}

export function setStatus(text, error = false) {
  const node = $("status");
  node.textContent = text;
  node.classList.toggle("error", error);
}

/**
 * Mark a panel as showing an older sequence than the prompt's (`reason`), or clear the mark
 * (`reason` null). A stale panel is dimmed and says why, so old numbers never pass for new ones.
 */
export function setStale(panel, reason) {
  const node = $(`panel-${panel}`);
  if (!node) return;
  let note = node.querySelector(":scope > .stale-note");
  if (!reason) {
    node.classList.remove("stale");
    if (note) note.remove();
    return;
  }
  node.classList.add("stale");
  if (!note) {
    note = el("div", "stale-note");
    note.setAttribute("role", "note");
    node.querySelector(":scope > h2").after(note);
  }
  note.textContent = reason;
}

/** The sampling settings of the next-token panel's controls. */
export function settings() {
  const topK = parseInt($("top-k").value || "0", 10);
  return {
    temperature: Number($("temperature").value),
    top_k: Number.isFinite(topK) && topK > 0 ? topK : 0,
    top_p: Number($("top-p").value),
  };
}

export function seed() {
  const value = parseInt($("seed").value, 10);
  return Number.isFinite(value) && value >= 0 ? value : 0;
}

/** What a sampled run depends on: a step continues the run only while this stays the same. */
export function runKey() {
  return JSON.stringify({ ...settings(), seed: seed(), engine: state.engine });
}
