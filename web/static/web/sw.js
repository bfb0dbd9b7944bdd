// The portal's service worker, served at /sw.js (scope "/") with its configuration in front of this
// source: self.PORTAL_WORKER = {cache, assets, offline, icon}.
// It keeps ONLY the static files in PORTAL_WORKER.assets and the offline page, which holds nothing about
// anyone. Pages and API answers carry PHI and are sent no-store: they go to the network and are never
// put in a cache; when a page cannot be reached the offline page is shown instead.
"use strict";
var CONFIG = self.PORTAL_WORKER;
var KEPT = CONFIG.assets.concat([CONFIG.offline]);

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(CONFIG.cache).then(function (cache) {
      return cache.addAll(KEPT.map(function (url) { return new Request(url, { cache: "reload", credentials: "omit" }); }));
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  // Older versions of the cache (and anything else stored under this origin) are removed.
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (name) { return name !== CONFIG.cache; }).map(function (name) {
        return caches.delete(name);
      }));
    }).then(function () { return self.clients.claim(); })
  );
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    // Straight to the network; the answer is not stored. Offline: the page that says so.
    event.respondWith(fetch(request).catch(function () {
      return caches.open(CONFIG.cache).then(function (cache) { return cache.match(CONFIG.offline); });
    }));
    return;
  }
  if (CONFIG.assets.indexOf(url.pathname) === -1) return;  // not a kept file: the browser's own fetch
  event.respondWith(caches.open(CONFIG.cache).then(function (cache) {
    return cache.match(url.pathname).then(function (hit) { return hit || fetch(request); });
  }));
});

// Web push: the payload is a generic title and sentence and a path in this app (never a child's name or
// a message's text). Only a same-origin path is opened.
function safePath(value) {
  return typeof value === "string" && value.charAt(0) === "/" && value.charAt(1) !== "/" ? value : "/";
}

self.addEventListener("push", function (event) {
  var data = {};
  try { data = event.data ? event.data.json() : {}; } catch (error) { data = {}; }
  event.waitUntil(self.registration.showNotification(String(data.title || "Family care portal"), {
    body: String(data.body || ""),
    tag: String(data.tag || "portal"),
    icon: CONFIG.icon,
    data: { url: safePath(data.url) }
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var path = safePath(event.notification.data && event.notification.data.url);
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
    for (var i = 0; i < windows.length; i += 1) {
      if (new URL(windows[i].url).origin === self.location.origin && "navigate" in windows[i]) {
        return windows[i].navigate(path).then(function (client) {
          return client ? client.focus() : self.clients.openWindow(path);
        }).catch(function () { return self.clients.openWindow(path); });
      }
    }
    return self.clients.openWindow(path);
  }));
});
