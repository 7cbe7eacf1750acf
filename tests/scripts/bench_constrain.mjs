// bench_constrain.py in Pyodide (the page's Python) under Node: the per-token cost of
// constrained decoding as the page pays it, without a browser (Chromium runs the same
// WebAssembly engine, V8).
//
//   node tests/scripts/bench_constrain.mjs [gpt2] [qwen3] [smollm2=FILE.gguf] [--outputs N]
//
// Pyodide is web/node_modules/pyodide (npm, as the page's); the repository's py/ and tests/
// are mounted read-only-in-spirit through NODEFS, and a GGUF file's folder beside them.

import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const { loadPyodide } = await import(path.join(ROOT, "web", "node_modules", "pyodide", "pyodide.mjs"));
const pyodide = await loadPyodide();
const mount = (host, at) => {
  pyodide.FS.mkdirTree(at);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: host }, at);
};
mount(ROOT, "/repo");
const args = process.argv.slice(2).map((a) => {
  const [name, file] = a.split("=");
  if (!file) return a;
  mount(path.dirname(path.resolve(file)), "/model");
  return `${name}=/model/${path.basename(file)}`;
});
pyodide.FS.chdir("/repo");
pyodide.globals.set("ARGS", pyodide.toPy(args));
await pyodide.runPythonAsync(`
import sys
sys.path[:0] = ["/repo/py", "/repo/tests/scripts"]
print(sys.version.split()[0], "(Pyodide)")
import bench_constrain
await bench_constrain.main(list(ARGS))
`);
