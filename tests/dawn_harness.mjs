// The page's own Python path outside a browser: Pyodide under Node, WebGPU from Dawn (the
// implementation inside Chrome) through dawn.node, the npm package `webgpu`.
//
//   node tests/dawn_harness.mjs JOB.json
//
// It runs the built site's web worker, dist/worker.mjs, as the page does: the same Pyodide,
// the same wheel (installed the same way), the same worker.py entry points and so the same
// gpu/browser.py backend. Only the page's main thread (main.js) is replaced, by the steps of
// the job; the worker's world is given what a browser's Web Worker has:
//   - navigator.gpu and the GPU* globals from dawn.node,
//   - self, postMessage and onmessage (the messages main.js would send and receive),
//   - fetch for file: URLs of the site (GET with one Range, HEAD; bodies are byte streams, so
//     BYOB readers work as on a server's response); other URLs go to Node's fetch.
// There is no Cache API under Node, so the model cache (modelcache.js) passes every request
// through, as on a page that is not a secure context.
//
// JOB.json: {"site": "DIST folder", "steps": [STEP, ...], "timeout_s": N}, each STEP one of
//   {"load": "MODEL NAME"}                  the page's load message for models/NAME/; waits for
//                                           "loaded" or "error"
//   {"run": "FILE", "params": {...}}        the page's run message with the site's code/FILE
//   {"code": "PYTHON", "params": {...}, "filename": NAME}
//                                           a run of this code (as the editor's Run); both wait
//                                           for "run-done"
//   {"selftest": true}                      waits for "selftest"
// Every message the worker posts is printed as one JSON line {"t": seconds, "msg": {...}}
// (progress messages are left out); the first line is {"adapter": {...}}. Exit status 0 when
// every step ended without an "error" message, 1 otherwise, 2 when the harness failed.
//
// The GPU: Dawn picks its Vulkan driver from VK_ICD_FILENAMES. On a machine without a GPU
// that is SwiftShader's (/usr/lib/chromium/vk_swiftshader_icd.json, from Debian's chromium);
// Dawn needs XDG_RUNTIME_DIR set. `webgpu` is resolved from web/node_modules, or from the
// folder WEBGPU_MODULE names (a copy of the package, e.g. on a machine without npm).

import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const t0 = performance.now();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const site = path.resolve(job.site);
const siteURL = pathToFileURL(site + path.sep).href;

// ---------------------------------------------------------------- WebGPU from Dawn

const webgpuDir = process.env.WEBGPU_MODULE || path.join(HERE, "..", "web", "node_modules", "webgpu");
const { create, globals } = await import(pathToFileURL(path.join(webgpuDir, "index.js")).href);
Object.assign(globalThis, globals);
const gpu = create([]);
// Pyodide reads navigator.userAgent as it starts (and fails without one).
const userAgent = globalThis.navigator?.userAgent || `Node.js/${process.version}`;
Object.defineProperty(globalThis, "navigator", { value: { gpu, userAgent },
  configurable: true, writable: true });
{
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  const info = adapter ? adapter.info : null;
  out({ adapter: info ? { vendor: info.vendor, architecture: info.architecture,
    device: info.device, description: info.description } : null });
  if (!adapter) process.exit(2);
}

// ---------------------------------------------------------------- fetch for file: URLs

const MIME = { ".json": "application/json", ".txt": "text/plain", ".py": "text/x-python",
  ".wgsl": "text/plain", ".whl": "application/zip", ".safetensors": "application/octet-stream" };

function fileBody(handle, start, end) {
  let pos = start;
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: 1 << 20,
    async pull(controller) {
      const view = controller.byobRequest.view;
      const want = Math.min(view.byteLength, end - pos);
      const { bytesRead } = want > 0 ? await handle.read(view, 0, want, pos) : { bytesRead: 0 };
      if (bytesRead === 0) {
        await handle.close();
        controller.close();
        controller.byobRequest.respond(0);
        return;
      }
      pos += bytesRead;
      controller.byobRequest.respond(bytesRead);
    },
    async cancel() {
      await handle.close();
    },
  });
}

