// gpt2 explore, panel 3: attention. The head view of one layer, the model view (every layer and
// head as a small heatmap) and one head zoomed. The layer selector and the zoom always agree: a new
// layer zooms into the same head of that layer, and a click on a heatmap selects its layer.

import { $, current, el, show, state, svg } from "./core.js";

const HEAD_COLOURS = [
  "#2f6fb3", "#d1495b", "#edae49", "#00798c", "#66a182", "#8e6c8a", "#c26d2b", "#3d405b",
  "#7a9e3d", "#b85c9e", "#4f8fc0", "#a4893d", "#5b5f97", "#d9825b", "#2e8b57", "#9c4f4f",
];

export function initAttention(model) {
  const select = $("layer");
  for (let l = 0; l < model.n_layer; l++) {
    const option = el("option", null, `layer ${l}`);
    option.value = String(l);
    select.append(option);
  }
  for (let h = 0; h < model.n_head; h++) state.heads.add(h);
  buildHeads(model.n_head);
  select.addEventListener("change", () => {
    const layer = Number(select.value);
    if (current() && state.attention) zoomTo(layer, state.zoom ? state.zoom.head : 0);
    else state.layer = layer;
  });
  $("zoom").addEventListener("click", zoomValue);
  $("zoom").addEventListener("mousemove", zoomValue);
}

/** The trace's attention as attention[l][h]: Float32Array(T * T), or null where it was not sent. */
export function decodeAttention(packed) {
  if (!packed) return null;
  const [L, H, T] = packed.shape;
  const out = [];
  if (packed.encoding === "nested") {
    for (let l = 0; l < L; l++) out.push(packed.data[l].map((head) => Float32Array.from(head.flat())));
    return out;
  }
  // tril-u16-base64: for each layer, head and row t, columns 0..t as little-endian uint16 / scale.
  const raw = atob(packed.data);
  let k = 0;
  for (let l = 0; l < L; l++) {
    const layer = [];
    for (let h = 0; h < H; h++) {
      const w = new Float32Array(T * T);
      for (let i = 0; i < T; i++) {
        for (let j = 0; j <= i; j++, k += 2) {
          w[i * T + j] = (raw.charCodeAt(k) | (raw.charCodeAt(k + 1) << 8)) / packed.scale;
        }
      }
      layer.push(w);
    }
    out.push(layer);
  }
  return out;
}

function buildHeads(nHead) {
  const box = $("heads");
  box.replaceChildren();
  for (let h = 0; h < nHead; h++) {
    const label = el("label");
    const check = el("input");
    check.type = "checkbox";
    check.checked = state.heads.has(h);
    check.addEventListener("change", () => {
      if (check.checked) state.heads.add(h);
      else state.heads.delete(h);
      drawHeadView();
    });
    const swatch = el("span", "swatch");
    swatch.style.background = HEAD_COLOURS[h % HEAD_COLOURS.length];
    label.append(check, swatch, `h${h}`);
    box.append(label);
  }
}

export function renderAttention(trace) {
  const grid = $("attn-grid");
  grid.replaceChildren();
  if (!state.attention) {
    grid.textContent = "attention not included";
    return;
  }
  const L = state.attention.length;
  const H = state.attention[0].length;
  const T = trace.tokens.length;
  grid.style.gridTemplateColumns = `auto repeat(${H}, 46px)`;
  grid.append(el("span"));
  for (let h = 0; h < H; h++) grid.append(el("span", null, `h${h}`));
  for (let l = 0; l < L; l++) {
    grid.append(el("span", null, `L${l}`));
    for (let h = 0; h < H; h++) {
      const canvas = el("canvas", "attn-cell");
      canvas.width = T;
      canvas.height = T;
      canvas.title = `layer ${l}, head ${h}`;
      canvas.dataset.layer = String(l);
      canvas.dataset.head = String(h);
      paint(canvas, state.attention[l][h], T);
      canvas.addEventListener("click", () => zoomTo(l, h));
      grid.append(canvas);
    }
  }
  // The zoom follows the layer selector (which starts at layer 0); a new trace keeps both.
  const layer = Math.min(state.layer, L - 1);
  const head = state.zoom && state.zoom.head < H ? state.zoom.head : 0;
  state.focus = null;
  zoomTo(layer, head);
}

function heat(v) {
  // white -> the accent blue; the square root lets small weights show
  const s = Math.sqrt(Math.max(0, Math.min(1, v)));
  return [255 - s * 208, 255 - s * 144, 255 - s * 76];
}

