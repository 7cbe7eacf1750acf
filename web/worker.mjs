// The page's Python runs here, in a module Web Worker, so the page never freezes.
//
// Boot: Pyodide from ./pyodide/ (copied from the npm package by build.py), restored from the
// memory snapshot build.py made of it (build.json's snapshot: Python started, the package
// imported) where there is one, while this project's own wheel and worker.py download; then
// the wheel is unpacked into site-packages (pure Python, no dependencies: no installer
// needed); all from this site (build.json lists the files and their sizes). worker.py then does the work: load a model, run the editor's
// scripts (Generate runs one too).
//
// Messages: web/protocol.mjs lists them (TO_WORKER in, FROM_WORKER out) with their fields;
// every one this worker and worker.py post goes through its post(). worker.py posts through
// self.webgptPost, set here.
//
// Stop: the page sets control[0] = 1, which page.stop_requested() reads in Python. Shared
// with the page, the page writes it directly (and, if the script goes on, 2 = SIGINT into
// Pyodide's interrupt buffer: a KeyboardInterrupt even in a loop that never awaits); else the
// "stop" message sets it, once Python awaits and the worker can take messages. "cancel" ends
// a script that did not stop by itself, where it awaits; the page sends it a second after
// Stop (and, shared, SIGINT soon after, for a script that never awaits).

import { loadPyodide } from "./pyodide/pyodide.mjs";
import { FROM_WORKER, post } from "./protocol.mjs";
import { modelStore } from "./store.js";

// A message to the page (protocol.mjs's FROM_WORKER).
const send = (type, fields) => post(self, FROM_WORKER, type, fields);
// worker.py posts through this; the end of a run is also when the model store hashes the files
// the load read (store.js: off the path to the first token).
self.webgptPost = (type, fields) => {
  post(self, FROM_WORKER, type, fields);
  if (type === "run-done") models.idle();
};

// Model files are read through the model store (store.js, OPFS): written on this device as they
// first stream in, read from there afterwards (and hashed once the page is idle), and so without
// the server.
const models = modelStore(globalThis.fetch, (e) => send("cache", e));
globalThis.fetch = models.fetch;

const here = (path) => new URL(path, import.meta.url).href;
// Pyodide under Node (tests/dawn_harness.mjs runs this worker there) takes a path, not a
// file: URL; in a browser the URL is http(s) and stays as it is.
const localPath = (url) => (url.startsWith("file://") ? decodeURIComponent(new URL(url).pathname) : url);
let pyodide = null; // once Pyodide has started
let page = null; // the Python module worker.py, once booted
const queue = []; // messages that arrive while booting
let control = new Int32Array(1); // [0]: 1 once Stop was pressed during the current run
let shared = false; // control is shared with the page
let interrupt = null; // Pyodide's interrupt buffer, shared with the page
self.webgptControl = control; // read by worker.py's page.stop_requested()

// Count the bytes of the boot downloads as they stream in, for the progress bar.
// fetch is wrapped only while Pyodide boots; each response is passed on unchanged.
function countingFetch(realFetch, total) {
  let done = 0;
  return async (input, init) => {
    const resp = await realFetch(input, init);
    if (!resp.ok || !resp.body) return resp;
    const counter = new TransformStream({
      transform(chunk, controller) {
        done += chunk.byteLength;
        send("progress", { stage: "pyodide", done, total });
        controller.enqueue(chunk);
      },
    });
    return new Response(resp.body.pipeThrough(counter), {
      status: resp.status, statusText: resp.statusText, headers: resp.headers,
    });
  };
}

