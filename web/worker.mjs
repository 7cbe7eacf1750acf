// The page's Python runs here, in a module Web Worker, so the page never freezes.
//
// Boot: Pyodide from ./pyodide/ (copied from the npm package by build.py), then the pure
// wheels packaging and micropip, then micropip installs this project's own wheel; all
// from this site (build.json lists the files and their sizes). worker.py then does the
// work: load a model, generate, stop.
//
// Messages in:  {type: "load", name, url} | {type: "generate", params} | {type: "stop"}
//               | {type: "selftest"}
// Messages out: {type: "progress", stage, done, total} | {type: "booted", python, boot_s}
//               | the ones worker.py posts (loaded, piece, done, selftest, error).

import { loadPyodide } from "./pyodide/pyodide.mjs";

const here = (path) => new URL(path, import.meta.url).href;
let page = null; // the Python module worker.py, once booted
const queue = []; // messages that arrive while booting

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
        postMessage({ type: "progress", stage: "pyodide", done, total });
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
  const build = await (await fetch(here("build.json"))).json();
  // The .mjs files come in through import(), not fetch: they are not counted.
  const total = Object.entries(build.boot_files)
    .filter(([path]) => !path.endsWith(".mjs"))
    .reduce((sum, [, size]) => sum + size, 0);
  postMessage({ type: "progress", stage: "pyodide", done: 0, total });

  const realFetch = globalThis.fetch;
  globalThis.fetch = countingFetch(realFetch, total);
  let pyodide;
  try {
    pyodide = await loadPyodide({
      indexURL: here("pyodide/"),
      stdout: (line) => console.log(line),
      stderr: (line) => console.warn(line),
    });
    const quiet = { messageCallback: () => {}, errorCallback: (m) => console.warn(m) };
    await pyodide.loadPackage(build.micropip_wheels.map((w) => here(`wheels/${w}`)), quiet);
    const micropip = pyodide.pyimport("micropip");
    await micropip.install(here(`wheels/${build.webgpt_wheel}`));
    micropip.destroy();
  } finally {
    globalThis.fetch = realFetch;
  }

  const code = await (await fetch(here("worker.py"))).text();
  pyodide.FS.writeFile("/home/pyodide/webgpt_page.py", code);
  page = pyodide.pyimport("webgpt_page");
  self.pyodide = pyodide; // for the browser's console (and the tests): the worker's Python
  const python = pyodide.runPython("import sys; sys.version.split()[0]");
  postMessage({ type: "booted", python, boot_s: (performance.now() - t0) / 1000 });
}

function handle(m) {
  switch (m.type) {
    case "load":
      return page.load_model(m.name, m.url);
    case "generate":
      return page.generate(m.params.prompt, m.params.max_new_tokens, m.params.temperature,
        m.params.top_k, m.params.top_p, m.params.seed);
    case "stop":
      return page.stop();
    case "selftest":
      return page.gpu_selftest();
  }
}

self.onmessage = (e) => {
  if (page === null) queue.push(e.data);
  else handle(e.data);
};

boot().then(
  () => { for (const m of queue.splice(0)) handle(m); },
  (err) => postMessage({
    type: "error", stage: "boot",
    message: `Python (Pyodide) failed to start: ${err && err.message ? err.message : err}`,
    hint: "Reload the page. If it fails again, the site is incomplete: run python build.py " +
      "and serve the dist/ folder it makes.",
  }),
);
