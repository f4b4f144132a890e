// gpt2 explore, panel 7: the same trace from the pure, NumPy and PyTorch engines, and how far apart
// they are. The table and the headline measure the same thing: each cell gives the largest
// absolute difference and, under it, that difference relative to the reference's largest value;
// the headline is the largest relative difference, and its cell is outlined in the table.

import { $, api, current, el, fmt, idsKey, setStale, state } from "./core.js";

const QUANTITIES = ["logits", "attention", "residual"];
// what the indices of a difference's location mean, per quantity
const WHERE = {
  logits: ["position", "token id"],
  attention: ["layer", "head", "query", "key"],
  residual: ["after", "position", "channel"],
};

export function initEngines(info) {
  const choice = $("engine-choice");
  for (const name of ["pure", "numpy", "torch"]) {
    if (!info.engines.installed.includes(name)) continue;
    const label = el("label");
    const box = el("input");
    box.type = "checkbox";
    box.checked = true;
    box.value = name;
    label.append(box, ` ${name} `);
    choice.append(label);
  }
  $("compare").addEventListener("click", compareEngines);
}

async function compareEngines() {
  const entry = current();
  if (!entry) return;
  const engines = [...document.querySelectorAll("#engine-choice input:checked")].map((box) => box.value);
  if (!engines.length) return;
  $("compare").disabled = true;
  state.comparison = null;
  $("engines-table").replaceChildren();
  setStale("engines", null);
  const largest = $("largest");
  largest.classList.remove("error");
  largest.textContent = `running ${engines.join(", ")} on ${entry.ids.length} tokens…`;
  try {
    const answer = await api("/api/compare", { ids: entry.ids, engines });
    state.comparison = { key: idsKey(entry.ids), length: entry.ids.length, answer };
    renderEngines();
  } catch (error) {
    largest.textContent = error.message; // and no table: nothing of an earlier comparison stays
    largest.classList.add("error");
  } finally {
    $("compare").disabled = false;
  }
}

/** Draw the last comparison, marked stale where it was for another sequence than the one shown. */
export function renderEngines() {
  const comparison = state.comparison;
  const entry = current();
  if (!comparison) return;
  if (entry && idsKey(entry.ids) !== comparison.key) {
    setStale("engines", `These numbers are for another sequence (${comparison.length} tokens), not the one shown: ` +
      "press “compare engines” for this one.");
  } else {
    setStale("engines", null);
  }
  const answer = comparison.answer;
  const big = answer.largest;
  const table = $("engines-table");
  table.replaceChildren();
  const header = el("tr");
  const heads = ["engine", "load ms", "forward ms", "next token", ...QUANTITIES.map((q) => `max |Δ ${q}|`), "same best token"];
  for (const h of heads) header.append(el("th", null, h));
  table.append(header);
  const diffs = new Map(answer.differences.map((d) => [d.engine, d]));
  for (const e of answer.engines) {
    const d = diffs.get(e.name);
    const row = el("tr");
    const name = e.name === answer.reference ? `${e.name} (reference)` : e.name;
    for (const c of [name, e.load_ms.toFixed(0), e.forward_ms.toFixed(1), JSON.stringify(e.next_token.text)]) {
      row.append(el("td", null, c));
    }
    for (const q of QUANTITIES) {
      const td = el("td", "diff");
      if (d) {
        td.append(el("span", "abs", fmt(d[q].max_abs, 3)), el("span", "rel", `rel ${fmt(d[q].relative, 3)}`));
        td.title = `largest |${e.name} − ${d.against}| of the ${q}: ${d[q].max_abs}, ` +
          `relative to the reference's largest |value|: ${d[q].relative}, at ${where(q, d[q].where)}`;
        if (big && big.engine === e.name && big.quantity === q) td.classList.add("largest-cell");
      } else {
        td.textContent = "–";
      }
      row.append(td);
    }
    row.append(el("td", null, d ? `${(100 * d.same_best_token).toFixed(0)}%` : "–"));
    table.append(row);
  }
  const caption = el("caption", "muted",
    "Each |Δ| cell: the largest absolute difference from the reference, and under it the relative difference " +
    "(rel): that difference divided by the reference's largest absolute value of the same quantity.");
  table.prepend(caption);
  const box = $("largest");
  box.classList.remove("error");
  box.replaceChildren();
  if (big) {
    box.append("Largest relative difference: ", el("strong", null, `${big.engine} vs ${big.against}, ${big.quantity}`),
      ` rel ${fmt(big.relative, 3)} (|Δ| ${fmt(big.max_abs, 3)}) at ${where(big.quantity, big.where)}`);
  } else {
    box.textContent = "one engine: nothing to compare";
  }
}

function where(quantity, index) {
  const names = WHERE[quantity] || [];
  return index.map((v, i) => {
    if (quantity === "residual" && i === 0) return v === 0 ? "after the embeddings" : `after block ${v - 1}`;
    return names[i] ? `${names[i]} ${v}` : String(v);
  }).join(", ");
}
