// The portal's service worker, served at /sw.js (scope "/") with its configuration in front of this
// source: self.PORTAL_WORKER = {cache, assets, offline}.
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
