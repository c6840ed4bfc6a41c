/* The charts page: per-minute counters of the last 24 h drawn with uPlot (vendored). */
(function () {
  "use strict";
  var box = document.getElementById("chart-outcomes");
  if (!box || typeof uPlot === "undefined") { return; }
  var plots = [];

  function width(el) { return Math.max(280, el.clientWidth - 16); }

  function draw(rows) {
    var t = rows.map(function (r) { return r.minute; });
    var ok = rows.map(function (r) { return r.succeeded; });
    var bad = rows.map(function (r) { return r.failed; });
    var p50 = rows.map(function (r) { return r.p50; });
    var p95 = rows.map(function (r) { return r.p95; });
    plots.forEach(function (p) { p.destroy(); });
    var rt = document.getElementById("chart-runtime");
    plots = [
      new uPlot({ width: width(box), height: 220, series: [{},
        { label: "succeeded", stroke: "#1e7a3c" }, { label: "failed", stroke: "#b3261e" }] },
        [t, ok, bad], box),
      new uPlot({ width: width(rt), height: 220, series: [{},
        { label: "p50 s", stroke: "#2457a6", spanGaps: true, points: { show: true } },
        { label: "p95 s", stroke: "#9a6700", spanGaps: true, points: { show: true } }] },
        [t, p50, p95], rt)
    ];
  }

  function load() {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", box.dataset.url);
    xhr.onload = function () {
      if (xhr.status === 200) { draw(JSON.parse(xhr.responseText).rows || []); }
    };
    xhr.send();
  }
  load();
  setInterval(load, 60000);
})();
