// Live updates, from the status-change stream (served from /console/static: the CSP
// allows scripts from 'self' only; there is no inline script anywhere).
//
// Any element with data-cursor listens: GET /console/events?cursor= is a long poll (the
// server holds it up to 15 s and answers as soon as a status changes; see ops_pages.py
// for why a long poll rather than Server-Sent Events). The cursor comes with the page,
// taken before the page read its data, so no change between the two is missed.
// - The executions list (#executions) re-reads its rows when any execution changes.
// - An open execution's page (#live) re-reads its body when that execution changes, and
//   every 5 s while it runs (steps progress without a status change).
(function () {
  "use strict";

  function get(url, kind) {
    return fetch(url, { credentials: "same-origin", headers: { "accept": kind } })
      .then(function (r) {
        // Logged out meanwhile (a disabled key, an expired session): show the login page.
        if (r.redirected || r.status === 403) { window.location.reload(); return Promise.reject(0); }
        return r.ok ? (kind === "application/json" ? r.json() : r.text()) : Promise.reject(r.status);
      });
  }

  function listen(cursor, onChanges) {
    get("/console/events?cursor=" + encodeURIComponent(cursor || ""), "application/json")
      .then(function (data) {
        var more = data.changes.length ? onChanges(data.changes) : true;
        if (more !== false) { listen(data.cursor, onChanges); }
      })
      .catch(function () { setTimeout(function () { listen(cursor, onChanges); }, 3000); });
  }

  function typing(root) {
    // Do not replace a form the user is typing into.
    var active = document.activeElement;
    return active && root.contains(active) && (active.tagName === "INPUT" || active.tagName === "TEXTAREA");
  }

  var table = document.getElementById("executions");
  if (table && table.dataset.cursor !== undefined) {
    var body = table.querySelector("tbody");
    listen(table.dataset.cursor, function () {
      // The list as the page's own filters show it now: new rows, new statuses.
      get(window.location.href, "text/html").then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("#executions tbody");
        if (fresh) {
          body.innerHTML = fresh.innerHTML;
          table.dataset.updates = String(Number(table.dataset.updates || "0") + 1);
        }
      }).catch(function () { /* the next change tries again */ });
    });
  }

  var live = document.getElementById("live");
  if (!live || !live.dataset.live) { return; }
  var closed = false;
  function refresh() {
    if (closed || typing(live)) { return; }
    get(live.dataset.live, "text/html").then(function (html) {
      if (typing(live)) { return; }
      live.innerHTML = html;
      var exec = live.querySelector(".exec");
      closed = !!(exec && exec.dataset.closed === "yes");
    }).catch(function () { /* the next tick tries again */ });
  }
  listen(live.dataset.cursor, function (changes) {
    for (var i = 0; i < changes.length; i++) {
      if (changes[i].arn === live.dataset.arn) { refresh(); }
    }
    return !closed;
  });
  setTimeout(function tick() {
    if (closed) { return; }
    refresh();
    setTimeout(tick, 5000);
  }, 5000);
})();
