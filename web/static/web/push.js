// Turns on web push for this device from the settings page: asks the browser's permission, subscribes
// through the service worker (/sw.js) with the portal's VAPID public key and registers the subscription
// with POST /api/v1/me/push-subscriptions. Without this script (or without push support) the page
// says why and still lists the devices, each with its "Turn off" form.
"use strict";
(function () {
  var section = document.getElementById("push");
  if (!section || !section.dataset.pushKey) return;
  var button = section.querySelector("[data-push-subscribe]");
  var status = section.querySelector("[data-push-status]");
  var unsupported = document.getElementById("push-unsupported");
  if (!button || !status) return;
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window) ||
      !window.isSecureContext) return;
  if (unsupported) unsupported.hidden = true;
  button.hidden = false;

  function applicationServerKey(text) {
    var base64 = (text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = window.atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function csrfToken() {
    var field = section.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    status.textContent = "";
    Notification.requestPermission().then(function (permission) {
      if (permission !== "granted") throw new Error("denied");
      return navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(function () {
        return navigator.serviceWorker.ready;
      });
    }).then(function (registration) {
      return registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: applicationServerKey(section.dataset.pushKey)
      });
    }).then(function (subscription) {
      var json = subscription.toJSON();
      return fetch(section.dataset.pushApi, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({
          endpoint: json.endpoint,
          expirationTime: json.expirationTime === undefined ? null : json.expirationTime,
          keys: { p256dh: json.keys.p256dh, auth: json.keys.auth }
        })
      });
    }).then(function (response) {
      if (!response.ok) throw new Error("refused");
      status.textContent = section.dataset.pushDone;
      window.location.reload();
    }).catch(function (error) {
      status.textContent = error && error.message === "denied" ? section.dataset.pushDenied : section.dataset.pushFailed;
      button.disabled = false;
    });
  });
})();
