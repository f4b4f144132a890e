// gpt2 explore, panel 5: a token's nearest neighbours in the token embedding table (wte), and the
// cosine similarity of the position embeddings (wpe).

import { $, api, el, state } from "./core.js";

export function initEmbeddings() {
  $("nn-token").addEventListener("change", () => {
    $("nn-token").dataset.touched = "1";
    loadNeighbours({ text: $("nn-token").value });
  });
  $("pos-stride").addEventListener("change", loadPositions);
  $("positions").addEventListener("mousemove", positionValue);
}

/** Show a token's neighbours: `token` is {id} or {text}; `label` fills the input box. */
export function pickToken(token, label, touched) {
  $("nn-token").value = label;
  if (touched) $("nn-token").dataset.touched = "1";
  return loadNeighbours(token);
}

/** Whether the user chose the token (then a new trace leaves the neighbours alone). */
export const tokenChosen = () => Boolean($("nn-token").dataset.touched);

export async function loadNeighbours(token) {
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
    box.replaceChildren(el("div", "error", error.message)); // never the previous token's neighbours
  }
}

export async function loadPositions() {
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
    $("pos-value").textContent = "";
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
