// Live camera page: poll the camera's counts and redraw the tables.
"use strict";
(function () {
  const live = document.getElementById("live");
  const camera = live.dataset.camera;
  const refreshMs = Math.max(200, 1000 * parseFloat(live.dataset.refreshS || "5"));
  const error = document.getElementById("error");
  const url = "/api/cameras/" + encodeURIComponent(camera) + "/counts";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const utc = (iso) => iso.replace("T", " ").replace(/\+00:00$/, "");

  function render(data) {
    const current = data.current;
    const body = document.querySelector("#counts tbody");
    body.replaceChildren();
    document.getElementById("window").textContent = current
      ? `${utc(current.window_start)} UTC (${current.window_seconds} s)` : (data.message || "none");
    document.getElementById("model-version").textContent = current && current.model_versions.length
      ? current.model_versions.join(", ") : "n/a";
    if (current) {
      const max = Math.max(1, ...Object.values(current.counts));
      Object.entries(current.counts).forEach(([label, count]) => {
        const tr = el("tr");
        tr.dataset.label = label;
        tr.appendChild(el("td", "label", label));
        tr.appendChild(el("td", "num count", String(count)));
        const cell = el("td", "barcell");
        const bar = el("span", "bar");
        const fill = el("span");
        fill.style.width = (100 * count / max) + "%";
        bar.appendChild(fill);
        cell.appendChild(bar);
        tr.appendChild(cell);
        body.appendChild(tr);
      });
    }
    const recent = document.querySelector("#recent tbody");
    recent.replaceChildren();
    data.recent.forEach((w) => {
      const tr = el("tr");
      tr.appendChild(el("td", "", utc(w.window_start)));
      tr.appendChild(el("td", "", Object.entries(w.counts).map(([l, c]) => `${l} ${c}`).join(", ")));
      tr.appendChild(el("td", "", w.model_versions.join(", ") || "n/a"));
      recent.appendChild(tr);
    });
    document.getElementById("updated").textContent = new Date().toISOString().slice(11, 19) + " UTC";
    live.dataset.loaded = "true";
  }

  async function poll() {
    try {
      const response = await fetch(url, { cache: "no-store" });
      const data = await response.json();
      if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
      error.hidden = true;
      render(data);
    } catch (exc) {
      error.textContent = "Could not refresh: " + exc.message;
      error.hidden = false;
    } finally {
      setTimeout(poll, refreshMs);
    }
  }
  poll();
})();
