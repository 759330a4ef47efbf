// The console's service worker: makes the console installable and lets its pages open when
// the hub cannot be reached (they then say so). Network first for the console's own files,
// the cache only as a fallback; the API and the WebSocket are never cached.

const CACHE = "vendhub-console-v1";
const SHELL = [
  "/",
  "/static/common/base.css",
  "/static/common/theme-boot.js",
  "/static/console/console.css",
  "/static/console/app.js",
  "/static/console/icons/icon.svg",
  "/manifest.webmanifest",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .catch(() => undefined)
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

function cacheable(url) {
  return (
    url.origin === self.location.origin &&
    (url.pathname === "/" || url.pathname.startsWith("/static/") || url.pathname === "/manifest.webmanifest")
  );
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (!cacheable(url)) return; // /api/* and everything else: straight to the network
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(url.pathname === "/" ? "/" : request, copy));
        }
        return response;
      })
      .catch(() =>
        caches.match(url.pathname === "/" ? "/" : request).then(
          (cached) => cached || new Response("offline", { status: 503, statusText: "offline" }),
        ),
      ),
  );
});
