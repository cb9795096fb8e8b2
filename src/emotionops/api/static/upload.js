// Upload page: send the picked photo to /predict, draw each face's box and label over it.
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("photo");
  const stage = document.getElementById("stage");
  const preview = document.getElementById("preview");
  const boxes = document.getElementById("boxes");
  const list = document.getElementById("faces");
  const status = document.getElementById("status");
  const error = document.getElementById("error");
  let previewUrl = null;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const pct = (p) => (100 * p).toFixed(1) + "%";

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
  }

  function render(answer) {
    boxes.replaceChildren();
    list.replaceChildren();
    const { width, height } = answer.image;
    answer.faces.forEach((face, i) => {
      const b = face.box;
      const box = el("div", "face-box");
      box.dataset.label = face.label;
      box.style.left = (100 * b.x / width) + "%";
      box.style.top = (100 * b.y / height) + "%";
      box.style.width = (100 * b.w / width) + "%";
      box.style.height = (100 * b.h / height) + "%";
      box.appendChild(el("span", "face-label", `${i + 1}. ${face.label} ${pct(face.confidence)}`));
      boxes.appendChild(box);

      const item = el("li", "face");
      item.appendChild(el("strong", "face-top", `${face.label} (${pct(face.confidence)})`));
      Object.entries(face.probabilities)
        .sort((a, b) => b[1] - a[1])
        .forEach(([label, p]) => {
          const row = el("div", "prob");
          row.appendChild(el("span", "prob-label", label));
          const bar = el("span", "bar");
          const fill = el("span");
          fill.style.width = pct(p);
          bar.appendChild(fill);
          row.appendChild(bar);
          row.appendChild(el("span", "prob-value", pct(p)));
          item.appendChild(row);
        });
      list.appendChild(item);
    });
    const n = answer.faces.length;
    status.textContent = (answer.message ? answer.message + " · " : "") +
      `${n} face${n === 1 ? "" : "s"} · model ${answer.model.name} v${answer.model.version}` +
      ` · ${answer.elapsed_ms} ms`;
  }

  async function analyse() {
    error.hidden = true;
    const file = input.files[0];
    if (!file) { showError("Pick a photo first."); return; }
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    stage.hidden = false;
    boxes.replaceChildren();
    list.replaceChildren();
    status.textContent = "Analysing…";
    const body = new FormData();
    body.append("file", file);
    let answer;
    try {
      const response = await fetch("/predict", { method: "POST", body });
      answer = await response.json();
      if (!response.ok) {
        status.textContent = "";
        showError(answer.detail || `the server answered ${response.status}`);
        return;
      }
    } catch (exc) {
      status.textContent = "";
      showError("The API did not answer: " + exc);
      return;
    }
    render(answer);
    document.body.dataset.state = "done";
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); analyse(); });
  input.addEventListener("change", analyse);
})();
