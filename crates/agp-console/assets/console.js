// Live updates: when the server says the journal grew, the page's live region is fetched
// again and swapped in. No input is lost: a region whose field has focus waits for the next
// event. Nothing else runs here.
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live || !window.EventSource) { return; }
  var busy = false, again = false;
  function editing() {
    var a = document.activeElement;
    return a && live.contains(a) && (a.tagName === "INPUT" || a.tagName === "TEXTAREA");
  }
  function refresh() {
    if (busy || editing()) { again = true; return; }
    busy = true;
    // A page answered to a POST names the GET that shows it again.
    var src = live.getAttribute("data-live-src") || location.href;
    fetch(src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (t) {
        if (t === null) { return; }
        var doc = new DOMParser().parseFromString(t, "text/html");
        var fresh = doc.querySelector("[data-live]");
        if (fresh) {
          live.replaceWith(fresh);
          live = fresh;
          var n = Number(document.body.getAttribute("data-refreshes") || "0") + 1;
          document.body.setAttribute("data-refreshes", String(n));
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; setTimeout(refresh, 200); }
      });
  }
  var events = new EventSource("/events");
  var first = true;
  // The first event is the count at connection time (after a reconnection too): refreshing
  // then catches anything missed while disconnected.
  events.addEventListener("journal", function () {
    if (first) { first = false; document.body.setAttribute("data-live-ready", "1"); return; }
    refresh();
  });
  events.addEventListener("error", function () { first = true; });
})();
