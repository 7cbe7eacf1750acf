// The model cache: the files of the models this page loaded, kept on this device in the Cache
// API ("webgpt-models"), each under its sha256 (models/index.json, which build.py writes,
// gives every file's size and sha256), so that a model loads again without the server.
//
// Content addressing keeps it simple: a model whose file changed on the server has a new
// sha256, which is not in the cache, so it is fetched again (never mixed with the old copy),
// and whatever the current index no longer names is deleted. A file is checked when it is
// read: its bytes are hashed (SHA-256 from hash-wasm, a few MiB at a time: never a whole file
// in memory) the first time a worker reads it, and a copy that does not match is deleted and
// fetched again from the network. A copy being stored is hashed as it streams in, and kept
// only if it matches.
//
// The worker (worker.mjs) puts cachingFetch in front of fetch; the Python that loads a model
// (webgpt.sources.fetch) reads through it as it did from the server: HEAD for sizes, Range
// requests for headers, one stream per file. Stored files answer all three from a disk-backed
// Blob; a file not yet stored streams from the network as before, through a tee that feeds the
// cache at the same pace (one piece at a time: memory stays bounded), so the first load is
// not slower and the file is stored whole even if the loader stops reading early.
//
// The page (main.js, offline.js) uses loadIndex (the server's models/index.json, or the stored
// copy when the server is gone), keepModel (a model loaded: it is listed as saved),
// modelStatus, deleteModel and storageUse. Models share files (tokenizer files, or copies of
// one model under two names), so the cache also keeps the list of the models the page loaded
// (models/kept.json): those are the saved ones, and a file stays while one of them needs it.

export const CACHE_NAME = "webgpt-models";
const SITE = new URL("./", import.meta.url);
const INDEX_URL = new URL("models/index.json", SITE).href;
const KEPT_URL = new URL("models/kept.json", SITE).href;
const KEY_PREFIX = new URL("models/sha256/", SITE).href;
const keyFor = (sha256) => KEY_PREFIX + sha256;

/** Whether this page can keep models (the Cache API needs a secure context: https or
 * http://localhost). Without it every request goes to the server as before. */
export const available = typeof caches !== "undefined" && globalThis.isSecureContext === true;

// ------------------------------------------------------------------ the page: index, status

/** models/index.json from the server (and a copy of it kept), or the kept copy when the
 * server cannot be reached. Returns {index, offline}: offline is true when the copy was used
 * (or there is none and the server is unreachable: then index has no models). A fresh index
 * also deletes the stored files it no longer names (a rebuilt model's old weights). */
export async function loadIndex() {
  let resp = null;
  try {
    resp = await fetch(INDEX_URL, { cache: "no-store" });
  } catch (e) {
    resp = null; // the server cannot be reached
  }
  if (resp && resp.ok) {
    const text = await resp.text();
    const index = JSON.parse(text);
    if (available) {
      try {
        const cache = await caches.open(CACHE_NAME);
        await cache.put(INDEX_URL, new Response(text, {
          headers: { "Content-Type": "application/json" } }));
        await prune(cache, index);
      } catch (e) {
        console.warn(`The model index could not be kept for offline use: ${e}`);
      }
    }
    return { index, offline: false };
  }
  if (available && resp === null) {
    const kept = await (await caches.open(CACHE_NAME)).match(INDEX_URL);
    if (kept) return { index: await kept.json(), offline: true };
  }
  return { index: { models: [] }, offline: resp === null };
}

function hashesOf(models) {
  const all = new Set();
  for (const m of models) for (const h of Object.values(m.sha256 || {})) all.add(h);
  return all;
}

async function keptNames(cache) {
  const hit = await cache.match(KEPT_URL);
  return hit ? (await hit.json()).models : [];
}

async function setKept(cache, names) {
  await cache.put(KEPT_URL, new Response(JSON.stringify({ models: names }), {
    headers: { "Content-Type": "application/json" } }));
}

/** List model `name` as saved on this device (once it has loaded: its files are stored). */
export async function keepModel(name) {
  if (!available) return;
  const cache = await caches.open(CACHE_NAME);
  const names = await keptNames(cache);
  if (!names.includes(name)) await setKept(cache, [...names, name]);
}

async function storedHashes(cache) {
  const out = new Set();
  for (const req of await cache.keys()) {
    if (req.url.startsWith(KEY_PREFIX)) out.add(req.url.slice(KEY_PREFIX.length));
  }
  return out;
}

