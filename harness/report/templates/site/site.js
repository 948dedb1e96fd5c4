// harness publish: the site's script (written to assets/site.js after the report's table sorter,
// harness.report.build.SORT_SCRIPT). Every name and text from the store is set with textContent or given to
// Plotly as data, never parsed as markup.
(function () {
  "use strict";

  // -- theme: follows the system, a click overrides it (kept for the session) -------------------------------
  var root = document.documentElement;
  var saved = null;
  try { saved = window.sessionStorage.getItem("harness-theme"); } catch (e) { saved = null; }
  if (saved) { root.setAttribute("data-theme", saved); }
  function dark() {
    var theme = root.getAttribute("data-theme");
    if (theme) { return theme === "dark"; }
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  var toggle = document.getElementById("theme");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var next = dark() ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { window.sessionStorage.setItem("harness-theme", next); } catch (e) { /* private mode */ }
      if (window.harnessRedraw) { window.harnessRedraw(); }
    });
  }

  // -- the regressions page's filters ---------------------------------------------------------------------
  var regressions = document.getElementById("regressions");
  if (regressions) {
    var stateFilter = document.getElementById("state-filter");
    var textFilter = document.getElementById("text-filter");
    var apply = function () {
      var state = stateFilter.value, text = textFilter.value.trim().toLowerCase(), shown = 0;
      Array.prototype.forEach.call(regressions.tBodies[0].rows, function (row) {
        var visible = (!state || row.getAttribute("data-state") === state) &&
          (!text || row.textContent.toLowerCase().indexOf(text) >= 0);
        row.style.display = visible ? "" : "none";
        if (visible) { shown += 1; }
      });
      document.getElementById("shown").textContent = shown + " of " + regressions.tBodies[0].rows.length + " shown";
    };
    stateFilter.addEventListener("change", apply);
    textFilter.addEventListener("input", apply);
    apply();
  }

  // -- a history page: one chart per case and metric, drawn when it scrolls into view --------------------
  var source = document.getElementById("history-data");
  if (!source || !window.Plotly) { return; }
  var data = JSON.parse(source.textContent);
  var nights = data.nights;
  var grid = document.getElementById("charts");
  var cards = [];
  var step = Math.max(1, Math.ceil(nights.length / 8));  // at most ~8 labelled ticks: labels never overlap
  var tickvals = [], ticktext = [];
  // A date names a night unless several nights share it; then the time too.
  var days = {};
  nights.forEach(function (night) { days[night.date.slice(0, 10)] = (days[night.date.slice(0, 10)] || 0) + 1; });
  nights.forEach(function (night, i) {
    if (i % step === 0 || i === nights.length - 1) {
      tickvals.push(i);
      ticktext.push(days[night.date.slice(0, 10)] > 1 ? night.date.slice(5) : night.date.slice(0, 10));
    }
  });

  function colors() {
    var style = getComputedStyle(root);
    return { fg: style.getPropertyValue("--fg").trim() || "#1b1b1b", rule: style.getPropertyValue("--rule").trim() || "#ccc" };
  }

  function format(value) {
    if (value === null || value === undefined) { return "–"; }
    return Math.abs(value) >= 1e4 || (Math.abs(value) < 1e-3 && value !== 0) ? value.toExponential(3) : value.toPrecision(4);
  }

  function draw(card) {
    var s = card.series, c = colors();
    var x = nights.map(function (_, i) { return i; });
    var seeds = function (i) { return typeof s.seeds === "number" ? s.seeds : s.seeds[i]; };
    var half = function (i) { return s.half[i] === null || s.values[i] === null ? null : s.half[i]; };
    var hover = nights.map(function (night, i) {
      var interval = half(i) === null ? "" : " [" + format(s.values[i] - half(i)) + ", " + format(s.values[i] + half(i)) + "]";
      return night.date + "<br>commit " + night.commit + (night.dirty ? " (dirty)" : "") + "<br>" +
        format(s.values[i]) + interval + (s.unit && s.unit !== "1" ? " " + s.unit : "") + "<br>" + seeds(i) + " seed(s)";
    });
    var traces = [{
      x: x, y: s.values, type: "scatter", mode: "lines+markers", name: s.metric, hovertext: hover,
      hoverinfo: "text", marker: { size: 5, color: "#3b82f6" }, line: { width: 1.5, color: "#3b82f6" },
      error_y: { type: "data", symmetric: true, visible: true, thickness: 1, width: 0, color: "#93c5fd",
        array: s.half.map(function (_, i) { return half(i) === null ? 0 : half(i); }) }
    }];
    ["open", "closed"].forEach(function (kind) {
      var marks = s.alerts.filter(function (a) { return (a.state === "closed") === (kind === "closed"); });
      if (!marks.length) { return; }
      traces.push({
        x: marks.map(function (a) { return a.index; }), y: marks.map(function (a) { return s.values[a.index]; }),
        type: "scatter", mode: "markers", name: kind === "closed" ? "alert closed" : "alert",
        hovertext: marks.map(function (a) { return a.text; }), hoverinfo: "text",
        marker: { symbol: kind === "closed" ? "circle-open" : "x", size: 12, color: kind === "closed" ? "#16a34a" : "#dc2626" }
      });
    });
    var shapes = s.changes.map(function (change) {
      return { type: "line", xref: "x", yref: "paper", x0: change.index - 0.5, x1: change.index - 0.5, y0: 0, y1: 1,
        line: { dash: "dot", width: 1.5, color: "#f59e0b" } };
    });
    var layout = {
      margin: { l: 56, r: 8, t: 8, b: 64 }, showlegend: false, shapes: shapes, hovermode: "closest",
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: c.fg, size: 11 },
      xaxis: { tickvals: tickvals, ticktext: ticktext, gridcolor: c.rule, zeroline: false, title: { text: "night" } },
      yaxis: { gridcolor: c.rule, zeroline: false, title: { text: s.unit && s.unit !== "1" ? s.metric + " (" + s.unit + ")" : s.metric } }
    };
    window.Plotly.react(card.chart, traces, layout, { displayModeBar: false, responsive: true });
    if (!card.drawn) {
      card.chart.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        var night = point ? nights[point.x] : null;
        if (night && night.link) { window.location.href = night.link; }
      });
    }
    card.drawn = true;
  }

  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (entry.isIntersecting) {
        var card = cards[Number(entry.target.getAttribute("data-index"))];
        if (!card.drawn) { draw(card); }
      }
    });
  }, { rootMargin: "400px" }) : null;

  data.series.forEach(function (series, index) {
    var element = document.createElement("section");
    element.className = "card";
    element.setAttribute("data-index", String(index));
    var title = document.createElement("h3");
    title.textContent = series.metric + " · " + series.algorithm + " / " + series.environment;
    var chart = document.createElement("div");
    chart.className = "chart";
    element.appendChild(title);
    element.appendChild(chart);
    series.changes.concat(series.alerts).forEach(function (note) {
      var line = document.createElement("p");
      line.className = "muted";
      line.textContent = note.text;
      element.appendChild(line);
    });
    grid.appendChild(element);
    var card = { series: series, element: element, chart: chart, drawn: false };
    cards.push(card);
    if (observer) { observer.observe(element); } else { draw(card); }
  });

  // Filters: options from the data, applied by hiding cards.
  var filters = { algorithm: document.getElementById("algorithm-filter"), environment: document.getElementById("environment-filter"),
    metric: document.getElementById("metric-filter") };
  Object.keys(filters).forEach(function (field) {
    var seen = {};
    data.series.forEach(function (s) { seen[s[field]] = true; });
    Object.keys(seen).sort().forEach(function (value) {
      var option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      filters[field].appendChild(option);
    });
  });
  var changed = document.getElementById("changed-filter");
  function applyFilters() {
    var shown = 0;
    cards.forEach(function (card) {
      var s = card.series;
      var visible = Object.keys(filters).every(function (field) { return !filters[field].value || s[field] === filters[field].value; }) &&
        (!changed.checked || s.changes.length > 0 || s.alerts.length > 0);
      card.element.classList.toggle("hidden", !visible);
      if (visible) { shown += 1; }
    });
    document.getElementById("shown").textContent = shown + " of " + cards.length + " charts shown";
  }
  Object.keys(filters).forEach(function (field) { filters[field].addEventListener("change", applyFilters); });
  changed.addEventListener("change", applyFilters);
  applyFilters();

  window.harnessRenderAll = function () { cards.forEach(function (card) { if (!card.drawn) { draw(card); } }); };
  window.harnessRedraw = function () { cards.forEach(function (card) { if (card.drawn) { draw(card); } }); };
})();
