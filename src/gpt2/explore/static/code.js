// gpt2 explore, panel 6: the source of the functions the page names, read from the installed package.

import { $, api, el } from "./core.js";

export function initCode(info) {
  for (const name of info.sources) {
    const option = el("option", null, name);
    option.value = name;
    $("source-name").append(option);
  }
  $("source-name").addEventListener("change", () => loadSource($("source-name").value));
  // Every panel's "computed by" button opens its function here.
  for (const button of document.querySelectorAll(".fn")) {
    button.addEventListener("click", () => {
      if (!button.textContent) return;
      $("source-name").value = button.textContent;
      loadSource(button.textContent);
      $("panel-code").scrollIntoView({ behavior: "smooth", block: "start" });
    });
  }
}

/** Name on each panel's "computed by" button the function that computed it. */
export function fillFunctions(computedBy) {
  if (!computedBy) return;
  for (const button of document.querySelectorAll(".fn")) {
    const name = computedBy[button.dataset.part];
    if (name) button.textContent = name;
  }
}

export async function loadSource(name) {
  if (!name) return;
  try {
    const answer = await api(`/api/source?name=${encodeURIComponent(name)}`);
    $("source-where").textContent = `${answer.file}, line ${answer.line}`;
    $("source").textContent = answer.source;
  } catch (error) {
    $("source-where").textContent = "";
    $("source").textContent = error.message;
  }
}