// Keep the files of the saved models that the index still has (as the index has them now: a
// rebuilt model's old weights go), and nothing else (such as the files of a load that did
// not finish).
async function prune(cache, index) {
  const names = new Set((index.models || []).map((m) => m.name));
  const kept = (await keptNames(cache)).filter((n) => names.has(n));
  await setKept(cache, kept);
  const wanted = hashesOf((index.models || []).filter((m) => kept.includes(m.name)));
  for (const sha256 of await storedHashes(cache)) {
    if (!wanted.has(sha256)) await cache.delete(keyFor(sha256));
  }
}

/** [{name, bytes, stored, complete, kept}] for every model of the index: `stored` is how many
 * of its bytes are on this device, `complete` whether all its files are, `kept` whether it is
 * one of the models the page loaded (the saved ones). */
export async function modelStatus(index) {
  let have = new Set();
  let kept = [];
  if (available) {
    const cache = await caches.open(CACHE_NAME);
    [have, kept] = await Promise.all([storedHashes(cache), keptNames(cache)]);
  }
  return (index.models || []).map((m) => {
    let stored = 0;
    let complete = Object.keys(m.files || {}).length > 0;
    for (const [file, size] of Object.entries(m.files || {})) {
      const sha256 = (m.sha256 || {})[file];
      if (sha256 && have.has(sha256)) stored += size;
      else complete = false;
    }
    return { name: m.name, bytes: m.bytes, stored, complete, kept: kept.includes(m.name) };
  });
}

/** Delete a saved model: its files, except those another saved model needs. */
export async function deleteModel(index, name) {
  const cache = await caches.open(CACHE_NAME);
  const kept = (await keptNames(cache)).filter((n) => n !== name);
  await setKept(cache, kept);
  const model = (index.models || []).find((m) => m.name === name);
  if (!model) return;
  const needed = hashesOf((index.models || []).filter((m) => kept.includes(m.name)));
  for (const sha256 of Object.values(model.sha256 || {})) {
    if (!needed.has(sha256)) await cache.delete(keyFor(sha256));
  }
}

/** {usage, quota} in bytes for this site (navigator.storage.estimate), or null. */
export async function storageUse() {
  try {
    const { usage, quota } = await navigator.storage.estimate();
    return { usage, quota };
  } catch (e) {
    return null;
  }
}

// ------------------------------------------------------------------ the worker: fetch

let hasherModule = null;

async function newHasher() {
  hasherModule = hasherModule || import("./sha256.js");
  const hasher = await (await hasherModule).createSHA256();
  hasher.init();
  return hasher;
}

/** Hash a stream's bytes as they pass, a piece at a time. */
function hashing(hasher) {
  return new TransformStream({
    transform(chunk, controller) {
      hasher.update(chunk);
      controller.enqueue(chunk);
    },
  });
}

/**
 * A fetch for the worker that reads the registered model files from the cache, and stores
 * them there as they first stream in. `realFetch` is the fetch it stands in front of; `report`
 * is told {event: "stored" | "damaged" | "not-stored", model, file, detail} as that happens.
 * Returns {fetch, register(folderUrl, indexEntry)}: only the files of registered models (with
 * a sha256 in the index) are cached; every other request goes to realFetch unchanged.
 */
