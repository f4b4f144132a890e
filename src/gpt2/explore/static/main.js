// gpt2 explore: the page's entry module. Loads the model's description, wires the panels, and owns
// the sequence: the prompt's trace, the steps, the history, and what a failed request leaves on the
// screen. Each panel is a module of its own (tokens.js, next.js, attention.js, lens.js,
// embeddings.js, code.js, engines.js) over the shared core (core.js); no build step, no library.

import { renderAttention, decodeAttention, initAttention } from "./attention.js";
import { fillFunctions, initCode, loadSource } from "./code.js";
import {
  $, api, current, debounce, el, runKey, seed, setStale, setStatus, settings, state,
} from "./core.js";
import { initEmbeddings, loadNeighbours, loadPositions, pickToken, tokenChosen } from "./embeddings.js";
import { initEngines, renderEngines } from "./engines.js";
import { initLens, renderLens, renderNorms } from "./lens.js";
import { initNext, renderHistory, renderNext, updateOutputs } from "./next.js";
import { initTokens, loadBpe, renderTokens } from "./tokens.js";

// The panels drawn from the sequence's trace: a failed or pending request marks them stale.
const TRACE_PANELS = ["tokens", "next", "attention", "lens"];
const FIRST_PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?";

function markTracePanels(reason) {
  for (const panel of TRACE_PANELS) setStale(panel, reason);
}

async function start() {
  const info = await api("/api/info");
  state.info = info;
  state.engine = info.engines.default;
  const m = info.model;
  $("model-name").textContent =
    `${m.name} · ${m.n_layer} layers × ${m.n_head} heads · d ${m.n_embd} · ${(m.parameters / 1e6).toFixed(1)}M parameters`;
  const engines = $("engine");
  for (const name of info.engines.installed) {
    const option = el("option", null, name);
    option.value = name;
    option.selected = name === state.engine;
    engines.append(option);
  }
  engines.addEventListener("change", () => {
    state.engine = engines.value;
    retrace();
  });
  initTokens({ pick: (token) => pickToken({ id: token.id }, token.text, true) });
  initNext({ choose: (id) => step(id), step: () => step(), go, settingsChanged: refreshNext });
  initAttention(m);
  initLens();
  initEmbeddings();
  initCode(info);
  initEngines(info);
  $("temperature").value = String(info.defaults.temperature);
  $("top-k").value = String(info.defaults.top_k);
  $("top-p").value = String(info.defaults.top_p);
  $("seed").value = String(Math.floor(Math.random() * 100000));
  updateOutputs();
  fillFunctions(info.computed_by);
  const prompt = $("prompt");
  const traceLater = debounce(traceText, 350);
  prompt.addEventListener("input", () => {
    fitPrompt();
    markTracePanels("The prompt changed: these panels still show the previous sequence until its trace arrives.");
    traceLater();
  });
  window.addEventListener("resize", debounce(fitPrompt, 100));
  prompt.value = FIRST_PROMPT;
  fitPrompt();
  await Promise.all([traceText(), loadPositions(), loadBpe(), loadSource(info.sources[0])]);
}

/** Grow the prompt box to its text (every line visible), up to the CSS max-height, then scroll. */
function fitPrompt() {
  const box = $("prompt");
  box.style.height = "auto";
  const border = box.offsetHeight - box.clientHeight;
  box.style.height = `${box.scrollHeight + border}px`;
}

/** A request for the sequence failed: say so, and mark what still shows the previous one. */
function failed(error) {
  setStatus(error.message, true);
  if (current()) markTracePanels(`Showing the previous sequence: the last request failed (${error.message}).`);
}

// --- the sequence and its history -----------------------------------------------------------------

async function traceText() {
  const text = $("prompt").value;
  const seq = ++state.seq;
  if (!text) {
    setStatus("type a prompt");
    if (current()) markTracePanels("The prompt is empty: these panels show the previous sequence.");
    return;
  }
  setStatus("tracing…");
  try {
    const trace = await api("/api/trace", { text, engine: state.engine, ...settings() });
    if (seq !== state.seq) return;
    const ids = trace.tokens.map((t) => t.id);
    trace.bytes = trace._bytes;
    // a typed prompt tokenizes back into its own tokens: its command line needs no check
    const run = { n: 0, key: runKey(), prompt: { tokenizes: true } };
    state.history = [{ ids, promptLength: ids.length, draw: 0, run, trace }];
    state.index = 0;
    render(trace);
  } catch (error) {
    if (seq === state.seq) failed(error);
  }
}

