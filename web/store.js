// The model store: the files of the models this page loads, kept on this device in the Origin
// Private File System (OPFS), so that a model of any size loads again without the server (or
// the hub), and so that two tabs of the page share them safely.
//
// Layout, under the OPFS folder "webgpt-models":
//   blobs/<hash>          a complete file, named by its hash: "sha256-<hex>" (models/index.json,
//                         or the hub's listing for files kept in LFS) or "sha1-<hex>" (the git
//                         blob sha1 the hub gives for its other files). Files shared by models
//                         (tokenizers, copies of a model under two names) are kept once.
//   parts/<hash>          a download in progress, or ended but not hashed yet, and
//                         parts/<hash>.state: how many of its bytes are written, so that an
//                         interrupted download resumes where it stopped (a Range request).
//   manifest.json         the models this page kept or is loading: {models: {key: entry}}.
//   index.json            the site's models/index.json as last seen (the page offline).
//
// A model ("entry") is {key, name, source: "site" | "hub", url (its folder), files: {file name:
// {size, hash}}, listing (every file of the folder), bytes, kept, used} and, from the hub,
// {repo, revision, commit, endpoint}. Keys: "site:<name>", "hub:<owner/name>@<revision>".
//
// The worker (worker.mjs) puts modelStore(fetch).fetch in front of fetch: the Python that loads a
// model (webgpt.sources.fetch) reads through it as from the server (HEAD for sizes, Range for
// headers, one stream per file). A stored file is answered from its blob; a file not stored yet
// streams from the network through one pass that writes it (a sync access handle) and hands the
// same bytes to the loader, whatever the file's size (the loader's own buffer is the only one: a
// BYOB byte stream), never past its declared size: a body that goes on past it is not stored,
// nor handed on. Hashing is off that path, and off the path of a later visit's load: a stored
// copy is used once its size is right, and each file the load read (a blob, or a part whose
// download has ended) is hashed once the load is over and the page idle (idle(), after the first
// run, or CHECK_AFTER_MS after the load), a few MB at a time. Then a download whose bytes match
// becomes a blob; a blob that no longer matches (damaged since it was stored) is deleted and
// reported "damaged", and the page loads the model again, fetching the file afresh. (Hashing a
// 498 MB blob before its first use took 4 s of every later visit. Its modification time cannot
// stand in for the hash: OPFS in memory, as in a private window, never changes it.)
//
// Web Locks keep two tabs apart: "webgpt-write:<hash>" (exclusive) while a tab writes a file:
// another tab that needs it waits, then reads the blob; "webgpt-use:<hash>" (shared) while a tab
// loads a model: Delete and the clean-up never remove a file that another tab writes or uses
// (they take both locks only if they are free); "webgpt-manifest" around changes of
// manifest.json.
//
// The page (main.js, offline.js) uses loadIndex, prepare (migrates the Cache API copies of the
// store of before into OPFS, then drops them, and deletes what no model needs any more), loading
// (a model starts loading: listed, not kept), keep, deleteModel, listModels, keptEntry,
// storageInfo and askPersist.

const DIR = "webgpt-models";
const SITE = new URL("./", import.meta.url);
const INDEX_URL = new URL("models/index.json", SITE).href;
const MANIFEST = "manifest.json";
// The Cache API store of before (modelcache.js): files under models/sha256/<hex>, the models
// kept in models/kept.json, the index in models/index.json.
const OLD_CACHE = "webgpt-models";
const OLD_KEPT = new URL("models/kept.json", SITE).href;
const OLD_PREFIX = new URL("models/sha256/", SITE).href;
// A model that was loaded but not kept (from the hub) keeps its files this long, so that loading
// it again soon does not download it again.
const UNKEPT_MS = 24 * 3600 * 1000;
// How often (in bytes written) a download records where it is, for a resume after a crash.
const STATE_EVERY = 32 << 20;
const CHUNK = 4 << 20;
// The stored files a load read are hashed once the page is idle (its first run over), or this
// long after the load, whichever comes first; a piece of this size at a time, so that a run
// started meanwhile waits at most one piece's hashing between its steps.
const CHECK_AFTER_MS = 15000;
const CHECK_PIECE = 1 << 20;

/** Whether this page can keep models: OPFS and Web Locks, in a secure context (https or
 * http://localhost). Without them every request goes to the network as before. */
export const available = globalThis.isSecureContext === true
  && typeof globalThis.navigator?.storage?.getDirectory === "function"
  && typeof globalThis.navigator?.locks?.request === "function";

const lockName = (kind, hash) => `webgpt-${kind}:${hash}`;

