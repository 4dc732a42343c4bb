// The console's live parts, plain JavaScript, no build step.
// Fleet: filter the table as you type (the form filters on the server without JavaScript).
// Run page: the run's JSON is fetched again whenever the server's event stream reports a
// transition (Server-Sent Events, /api/v1/events), and every 5 s in case the stream is away.
(function () {
  "use strict";
  var q = document.getElementById("q");
  if (q) {
    q.addEventListener("input", function () {
      var needle = q.value.toLowerCase();
      document.querySelectorAll("#fleet tbody tr").forEach(function (tr) {
        tr.hidden = needle !== "" && tr.dataset.text.toLowerCase().indexOf(needle) < 0;
      });
    });
  }

  // Fleet: tick every node shown, or every node of a cluster; say how many are ticked.
  var all = document.getElementById("all");
  var ticked = document.getElementById("ticked");
  function boxes(cluster) {
    return Array.prototype.filter.call(document.querySelectorAll('#fleet input[name="nodes"]'), function (b) {
      return !b.closest("tr").hidden && (!cluster || b.dataset.cluster === cluster);
    });
  }
  function count() {
    if (!ticked) return;
    var n = document.querySelectorAll('#fleet input[name="nodes"]:checked').length;
    ticked.textContent = n ? n + " ticked." : "";
  }
  if (all) {
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
      document.querySelectorAll("#fleet .all-cluster").forEach(function (c) { c.checked = all.checked; });
      count();
    });
    document.querySelectorAll("#fleet .all-cluster").forEach(function (c) {
      c.addEventListener("change", function () {
        boxes(c.dataset.cluster).forEach(function (b) { b.checked = c.checked; });
        count();
      });
    });
    document.getElementById("fleet").addEventListener("change", function (e) {
      if (e.target.name === "nodes") count();
    });
  }

  // Node page: an action asks first, naming the node; the server checks the name came back.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); return; }
      f.querySelector('input[name="confirm"]').value = f.dataset.node;
    });
  });

  var run = document.getElementById("run");
  if (!run) return;
  var MARK = {done: "✔", failed: "✘", queued: "…"};

  function cell(tr, cls, text) {
    var td = tr.querySelector("." + cls);
    if (td && td.textContent !== text) td.textContent = text;
  }

  function show(data) {
    document.getElementById("status").textContent = data.status;
    var finished = ["done", "failed", "stopped", "aborted"].indexOf(data.status) >= 0;
    document.getElementById("control").textContent =
      data.control !== "run" && !finished ? "(" + data.control + " asked)" : "";
    var counts = data.counts;  // the server's one count (workflow/submit.py tally), as `runs` and `watch` show it
    data.nodes.forEach(function (n) {
      var shown = n.in_this_run ? n.state : "queued";
      var tr = run.querySelector('tr[data-node="' + n.name + '"]');
      if (!tr) return;
      var span = tr.querySelector(".st span");
      var label = (MARK[shown] ? MARK[shown] + " " : "") + shown;
      if (span.textContent !== label) {
        span.textContent = label;
        span.className = "state state-" + shown;
      }
      cell(tr, "since", n.in_this_run && n.since ? n.since.slice(0, 19) : "");
      cell(tr, "reason", n.in_this_run && n.reason ? n.reason : "");
    });
    document.getElementById("counts").textContent = [["not_started", "queued"], ["in_flight", "in flight"],
      ["done", "done"], ["failed", "failed"]].map(function (k) { return counts[k[0]] + " " + k[1]; }).join(" · ");
    var t = data.timeline || {};
    [["makespan", t.makespan || "not started"], ["remaining", t.remaining || (finished ? "none" : "unknown")],
     ["eta", t.eta || ""]].forEach(function (k) {
      var el = document.getElementById(k[0]);
      if (el && el.textContent !== k[1]) el.textContent = k[1];
    });
    var gantt = document.getElementById("gantt");
    if (gantt && (!finished || !gantt.dataset.final)) {
      if (finished) gantt.dataset.final = "1";
      fetch(gantt.dataset.svg, {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (svg) { if (svg) gantt.innerHTML = svg; })
        .catch(function () {});
    }
    if (data.summary && data.summary.error) {
      document.getElementById("summary").textContent = "Stopped: " + data.summary.error;
    }
    document.querySelectorAll(".actions button").forEach(function (b) { b.disabled = finished; });
    if (finished && source) { source.close(); source = null; }
  }

  var pending = false;
  function refresh() {
    if (pending) return;
    pending = true;
    fetch(run.dataset.json, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) show(data); })
      .catch(function () {})
      .then(function () { pending = false; });
  }

  var source = null;
  if (window.EventSource) {
    source = new EventSource(run.dataset.events);
    ["transition", "callback", "netboot"].forEach(function (kind) {
      source.addEventListener(kind, refresh);
    });
  }
  refresh();
  setInterval(refresh, 5000);
})();
