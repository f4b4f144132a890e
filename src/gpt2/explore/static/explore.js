// gpt2 explore: the page. Plain JavaScript, no build step, no library; every request goes to the
// server that sent the page (its JSON API is documented in docs/explorer.md).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const HEAD_COLOURS = [
    "#2f6fb3", "#d1495b", "#edae49", "#00798c", "#66a182", "#8e6c8a", "#c26d2b", "#3d405b",
    "#7a9e3d", "#b85c9e", "#4f8fc0", "#a4893d", "#5b5f97", "#d9825b", "#2e8b57", "#9c4f4f",
  ];
  const TOKEN_COLOURS = ["#fde2b8", "#cfe8d5", "#d7e3fc", "#f8d0dc", "#e4d8f4", "#d3f0ef", "#f3e7c4", "#e0e0e0"];

  const state = {
    info: null,
    engine: null,
    history: [], // {ids, promptLength, draw, run, trace, next}
    index: -1,
    attention: null, // attention[l][h]: Float32Array(T * T)
    layer: 0,
    heads: new Set(),
    zoom: null, // {layer, head}
    focus: null, // the query position the head view isolates
    seq: 0,
    bpeCache: new Map(),
  };

  // --- helpers ------------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function show(text) {
    // A token's text as it should read in a label: whitespace made visible.
    return text.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/^ /, "␣");
  }

  function fmt(x, digits = 4) {
    if (x === null || x === undefined) return "–";
    if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(2);
    return x.toFixed(digits);
  }

  function busy(delta) {
    const n = Number(document.body.dataset.pending || "0") + delta;
    document.body.dataset.pending = String(n);
  }

  async function api(path, body) {
    busy(1);
    try {
      const init = body === undefined ? {} : {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      };
      const response = await fetch(path, init);
      const text = await response.text();
      const data = JSON.parse(text);
      if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
      Object.defineProperty(data, "_bytes", { value: text.length, enumerable: false });
      return data;
    } finally {
      busy(-1);
    }
  }

  function setStatus(text, error = false) {
    const node = $("status");
    node.textContent = text;
    node.classList.toggle("error", error);
  }

  function settings() {
    const topK = parseInt($("top-k").value || "0", 10);
    return {
      temperature: Number($("temperature").value),
      top_k: Number.isFinite(topK) && topK > 0 ? topK : 0,
      top_p: Number($("top-p").value),
    };
  }

  function seed() {
    const value = parseInt($("seed").value, 10);
    return Number.isFinite(value) && value >= 0 ? value : 0;
  }

  function runKey() {
    return JSON.stringify({ ...settings(), seed: seed(), engine: state.engine });
  }

  const current = () => state.history[state.index];

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  // --- start --------------------------------------------------------------------------------

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
    for (let l = 0; l < m.n_layer; l++) {
      const option = el("option", null, `layer ${l}`);
      option.value = String(l);
      $("layer").append(option);
    }
    for (let h = 0; h < m.n_head; h++) state.heads.add(h);
    buildHeads();
    for (const name of info.sources) {
      const option = el("option", null, name);
      option.value = name;
      $("source-name").append(option);
    }
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
    $("temperature").value = String(info.defaults.temperature);
    $("top-k").value = String(info.defaults.top_k);
    $("top-p").value = String(info.defaults.top_p);
    $("seed").value = String(Math.floor(Math.random() * 100000));
    updateOutputs();
    fillFunctions(info.computed_by);
    wire();
    $("prompt").value = "ROMEO:\nBut soft, what light through yonder window breaks?";
    await Promise.all([traceText(), loadPositions(), loadBpe(), loadSource(info.sources[0])]);
  }

  function wire() {
    $("prompt").addEventListener("input", debounce(traceText, 350));
    $("engine").addEventListener("change", () => {
      state.engine = $("engine").value;
      retrace();
    });
    for (const id of ["temperature", "top-k", "top-p"]) {
      $(id).addEventListener("input", () => {
        updateOutputs();
        refreshNext();
      });
    }
    $("step").addEventListener("click", () => step());
    $("back").addEventListener("click", () => go(-1));
    $("forward").addEventListener("click", () => go(1));
    $("layer").addEventListener("change", () => {
      state.layer = Number($("layer").value);
      state.focus = null;
      drawHeadView();
    });
    $("lens-colour").addEventListener("change", () => renderLens(current().trace));
    $("bpe-word").addEventListener("input", debounce(loadBpe, 250));
    $("nn-token").addEventListener("change", () => {
      $("nn-token").dataset.touched = "1";
      loadNeighbours({ text: $("nn-token").value });
    });
    $("pos-stride").addEventListener("change", loadPositions);
    $("source-name").addEventListener("change", () => loadSource($("source-name").value));
    $("compare").addEventListener("click", compareEngines);
    $("zoom").addEventListener("click", zoomValue);
    $("zoom").addEventListener("mousemove", zoomValue);
    $("positions").addEventListener("mousemove", positionValue);
    for (const button of document.querySelectorAll(".fn")) {
      button.addEventListener("click", () => {
        if (!button.textContent) return;
        $("source-name").value = button.textContent;
        loadSource(button.textContent);
        $("panel-code").scrollIntoView({ behavior: "smooth", block: "start" });
      });
    }
  }

  function updateOutputs() {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
    $("top-p-value").textContent = Number($("top-p").value).toFixed(2);
  }

  function fillFunctions(computedBy) {
    if (!computedBy) return;
    for (const button of document.querySelectorAll(".fn")) {
      const name = computedBy[button.dataset.part];
      if (name) button.textContent = name;
    }
  }

  // --- the sequence and its history ---------------------------------------------------------

  async function traceText() {
    const text = $("prompt").value;
    const seq = ++state.seq;
    if (!text) {
      setStatus("type a prompt");
      return;
    }
    setStatus("tracing…");
    try {
      const trace = await api("/api/trace", { text, engine: state.engine, ...settings() });
      if (seq !== state.seq) return;
      const ids = trace.tokens.map((t) => t.id);
      trace.bytes = trace._bytes;
      state.history = [{ ids, promptLength: ids.length, draw: 0, run: { text, n: 0, key: runKey() }, trace }];
      state.index = 0;
      render(trace);
    } catch (error) {
      if (seq === state.seq) setStatus(error.message, true);
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
      if (seq === state.seq) setStatus(error.message, true);
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
        run = { text: answer.trace.tokens.map((t) => t.text).join(""), n: 0, key: runKey() };
      } else if (continuing) {
        run = { ...entry.run, n: entry.run.n + 1 };
      } else {
        run = { text: entry.trace.tokens.map((t) => t.text).join(""), n: 1, key: runKey() };
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
      if (seq === state.seq) setStatus(error.message, true);
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
      renderNext(next);
    } catch (error) {
      setStatus(error.message, true);
    }
  }, 120);

  // --- rendering ----------------------------------------------------------------------------

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
    const t = trace.timings_ms;
    setStatus(
      `${trace.tokens.length} tokens · ${trace.engine} engine · forward ${t.forward.toFixed(0)} ms · ` +
      `logit lens ${t.logit_lens.toFixed(0)} ms · total ${t.total.toFixed(0)} ms · ${(trace.bytes / 1024).toFixed(0)} KB of JSON`,
    );
    if (!$("nn-token").dataset.touched) {
      const last = trace.tokens[trace.tokens.length - 1];
      $("nn-token").value = last.text;
      loadNeighbours({ id: last.id });
    }
    document.body.dataset.traced = String(Number(document.body.dataset.traced || "0") + 1);
  }

  // 1 tokens

  function renderTokens(trace, promptLength) {
    const box = $("tokens");
    box.replaceChildren();
    trace.tokens.forEach((token, i) => {
      const span = el("span", "token", token.text);
      span.style.background = TOKEN_COLOURS[i % TOKEN_COLOURS.length];
      if (i >= promptLength) span.classList.add("generated");
      span.dataset.index = String(i);
      span.addEventListener("mouseenter", (event) => tokenTip(event, token, i));
      span.addEventListener("mousemove", moveTip);
      span.addEventListener("mouseleave", () => ($("tooltip").hidden = true));
      span.addEventListener("click", () => {
        $("nn-token").value = token.text;
        $("nn-token").dataset.touched = "1";
        loadNeighbours({ id: token.id });
      });
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

  async function loadBpe() {
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

  // 2 next token

  function renderNext(next) {
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
      row.addEventListener("click", () => step(c.id));
      row.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          step(c.id);
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

  function renderHistory() {
    const entry = current();
    $("back").disabled = state.index <= 0;
    $("forward").disabled = state.index >= state.history.length - 1;
    $("step").disabled = !entry || entry.ids.length >= state.info.limits.max_tokens;
    $("history").textContent = `sequence ${state.index + 1} of ${state.history.length} · ${entry.ids.length} tokens · next draw ${entry.draw}`;
    const run = entry.run;
    if (run && run.n > 0) {
      const s = JSON.parse(run.key);
      $("command").textContent =
        `the same tokens from the command line: gpt2 generate ${shellQuote(run.text)} --model ${shellQuote(state.info.model.name)} ` +
        `--engine ${s.engine} --seed ${s.seed} -n ${run.n} --temperature ${s.temperature} --top-k ${s.top_k} --top-p ${s.top_p} --ignore-eot`;
    } else {
      $("command").textContent = "";
    }
  }

  function shellQuote(text) {
    return `'${text.replace(/'/g, "'\\''")}'`;
  }

  // 3 attention

  function decodeAttention(packed) {
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

  function buildHeads() {
    const box = $("heads");
    box.replaceChildren();
    for (let h = 0; h < state.info.model.n_head; h++) {
      const label = el("label");
      const box2 = el("input");
      box2.type = "checkbox";
      box2.checked = state.heads.has(h);
      box2.addEventListener("change", () => {
        if (box2.checked) state.heads.add(h);
        else state.heads.delete(h);
        drawHeadView();
      });
      const swatch = el("span", "swatch");
      swatch.style.background = HEAD_COLOURS[h % HEAD_COLOURS.length];
      label.append(box2, swatch, `h${h}`);
      box.append(label);
    }
  }

  function renderAttention(trace) {
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
    if (!state.zoom || state.zoom.layer >= L || state.zoom.head >= H) state.zoom = { layer: L - 1, head: 0 };
    state.focus = null;
    drawHeadView();
    zoomTo(state.zoom.layer, state.zoom.head);
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

  function zoomTo(layer, head) {
    state.zoom = { layer, head };
    for (const cell of document.querySelectorAll(".attn-cell")) {
      cell.classList.toggle("selected", Number(cell.dataset.layer) === layer && Number(cell.dataset.head) === head);
    }
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
  }

  function zoomValue(event) {
    const trace = current() && current().trace;
    if (!trace || !state.zoom) return;
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

  // 4 logit lens

  function renderLens(trace) {
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

  function renderNorms(trace) {
    const box = $("norms");
    box.replaceChildren();
    const norms = trace.residual_norms; // [L + 1][T]
    const width = box.clientWidth || 520;
    const height = 160;
    const pad = { left: 48, right: 10, top: 10, bottom: 24 };
    const values = norms.flat().filter((v) => v > 0);
    const lo = Math.log10(Math.min(...values));
    const hi = Math.log10(Math.max(...values)) + 1e-9;
    const x = (l) => pad.left + (l * (width - pad.left - pad.right)) / Math.max(1, norms.length - 1);
    const y = (v) => pad.top + (1 - (Math.log10(Math.max(v, 1e-12)) - lo) / Math.max(hi - lo, 1e-9)) * (height - pad.top - pad.bottom);
    box.setAttribute("viewBox", `0 0 ${width} ${height}`);
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
    norms.forEach((_, l) => {
      box.append(svg("text", { x: x(l), y: height - 6, "text-anchor": "middle", "font-size": 10, fill: "#667380" }, l === 0 ? "emb" : String(l - 1)));
    });
    box.append(svg("text", { x: 4, y: pad.top + 8, "font-size": 10, fill: "#667380" }, (10 ** hi).toPrecision(3)));
    box.append(svg("text", { x: 4, y: height - pad.bottom, "font-size": 10, fill: "#667380" }, (10 ** lo).toPrecision(3)));
  }

  // 5 embeddings

  async function loadNeighbours(token) {
    const box = $("neighbours");
    try {
      const answer = await api("/api/embeddings/neighbours", { ...token, k: 12 });
      box.replaceChildren();
      box.append(el("div", "muted", `nearest to ${JSON.stringify(answer.token.text)} (id ${answer.token.id}) by cosine:`));
      for (const n of answer.neighbours) {
        const row = el("div", "nn-row");
        const track = el("span", "track");
        const bar = el("span", "bar");
        bar.style.width = `${Math.max(0, n.cosine) * 100}%`;
        track.append(bar);
        row.append(el("span", null, JSON.stringify(n.text)), track, el("span", null, n.cosine.toFixed(3)));
        box.append(row);
      }
    } catch (error) {
      box.textContent = error.message;
    }
  }

  async function loadPositions() {
    try {
      const answer = await api("/api/embeddings/positions", { count: 64, stride: Number($("pos-stride").value) });
      state.positions = answer;
      const canvas = $("positions");
      const n = answer.positions.length;
      canvas.width = n;
      canvas.height = n;
      canvas.style.width = "320px";
      canvas.style.height = "320px";
      const context = canvas.getContext("2d");
      const image = context.createImageData(n, n);
      answer.similarity.flat().forEach((v, i) => {
        const s = Math.min(1, Math.abs(v));
        const [r, g, b] = v >= 0 ? [255 - s * 208, 255 - s * 144, 255 - s * 76] : [255 - s * 46, 255 - s * 182, 255 - s * 164];
        image.data.set([r, g, b, 255], 4 * i);
      });
      context.putImageData(image, 0, 0);
    } catch (error) {
      $("pos-value").textContent = error.message;
    }
  }

  function positionValue(event) {
    const answer = state.positions;
    if (!answer) return;
    const rect = $("positions").getBoundingClientRect();
    const n = answer.positions.length;
    const j = Math.floor(((event.clientX - rect.left) / rect.width) * n);
    const i = Math.floor(((event.clientY - rect.top) / rect.height) * n);
    if (i < 0 || j < 0 || i >= n || j >= n) return;
    $("pos-value").textContent =
      `positions ${answer.positions[i]} and ${answer.positions[j]}: cosine ${answer.similarity[i][j].toFixed(3)} (blue: alike, red: opposed)`;
  }

  // 6 code

  async function loadSource(name) {
    if (!name) return;
    try {
      const answer = await api(`/api/source?name=${encodeURIComponent(name)}`);
      $("source-where").textContent = `${answer.file}, line ${answer.line}`;
      $("source").textContent = answer.source;
    } catch (error) {
      $("source").textContent = error.message;
    }
  }

  // 7 three engines

  async function compareEngines() {
    const entry = current();
    if (!entry) return;
    const engines = [...document.querySelectorAll("#engine-choice input:checked")].map((box) => box.value);
    if (!engines.length) return;
    $("compare").disabled = true;
    $("largest").textContent = `running ${engines.join(", ")} on ${entry.ids.length} tokens…`;
    try {
      const answer = await api("/api/compare", { ids: entry.ids, engines });
      const table = $("engines-table");
      table.replaceChildren();
      const header = el("tr");
      for (const h of ["engine", "load ms", "forward ms", "next token", "max |Δ logits|", "max |Δ attention|", "max |Δ residual|", "same best token"]) {
        header.append(el("th", null, h));
      }
      table.append(header);
      const diffs = new Map(answer.differences.map((d) => [d.engine, d]));
      for (const e of answer.engines) {
        const d = diffs.get(e.name);
        const row = el("tr");
        const cells = [
          e.name === answer.reference ? `${e.name} (reference)` : e.name,
          e.load_ms.toFixed(0), e.forward_ms.toFixed(1), JSON.stringify(e.next_token.text),
          d ? fmt(d.logits.max_abs, 3) : "–", d ? fmt(d.attention.max_abs, 3) : "–",
          d ? fmt(d.residual.max_abs, 3) : "–", d ? `${(100 * d.same_best_token).toFixed(0)}%` : "–",
        ];
        for (const c of cells) row.append(el("td", null, c));
        table.append(row);
      }
      const big = answer.largest;
      const box = $("largest");
      box.replaceChildren();
      if (big) {
        box.append("Largest difference: ", el("strong", null, `${big.engine} vs ${big.against}, ${big.quantity}`),
          ` ${fmt(big.max_abs, 3)} (${fmt(big.relative, 3)} of the largest value) at [${big.where.join(", ")}]`);
      } else {
        box.textContent = "one engine: nothing to compare";
      }
    } catch (error) {
      $("largest").textContent = error.message;
    } finally {
      $("compare").disabled = false;
    }
  }

  window.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => setStatus(error.message, true));
  });
})();
