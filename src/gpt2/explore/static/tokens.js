// gpt2 explore, panel 1: the tokens of the sequence, a token's bytes and merges on hover, and any
// word's merges step by step.

import { $, api, debounce, el, state } from "./core.js";

const TOKEN_COLOURS = ["#fde2b8", "#cfe8d5", "#d7e3fc", "#f8d0dc", "#e4d8f4", "#d3f0ef", "#f3e7c4", "#e0e0e0"];

let onPick = () => {}; // a token was clicked: show its neighbours

export function initTokens({ pick }) {
  onPick = pick;
  $("bpe-word").addEventListener("input", debounce(loadBpe, 250));
}

/**
 * A token as the page writes it: every newline becomes a visible ↵ before the line break it
 * stands for, so a newline token has a width, a colour and a pointer target like any other.
 */
function tokenNode(token) {
  const span = el("span", "token");
  const parts = token.text.split("\n");
  parts.forEach((part, i) => {
    if (i > 0) span.append(el("span", "ws", "↵"), "\n");
    if (part) span.append(part);
  });
  span.dataset.text = token.text;
  return span;
}

export function renderTokens(trace, promptLength) {
  const box = $("tokens");
  box.replaceChildren();
  trace.tokens.forEach((token, i) => {
    const span = tokenNode(token);
    span.style.background = TOKEN_COLOURS[i % TOKEN_COLOURS.length];
    if (i >= promptLength) span.classList.add("generated");
    span.dataset.index = String(i);
    span.addEventListener("mouseenter", (event) => tokenTip(event, token, i));
    span.addEventListener("mousemove", moveTip);
    span.addEventListener("mouseleave", () => ($("tooltip").hidden = true));
    span.addEventListener("click", () => onPick(token));
    box.append(span);
  });
  $("token-ids").textContent = `ids: [${trace.tokens.map((t) => t.id).join(", ")}]`;
}

async function tokenTip(event, token, i) {
  const tip = $("tooltip");
  const hex = token.bytes.map((b) => b.toString(16).padStart(2, "0")).join(" ");
  const head = `position ${i} · id ${token.id}\ntext ${JSON.stringify(token.text)}\nbytes ${hex || "(none)"}`;
  tip.textContent = head;
  tip.hidden = false;
  moveTip(event);
  if (!token.text || token.text.includes("\\x")) {
    tip.textContent = `${head}\n(a piece of a character: no merges of its own)`;
    return;
  }
  try {
    let story = state.bpeCache.get(token.text);
    if (!story) {
      story = await api("/api/bpe", { text: token.text });
      state.bpeCache.set(token.text, story);
    }
    const merges = story.pieces.flatMap((p) => p.merges.map((m) => `${m.left} + ${m.right} → ${m.merged}  (rank ${m.rank})`));
    if (!tip.hidden && tip.textContent.startsWith(head)) {
      tip.textContent = `${head}\nmerges:\n${merges.length ? merges.join("\n") : "(a single byte: none)"}`;
    }
  } catch (error) {
    tip.textContent = `${head}\n${error.message}`;
  }
}

function moveTip(event) {
  const tip = $("tooltip");
  tip.style.left = `${Math.min(event.clientX + 14, window.innerWidth - 440)}px`;
  tip.style.top = `${event.clientY + 16}px`;
}

export async function loadBpe() {
  const word = $("bpe-word").value;
  const box = $("bpe-steps");
  if (!word) {
    box.replaceChildren();
    return;
  }
  try {
    const story = await api("/api/bpe", { text: word });
    box.replaceChildren();
    for (const piece of story.pieces) {
      const header = el("div", "muted", `pre-token ${JSON.stringify(piece.text)}: bytes ${piece.bytes.join(" ")}`);
      box.append(header, partsRow("start", piece.symbols, -1));
      for (const m of piece.merges) box.append(partsRow(`rank ${m.rank}`, m.parts, m.at));
      box.append(el("div", "muted", `→ ids [${piece.ids.join(", ")}]`));
    }
  } catch (error) {
    box.textContent = error.message;
  }
}

function partsRow(label, parts, fresh) {
  const row = el("div", "merge");
  row.append(el("span", "muted", `${label.padEnd(11)} `));
  parts.forEach((part, i) => row.append(el("span", i === fresh ? "part new" : "part", part)));
  return row;
}
