// mailq dashboard: live overview (server-sent events, polling when they fail, nothing while
// the tab is hidden), "select all" boxes, and reading a CSV file into the import form.
"use strict";

(function () {
  function live(root) {
    var streamUrl = root.getAttribute("data-live");
    var pollUrl = root.getAttribute("data-poll");
    var status = document.querySelector("[data-live-status]");
    var source = null;
    var timer = null;
    var failures = 0;
    var polling = !window.EventSource;
    var POLL_MS = 5000;

    function say(state, text) {
      if (!status) return;
      status.setAttribute("data-state", state);
      status.textContent = text;
    }
    function apply(data) {
      var regions = data && data.regions;
      if (!regions) return;
      Object.keys(regions).forEach(function (name) {
        var el = root.querySelector('[data-live-region="' + name + '"]');
        // The HTML was rendered and escaped by the server (Jinja2 autoescape).
        if (el && el.innerHTML !== regions[name]) el.innerHTML = regions[name];
      });
    }
    function poll() {
      fetch(pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.redirected || r.status === 401 || r.status === 403) { location.reload(); return null; }
          return r.ok ? r.json() : null;
        })
        .then(function (data) { if (data) apply(data); })
        .catch(function () { say("polling", "Offline, retrying"); });
    }
    function startPolling() {
      polling = true;
      say("polling", "Live (polling every 5 s)");
      poll();
      if (!timer) timer = setInterval(poll, POLL_MS);
    }
    function start() {
      if (document.hidden) return;
      if (polling) { startPolling(); return; }
      source = new EventSource(streamUrl);
      source.addEventListener("overview", function (event) {
        failures = 0;
        say("live", "Live");
        try { apply(JSON.parse(event.data)); } catch (e) { /* a partial message: the next one will do */ }
      });
      source.onopen = function () { say("live", "Live"); };
      source.onerror = function () {
        failures += 1;
        if (failures >= 3) { stop(); startPolling(); }
      };
    }
    function stop() {
      if (source) { source.close(); source = null; }
      if (timer) { clearInterval(timer); timer = null; }
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) { stop(); say("paused", "Paused while the tab is hidden"); }
      else { start(); if (polling) poll(); }
    });
    window.addEventListener("pagehide", stop);
    start();
  }

  function checkAll(box) {
    var form = box.closest("form");
    box.addEventListener("change", function () {
      form.querySelectorAll('input[type="checkbox"][name="id"]').forEach(function (c) {
        if (!c.disabled) c.checked = box.checked;
      });
    });
  }

  function csvFile(form) {
    var file = form.querySelector("[data-csv-file]");
    var text = form.querySelector("[data-csv-text]");
    if (!file || !text) return;
    file.addEventListener("change", function () {
      if (!file.files || !file.files[0]) return;
      var reader = new FileReader();
      reader.onload = function () { text.value = String(reader.result || ""); };
      reader.readAsText(file.files[0]);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-live]");
    if (root) live(root);
    document.querySelectorAll("[data-check-all]").forEach(checkAll);
    document.querySelectorAll("[data-csv-form]").forEach(csvFile);
  });
})();
