// Behaviour of the local image-search stand-in: the same obstacles a scraper meets on a
// real engine (consent overlay, infinite scroll, a side panel that loads the full image late).
// Elements are found by data-role so one script serves every markup variant ("skin"); the
// scraper never uses data-role: it uses each skin's own ids/classes, as on a real engine.
(function () {
  "use strict";

  const role = (name) => document.querySelector('[data-role="' + name + '"]');
  const SKINS = {
    classic: {
      result: "result", thumb: "thumb", title: "title", selected: "selected",
      endTag: "p", endId: "end-of-results", endClass: "", fullAttr: null, meta: false,
    },
    mosaic: {
      result: "tile", thumb: "tile-img", title: "tile-caption", selected: "is-active",
      endTag: "div", endId: "", endClass: "hits-end", fullAttr: "fullUrl", meta: true,
    },
  };
  const skin = SKINS[document.body.dataset.skin] || SKINS.classic;

  const overlay = role("consent-overlay");
  const accept = role("consent-accept");
  if (overlay && accept) {
    accept.addEventListener("click", function () {
      document.cookie = "consent=yes; path=/; SameSite=Lax";
      overlay.hidden = true;
      overlay.remove();
    });
  }

  const results = role("results");
  if (!results) {
    return;
  }
  const grid = role("grid");
  const more = role("more");
  const panel = role("panel");
  const panelImage = role("panel-image");
  const panelTitle = role("panel-title");
  const panelSource = role("panel-source");
  const delayMin = Number(document.body.dataset.panelDelayMin || 100);
  const delayMax = Number(document.body.dataset.panelDelayMax || 300);
  const query = results.dataset.query;
  let nextPage = Number(results.dataset.nextPage);
  let hasMore = results.dataset.hasMore === "true";
  let loading = false;
  let panelToken = 0;

  function endMarker() {
    if (!role("end")) {
      const el = document.createElement(skin.endTag);
      if (skin.endId) el.id = skin.endId;
      if (skin.endClass) el.className = skin.endClass;
      el.dataset.role = "end";
      el.textContent = "No more results";
      results.appendChild(el);
    }
  }

  function itemElement(item) {
    const a = document.createElement("a");
    a.className = skin.result;
    a.href = item.page;
    a.dataset.id = item.id;
    a.dataset.role = "result";
    if (skin.meta) {
      a.dataset.meta = JSON.stringify({ murl: item.image, purl: item.page });
    }
    const img = document.createElement("img");
    img.className = skin.thumb;
    img.src = item.thumb;
    img.alt = item.title;
    const span = document.createElement("span");
    span.className = skin.title;
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
  // once it has been fetched, after a short delay. A scraper must wait for the swap. The
  // mosaic skin keeps the thumbnail in src and puts the full-size URL in data-full-url.
  grid.addEventListener("click", function (event) {
    const result = event.target.closest('[data-role="result"]');
    if (!result) {
      return;
    }
    event.preventDefault();
    for (const el of grid.querySelectorAll("." + skin.selected)) {
      el.classList.remove(skin.selected);
    }
    result.classList.add(skin.selected);
    const thumb = result.querySelector("img");
    panelToken += 1;
    const token = panelToken;
    panel.hidden = false;
    panelImage.src = thumb.src;
    panelImage.dataset.state = "thumbnail";
    if (skin.fullAttr) {
      delete panelImage.dataset[skin.fullAttr];
    }
    panelTitle.textContent = thumb.alt;
    panelSource.href = "#";
    const delay = delayMin + Math.random() * Math.max(0, delayMax - delayMin);
    setTimeout(async function () {
      const response = await fetch("/api/item?id=" + encodeURIComponent(result.dataset.id));
      const item = await response.json();
      const full = new Image();
      full.onload = function () {
        if (token === panelToken) {
          if (skin.fullAttr) {
            panelImage.dataset[skin.fullAttr] = item.image;
          } else {
            panelImage.src = item.image;
          }
          panelImage.dataset.state = "full";
          panelSource.href = item.page;
        }
      };
      full.src = item.image;
    }, delay);
  });

  role("panel-close").addEventListener("click", function () {
    panel.hidden = true;
  });
})();
