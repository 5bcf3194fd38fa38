// An open execution's page: refresh its body every 1.5 s until the execution closes.
// Served from /console/static (CSP: script-src 'self'; no inline script anywhere).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.live) { return; }
  var url = live.dataset.live;
  function busy() {
    // Do not replace a form the user is typing into.
    var active = document.activeElement;
    return active && live.contains(active) && (active.tagName === "INPUT" || active.tagName === "TEXTAREA");
  }
  function tick() {
    if (busy()) { setTimeout(tick, 1500); return; }
    fetch(url, { credentials: "same-origin", headers: { "accept": "text/html" } })
      .then(function (r) {
        // Logged out meanwhile (a disabled key, an expired session): show the login page.
        if (r.redirected) { window.location.reload(); return Promise.reject(0); }
        return r.ok ? r.text() : Promise.reject(r.status);
      })
      .then(function (html) {
        if (busy()) { return; }
        live.innerHTML = html;
        var body = live.querySelector(".exec");
        if (body && body.dataset.closed === "yes") { return; }
        setTimeout(tick, 1500);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1500);
})();
