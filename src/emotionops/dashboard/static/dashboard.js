// The dashboard's charts (Plotly, served by the app or shipped in the bundle) and filters.
// Each page embeds its data as JSON (#page-data) and how to reach the rest (#page-config);
// the same code runs in the live app and in the static bundle opened from disk.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  const $ = (id) => document.getElementById(id);

  function fmt(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) && digits === undefined ? String(value) : value.toFixed(digits === undefined ? 3 : digits);
  }

  function draw(id, traces, layout) {
    const el = $(id);
    if (!el) return;
    const base = { margin: { t: 48, r: 24, b: 64, l: 64 }, legend: { orientation: "h", y: -0.2 } };
    Plotly.react(el, traces, Object.assign(base, layout, { title: { text: layout.title } }), PLOT_CONFIG);
  }

  function fillTable(table, header, rows) {
    table.replaceChildren();
    const head = table.createTHead().insertRow();
    header.forEach((h) => { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); });
    const body = table.createTBody();
    rows.forEach((row) => {
      const tr = body.insertRow();
      row.forEach((v) => {
        const td = tr.insertCell();
        td.textContent = fmt(v);
        if (typeof v === "number") td.className = "num";
      });
    });
  }

  function fillSelect(select, options, chosen) {
    select.replaceChildren();
    options.forEach(([value, text]) => {
      const o = document.createElement("option");
      o.value = value; o.textContent = text; o.selected = value === chosen;
      select.appendChild(o);
    });
  }

  // Models ---------------------------------------------------------------------------------
  function runName(r) {
    const version = r.model_version ? ` v${r.model_version}` : "";
    return `${r.run_date || ""} ${r.model_name}${version} (${r.run_id.slice(0, 8)})`;
  }

  function modelName(r) {
    return r.model_version ? `${r.model_name} v${r.model_version}` : `${r.model_name} (unregistered)`;
  }

  function confusionChart(id, run) {
    draw(id, [{
      type: "heatmap", z: run.confusion, x: run.labels, y: run.labels, colorscale: "Blues",
      texttemplate: "%{z}", hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
    }], {
      title: `Confusion matrix, test: ${runName(run)}`,
      xaxis: { title: { text: "predicted" } },
      yaxis: { title: { text: "true" }, autorange: "reversed" },
    });
  }

  function curvesChart(id, run) {
    const epochs = run.curves.train_accuracy.map((_, i) => i + 1);
    const line = (name, key, axis, dash) => ({
      type: "scatter", mode: "lines+markers", name, x: epochs, y: run.curves[key], yaxis: axis,
      line: { dash },
    });
    draw(id, [
      line("train accuracy", "train_accuracy", "y", "solid"),
      line("val accuracy", "val_accuracy", "y", "dot"),
      line("train loss", "train_loss", "y2", "solid"),
      line("val loss", "val_loss", "y2", "dot"),
    ], {
      title: `Training curves: ${runName(run)}`,
      xaxis: { title: { text: "epoch" } },
      yaxis: { title: { text: "accuracy" } },
      yaxis2: { title: { text: "loss" }, overlaying: "y", side: "right" },
    });
  }

  function compareTable(a, b) {
    const keys = Array.from(new Set([...Object.keys(a.key_params), ...Object.keys(b.key_params)])).sort();
    const rows = [
      ["run", a.run_id, b.run_id],
      ["model", modelName(a), modelName(b)],
      ["champion", a.champion ? "yes" : "no", b.champion ? "yes" : "no"],
      ["architecture", a.model_type, b.model_type],
      ["labels", a.labels.join(", "), b.labels.join(", ")],
      ["dataset version", (a.dataset_version || "").slice(0, 16), (b.dataset_version || "").slice(0, 16)],
      ["epochs", a.epochs_run, b.epochs_run],
      ["minutes", a.duration_s === null ? null : a.duration_s / 60, b.duration_s === null ? null : b.duration_s / 60],
      ["train images", a.n_train, b.n_train],
      ["test images", a.n_test, b.n_test],
    ];
    for (const m of ["train_accuracy", "train_loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "test_macro_f1"]) {
      rows.push([m.replace(/_/g, " "), a[m], b[m]]);
    }
    keys.forEach((k) => rows.push([k, a.key_params[k] ?? null, b.key_params[k] ?? null]));
    fillTable($("compare-table"), ["", "Run A", "Run B"], rows);
  }

  function classesChart(a, b) {
    const labels = Array.from(new Set([...a.labels, ...b.labels]));
    const series = (run, tag, metric) => {
      const byLabel = Object.fromEntries(run.classes.map((c) => [c.label, c[metric]]));
      return { type: "bar", name: `${metric} ${tag}`, x: labels, y: labels.map((l) => byLabel[l] ?? null) };
    };
    const traces = [];
    for (const metric of ["f1", "recall", "specificity"]) {
      traces.push(series(a, "A", metric), series(b, "B", metric));
    }
    draw("chart-classes", traces, {
      title: "Per label on test: F1, recall and specificity, run A against run B",
      barmode: "group", yaxis: { range: [0, 1] },
    });
  }

  function modelsPage() {
    if (!data.runs.length) return;
    const oldestFirst = [...data.runs].reverse();
    const names = oldestFirst.map(runName);
    draw("chart-runs", ["train_accuracy", "test_accuracy", "test_macro_f1"].map((m) => ({
      type: "bar", name: m.replace(/_/g, " "), x: names, y: oldestFirst.map((r) => r[m]),
    })), { title: "Accuracy and macro-F1 per run", barmode: "group", yaxis: { range: [0, 1] } });

    const byId = Object.fromEntries(data.runs.map((r) => [r.run_id, r]));
    const options = data.runs.map((r) => [r.run_id, runName(r) + (r.champion ? " ★ champion" : "")]);
    const champion = data.runs.find((r) => r.champion) || data.runs[0];
    const other = data.runs.find((r) => r.run_id !== champion.run_id) || champion;
    const selectA = $("run-a"), selectB = $("run-b");
    fillSelect(selectA, options, data.runs[0].run_id);
    fillSelect(selectB, options, (data.runs[0] === champion ? other : champion).run_id);
    const update = () => {
      const a = byId[selectA.value], b = byId[selectB.value];
      compareTable(a, b);
      confusionChart("chart-confusion-a", a);
      confusionChart("chart-confusion-b", b);
      curvesChart("chart-curves-a", a);
      curvesChart("chart-curves-b", b);
      classesChart(a, b);
    };
    selectA.addEventListener("change", update);
    selectB.addEventListener("change", update);
    update();
  }

  // Data quality ---------------------------------------------------------------------------
  function qualityPage() {
    if (!data.runs.length) return;
    const runs = [...data.runs].reverse();
    const dates = runs.map((r) => r.run_date);
    const outcomes = [
      ["kept", "images kept"], ["image_rejected", "rejected by image cleanup"],
      ["download_refused", "download refused"], ["download_failed", "download failed"],
      ["url_rejected", "refused by URL cleanup"],
    ];
    draw("chart-runs-quality", outcomes.map(([key, name]) => ({
      type: "bar", name, x: dates, y: runs.map((r) => r[key]),
    })), { title: "What happened to each scraped URL, per run", barmode: "stack" });

    const select = $("reasons-run");
    fillSelect(select, data.runs.map((r) => [r.run_date, r.run_date]), data.runs[0].run_date);
    const update = () => {
      const run = data.runs.find((r) => r.run_date === select.value);
      const reasons = Object.entries(run.reasons).reverse();
      draw("chart-reasons", [{
        type: "bar", orientation: "h", name: "rejections",
        x: reasons.map(([, n]) => n), y: reasons.map(([reason]) => reason),
      }], { title: `Rejections by reason, run ${run.run_date}`, margin: { l: 260, t: 48, r: 24, b: 48 } });
    };
    select.addEventListener("change", update);
    update();
  }

  // Emotion analytics ----------------------------------------------------------------------
  const DAY_MS = 86400000;

  function dateInput(iso) { return iso ? iso.slice(0, 10) : ""; }

  function filtersFrom(current) {
    return {
      camera: $("f-camera").value,
      bucket: $("f-bucket").value,
      start: $("f-start").value,
      end: $("f-end").value,
      current,
    };
  }

  // Rows of `d` within the filters (the server filtered already; the bundle filters here).
  function shownRows(d, f) {
    const start = f.start ? Date.parse(f.start + "T00:00:00Z") : -Infinity;
    const end = f.end ? Date.parse(f.end + "T00:00:00Z") + DAY_MS : Infinity;
    const keep = (r) => (!f.camera || r.camera_id === f.camera)
      && Date.parse(r.bucket_start) >= start && Date.parse(r.bucket_start) < end;
    return { rows: d.rows.filter(keep), tracks: d.tracks.filter(keep) };
  }

  function sumBy(rows, key, value) {
    const out = new Map();
    rows.forEach((r) => out.set(r[key], (out.get(r[key]) || 0) + (r[value] || 0)));
    return out;
  }

  function renderAnalytics(d, f) {
    const { rows, tracks } = shownRows(d, f);
    const labels = d.labels;
    const buckets = Array.from(new Set(rows.map((r) => r.bucket_start))).sort();
    const cameras = Array.from(new Set(rows.map((r) => r.camera_id))).sort();
    const cell = new Map(rows.map((r) => [`${r.label}|${r.bucket_start}`, 0]));
    rows.forEach((r) => cell.set(`${r.label}|${r.bucket_start}`, cell.get(`${r.label}|${r.bucket_start}`) + r.faces));
    const per = f.bucket === "hour" ? "hour" : "day";
    const where = f.camera ? `camera ${f.camera}` : "all cameras";
    // Bucket starts on a date axis, one tick label per bucket size (UTC).
    const timeAxis = per === "day"
      ? { type: "date", tickformat: "%Y-%m-%d", dtick: DAY_MS }
      : { type: "date", tickformat: "%b %d %H:00" };
    draw("chart-timeline", labels.map((label) => ({
      type: "bar", name: label, x: buckets, y: buckets.map((b) => cell.get(`${label}|${b}`) || 0),
    })), { title: `Faces per label per ${per} (UTC), ${where}`, barmode: "stack", xaxis: timeAxis });

    const perLabel = sumBy(rows, "label", "faces");
    const total = labels.reduce((s, l) => s + (perLabel.get(l) || 0), 0);
    draw("chart-shares", [{
      type: "bar", name: "share", x: labels,
      y: labels.map((l) => (total ? (100 * (perLabel.get(l) || 0)) / total : 0)),
    }], { title: `Share of faces per label (%), ${where}`, yaxis: { range: [0, 100] } });

    const camCell = new Map();
    rows.forEach((r) => camCell.set(`${r.label}|${r.camera_id}`, (camCell.get(`${r.label}|${r.camera_id}`) || 0) + r.faces));
    draw("chart-cameras", labels.map((label) => ({
      type: "bar", name: label, x: cameras, y: cameras.map((c) => camCell.get(`${label}|${c}`) || 0),
    })), { title: "Faces per camera and label", barmode: "stack" });

    const trackSums = sumBy(tracks, "bucket_start", "tracks");
    const trackBuckets = Array.from(trackSums.keys()).sort();
    draw("chart-tracks", [{
      type: "bar", name: "tracks", x: trackBuckets, y: trackBuckets.map((b) => trackSums.get(b)),
    }], { title: `Tracked faces per ${per} (summed over windows), ${where}`, xaxis: timeAxis });

    fillTable($("totals-table"), ["Label", "Faces", "Share (%)"], [
      ...labels.map((l) => [l, perLabel.get(l) || 0, total ? (100 * (perLabel.get(l) || 0)) / total : 0]),
      ["all", total, total ? 100 : 0],
    ].map((row) => row.map((v, i) => (i === 1 ? Math.round(v) : v))));
    f.current.shown = { rows, tracks };
  }

  function csvOf(shown) {
    const tracks = new Map(shown.tracks.map((t) => [`${t.camera_id}|${t.bucket_start}`, t.tracks]));
    const quote = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
    const lines = [["camera_id", "bucket_start_utc", "label", "faces", "observations", "tracks"].join(",")];
    shown.rows.forEach((r) => lines.push([
      r.camera_id, r.bucket_start, r.label, r.faces, r.observations ?? "",
      tracks.get(`${r.camera_id}|${r.bucket_start}`) ?? "",
    ].map(quote).join(",")));
    return lines.join("\n") + "\n";
  }

  function analyticsPage() {
    if (!data.cameras.length) return;
    const state = { shown: { rows: [], tracks: [] } };
    const message = $("analytics-message");
    $("f-bucket").value = data.bucket;
    $("f-start").value = dateInput(data.range.start);
    $("f-end").value = data.range.end ? dateInput(new Date(Date.parse(data.range.end) - 1).toISOString()) : "";
    // The page came with the default view's data: the first draw uses it, changes ask again.
    const update = async (initial) => {
      const f = filtersFrom(state);
      message.textContent = "";
      let d = data;
      if (config.analytics_api && initial !== true) {
        const q = new URLSearchParams({ bucket: f.bucket });
        if (f.camera) q.set("camera", f.camera);
        if (f.start) q.set("start", f.start);
        if (f.end) q.set("end", f.end);
        const response = await fetch(`${config.analytics_api}?${q}`);
        const body = await response.json();
        if (!response.ok) { message.textContent = body.detail || `error ${response.status}`; return; }
        d = body;
      } else if (f.bucket !== data.bucket) {
        message.textContent = `This static report holds ${data.bucket} buckets only; open the live dashboard for others.`;
        $("f-bucket").value = data.bucket;
        f.bucket = data.bucket;
      }
      renderAnalytics(d, f);
    };
    ["f-camera", "f-bucket", "f-start", "f-end"].forEach((id) => $(id).addEventListener("change", update));
    $("csv-download").addEventListener("click", () => {
      const blob = new Blob([csvOf(state.shown)], { type: "text/csv" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "emotion-analytics.csv";
      document.body.appendChild(a);
      a.click();
      a.remove();
    });
    update(true);
  }

  const pages = { models: modelsPage, quality: qualityPage, analytics: analyticsPage };
  pages[config.page]();
})();