function paint(canvas, weights, T) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(T, T);
  for (let i = 0; i < T * T; i++) {
    const [r, g, b] = heat(weights[i]);
    image.data[4 * i] = r;
    image.data[4 * i + 1] = g;
    image.data[4 * i + 2] = b;
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

/** Zoom into one head; its layer becomes the selected layer, of the head view too. */
function zoomTo(layer, head) {
  const layerChanged = layer !== state.layer;
  state.zoom = { layer, head };
  state.layer = layer;
  $("layer").value = String(layer);
  for (const cell of document.querySelectorAll(".attn-cell")) {
    cell.classList.toggle("selected", Number(cell.dataset.layer) === layer && Number(cell.dataset.head) === head);
  }
  if (layerChanged) state.focus = null;
  drawHeadView();
  drawZoom(layer, head);
}

function drawZoom(layer, head) {
  const trace = current().trace;
  const T = trace.tokens.length;
  const canvas = $("zoom");
  // Token labels along both axes while they fit: queries down the left, keys across the top.
  const margin = T <= 48 ? 84 : 0;
  const cell = (canvas.width - margin) / T;
  state.zoomGeometry = { margin, cell };
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const w = state.attention[layer][head];
  context.font = `${Math.min(11, Math.max(8, cell - 2))}px monospace`;
  context.fillStyle = "#1d232a";
  if (margin) {
    trace.tokens.forEach((token, i) => {
      const label = show(token.text).slice(0, 10);
      context.textAlign = "right";
      context.fillText(label, margin - 4, margin + i * cell + cell / 2 + 3);
      context.save();
      context.translate(margin + i * cell + cell / 2 + 3, margin - 4);
      context.rotate(-Math.PI / 2);
      context.textAlign = "left";
      context.fillText(label, 0, 0);
      context.restore();
    });
    context.textAlign = "left";
  }
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      const [r, g, b] = heat(w[i * T + j]);
      context.fillStyle = `rgb(${r | 0},${g | 0},${b | 0})`;
      context.fillRect(margin + j * cell, margin + i * cell, Math.ceil(cell), Math.ceil(cell));
      if (cell >= 30 && j <= i) {
        context.fillStyle = w[i * T + j] > 0.5 ? "#fff" : "#1d232a";
        context.fillText(w[i * T + j].toFixed(2), margin + j * cell + 3, margin + i * cell + cell / 2 + 3);
      }
    }
  }
  $("zoom-title").textContent = `zoom: layer ${layer}, head ${head} (rows: queries, columns: keys; colour ∝ √weight)`;
  $("zoom").dataset.layer = String(layer);
  $("zoom").dataset.head = String(head);
}

function zoomValue(event) {
  const trace = current() && current().trace;
  if (!trace || !state.zoom || !state.zoomGeometry) return;
  const canvas = $("zoom");
  const rect = canvas.getBoundingClientRect();
  const T = trace.tokens.length;
  const { margin, cell } = state.zoomGeometry;
  const x = ((event.clientX - rect.left) / rect.width) * canvas.width - margin;
  const y = ((event.clientY - rect.top) / rect.height) * canvas.height - margin;
  if (x < 0 || y < 0) return;
  const j = Math.floor(x / cell);
  const i = Math.floor(y / cell);
  if (i < 0 || j < 0 || i >= T || j >= T) return;
  const w = state.attention[state.zoom.layer][state.zoom.head][i * T + j];
  const q = trace.tokens[i].text;
  const k = trace.tokens[j].text;
  $("zoom-value").textContent =
    `query ${i} ${JSON.stringify(q)} → key ${j} ${JSON.stringify(k)}: ${w.toFixed(4)}` + (j > i ? " (masked: the future)" : "");
}

function drawHeadView() {
  const box = $("head-view");
  box.replaceChildren();
  const entry = current();
  if (!entry || !state.attention) return;
  const tokens = entry.trace.tokens;
  const T = tokens.length;
  const rowHeight = 16;
  const width = 330;
  const left = 120;
  const right = width - 120;
  box.setAttribute("width", String(width));
  box.setAttribute("height", String(T * rowHeight + 8));
  const layer = state.attention[state.layer];
  for (const h of state.heads) {
    const w = layer[h];
    for (let i = 0; i < T; i++) {
      if (state.focus !== null && state.focus !== i) continue;
      for (let j = 0; j <= i; j++) {
        const weight = w[i * T + j];
        if (weight < 0.02) continue;
        box.append(svg("line", {
          x1: left + 4, y1: i * rowHeight + 12, x2: right - 4, y2: j * rowHeight + 12,
          stroke: HEAD_COLOURS[h % HEAD_COLOURS.length], "stroke-width": 2, "stroke-opacity": weight.toFixed(3),
        }));
      }
    }
  }
  tokens.forEach((token, i) => {
    const query = svg("text", { x: left, y: i * rowHeight + 16, "text-anchor": "end", class: "q" }, show(token.text).slice(0, 14));
    query.addEventListener("mouseenter", () => {
      state.focus = i;
      drawHeadView();
    });
    query.addEventListener("mouseleave", () => {
      state.focus = null;
      drawHeadView();
    });
    if (state.focus === i) query.setAttribute("font-weight", "700");
    box.append(query);
    box.append(svg("text", { x: right, y: i * rowHeight + 16, "text-anchor": "start" }, show(token.text).slice(0, 14)));
  });
}
