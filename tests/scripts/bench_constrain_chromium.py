"""bench_constrain.py in Pyodide in headless Chromium: the per-token cost of constrained decoding
as the page's Python pays it (the issue's budget: 20 ms a token in Pyodide in Chromium).

    .venv/bin/python tests/scripts/bench_constrain_chromium.py [gpt2] [qwen3] [smollm2=FILE.gguf]

The repository is served as it is (Pyodide from web/node_modules, the package from py/); a page
loads Pyodide on its main thread (the same WebAssembly engine as the page's worker), copies
py/webgpt, the bench and the vocabularies' files into its file system and runs the bench, whose
lines come back through the browser's console. Not a test: timings are reported.
"""

import http.server
import json
import os
import sys
import threading

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import { loadPyodide } from "/web/node_modules/pyodide/pyodide.mjs";
const py = await loadPyodide({ indexURL: "/web/node_modules/pyodide/" });
py.setStdout({ batched: (line) => console.log(line) });
for (const [path, at] of __FILES__) {
  const data = new Uint8Array(await (await fetch(path)).arrayBuffer());
  py.FS.mkdirTree(at.slice(0, at.lastIndexOf("/")));
  py.FS.writeFile(at, data);
}
py.globals.set("ARGS", py.toPy(__ARGS__));
await py.runPythonAsync(`
import sys
sys.path[:0] = ["/repo/py", "/repo/tests/scripts"]
import os; os.chdir("/repo")
print(sys.version.split()[0], "(Pyodide in Chromium)")
import bench_constrain
await bench_constrain.main(list(ARGS))
`);
console.log("BENCH DONE");
</script>"""


def files(args):
    """[(URL path, path in Pyodide's file system)] of what the bench reads, and its arguments
    with the GGUF file's path there."""
    out, names = [], []
    for folder, _, found in os.walk(os.path.join(ROOT, "py", "webgpt")):
        if "tools" in os.path.relpath(folder, ROOT).split(os.sep):
            continue
        for f in found:
            if not f.endswith(".pyc"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)
                out.append(("/" + rel, "/repo/" + rel))
    for rel in ("tests/scripts/bench_constrain.py", "tests/fixtures/tokenizers/qwen3.tar.xz"):
        out.append(("/" + rel, "/repo/" + rel))
    for a in args:
        name, _, path = a.partition("=")
        if path:
            out.append(("/model/" + os.path.basename(path), "/model/" + os.path.basename(path)))
            a = f"{name}=/model/{os.path.basename(path)}"
        names.append(a)
    return out, names


def main(argv):
    from playwright.sync_api import sync_playwright

    args = argv or ["gpt2", "qwen3"]
    listed, names = files(args)
    models = {os.path.basename(p): os.path.abspath(p) for a in args
              for p in [a.partition("=")[2]] if p}
    page = PAGE.replace("__FILES__", json.dumps(listed)).replace("__ARGS__", json.dumps(names))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=ROOT, **kw)

        def translate_path(self, path):
            if path.startswith("/model/"):
                return models[os.path.basename(path)]
            return super().translate_path(path)

        def do_GET(self):
            if self.path == "/bench.html":
                body = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                super().do_GET()

        def log_message(self, *a):
            pass

    Handler.extensions_map = {**Handler.extensions_map, ".mjs": "text/javascript",
                              ".wasm": "application/wasm"}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    done = threading.Event()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        tab = browser.new_page()

        def line(msg):
            print(msg.text, flush=True)
            if msg.text == "BENCH DONE":
                done.set()
        tab.on("console", line)
        tab.on("pageerror", lambda e: (print("page error:", e), done.set()))
        tab.goto(f"http://127.0.0.1:{server.server_address[1]}/bench.html")
        while not done.is_set():
            tab.wait_for_timeout(500)
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
