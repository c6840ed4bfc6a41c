/* Live parts of the operator's page: a job's progress and the state counts, polled
   every 2 s from the dashboard's own JSON (the session's cookie, never an API key). */
(function () {
  "use strict";
  var POLL_MS = 2000;

  function getJSON(url, done) {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", url);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.onload = function () {
      if (xhr.status === 200) { try { done(JSON.parse(xhr.responseText)); } catch (e) { /* skip */ } }
    };
    xhr.send();
  }

  function drawTimeline() {
    var list = document.querySelector("ol.timeline");
    if (!list) { return; }
    var start = parseFloat(list.dataset.start), end = Math.max(parseFloat(list.dataset.end), Date.now() / 1000);
    var span = Math.max(end - start, 0.001);
    list.querySelectorAll("li").forEach(function (li) {
      var from = parseFloat(li.dataset.from), to = li.dataset.to ? parseFloat(li.dataset.to) : end;
      var bar = li.querySelector(".bar");
      bar.style.left = (100 * (from - start) / span) + "%";
      bar.style.width = Math.max(0.5, 100 * (to - from) / span) + "%";
    });
  }

  function watchJob() {
    var box = document.getElementById("job");
    if (!box || box.dataset.ended === "true") { return; }
    var bar = document.getElementById("progress-bar"), text = document.getElementById("progress-text");
    var shownState = box.querySelector(".headline .state").textContent;
    function tick() {
      getJSON(box.dataset.url, function (job) {
        var p = job.progress;
        if (p) {
          bar.max = p.total || 1;
          bar.value = p.current || 0;
          text.textContent = (p.current || 0) + "/" + (p.total || 0) + " " + (p.message || "");
        }
        document.getElementById("attempts").textContent = job.attempts;
        if (job.state !== shownState) { window.location.reload(); return; }
        setTimeout(tick, POLL_MS);
      });
    }
    setTimeout(tick, POLL_MS);
  }

  function watchCounts() {
    var list = document.getElementById("counts");
    if (!list) { return; }
    function tick() {
      getJSON(list.dataset.url, function (body) {
        if (body.counts) {
          list.querySelectorAll("b[data-state]").forEach(function (b) {
            var n = body.counts[b.dataset.state];
            if (n !== undefined) { b.textContent = n; }
          });
        }
        setTimeout(tick, POLL_MS);
      });
    }
    setTimeout(tick, POLL_MS);
  }

  drawTimeline();
  watchJob();
  watchCounts();
})();