export function cachingFetch(realFetch, report = () => {}) {
  const files = new Map(); // file URL -> {sha256, bytes, model, file}
  const checked = new Map(); // sha256 -> the check of its copy by this worker (true: good)
  const storing = new Map(); // sha256 -> the store in progress

  function register(folderUrl, entry) {
    for (const [file, bytes] of Object.entries(entry.files || {})) {
      const sha256 = (entry.sha256 || {})[file];
      if (sha256) {
        files.set(new URL(file, folderUrl).href, { sha256, bytes, model: entry.name, file });
      }
    }
  }

  // The stored copy as a Blob (disk-backed: slicing it reads nothing), checked by its hash
  // the first time; null when there is none, or the copy was damaged (then it is deleted).
  async function stored(f) {
    const cache = await caches.open(CACHE_NAME);
    const hit = await cache.match(keyFor(f.sha256));
    if (!hit) return null;
    const blob = await hit.blob();
    const type = hit.headers.get("Content-Type") || "application/octet-stream";
    if (!checked.has(f.sha256)) checked.set(f.sha256, check(cache, f, blob));
    let good = false;
    try {
      good = await checked.get(f.sha256);
    } finally {
      if (!good) checked.delete(f.sha256); // checked again once stored again
    }
    return good ? { blob, type } : null;
  }

  // Hash a stored copy; a damaged one is deleted (and said). True when it is good.
  async function check(cache, f, blob) {
    let problem = null;
    if (blob.size !== f.bytes) {
      problem = `${blob.size} bytes stored, ${f.bytes} expected`;
    } else {
      const hasher = await newHasher();
      const reader = blob.stream().getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        hasher.update(value);
      }
      const got = hasher.digest("hex");
      if (got !== f.sha256) problem = `its sha256 is ${got}, the index says ${f.sha256}`;
    }
    if (problem) {
      await cache.delete(keyFor(f.sha256));
      report({ event: "damaged", model: f.model, file: f.file, detail: problem });
    }
    return problem === null;
  }

  async function cachedFetch(input, init) {
    if (!available) return realFetch(input, init);
    const request = input instanceof Request ? input : null;
    const url = new URL(request ? request.url : String(input), self.location.href);
    url.hash = "";
    url.search = "";
    const f = files.get(url.href);
    const method = ((init && init.method) || (request && request.method) || "GET").toUpperCase();
    if (!f || (method !== "GET" && method !== "HEAD")) return realFetch(input, init);
    const headers = new Headers((init && init.headers) || (request && request.headers) || {});
    const range = headers.get("Range");

    let copy = null;
    try {
      copy = await stored(f);
    } catch (e) {
      copy = null; // the cache is not usable right now: the network, as without it
    }
    if (copy) return fromBlob(copy.blob, copy.type, method, range);

    // Not stored: HEAD and small reads go to the server as they are; the file's stream (the
    // whole file, or from an offset on) is fetched whole and stored as the page reads it.
    const start = range === null ? 0 : openRangeStart(range);
    if (method === "HEAD" || start === null || storing.has(f.sha256) || !(await roomFor(f.bytes))) {
      return realFetch(input, init);
    }
    return storeAndServe(url.href, f, start, range !== null);
  }

  async function storeAndServe(url, f, start, ranged) {
    const hasher = await newHasher();
    const resp = await realFetch(url, { cache: "no-store" });
    if (!resp.ok || !resp.body) return resp;
    const size = Number(resp.headers.get("Content-Length") || f.bytes);
    const type = resp.headers.get("Content-Type") || "application/octet-stream";
    if (start > 0 && start >= size) {
      await resp.body.cancel();
      return unsatisfiable(size);
    }
    const tee = lockstepTee(resp.body);
    const [forCache, forPage] = tee.branches;
    // Should the cache give up (no room), the page's branch goes on alone.
    const done = store(f, forCache.pipeThrough(hashing(hasher)), hasher, size, type,
      () => tee.drop(0));
    storing.set(f.sha256, done);
    done.finally(() => storing.delete(f.sha256));
    const headers = { "Content-Type": type, "Content-Length": String(size - start),
      "Accept-Ranges": "bytes" };
    if (!ranged) return new Response(forPage, { status: 200, headers });
    headers["Content-Range"] = `bytes ${start}-${size - 1}/${size}`;
    return new Response(start ? dropFirst(forPage, start) : forPage, { status: 206, headers });
  }

  async function store(f, body, hasher, size, type, giveUp) {
    const key = keyFor(f.sha256);
    try {
      const cache = await caches.open(CACHE_NAME);
      await cache.put(key, new Response(body, { headers: {
        "Content-Type": type, "Content-Length": String(size), "X-Content-Sha256": f.sha256 } }));
    } catch (e) {
      giveUp();
      report({ event: "not-stored", model: f.model, file: f.file, detail: String(e) });
      return;
    }
    const got = hasher.digest("hex");
    if (got !== f.sha256) { // the server's file is not the one its index names (a rebuild?)
      await cache.delete(key);
      report({ event: "not-stored", model: f.model, file: f.file,
        detail: `the server sent bytes with sha256 ${got}, its index says ${f.sha256}` });
      return;
    }
    checked.set(f.sha256, Promise.resolve(true));
    report({ event: "stored", model: f.model, file: f.file, detail: "" });
  }

  return { fetch: cachedFetch, register };
}

async function roomFor(bytes) {
  try {
    const { usage, quota } = await navigator.storage.estimate();
    return usage + bytes < quota * 0.9;
  } catch (e) {
    return true; // no estimate: try, and give up if the cache refuses
  }
}