async function fileFetch(url, init = {}) {
  const method = (init.method || "GET").toUpperCase();
  const file = fileURLToPath(url);
  let st;
  try {
    st = await fsp.stat(file);
  } catch (e) {
    return new Response("not found", { status: 404, statusText: "Not Found" });
  }
  if (!st.isFile()) return new Response("not found", { status: 404, statusText: "Not Found" });
  const size = st.size;
  const headers = { "Content-Type": MIME[path.extname(file)] || "application/octet-stream",
    "Accept-Ranges": "bytes" };
  const range = new Headers(init.headers || {}).get("Range");
  let start = 0, end = size, status = 200;
  const m = range && /^bytes=(\d+)-(\d*)$/.exec(range.trim());
  if (m) {
    start = Number(m[1]);
    end = m[2] === "" ? size : Math.min(size, Number(m[2]) + 1);
    if (start >= size) {
      return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${size}` } });
    }
    status = 206;
    headers["Content-Range"] = `bytes ${start}-${end - 1}/${size}`;
  }
  headers["Content-Length"] = String(end - start);
  if (method === "HEAD") return new Response(null, { status, headers });
  const handle = await fsp.open(file, "r");
  return new Response(fileBody(handle, start, end), { status, headers });
}

const nodeFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  const url = input instanceof Request ? input.url : String(input);
  if (url.startsWith("file:")) {
    return fileFetch(url, input instanceof Request
      ? { method: input.method, headers: input.headers, ...init } : init);
  }
  return nodeFetch(input, init);
};

// ---------------------------------------------------------------- the worker's world

let listener = null; // resolves the step waiting for a message type
let failed = false;
globalThis.self = globalThis;
globalThis.postMessage = (msg) => {
  if (msg.type === "progress") return;
  out({ t: +((performance.now() - t0) / 1000).toFixed(3), msg });
  if (msg.type === "error") failed = true;
  if (listener) listener(msg);
};
const workerReady = new Promise((resolve) => {
  listener = (msg) => {
    if (msg.type === "booted" || (msg.type === "error" && msg.stage === "boot")) resolve(msg);
  };
});
const timer = setTimeout(() => {
  out({ harness_error: `timed out after ${job.timeout_s || 600} s` });
  process.exit(2);
}, (job.timeout_s || 600) * 1000);

await import(new URL("worker.mjs", siteURL).href);
const booted = await workerReady;
if (booted.type !== "booted") process.exit(1);

function send(msg, until) {
  return new Promise((resolve) => {
    listener = (m) => {
      if (until.includes(m.type)) {
        listener = null;
        resolve(m);
      }
    };
    globalThis.onmessage({ data: msg });
  });
}

const index = JSON.parse(fs.readFileSync(path.join(site, "models", "index.json"), "utf8"));
for (const step of job.steps) {
  if (step.load !== undefined) {
    const entry = index.models.find((m) => m.name === step.load) || null;
    const url = new URL(`models/${encodeURIComponent(step.load)}/`, siteURL).href;
    await send({ type: "load", name: step.load, url, entry }, ["loaded", "error"]);
  } else if (step.run !== undefined || step.code !== undefined) {
    const code = step.code !== undefined ? step.code
      : fs.readFileSync(path.join(site, "code", step.run), "utf8");
    await send({ type: "run", code, filename: step.run || step.filename || "<harness>",
      params: step.params || {}, files: step.files || {} }, ["run-done"]);
  } else if (step.selftest) {
    await send({ type: "selftest" }, ["selftest"]);
  }
}
clearTimeout(timer);
out({ done: true, failed, seconds: +((performance.now() - t0) / 1000).toFixed(3) });
process.exit(failed ? 1 : 0);