async function boot() {
  const t0 = performance.now();
  const since = () => (performance.now() - t0) / 1000;
  const build = await (await fetch(here("build.json"))).json();
  const wheelPath = `wheels/${build.webgpt_wheel}`;
  // What boot downloads: Pyodide's files and its saved start (the .mjs files come in through
  // import(), not fetch: they are not counted) and the project's wheel.
  const total = Object.entries(build.boot_files)
    .filter(([path]) => (path.startsWith("pyodide/") ? !path.endsWith(".mjs") : path === wheelPath))
    .reduce((sum, [, size]) => sum + size, 0);
  send("progress", { stage: "pyodide", done: 0, total });

  const realFetch = globalThis.fetch;
  const counted = countingFetch(realFetch, total);
  globalThis.fetch = counted;
  const parts = {}; // seconds of each step of the boot, for the page's stats
  const body = (path, how) => async (resp) => {
    if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
    return how(resp);
  };
  try {
    // The wheel and worker.py come in while Python starts.
    const wheel = counted(here(wheelPath)).then(body(wheelPath,
      async (r) => new Uint8Array(await r.arrayBuffer())));
    const code = realFetch(here("worker.py")).then(body("worker.py", (r) => r.text()));
    wheel.catch(() => {}); // (awaited below; a failure is raised there)
    code.catch(() => {});
    const options = {
      indexURL: localPath(here("pyodide/")),
      stdout: (line) => console.log(line),
      stderr: (line) => console.warn(line),
    };
    // Python's start as build.py saved it (web/snapshot/make.mjs): memory restored, the
    // package already imported. Should it fail, Python starts afresh.
    if (build.snapshot) {
      const snapshot = counted(here(build.snapshot)).then(body(build.snapshot,
        (r) => new Response(r.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer()));
      try {
        pyodide = await loadPyodide({ ...options, _loadSnapshot: snapshot });
        parts.snapshot = true;
      } catch (e) {
        console.warn(`Python's saved start could not be used (${e && e.message ? e.message : e}); ` +
          "starting it afresh.");
      }
    }
    if (pyodide === null) pyodide = await loadPyodide(options);
    if (interrupt) pyodide.setInterruptBuffer(interrupt);
    parts.runtime_s = since();
    // The project's wheel is pure Python and needs nothing else: it is unpacked into
    // site-packages as it is (no resolver: micropip and its imports would take a second);
    // after a snapshot too, which restores the imported modules but not their files.
    const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
    pyodide.unpackArchive(await wheel, "wheel", { extractDir: sitePackages });
    // The import system's listings of those folders are stale (importlib.invalidate_caches()
    // would also import importlib.metadata: a second here).
    pyodide.runPython("import sys\nfor f in list(sys.path_importer_cache.values()):\n" +
      "    if type(f).__name__ == 'FileFinder': f.invalidate_caches()");
    pyodide.FS.writeFile("/home/pyodide/webgpt_page.py", await code);
    parts.install_s = since() - parts.runtime_s;
  } finally {
    globalThis.fetch = realFetch;
  }
  page = pyodide.pyimport("webgpt_page");
  parts.import_s = since() - parts.runtime_s - parts.install_s;
  self.pyodide = pyodide; // for the browser's console (and the tests): the worker's Python
  const python = pyodide.runPython("import sys; sys.version.split()[0]");
  send("booted", { python, boot_s: since(), parts });
}

function handle(m) {
  switch (m.type) {
    case "load":
      return models.loading(m.url, m.entry,
        () => page.load_model(m.name, m.url, m.quantize === "q4" ? "q4" : undefined));
    case "run":
      if (!shared) control[0] = 0;
      return Promise.resolve(page.run(m.code, m.filename, m.params, m.files)).catch((err) => {
        // Only if worker.py's own code was interrupted: the run ends all the same.
        send("console", { stream: "err", text: `${err && err.message ? err.message : err}\n` });
        send("run-done", { status: "stopped", seconds: 0, error: null, stats: null, reload: false,
          lost: false, bad_params: false });
      });
    case "tokenize":
      return page.tokenize(m.text);
    case "check":
      return page.check_params(m.params);
    case "selftest":
      return page.gpu_selftest();
    case "api-docs":
      return page.api_docs();
  }
}

self.onmessage = (e) => {
  const m = e.data;
  if (m.type === "init") {
    if (m.control) {
      control = self.webgptControl = new Int32Array(m.control);
      shared = true;
    }
    if (m.interrupt) {
      interrupt = new Int32Array(m.interrupt);
      if (pyodide !== null) pyodide.setInterruptBuffer(interrupt);
    }
  } else if (m.type === "stop") {
    control[0] = 1;
  } else if (m.type === "confirmed") {
    // The person answered page.confirm: handled at once, the script awaits it.
    if (page !== null) page.confirmed(m.id, m.answer);
  } else if (m.type === "cancel") {
    // Python is idle (else this message would wait): no interrupt is needed any more.
    if (interrupt) Atomics.store(interrupt, 0, 0);
    if (page !== null) page.cancel();
  } else if (page === null) {
    queue.push(m);
  } else {
    handle(m);
  }
};

boot().then(
  () => { for (const m of queue.splice(0)) handle(m); },
  (err) => send("error", {
    stage: "boot",
    message: `Python (Pyodide) failed to start: ${err && err.message ? err.message : err}`,
    hint: "Reload the page. If it fails again, the site is incomplete: run python build.py " +
      "and serve the dist/ folder it makes.",
  }),
);