export function mb(n) {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)} MB`;
}

// ------------------------------------------------------------------ OPFS, locks

let opened = null;

function folders() {
  if (!opened) {
    opened = (async () => {
      const top = await navigator.storage.getDirectory();
      const root = await top.getDirectoryHandle(DIR, { create: true });
      const [blobs, parts] = await Promise.all(["blobs", "parts"].map(
        (name) => root.getDirectoryHandle(name, { create: true })));
      return { root, blobs, parts };
    })();
    opened.catch(() => { opened = null; });
  }
  return opened;
}

async function fileOf(dir, name) {
  try {
    return await (await dir.getFileHandle(name)).getFile();
  } catch (e) {
    return null; // NotFoundError
  }
}

async function readJson(dir, name) {
  const file = await fileOf(dir, name);
  if (!file) return null;
  try {
    return JSON.parse(await file.text());
  } catch (e) {
    return null;
  }
}

async function writeJson(dir, name, value) {
  // createWritable writes a copy and swaps it in at close(): readers see the old or the new.
  const writable = await (await dir.getFileHandle(name, { create: true })).createWritable();
  await writable.write(JSON.stringify(value));
  await writable.close();
}

async function remove(dir, name) {
  try {
    await dir.removeEntry(name);
  } catch (e) {
    // not there (NotFoundError): nothing to do
  }
}

/** Take a Web Lock and keep it: resolves to a function that releases it, or to null when
 * `ifAvailable` and another holder has it. */
function takeLock(name, mode, ifAvailable = false) {
  return new Promise((resolve, reject) => {
    navigator.locks.request(name, { mode, ifAvailable }, (lock) => {
      if (!lock) {
        resolve(null);
        return undefined;
      }
      return new Promise((release) => resolve(release));
    }).catch(reject);
  });
}

/** Both locks of a file, exclusive, if both are free (to delete it); else null. */
async function takeForDelete(hash) {
  const write = await takeLock(lockName("write", hash), "exclusive", true);
  if (!write) return null;
  const use = await takeLock(lockName("use", hash), "exclusive", true);
  if (!use) {
    write();
    return null;
  }
  return () => { use(); write(); };
}

async function deleteFile(hash) {
  const { blobs, parts } = await folders();
  await Promise.all([remove(blobs, hash), remove(parts, hash), remove(parts, hash + ".state")]);
}

// ------------------------------------------------------------------ hashes

let hashModule = null;

/** A hasher for `hash` ("sha256-<hex>" or "sha1-<hex>", a git blob: sha1 over "blob <size>\0"
 * and the bytes), started. */
async function newHasher(hash, size) {
  hashModule = hashModule || import("./sha256.js");
  const mod = await hashModule;
  const hasher = await (hash.startsWith("sha1-") ? mod.createSHA1() : mod.createSHA256());
  hasher.init();
  if (hash.startsWith("sha1-")) hasher.update(new TextEncoder().encode(`blob ${size}\0`));
  return hasher;
}

const digestOf = (hash, hasher) => `${hash.slice(0, hash.indexOf("-"))}-${hasher.digest("hex")}`;

/** Hash a Blob a piece at a time, letting other tasks of this thread (the Python worker's)
 * run between the pieces. */
async function hashBlob(hash, blob) {
  const hasher = await newHasher(hash, blob.size);
  for (let at = 0; at < blob.size; at += CHECK_PIECE) {
    hasher.update(new Uint8Array(await blob.slice(at, at + CHECK_PIECE).arrayBuffer()));
    await new Promise((resolve) => { setTimeout(resolve, 0); });
  }
  return digestOf(hash, hasher);
}

// ------------------------------------------------------------------ entries

/** The folder URL of a model of this site. */
export function siteFolder(name) {
  return new URL(`models/${encodeURIComponent(name)}/`, SITE).href;
}

/** A model as the store keeps it, from an entry of models/index.json ({name, bytes, files:
 * {file: size}, sha256: {file: hex}}) or one made by hub.js (already in this form). */
export function toEntry(m, url) {
  if (m.key) return { ...m, url: m.url || url };
  const files = {};
  for (const [file, size] of Object.entries(m.files || {})) {
    const hex = (m.sha256 || {})[file];
    if (hex) files[file] = { size, hash: `sha256-${hex}` };
  }
  return { key: `site:${m.name}`, name: m.name, source: "site", url: url || siteFolder(m.name),
    files, listing: Object.keys(m.files || {}), bytes: m.bytes };
}

const hashesOf = (entry) => Object.values(entry.files || {}).map((f) => f.hash);

/** A file name from the last part of a URL's path. */
function nameIn(path) {
  try {
    return decodeURIComponent(path);
  } catch (e) {
    return path; // not %-encoded UTF-8: the name as it is
  }
}

// ------------------------------------------------------------------ the page: index, manifest

/** models/index.json from the server (and a copy kept), or the kept copy when the server
 * cannot be reached: {index, offline}. offline is true when the copy was used (or there is
 * none and the server is unreachable: then index has no models). */
export async function loadIndex() {
  let resp = null;
  try {
    resp = await fetch(INDEX_URL, { cache: "no-store" });
  } catch (e) {
    resp = null; // the server cannot be reached
  }
  if (resp && resp.ok) {
    const index = JSON.parse(await resp.text());
    if (available) {
      try {
        await writeJson((await folders()).root, "index.json", index);
      } catch (e) {
        console.warn(`The model index could not be kept for offline use: ${e}`);
      }
    }
    return { index, offline: false };
  }
  if (available && resp === null) {
    const kept = await readJson((await folders()).root, "index.json") || await oldIndex();
    if (kept) return { index: kept, offline: true };
  }
  return { index: { models: [] }, offline: resp === null };
}

async function oldIndex() {
  try {
    if (!globalThis.caches || !(await caches.has(OLD_CACHE))) return null;
    const hit = await (await caches.open(OLD_CACHE)).match(INDEX_URL);
    return hit ? await hit.json() : null;
  } catch (e) {
    return null;
  }
}

export async function readManifest() {
  if (!available) return { models: {} };
  const manifest = await readJson((await folders()).root, MANIFEST);
  return manifest && typeof manifest.models === "object" ? manifest : { models: {} };
}

/** Change manifest.json under its lock: fn(manifest) edits it in place; returns fn's result. */
async function updateManifest(fn) {
  return navigator.locks.request("webgpt-manifest", async () => {
    const manifest = await readManifest();
    const result = await fn(manifest);
    await writeJson((await folders()).root, MANIFEST, manifest);
    return result;
  });
}

/** A model starts loading: listed (not kept, unless it is already), so that its files, and a
 * download cut short, stay while it is recent. */
export async function loading(entry) {
  if (!available) return;
  await updateManifest((m) => {
    const old = m.models[entry.key];
    m.models[entry.key] = { ...entry, kept: Boolean(old && old.kept), used: Date.now() };
  });
}

/** Keep a model on this device (its files are stored as it loads). */
export async function keep(entry) {
  if (!available) return;
  await updateManifest((m) => {
    m.models[entry.key] = { ...entry, kept: true, used: Date.now() };
  });
}

/** The kept entry of `key`, or null (a hub model, offline). */
export async function keptEntry(key) {
  const entry = (await readManifest()).models[key];
  return entry && entry.kept ? entry : null;
}

/** Delete a model: its files, except those another model in the manifest needs. Returns
 * {deleted: true}, or {inUse: true} when another tab writes or loads one of its files (then
 * nothing is deleted). */
export async function deleteModel(key) {
  return updateManifest(async (m) => {
    const entry = m.models[key];
    if (!entry) return { deleted: true };
    const needed = new Set(Object.entries(m.models).filter(([k]) => k !== key)
      .flatMap(([, e]) => hashesOf(e)));
    const releases = [];
    try {
      for (const hash of hashesOf(entry).filter((h) => !needed.has(h))) {
        const release = await takeForDelete(hash);
        if (!release) return { inUse: true };
        releases.push(release);
      }
      for (const hash of hashesOf(entry).filter((h) => !needed.has(h))) await deleteFile(hash);
      delete m.models[key];
      return { deleted: true };
    } finally {
      for (const release of releases) release();
    }
  });
}

/**
 * Once per page, after the index: the store of before (the Cache API) is moved into OPFS and
 * dropped; the site's models in the manifest follow the index (a rebuilt model has new files,
 * one the site no longer has is forgotten; not offline, where the index is an old copy); models
 * not kept and not loaded for a day are forgotten, except `current` (the key this page opens);
 * then every file no model needs is deleted, unless another tab writes or uses it.
 */
export async function prepare(index, offline, current = null) {
  if (!available) return;
  try {
    await migrate(index);
  } catch (e) {
    console.warn(`The models saved by an older version of the page could not be moved: ${e}`);
  }
  const wanted = await updateManifest((m) => {
    const now = Date.now();
    const site = new Map((index.models || []).map((x) => [x.name, x]));
    for (const [key, e] of Object.entries(m.models)) {
      if (e.source === "site" && !offline) {
        const x = site.get(e.name);
        if (x) m.models[key] = { ...toEntry(x), kept: e.kept, used: e.used };
        else delete m.models[key];
      } else if (!e.kept && key !== current && now - (e.used || 0) > UNKEPT_MS) {
        delete m.models[key];
      }
    }
    return new Set(Object.values(m.models).flatMap(hashesOf));
  });
  const { blobs, parts } = await folders();
  const present = new Set();
  for (const dir of [blobs, parts]) {
    for await (const name of dir.keys()) present.add(name.replace(/\.state$/, ""));
  }
  for (const hash of present) {
    if (wanted.has(hash)) continue;
    const release = await takeForDelete(hash);
    if (!release) continue; // written or used by another tab: next time
    try {
      await deleteFile(hash);
    } finally {
      release();
    }
  }
}

/** The Cache API store of before: its kept models' files into OPFS (not hashed here: a blob
 * is hashed after the load that reads it), then the cache is deleted. */
async function migrate(index) {
  if (!globalThis.caches || !(await caches.has(OLD_CACHE))) return;
  await navigator.locks.request("webgpt-migrate", async () => {
    if (!(await caches.has(OLD_CACHE))) return;
    const cache = await caches.open(OLD_CACHE);
    const hit = await cache.match(OLD_KEPT);
    const kept = hit ? ((await hit.json()).models || []) : [];
    const site = new Map((index.models || []).map((x) => [x.name, x]));
    const { blobs } = await folders();
    for (const name of kept) {
      if (!site.has(name)) continue;
      const entry = toEntry(site.get(name));
      for (const f of Object.values(entry.files)) {
        const old = await cache.match(OLD_PREFIX + f.hash.slice("sha256-".length));
        if (!old || !old.body || await fileOf(blobs, f.hash)) continue;
        const release = await takeLock(lockName("write", f.hash), "exclusive", true);
        if (!release) continue;
        try {
          const writable = await (await blobs.getFileHandle(f.hash, { create: true }))
            .createWritable();
          await old.body.pipeTo(writable); // the file appears whole at the end, or not at all
        } catch (e) {
          await remove(blobs, f.hash);
        } finally {
          release();
        }
      }
      await keep(entry);
    }
    await caches.delete(OLD_CACHE);
  });
}

/** [{key, name, source, repo, revision, commit, bytes, stored, complete, kept}] for every model
 * of the manifest: `stored` is how many of its bytes are on this device (a download cut short
 * counts), `complete` whether all its files are. */
export async function listModels() {
  if (!available) return [];
  const manifest = await readManifest();
  const { blobs, parts } = await folders();
  const have = new Set();
  for await (const name of blobs.keys()) have.add(name);
  const partial = new Map();
  for await (const name of parts.keys()) {
    if (!name.endsWith(".state")) partial.set(name, null);
  }
  const out = [];
  for (const e of Object.values(manifest.models)) {
    let stored = 0;
    let complete = Object.keys(e.files || {}).length > 0;
    for (const f of Object.values(e.files || {})) {
      if (have.has(f.hash)) {
        stored += f.size;
        continue;
      }
      complete = false;
      if (partial.has(f.hash)) {
        if (partial.get(f.hash) === null) {
          const file = await fileOf(parts, f.hash);
          partial.set(f.hash, file ? Math.min(file.size, f.size) : 0);
        }
        stored += partial.get(f.hash);
      }
    }
    out.push({ key: e.key, name: e.name, source: e.source, repo: e.repo, revision: e.revision,
      commit: e.commit, bytes: e.bytes, stored, complete, kept: Boolean(e.kept) });
  }
  return out;
}

/** {usage, quota, persisted} for this site (navigator.storage), or null. */
export async function storageInfo() {
  try {
    const { usage, quota } = await navigator.storage.estimate();
    const persisted = navigator.storage.persisted ? await navigator.storage.persisted() : false;
    return { usage, quota, persisted };
  } catch (e) {
    return null;
  }
}

/** Ask the browser not to evict this site's storage (it decides; no prompt in Chromium). */
export async function askPersist() {
  try {
    if (await navigator.storage.persisted()) return true;
    return await navigator.storage.persist();
  } catch (e) {
    return false;
  }
}

// ------------------------------------------------------------------ the worker: fetch

/**
 * A fetch for the worker that reads the files of registered models from the store, and stores
 * them as they first stream in. `report` is told what happens, as the fields of the worker's
 * "cache" message (protocol.mjs: event, model, file and the event's own fields).
 * Returns {fetch, loading(url, entry, run), idle()}: loading registers a model (an entry of
 * models/index.json or of hub.js), holds its files' use locks and checks the room it needs,
 * then runs run() (the load) and returns its result; idle() says that the page is idle (a run
 * has ended): the files the load read are hashed now (see the top of this file).
 */
export function modelStore(realFetch, report = () => {}) {
  const files = new Map(); // file URL -> {f: {size, hash, url, model, file}, session}
  const listings = new Map(); // folder URL -> Set of the folder's file names
  const unchecked = new Map(); // hash -> f: stored files read since they were last hashed
  const checked = new Set(); // hashes this worker has hashed (once per visit)
  const downloaded = new Set(); // hashes this worker downloaded (their loads read those bytes)
  const writing = new Map(); // hash -> Promise: this worker's download of it, until it ends
  let checkTimer = null;
  let checking = null; // the check under way (a Promise), or null

  function register(entry, session) {
    listings.set(entry.url, new Set(entry.listing || Object.keys(entry.files)));
    for (const [file, info] of Object.entries(entry.files)) {
      const url = new URL(file, entry.url).href;
      files.set(url, { f: { ...info, url, model: entry.name, file }, session });
    }
  }

  async function loadingModel(url, rawEntry, run) {
    if (!available || !rawEntry) return run();
    const entry = toEntry(rawEntry, url);
    const session = { store: true };
    register(entry, session);
    const releases = [];
    try {
      for (const hash of new Set(hashesOf(entry))) {
        releases.push(await takeLock(lockName("use", hash), "shared"));
      }
      session.store = await roomFor(entry);
      if (session.store) await smallFiles(entry);
    } catch (e) {
      session.store = false;
      report({ event: "not-stored", model: entry.name, file: "", detail: String(e) });
    }
    try {
      return await run();
    } finally {
      for (const release of releases) release();
      clearTimeout(checkTimer);
      checkTimer = setTimeout(idle, CHECK_AFTER_MS);
    }
  }

  // Hash the stored files loads have read (off their path: see the top of this file).
  function idle() {
    clearTimeout(checkTimer);
    if (!checking && unchecked.size) {
      checking = checkStored().catch(() => {}).finally(() => { checking = null; });
    }
    return checking;
  }

  async function checkStored() {
    const { blobs, parts } = await folders();
    for (const [hash, f] of [...unchecked]) {
      unchecked.delete(hash);
      // Not while another tab writes or loads it (a part becomes a blob here): next visit.
      const release = await takeForDelete(hash);
      if (!release) continue;
      try {
        const blob = await fileOf(blobs, hash);
        const file = blob || await fileOf(parts, hash);
        if (!file || file.size !== f.size) continue;
        const got = await hashBlob(hash, file);
        checked.add(hash);
        if (got === hash && blob) continue;
        if (got === hash) {
          await (await parts.getFileHandle(hash)).move(blobs, hash);
          await remove(parts, hash + ".state");
          report({ event: "stored", model: f.model, file: f.file, detail: "" });
        } else if (downloaded.has(hash)) {
          // Bytes the server sent this visit: the same would come again.
          await deleteFile(hash);
          report({ event: "not-stored", model: f.model, file: f.file,
            detail: `the server sent bytes with hash ${got}, ${hash} expected` });
        } else {
          // Damaged since it was stored: the model loaded from it loads again, from the network.
          await deleteFile(hash);
          report({ event: "damaged", model: f.model, file: f.file,
            detail: `its hash is ${got}, ${hash} expected` });
        }
      } finally {
        release();
      }
    }
  }

  // The folder's small files (config, tokenizer, ...), stored first: so that the model is
  // whole on this device once it loads, even with a file its loader does not read. The weights
  // are stored as the loader streams them.
  async function smallFiles(entry) {
    for (const file of Object.keys(entry.files)) {
      if (file.endsWith(".safetensors")) continue;
      try {
        const resp = await storeFetch(new URL(file, entry.url).href);
        const reader = resp.body ? resp.body.getReader() : null;
        while (reader && !(await reader.read()).done);
      } catch (e) {
        // the network is gone: the loader says what it misses
      }
    }
  }

  // Whether the model's missing bytes fit: navigator.storage.estimate(), before any download.
  async function roomFor(entry) {
    const { blobs, parts } = await folders();
    let need = 0;
    for (const f of Object.values(entry.files)) {
      if (await fileOf(blobs, f.hash)) continue;
      const part = await fileOf(parts, f.hash);
      need += f.size - (part ? Math.min(part.size, f.size) : 0);
    }
    if (need === 0) return true;
    let free = Infinity;
    try {
      const { usage, quota } = await navigator.storage.estimate();
      free = Math.max(0, quota - usage);
    } catch (e) {
      return true; // no estimate: try, and stop storing if a write fails
    }
    if (need <= free) return true;
    report({ event: "no-room", model: entry.name, file: "", need, free, bytes: entry.bytes });
    return false;
  }

  // The stored copy of f: its blob, or a part whose download has ended (its hash not checked
  // yet), whichever has f's size; null when there is none. It is hashed after the load (idle).
  async function storedCopy(f) {
    const { blobs, parts } = await folders();
    const blob = await fileOf(blobs, f.hash);
    if (blob && blob.size !== f.size) {
      const release = await takeLock(lockName("write", f.hash), "exclusive", true);
      if (release) {
        try {
          await remove(blobs, f.hash);
        } finally {
          release();
        }
      }
      report({ event: "damaged", model: f.model, file: f.file,
        detail: `${blob.size} bytes stored, ${f.size} expected` });
    }
    const file = blob && blob.size === f.size ? blob : await fileOf(parts, f.hash);
    if (!file || file.size !== f.size) return null;
    if (!checked.has(f.hash)) unchecked.set(f.hash, f);
    return file;
  }

  async function storeFetch(input, init) {
    if (!available) return realFetch(input, init);
    const request = input instanceof Request ? input : null;
    const url = new URL(request ? request.url : String(input), globalThis.location.href);
    url.hash = "";
    url.search = "";
    const method = ((init && init.method) || (request && request.method) || "GET").toUpperCase();
    const hit = files.get(url.href);
    if (!hit || (method !== "GET" && method !== "HEAD")) {
      // A file its folder does not have: 404, without asking the network.
      const cut = url.href.lastIndexOf("/") + 1;
      const listing = listings.get(url.href.slice(0, cut));
      if (listing && !listing.has(nameIn(url.href.slice(cut)))
          && (method === "GET" || method === "HEAD")) {
        return new Response(null, { status: 404, statusText: "Not Found" });
      }
      return realFetch(input, init);
    }
    const { f, session } = hit;
    const headers = new Headers((init && init.headers) || (request && request.headers) || {});
    const range = headers.get("Range");
    if (method === "HEAD") {
      return new Response(null, { status: 200, headers: {
        "Content-Length": String(f.size), "Accept-Ranges": "bytes" } });
    }
    let copy = null;
    try {
      copy = await storedCopy(f);
    } catch (e) {
      copy = null; // the store is not usable right now: the network, as without it
    }
    if (copy) return fromBlob(copy, range);
    // Not stored: small reads (a header) go to the network as they are; the file's stream
    // (the whole file, or from an offset on) is stored as the loader reads it.
    const start = range === null ? 0 : openRangeStart(range);
    if (start === null || !session.store) return realFetch(input, init);
    return download(f, session, start, range);
  }

  // The stream of f from `start` on, written to the store as it comes. Another tab writing it:
  // wait until it is done, then read the blob (or go on with its part, if it stopped).
  async function download(f, session, start, range) {
    let said = false;
    for (;;) {
      const mine = writing.get(f.hash);
      const release = mine ? null
        : await takeLock(lockName("write", f.hash), "exclusive", true);
      if (release) return writeThrough(f, session, start, range, release);
      if (!mine && !said) {
        said = true;
        report({ event: "waiting", model: f.model, file: f.file, detail: "" });
      }
      await (mine || navigator.locks.request(lockName("write", f.hash), { mode: "shared" },
        () => {}));
      const copy = await storedCopy(f);
      if (copy) return fromBlob(copy, range);
    }
  }

  async function writeThrough(f, session, start, range, release) {
    let done;
    writing.set(f.hash, new Promise((resolve) => { done = resolve; }));
    const free = () => {
      writing.delete(f.hash);
      release();
      done();
    };
    let part;
    try {
      part = await Part.open(f);
    } catch (e) {
      free();
      report({ event: "not-stored", model: f.model, file: f.file, detail: String(e) });
      return realFetch(f.url, range === null ? {} : { headers: { Range: range } });
    }
    let resp;
    try {
      resp = await part.fetch(realFetch);
    } catch (e) {
      part.close();
      free();
      throw e; // the network is gone: the loader says so
    }
    if (!resp.ok) {
      part.close();
      free();
      return resp;
    }
    if (part.have > 0) {
      report({ event: "resumed", model: f.model, file: f.file, from: part.have, size: f.size });
    }
    const stream = part.stream(resp, start, {
      whole() {
        downloaded.add(f.hash);
        checked.delete(f.hash);
        unchecked.set(f.hash, f);
      },
      failed(detail) {
        report({ event: "not-stored", model: f.model, file: f.file, detail });
      },
      ended: free,
    });
    const headers = { "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
      "Content-Length": String(f.size - start) };
    if (range === null) return new Response(stream, { status: 200, headers });
    headers["Content-Range"] = `bytes ${start}-${f.size - 1}/${f.size}`;
    return new Response(stream, { status: 206, headers });
  }

  return { fetch: storeFetch, loading: loadingModel, idle };
}

// ------------------------------------------------------------------ a download in progress

/** parts/<hash>: a file being written through a sync access handle, with its resume state. */
class Part {
  static async open(f) {
    const { parts } = await folders();
    const p = new Part(f);
    p.dir = parts;
    p.handle = await (await parts.getFileHandle(f.hash, { create: true })).createSyncAccessHandle();
    try {
      p.stateHandle = await (await parts.getFileHandle(f.hash + ".state", { create: true }))
        .createSyncAccessHandle();
      p.resume();
    } catch (e) {
      p.close();
      throw e;
    }
    return p;
  }

  constructor(f) {
    this.f = f;
    this.have = 0; // bytes of the file in the part
    this.saved = 0; // `have` when the state was last saved
  }

  // Where the part stands: its saved state (what was written after it is cut off), else empty.
  resume() {
    const size = this.handle.getSize();
    let state = null;
    const n = this.stateHandle.getSize();
    if (n > 0 && n < 4096) {
      const bytes = new Uint8Array(n);
      this.stateHandle.read(bytes, { at: 0 });
      try {
        state = JSON.parse(new TextDecoder().decode(bytes));
      } catch (e) {
        state = null;
      }
    }
    if (state && state.hash === this.f.hash && Number.isInteger(state.bytes)
        && state.bytes > 0 && state.bytes <= size && state.bytes <= this.f.size) {
      this.handle.truncate(state.bytes);
      this.have = this.saved = state.bytes;
      return;
    }
    if (size > 0) this.handle.truncate(0);
    this.saveState();
  }

  saveState() {
    const text = JSON.stringify({ hash: this.f.hash, bytes: this.have });
    this.handle.flush(); // the bytes first, then the state that counts them
    this.stateHandle.truncate(0);
    this.stateHandle.write(new TextEncoder().encode(text), { at: 0 });
    this.stateHandle.flush();
    this.saved = this.have;
  }

  /** The network response for the rest of the file (a Range request from `have` on). */
  async fetch(realFetch) {
    for (;;) {
      const headers = this.have > 0 ? { Range: `bytes=${this.have}-` } : {};
      const resp = await realFetch(this.f.url, { cache: "no-store", headers });
      if (this.have === 0) return resp;
      const from = Number((/^bytes (\d+)-/.exec(resp.headers.get("Content-Range") || "") || [])[1]);
      if (resp.status === 206 && from === this.have) return resp;
      if (resp.body) await resp.body.cancel();
      if (!(resp.ok || resp.status === 416)) return resp;
      // The server ignored the Range, or the part is longer than its file: start again.
      this.handle.truncate(0);
      this.have = 0;
    }
  }

  /** A byte stream of bytes [start, size) for the loader: what the part has, then the network
   * body, each piece written as it passes, and nothing past the file's declared size (a body
   * that goes on is cut there, not stored, and not read on). `on`: whole() (every byte is in
   * the part: it is hashed later), failed(detail), ended(). */
  stream(resp, start, on) {
    const part = this;
    const f = this.f;
    const net = byobReader(resp.body);
    let pos = start; // the next byte the loader gets
    let storing = true;
    let finished = false;
    let atEnd = false; // the declared size is reached: the loader gets no more

    const stopStoring = (detail) => {
      if (!storing) return;
      storing = false;
      part.close();
      part.discard();
      on.failed(detail);
    };
    const end = (keep) => {
      if (finished) return;
      finished = true;
      if (storing) {
        try {
          if (keep && part.have > part.saved) part.saveState();
        } catch (e) {
          // the state stays where it was saved last
        }
        part.close();
      }
      on.ended();
    };
    const complete = () => {
      if (!storing) return;
      if (part.have !== f.size) {
        stopStoring(`the server sent ${part.have} bytes, ${f.size} expected`);
        return;
      }
      storing = false;
      try {
        part.saveState();
      } catch (e) {
        // a whole part is known by its size
      }
      part.close();
      on.whole();
    };
    const close = (controller, request, memory) => {
      controller.close();
      request.respondWithNewView(memory.subarray(0, 0));
    };

    return new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: 1 << 20,
      async pull(controller) {
        const request = controller.byobRequest;
        const view = new Uint8Array(request.view.buffer, request.view.byteOffset,
          request.view.byteLength);
        if (atEnd) {
          close(controller, request, view);
          return;
        }
        try {
          if (pos < part.have && storing) { // bytes the part has from before
            const n = part.handle.read(view.subarray(0, Math.min(view.length, part.have - pos)),
              { at: pos });
            pos += n;
            request.respond(n);
            return;
          }
          const length = view.length;
          let memory = view; // the loader's memory (a BYOB read moves it to a new buffer)
          for (;;) {
            const got = await net.read(memory);
            memory = new Uint8Array(got.value.buffer, got.value.byteOffset, length);
            if (got.done) {
              complete(); // (a file shorter than it should be: not stored)
              end(false);
              close(controller, request, memory);
              return;
            }
            const at = part.have;
            const value = got.value.subarray(0, Math.max(0, f.size - at));
            if (storing) {
              try {
                part.handle.write(value, { at });
              } catch (e) { // QuotaExceededError, most likely: the loader goes on all the same
                stopStoring(`${e.name === "QuotaExceededError" ? "no room left" : e.name}: ` +
                  `${e.message}`);
              }
            }
            part.have += value.length;
            if (got.value.length > value.length) {
              stopStoring(`the server sent more than the ${f.size} bytes it declared`);
            }
            if (part.have >= f.size) { // the last byte: the loader may not read on to the end
              atEnd = true;
              complete();
              end(false);
              net.cancel().catch(() => {});
            } else if (storing && part.have - part.saved >= STATE_EVERY) {
              part.saveState();
            }
            // Bytes before `start` (a stream from an offset on) are stored, not handed on:
            // read on into the same memory until there is something to hand on.
            const skip = Math.max(0, pos - at);
            if (skip < value.length) {
              if (skip) memory.copyWithin(0, skip, value.length);
              pos += value.length - skip;
              request.respondWithNewView(memory.subarray(0, value.length - skip));
              return;
            }
            if (atEnd) {
              close(controller, request, memory);
              return;
            }
          }
        } catch (e) {
          end(true); // resumable from where it stopped
          await net.cancel().catch(() => {});
          throw e;
        }
      },
      async cancel(reason) {
        end(true);
        await net.cancel(reason).catch(() => {});
      },
    }, { highWaterMark: 0 });
  }

  close() {
    for (const h of [this.handle, this.stateHandle]) {
      try {
        if (h) h.close();
      } catch (e) {
        // closed already
      }
    }
    this.handle = this.stateHandle = null;
  }

  discard() {
    remove(this.dir, this.f.hash);
    remove(this.dir, this.f.hash + ".state");
  }
}

/** A reader that fills the memory it is given (BYOB) where the body is a byte stream, else
 * copies the body's pieces into it. read(view) resolves to {done, value}: value views the same
 * memory (its ArrayBuffer moved to a new one by a BYOB read). */
function byobReader(body) {
  try {
    const reader = body.getReader({ mode: "byob" });
    return { read: (view) => reader.read(view), cancel: (reason) => reader.cancel(reason) };
  } catch (e) {
    const reader = body.getReader(); // not a byte stream (TypeError)
    let left = null;
    return {
      async read(view) {
        if (!left || left.length === 0) {
          const { done, value } = await reader.read();
          if (done) return { done: true, value: view.subarray(0, 0) };
          left = value;
        }
        const n = Math.min(view.length, left.length);
        view.set(left.subarray(0, n));
        left = left.subarray(n);
        return { done: false, value: view.subarray(0, n) };
      },
      cancel: (reason) => reader.cancel(reason),
    };
  }
}

// ------------------------------------------------------------------ responses from a blob

/** A response to GET (with or without one Range) from a stored file. */
function fromBlob(blob, range) {
  const size = blob.size;
  const headers = { "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes" };
  const span = range === null ? null : parseRange(range, size);
  if (span === "unsatisfiable") {
    return new Response(null, { status: 416, headers: {
      "Content-Range": `bytes */${size}`, "Content-Length": "0" } });
  }
  if (span === null) {
    headers["Content-Length"] = String(size);
    return new Response(blob, { status: 200, headers });
  }
  const [a, b] = span;
  headers["Content-Length"] = String(b - a);
  headers["Content-Range"] = `bytes ${a}-${b - 1}/${size}`;
  return new Response(blob.slice(a, b), { status: 206, headers });
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
