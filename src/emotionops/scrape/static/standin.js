// Behaviour of the local image-search stand-in: the same obstacles a scraper meets on a
// real engine (consent overlay, infinite scroll, a side panel that loads the full image late).
(function () {
  "use strict";

  const overlay = document.getElementById("consent-overlay");
  const accept = document.getElementById("consent-accept");
  if (overlay && accept) {
    accept.addEventListener("click", function () {
      document.cookie = "consent=yes; path=/; SameSite=Lax";
      overlay.hidden = true;
      overlay.remove();
    });
  }

  const results = document.getElementById("results");
  if (!results) {
    return;
  }
  const grid = document.getElementById("grid");
  const more = document.getElementById("more-results");
  const panel = document.getElementById("side-panel");
  const panelImage = document.getElementById("panel-image");
  const panelTitle = document.getElementById("panel-title");
  const panelSource = document.getElementById("panel-source");
  const delayMin = Number(document.body.dataset.panelDelayMin || 100);
  const delayMax = Number(document.body.dataset.panelDelayMax || 300);
  const query = results.dataset.query;
  let nextPage = Number(results.dataset.nextPage);
  let hasMore = results.dataset.hasMore === "true";
  let loading = false;
  let panelToken = 0;

  function endMarker() {
    if (!document.getElementById("end-of-results")) {
      const p = document.createElement("p");
      p.id = "end-of-results";
      p.textContent = "No more results";
      results.appendChild(p);
    }
  }

  function itemElement(item) {
    const a = document.createElement("a");
    a.className = "result";
    a.href = item.page;
    a.dataset.id = item.id;
    const img = document.createElement("img");
    img.className = "thumb";
    img.src = item.thumb;
    img.alt = item.title;
    const span = document.createElement("span");
    span.className = "title";
    span.textContent = item.title;
    a.appendChild(img);
    a.appendChild(span);
    return a;
  }

  async function loadMore() {
    if (loading || !hasMore) {
      return;
    }
    loading = true;
    try {
      const url = "/api/results?q=" + encodeURIComponent(query) + "&page=" + nextPage;
      const response = await fetch(url);
      const data = await response.json();
      for (const item of data.results) {
        grid.appendChild(itemElement(item));
      }
      nextPage += 1;
      hasMore = data.has_more;
      results.dataset.nextPage = String(nextPage);
      results.dataset.hasMore = String(hasMore);
      if (!hasMore) {
        more.hidden = true;
        endMarker();
      }
    } finally {
      loading = false;
    }
  }

  window.addEventListener("scroll", function () {
    const bottom = window.innerHeight + window.scrollY;
    if (bottom >= document.documentElement.scrollHeight - 300) {
      loadMore();
    }
  });
  more.addEventListener("click", loadMore);

  // Like Google: the panel first shows the thumbnail, then swaps in the full-size image
  // once it has been fetched, after a short delay. A scraper must wait for the swap.
  grid.addEventListener("click", function (event) {
    const result = event.target.closest(".result");
    if (!result) {
      return;
    }
    event.preventDefault();
    for (const el of grid.querySelectorAll(".result.selected")) {
      el.classList.remove("selected");
    }
    result.classList.add("selected");
    const thumb = result.querySelector("img.thumb");
    panelToken += 1;
    const token = panelToken;
    panel.hidden = false;
    panelImage.src = thumb.src;
    panelImage.dataset.state = "thumbnail";
    panelTitle.textContent = thumb.alt;
    panelSource.href = "#";
    const delay = delayMin + Math.random() * Math.max(0, delayMax - delayMin);
    setTimeout(async function () {
      const response = await fetch("/api/item?id=" + encodeURIComponent(result.dataset.id));
      const item = await response.json();
      const full = new Image();
      full.onload = function () {
        if (token === panelToken) {
          panelImage.src = item.image;
          panelImage.dataset.state = "full";
          panelSource.href = item.page;
        }
      };
      full.src = item.image;
    }, delay);
  });

  document.getElementById("panel-close").addEventListener("click", function () {
    panel.hidden = true;
  });
})();
