// The service worker: it keeps the page's own files (the app shell: the page, its scripts,
// Pyodide, the wheels, the editor's code files) so that the page opens and boots without the
// server. Models are kept by the page itself (store.js, in the Origin Private File System), not
// here: Chromium's Cache API refuses files of about 500 MB.
//
// sw-shell.js, written by build.py, lists the files with their sha256 and names a version.
// Installing fetches every file (checked against its sha256 by fetch's `integrity`) into the
// cache "webgpt-shell-<version>"; from then on they are answered from there, with the headers
// the server sent (Cross-Origin-Opener-Policy and -Embedder-Policy included, so the page stays
// cross-origin isolated). A new build changes sw-shell.js, which the browser takes as a new
// service worker: it installs beside the old one and waits until the page asks it to take
// over (offline.js offers a Reload) or every tab of the old one is closed; activating deletes
// the older versions' caches. Everything else (models/, the hub, anything not listed) goes to
// the network as if there were no service worker.
//
// The first visit is not taken over (no clients.claim): it runs from the server, while the
// files are saved; the next visit runs from them.

importScripts("sw-shell.js");

const PREFIX = "webgpt-shell-";
const CACHE = PREFIX + self.SHELL.version;
const SCOPE = self.registration.scope;
const FILES = new Map(Object.entries(self.SHELL.files).map(([path, sha256]) =>
  [new URL(path, SCOPE).href, sha256]));
const PARALLEL = 4;

function integrity(hex) {
  const bytes = hex.match(/../g).map((h) => parseInt(h, 16));
  return "sha256-" + btoa(String.fromCharCode(...bytes));
}

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    const have = new Set((await cache.keys()).map((r) => r.url)); // an install cut short
    const todo = [...FILES].filter(([url]) => !have.has(url));
    const next = async () => {
      for (let item = todo.shift(); item; item = todo.shift()) {
        const [url, sha256] = item;
        const resp = await fetch(url, { cache: "no-cache", integrity: integrity(sha256) });
        if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
        await cache.put(url, resp);
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, next));
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
    }
  })());
});

// offline.js's one message (protocol.mjs's TO_SERVICE_WORKER; a classic script cannot import it).
self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "skip-waiting") self.skipWaiting();
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  url.search = "";
  url.hash = "";
  const key = url.href === SCOPE ? new URL("index.html", SCOPE).href : url.href;
  if (!FILES.has(key)) return; // models/ and the rest: the network, untouched
  event.respondWith((async () => {
    const hit = await (await caches.open(CACHE)).match(key);
    return hit || fetch(request);
  })());
});
