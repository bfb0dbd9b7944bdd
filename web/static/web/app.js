// Progressive enhancement only: every page works without this file.
// A form marked data-once is sent once: its buttons are disabled while the page waits for the answer,
// so a double tap on "Given" or "Send the request" cannot send it twice (the server is idempotent too).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-once")) return;
  if (form.dataset.sent === "1") { event.preventDefault(); return; }
  form.dataset.sent = "1";
  form.setAttribute("aria-busy", "true");
  // Disable after the submitter's name/value is taken into the request.
  window.setTimeout(function () {
    form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
  }, 0);
});

// Installable app: the service worker keeps only static files and the offline page (see /sw.js).
if ("serviceWorker" in navigator && window.isSecureContext) {
  window.addEventListener("load", function () {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () { /* the app works without it */ });
  });
}