async function retrace() {
  const entry = current();
  if (!entry) return traceText();
  const seq = ++state.seq;
  setStatus("tracing…");
  try {
    const trace = await api("/api/trace", { ids: entry.ids, engine: state.engine, ...settings() });
    if (seq !== state.seq) return;
    trace.bytes = trace._bytes;
    entry.trace = trace;
    entry.next = null;
    render(trace);
  } catch (error) {
    if (seq === state.seq) failed(error);
  }
}

async function step(token) {
  const entry = current();
  if (!entry) return;
  const seq = ++state.seq;
  // The sampler resumes its seed's stream while the settings stay the same; a branch (a chosen
  // token) or new settings start a new run, as `gpt2 generate` would from that text.
  const continuing = entry.run && entry.run.key === runKey();
  const body = { ids: entry.ids, engine: state.engine, ...settings(), seed: seed(), draw: continuing ? entry.draw : 0 };
  if (token !== undefined) body.token = token;
  setStatus(token === undefined ? "sampling…" : "appending…");
  try {
    const answer = await api("/api/step", body);
    if (seq !== state.seq) return;
    answer.trace.bytes = answer._bytes;
    let run;
    if (token !== undefined) {
      run = { n: 0, key: runKey(), prompt: {} }; // a branch: a new run from the new sequence
    } else if (continuing) {
      run = { ...entry.run, n: entry.run.n + 1 };
    } else {
      run = { n: 1, key: runKey(), prompt: {} }; // new settings: a new run from the old sequence
    }
    const next = {
      ids: answer.ids,
      promptLength: entry.promptLength,
      draw: token === undefined ? answer.draw : 0,
      run,
      trace: answer.trace,
    };
    state.history = state.history.slice(0, state.index + 1);
    state.history.push(next);
    state.index += 1;
    render(answer.trace);
  } catch (error) {
    if (seq === state.seq) failed(error);
  }
}

function go(delta) {
  const index = state.index + delta;
  if (index < 0 || index >= state.history.length) return;
  state.index = index;
  state.seq += 1;
  render(current().trace);
}

const refreshNext = debounce(async () => {
  const entry = current();
  if (!entry) return;
  const seq = state.seq;
  try {
    const next = await api("/api/next", { ids: entry.ids, engine: state.engine, ...settings() });
    if (seq !== state.seq || entry !== current()) return;
    entry.next = next;
    setStale("next", null);
    renderNext(next);
  } catch (error) {
    setStatus(error.message, true);
    setStale("next", `These bars are for the previous settings: ${error.message}`);
  }
}, 120);

// --- drawing a sequence ---------------------------------------------------------------------------

function render(trace) {
  const entry = current();
  state.attention = decodeAttention(trace.attention);
  fillFunctions(trace.computed_by);
  renderTokens(trace, entry.promptLength);
  renderNext(entry.next || trace.next_token);
  renderHistory();
  renderAttention(trace);
  renderLens(trace);
  renderNorms(trace);
  renderEngines();
  markTracePanels(null);
  const t = trace.timings_ms;
  setStatus(
    `${trace.tokens.length} tokens · ${trace.engine} engine · forward ${t.forward.toFixed(0)} ms · ` +
    `logit lens ${t.logit_lens.toFixed(0)} ms · total ${t.total.toFixed(0)} ms · ${(trace.bytes / 1024).toFixed(0)} KB of JSON`,
  );
  if (!tokenChosen()) {
    const last = trace.tokens[trace.tokens.length - 1];
    $("nn-token").value = last.text;
    loadNeighbours({ id: last.id });
  }
  document.body.dataset.traced = String(Number(document.body.dataset.traced || "0") + 1);
}

start().catch((error) => setStatus(error.message, true));