// ------------------------------------------------------------------ responses from a Blob

/** A response to GET (with or without one Range) or HEAD, from a stored file. */
function fromBlob(blob, type, method, range) {
  const size = blob.size;
  const headers = { "Content-Type": type, "Accept-Ranges": "bytes" };
  const span = range === null ? null : parseRange(range, size);
  if (span === "unsatisfiable") return unsatisfiable(size);
  if (span === null) {
    headers["Content-Length"] = String(size);
    return new Response(method === "HEAD" ? null : blob, { status: 200, headers });
  }
  const [a, b] = span;
  headers["Content-Length"] = String(b - a);
  headers["Content-Range"] = `bytes ${a}-${b - 1}/${size}`;
  return new Response(method === "HEAD" ? null : blob.slice(a, b), { status: 206, headers });
}

function unsatisfiable(size) {
  return new Response(null, { status: 416, headers: {
    "Content-Range": `bytes */${size}`, "Content-Length": "0" } });
}

/** One "bytes=a-b" range as [start, end) with end exclusive, as build.py's server reads it:
 * null to ignore the header (malformed, several ranges), "unsatisfiable" past the end. */
export function parseRange(header, size) {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") { // the last n bytes
    const n = Number(m[2]);
    return n <= 0 ? "unsatisfiable" : [Math.max(0, size - n), size];
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size : Number(m[2]) + 1;
  if (start >= size) return "unsatisfiable";
  if (end <= start) return null;
  return [start, Math.min(end, size)];
}

/** The start of an open-ended range "bytes=S-" (a file's stream from S on), else null. */
function openRangeStart(header) {
  const m = /^\s*bytes\s*=\s*(\d+)\s*-\s*$/i.exec(header);
  return m ? Number(m[1]) : null;
}

// ------------------------------------------------------------------ streams

/**
 * Two streams of one body, read in lock step: a piece is read from the network only once
 * both have taken the one before (or one was cancelled), so neither runs ahead and memory
 * holds a piece or two whatever the file's size (ReadableStream.tee would queue the slower
 * reader's share without bound). Cancelling one leaves the other reading alone; so does
 * drop(i), for a branch whose reader gave up without cancelling it. Returns {branches, drop}.
 */
export function lockstepTee(body) {
  const reader = body.getReader();
  const queues = [[], []];
  const open = [true, true];
  let reading = null; // the network read in progress
  let waiter = null; // a branch waiting for the other to take its share
  const wake = () => {
    const w = waiter;
    waiter = null;
    if (w) w();
  };
  const readNext = () => {
    if (!reading) {
      reading = reader.read().then(
        (result) => { for (const i of [0, 1]) if (open[i]) queues[i].push(result); },
        (error) => { for (const i of [0, 1]) if (open[i]) queues[i].push({ error }); },
      ).finally(() => { reading = null; });
    }
    return reading;
  };
  const drop = (i) => {
    open[i] = false;
    queues[i].length = 0;
    wake();
  };
  const branch = (i) => new ReadableStream({
    async pull(controller) {
      for (;;) {
        // Cancelled or dropped while this pull waited: stop reading for it. (Its loop would
        // otherwise go on after the other branch is gone too, each read of the finished body
        // resolving at once: a microtask loop that never lets the worker run anything else.)
        if (!open[i]) {
          controller.error(new Error("this branch of the tee was given up")); // no-op if cancelled
          return;
        }
        if (queues[i].length) {
          const item = queues[i].shift();
          wake();
          if (item.error) controller.error(item.error);
          else if (item.done) controller.close();
          else controller.enqueue(item.value);
          return;
        }
        if (open[1 - i] && queues[1 - i].length) { // the other is a piece behind
          await new Promise((resolve) => { waiter = resolve; });
        } else {
          await readNext();
        }
      }
    },
    cancel(reason) {
      drop(i);
      if (!open[1 - i]) return reader.cancel(reason);
      return undefined;
    },
  }, { highWaterMark: 0 });
  return { branches: [branch(0), branch(1)], drop };
}

/** A stream without its first n bytes. */
function dropFirst(stream, n) {
  let left = n;
  return stream.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      if (left >= chunk.byteLength) {
        left -= chunk.byteLength;
        return;
      }
      controller.enqueue(left ? chunk.subarray(left) : chunk);
      left = 0;
    },
  }));
}
