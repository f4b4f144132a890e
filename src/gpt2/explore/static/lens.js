// gpt2 explore, panel 4: the logit lens (each layer's best guess at every position) and the
// residual stream's norm after each block.

import { $, current, el, fmt, show, svg } from "./core.js";

export function initLens() {
  $("lens-colour").addEventListener("change", () => {
    const entry = current();
    if (entry) renderLens(entry.trace);
  });
}

export function renderLens(trace) {
  const table = $("lens");
  table.replaceChildren();
  const lens = trace.logit_lens;
  const byTarget = $("lens-colour").value === "target";
  const head = el("tr");
  head.append(el("th", null, "after"));
  for (const token of trace.tokens) head.append(el("th", null, show(token.text)));
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  lens.cells.forEach((row, layer) => {
    const tr = el("tr", "lens-row");
    const last = layer === lens.cells.length - 1;
    tr.append(el("td", "layer", last ? `block ${layer} = output` : `block ${layer}`));
    row.forEach((cell, t) => {
      const best = cell.top[0];
      const td = el("td", best.id === lens.target[t].id ? "hit" : null, show(best.text));
      const p = byTarget ? cell.target_p : best.p;
      td.style.background = `rgba(47, 111, 179, ${Math.min(1, p).toFixed(3)})`;
      if (p > 0.55) td.style.color = "#fff";
      td.title =
        cell.top.map((c) => `${JSON.stringify(c.text)} ${fmt(c.p, 3)}`).join("\n") +
        `\nfinal prediction ${JSON.stringify(lens.target[t].text)}: rank ${cell.target_rank}, p ${fmt(cell.target_p, 3)}`;
      tr.append(td);
    });
    tbody.append(tr);
  });
  table.append(thead, tbody);
}

const INK = "#667380";

/** Powers of ten within [lo, hi] (log10 values), or the two ends where no power falls inside. */
function decades(lo, hi) {
  const ticks = [];
  for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) ticks.push(e);
  return ticks.length ? ticks : [lo, hi];
}

/**
 * The L2 norm of the residual stream at every position (grey) and their mean (blue), after the
 * embeddings and after each block, on a logarithmic axis: the norm grows by orders of magnitude.
 */
export function renderNorms(trace) {
  const box = $("norms");
  box.replaceChildren();
  const norms = trace.residual_norms; // [L + 1][T]
  const width = box.clientWidth || 520;
  const height = 200;
  const pad = { left: 62, right: 12, top: 12, bottom: 40 };
  const values = norms.flat().filter((v) => v > 0);
  const lo = Math.log10(Math.min(...values));
  const hi = Math.log10(Math.max(...values)) + 1e-9;
  const x = (l) => pad.left + (l * (width - pad.left - pad.right)) / Math.max(1, norms.length - 1);
  const y = (v) => pad.top + (1 - (Math.log10(Math.max(v, 1e-12)) - lo) / Math.max(hi - lo, 1e-9)) * (height - pad.top - pad.bottom);
  box.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const text = (attrs, label) => svg("text", { "font-size": 10, fill: INK, ...attrs }, label);
  // axes, ticks at powers of ten, and their titles
  box.append(svg("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom, stroke: "#c3ccd5" }));
  box.append(svg("line", { x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom, stroke: "#c3ccd5" }));
  for (const e of decades(lo, hi)) {
    const v = 10 ** e;
    box.append(svg("line", { x1: pad.left - 3, y1: y(v), x2: width - pad.right, y2: y(v), stroke: "#eef1f4" }));
    box.append(text({ x: pad.left - 5, y: y(v) + 3, "text-anchor": "end", class: "tick" }, Number.isInteger(e) ? String(v) : v.toPrecision(3)));
  }
  norms.forEach((_, l) => {
    box.append(text({ x: x(l), y: height - pad.bottom + 13, "text-anchor": "middle", class: "tick" }, l === 0 ? "emb" : String(l - 1)));
  });
  box.append(text({ x: (pad.left + width - pad.right) / 2, y: height - 6, "text-anchor": "middle", class: "axis-title" },
    "after: the embeddings (emb), then block 0, 1, …"));
  box.append(text({
    x: 12, y: (pad.top + height - pad.bottom) / 2, "text-anchor": "middle", class: "axis-title",
    transform: `rotate(-90 12 ${(pad.top + height - pad.bottom) / 2})`,
  }, "‖residual‖₂ (log scale)"));
  const T = norms[0].length;
  for (let t = 0; t < T; t++) {
    const points = norms.map((row, l) => `${x(l).toFixed(1)},${y(row[t]).toFixed(1)}`).join(" ");
    box.append(svg("polyline", { points, fill: "none", stroke: "#b8c4d0", "stroke-width": 1 }));
  }
  const mean = norms.map((row) => row.reduce((a, b) => a + b, 0) / row.length);
  box.append(svg("polyline", {
    points: mean.map((v, l) => `${x(l).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
    fill: "none", stroke: "#2f6fb3", "stroke-width": 2.5,
  }));
  $("norms-note").textContent =
    `Grey: each of the ${T} positions; blue: their mean. Logarithmic vertical axis, ` +
    `${fmt(10 ** lo, 3)} to ${fmt(10 ** hi, 3)}.`;
}
