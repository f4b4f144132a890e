// gpt2 explore, panel 2: the next-token distribution under the sampling settings, the arithmetic
// behind one candidate, the history of sequences, and the command line that gives the same tokens.

import { $, api, current, el, fmt, idsKey, show, state } from "./core.js";
import { generateCommand, textOfBytes } from "./shell.js";

let onChoose = () => {}; // a candidate was clicked: append it

export function initNext({ choose, step, go, settingsChanged }) {
  onChoose = choose;
  $("step").addEventListener("click", () => step());
  $("back").addEventListener("click", () => go(-1));
  $("forward").addEventListener("click", () => go(1));
  for (const id of ["temperature", "top-k", "top-p"]) {
    $(id).addEventListener("input", () => {
      updateOutputs();
      settingsChanged();
    });
  }
}

export function updateOutputs() {
  $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  $("top-p-value").textContent = Number($("top-p").value).toFixed(2);
}

export function renderNext(next) {
  const box = $("bars");
  box.replaceChildren();
  const candidates = next.candidates;
  const top = Math.max(...candidates.map((c) => Math.max(c.p, c.p_sample)), 1e-9);
  for (const c of candidates) {
    const row = el("div", c.kept ? "bar-row kept" : "bar-row dropped");
    row.append(el("span", "label", show(c.text)));
    const track = el("span", "track");
    const model = el("span", "model-p");
    model.style.width = `${(100 * c.p) / top}%`;
    const bar = el("span", "bar");
    bar.style.width = `${(100 * (c.kept ? c.p_sample : c.p_top_k || 0)) / top}%`;
    track.append(model, bar);
    row.append(track, el("span", "value", `p ${fmt(c.p, 3)} → ${fmt(c.p_sample, 3)}`));
    row.title = `id ${c.id}, logit ${fmt(c.logit)}: click to append it`;
    row.tabIndex = 0;
    row.setAttribute("role", "button");
    row.addEventListener("click", () => onChoose(c.id));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        onChoose(c.id);
      }
    });
    row.addEventListener("mouseenter", () => renderArithmetic(next, c));
    box.append(row);
  }
  renderArithmetic(next, candidates[0]);
}

function renderArithmetic(next, c) {
  const lines = [];
  const name = JSON.stringify(c.text);
  if (next.greedy) {
    lines.push(`temperature ${next.temperature}${next.top_k === 1 ? ", top-k 1" : ""}: greedy.`);
    lines.push(`The arg-max ${JSON.stringify(next.candidates[0].text)} (logit ${fmt(next.candidates[0].logit)}) is chosen; nothing is drawn.`);
  } else {
    const survivors = next.top_k ? `the ${next.top_k_count} top-k survivors` : `all ${next.top_k_count} tokens (top-k off)`;
    lines.push(`temperature ${next.temperature.toFixed(2)} · top-k ${next.top_k || "off"} · top-p ${next.top_p.toFixed(2)}`);
    lines.push(`${name}: logit ${fmt(c.logit)} ÷ ${next.temperature.toFixed(2)} = ${fmt(c.scaled)}`);
    if (c.in_top_k) {
      lines.push(`softmax over ${survivors}: p = ${fmt(c.p_top_k)}`);
      lines.push(
        `top-p walk: cumulative ${fmt(c.cumulative)} → ${c.kept ? "kept" : "dropped"}` +
        ` (${next.kept_count} kept, mass ${fmt(next.kept_mass)})`,
      );
      lines.push(c.kept ? `drawn with p = ${fmt(c.p_top_k)} ÷ ${fmt(next.kept_mass)} = ${fmt(c.p_sample)}` : "never drawn");
    } else {
      lines.push(`outside the top ${next.top_k}: never drawn`);
    }
    lines.push(`(the model alone, temperature 1: p = ${fmt(c.p)})`);
  }
  $("arithmetic").textContent = lines.join("\n");
}

export function renderHistory() {
  const entry = current();
  $("back").disabled = state.index <= 0;
  $("forward").disabled = state.index >= state.history.length - 1;
  $("step").disabled = !entry || entry.ids.length >= state.info.limits.max_tokens;
  $("history").textContent = `sequence ${state.index + 1} of ${state.history.length} · ${entry.ids.length} tokens · next draw ${entry.draw}`;
  renderCommand(entry);
}

/**
 * While the user only samples, the `gpt2 generate` line that draws the same tokens. Its prompt is
 * the run's first sequence, written from the tokens' bytes (not their labels) and quoted for bash.
 * After a branch the prompt is the decoded text of chosen tokens, which need not tokenize back into
 * them; the server's /tokenize says whether it does, and the line is shown only if it does.
 */
function renderCommand(entry) {
  const box = $("command");
  const run = entry.run;
  box.replaceChildren();
  if (!run || run.n <= 0) return;
  const prompt = entry.trace.tokens.slice(0, entry.ids.length - run.n);
  const text = textOfBytes(prompt.map((t) => t.bytes));
  if (text === null) {
    box.textContent = "no command line gives these tokens: the prompt ends inside a character";
    return;
  }
  if (run.prompt.tokenizes === undefined) checkRoundTrip(run.prompt, text, prompt.map((t) => t.id));
  if (run.prompt.tokenizes === false) {
    box.textContent =
      "no command line gives these tokens: the prompt's text tokenizes differently from the tokens chosen on this page";
    return;
  }
  const s = JSON.parse(run.key);
  const line = generateCommand({
    text, model: state.info.model.name, engine: s.engine, seed: s.seed, n: run.n,
    temperature: s.temperature, top_k: s.top_k, top_p: s.top_p,
  });
  box.append(el("span", "muted", "the same tokens from the command line (bash): "), el("code", "shell", line));
}

/** Whether `text` tokenizes into `ids`, in `prompt.tokenizes` (shared by every step of one run). */
async function checkRoundTrip(prompt, text, ids) {
  prompt.tokenizes = null; // being checked; the line shows meanwhile
  try {
    const answer = await api("/tokenize", { content: text });
    prompt.tokenizes = idsKey(answer.tokens) === idsKey(ids);
  } catch {
    return; // no answer: the line stays, unchecked
  }
  const entry = current();
  if (entry && entry.run && entry.run.prompt === prompt) renderCommand(entry);
}
