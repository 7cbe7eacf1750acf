"""The web page as build.py builds and serves it, driven in Chromium (WebGPU on SwiftShader).

Every page load blocks requests that leave the page's origin and records them, and records
console errors; a normal run must have neither. Fixtures are in conftest.py.
"""

import ast
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse

import pytest

from conftest import IN_CI, PAGE_TIMEOUT_MS as TIMEOUT_MS, ROOT
SHIPPED = "shakespeare-char"
SCREENSHOT = os.path.join(ROOT, "web", "screenshot.png")


@pytest.fixture
def run(pages):
    """run(**options): a new page (conftest's PageDriver), closed after the test."""
    return pages


def shipped_models(site):
    with open(os.path.join(site, "models", "index.json"), encoding="utf-8") as f:
        return {m["name"] for m in json.load(f)["models"]}


def cli_generate(folder, prompt, n):
    """The continuation the command line prints for greedy decoding (native wgpu)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "py"))
    r = subprocess.run(
        [sys.executable, "-m", "webgpt", "generate", "--model", folder, "--prompt", prompt,
         "-n", str(n), "--temperature", "0"],
        capture_output=True, env=env, timeout=600, cwd=ROOT)
    # Decoded by hand: text mode would turn a generated "\r" into "\n".
    r = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode("utf-8"),
                                    r.stderr.decode("utf-8", "replace"))
    if r.returncode != 0 and "adapter" in r.stderr.lower() and not IN_CI:
        pytest.skip(f"no native WebGPU adapter for the CLI: {r.stderr.strip()}")
    assert r.returncode == 0, f"the CLI failed: {r.stderr}"
    assert r.stdout.endswith("\n")
    return r.stdout[:-1]


# ---------------------------------------------------------------- the page


def test_gpu_backend_runs_a_compute_shader(run):
    """gpu/browser.py on its own: buffers, writes from Python bytes and a JS Uint8Array,
    override constants, one dispatch, read-back (worker.py's gpu_selftest)."""
    r = run().open(selftest=1)
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    out = r.text("#output")
    assert "1000/1000 values right" in out, out
    assert r.console_errors == [] and r.blocked == []


def test_normal_run_stays_on_its_origin_without_console_errors(run):
    """Boot, load and generate with every other origin blocked: nothing was blocked, the page
    fetched Pyodide and exactly our three wheels from its own server, and no console error."""
    r = run().open(model="tiny", prompt="Hello world", max_new_tokens=12, temperature=0.9,
                   seed=3, autorun=1)
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    assert r.blocked == [], f"requests left the page's origin: {r.blocked}"
    assert r.console_errors == [], r.console_errors
    paths = set(r.paths())
    assert "pyodide/pyodide.asm.wasm" in paths and "pyodide/python_stdlib.zip" in paths
    wheels = sorted(p.split("/")[-1].split("-")[0] for p in paths if p.endswith(".whl"))
    assert wheels == ["webgpt"], wheels  # no installer, no numpy, nothing else
    assert "models/tiny/model.safetensors" in paths
    # The interface a user sees: text, stats, progress, the adapter and f16.
    assert r.text("#output") != ""
    stats = r.stats()
    for key in ("python start", "model load", "first token", "ms/token", "tokens/s"):
        assert key in stats, stats
    assert stats["tokens"] == "12"
    for bar in ("pyodide", "weights"):
        value, maximum = r.page.evaluate(
            f"[document.getElementById('progress-{bar}').value, "
            f"document.getElementById('progress-{bar}').max]")
        assert maximum > 1 and value == maximum, (bar, value, maximum)
        assert " / " in r.text(f"#progress-{bar}-text")
    adapter = r.text("#adapter")
    assert "swiftshader" in adapter.lower() and "f32 weights" in adapter, adapter


@pytest.mark.parametrize("model", ["tiny", "tiny-f16", "gpt2-shape", SHIPPED, "tiny-llama",
                                   "tiny-qwen3", "tiny-gemma3", "tiny-phi3"])
def test_greedy_continuation_equals_the_cli(run, site, test_models, model):
    """temperature=0 in the page (Pyodide, SwiftShader) gives the CLI's tokens (wgpu, lavapipe):
    GPT-2 (f32, f16, the 124M shape, the shipped model), a Llama-shaped and a Qwen3-shaped
    model (tokenizer.json, GQA, rotary embedding, RMSNorm, SwiGLU; Qwen3's q/k norms, f16), a
    Gemma 3 (GeGLU, (1 + w) norms around each branch, two rope tables, a sliding window shorter
    than the run, a final soft-cap) and a Phi-3 (fused weights, partial rotary, LongRoPE, a
    window; f16)."""
    if model == SHIPPED:
        if SHIPPED not in shipped_models(site):
            pytest.skip(f"weights/{SHIPPED} is not there yet")
        folder, prompt, n = os.path.join(ROOT, "weights", SHIPPED), "ROMEO:", 40
    else:
        n = 4 if model == "gpt2-shape" else 24  # about 0.3 s a token on SwiftShader
        folder, prompt = test_models[model], "Hello world, this is"
    r = run().open(model=model, prompt=prompt, max_new_tokens=n, temperature=0, autorun=1)
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    page_text = r.text("#output")
    assert page_text == cli_generate(folder, prompt, n)
    assert r.console_errors == [] and r.blocked == []


@pytest.mark.parametrize("model", [SHIPPED + "-q8", SHIPPED + "-q4"])
def test_quantized_greedy_continuation_equals_the_cli(run, site, model):
    """Block-quantized folders (8- and 4-bit integers with f16 scales, as build.py quantize
    writes them) run in the page: gemv.wgsl widens the packed integers (one invocation per row
    on SwiftShader) and the greedy text is the CLI's. The header says how the weights are held."""
    if model not in shipped_models(site):
        pytest.skip(f"weights/{model} is not there yet")
    bits = model[-1]
    folder, prompt, n = os.path.join(ROOT, "weights", model), "ROMEO:", 40
    r = run().open(model=model, prompt=prompt, max_new_tokens=n, temperature=0, autorun=1)
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    page_text = r.text("#output")
    assert page_text == cli_generate(folder, prompt, n)
    adapter = r.text("#adapter")
    assert f"q{bits} weights" in adapter, adapter
    assert r.page.get_attribute("#adapter", "data-weights") == f"q{bits}"
    assert r.console_errors == [] and r.blocked == []


def test_any_static_server_will_do(plain_server, run, test_models):
    """A server that ignores Range (the page then reads headers from the stream's start and
    skips ahead to each tensor) gives the same greedy text."""
    r = run(base=plain_server).open(model="tiny", prompt="Hello world, this is",
                                    max_new_tokens=24, temperature=0, autorun=1)
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    assert r.text("#output") == cli_generate(test_models["tiny"], "Hello world, this is", 24)
    assert r.blocked == []


# Holds the page's "load" message to the worker until window.__releaseLoad(): the test then
# measures the worker with Python started and the package imported, but no model loaded yet.
HOLD_LOAD = """(() => {
  const post = Worker.prototype.postMessage;
  const held = [];
  window.__loadHeld = () => held.length > 0;
  window.__releaseLoad = () => {
    window.__go = true;
    for (const [w, a] of held.splice(0)) post.apply(w, a);
  };
  Worker.prototype.postMessage = function (...a) {
    if (a[0] && a[0].type === "load" && !window.__go) held.push([this, a]);
    else post.apply(this, a);
  };
})()"""
LOAD_HEAP_BOUND = 64 << 20


def _proc_status(pid):
    """{VmRSS, VmHWM} in bytes from /proc (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return {k: int(v.split()[0]) * 1024 for k, _, v in
                    (line.partition(":") for line in f) if k in ("VmRSS", "VmHWM")}
    except OSError:
        return None


def _processes(browser):
    """{pid: type} of the browser's processes (Chromium's DevTools protocol)."""
    cdp = browser.new_browser_cdp_session()
    try:
        return {p["id"]: p["type"] for p in cdp.send("SystemInfo.getProcessInfo")["processInfo"]}
    finally:
        cdp.detach()


def _reset_peak(pid):
    """Start VmHWM (peak RSS) over from the current RSS; False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def test_loading_grows_the_python_heap_by_less_than_64_mib(browser, run, site):
    """214 MB of weights (the 124M-shaped test model) stream into GPU buffers while Python's
    heap, the wasm memory, grows by less than 64 MiB during the load (it only ever grows, so
    its size after the load is its peak): the weights never pass through it, so what the load
    leaves there does not grow with them (a 498 MB model's load grows it by the same).

    Printed beside it, where Linux tells them: the peak RSS of the page's renderer process
    during the load (wasm, JS heaps of page and worker, stream buffers; a dedicated worker
    has no performance.memory to read the JS heap alone) and of the GPU process, which holds
    the buffers on SwiftShader."""
    M = 1 << 20
    before = set(_processes(browser))
    r = run(init_script=HOLD_LOAD).open(model="gpt2-shape", autorun=0)
    r.page.wait_for_function("window.__loadHeld()", timeout=TIMEOUT_MS)
    worker = r.page.workers[0]
    heap = "self.pyodide._module.HEAPU8.length"
    heap0 = worker.evaluate(heap)
    procs = _processes(browser)
    mine = [p for p, t in procs.items() if t == "renderer" and p not in before and _proc_status(p)]
    renderer = max(mine, key=lambda p: _proc_status(p)["VmRSS"]) if mine else None
    gpu = next((p for p, t in procs.items() if t == "GPU" and _proc_status(p)), None)
    watched = {name: pid for name, pid in (("renderer", renderer), ("GPU process", gpu))
               if pid is not None and _reset_peak(pid)}
    rss0 = {name: _proc_status(pid)["VmRSS"] for name, pid in watched.items()}

    t0 = time.monotonic()
    r.page.evaluate("window.__releaseLoad()")
    assert r.wait_for_state("ready", "error") == "ready", r.text("#error")
    load_s = time.monotonic() - t0
    heap1 = worker.evaluate(heap)
    weights = os.path.getsize(os.path.join(site, "models", "gpt2-shape", "model.safetensors"))
    print(f"\nloading gpt2-shape ({weights / M:.0f} MiB of weights) in {load_s:.1f} s:")
    print(f"  wasm heap (Python): {heap0 / M:.1f} MiB before, {heap1 / M:.1f} MiB after and at "
          f"its peak: +{(heap1 - heap0) / M:.1f} MiB")
    for name, pid in watched.items():
        s = _proc_status(pid)
        print(f"  {name} RSS: {rss0[name] / M:.0f} MiB before, peak "
              f"+{(s['VmHWM'] - rss0[name]) / M:.0f} MiB during the load, "
              f"+{(s['VmRSS'] - rss0[name]) / M:.0f} MiB after")
    assert heap1 - heap0 < LOAD_HEAP_BOUND, (heap0, heap1)
    assert heap1 < weights / 2, (heap1, weights)
    assert r.console_errors == []


def test_stop_ends_generation_within_a_token(run):
    n = 4000
    r = run().open(model="tiny", prompt="Once", max_new_tokens=n, temperature=1, seed=5, autorun=1)
    r.wait_for_state("generating", "error")
    r.page.wait_for_function("document.getElementById('output').childNodes.length >= 5",
                             timeout=TIMEOUT_MS)
    pieces_at_click = r.page.evaluate("""() => {
        document.getElementById('stop').click();
        return document.getElementById('output').childNodes.length; }""")
    t0 = time.monotonic()
    assert r.wait_for_state("done", "error", timeout=60_000) == "done", r.text("#error")
    stopped_in = time.monotonic() - t0
    pieces = r.page.evaluate("document.getElementById('output').childNodes.length")
    stats = r.stats()
    assert stats.get("stopped") == "yes", stats
    assert int(stats["tokens"]) < n
    # One token may be in flight when Stop is clicked, and its piece arrives after it.
    assert pieces - pieces_at_click <= 2, (pieces_at_click, pieces)
    assert stopped_in < 10, stopped_in
    assert r.console_errors == []


def test_broken_model_names_the_file(run):
    r = run().open(model="broken", prompt="Hi", autorun=1)
    assert r.wait_for_state("error", "done") == "error"
    message = r.text("#error")
    assert "models/broken/model.safetensors" in message, message
    assert "truncated" in message.lower() or "end" in message.lower(), message
    assert r.page.is_visible("#error")


def test_missing_tokenizer_file_is_named(run):
    r = run().open(model="no-vocab", prompt="Hi", autorun=1)
    assert r.wait_for_state("error", "done") == "error"
    message = r.text("#error")
    assert "models/no-vocab/vocab.json" in message and "missing" in message, message


def test_unknown_model_in_the_url_says_which_exist(run):
    r = run().open(model="no-such-model", autorun=1)
    assert r.wait_for_state("error", timeout=30_000) == "error"
    message = r.text("#error")
    assert "no-such-model" in message and "tiny" in message, message


def test_no_webgpu_says_what_to_do(run):
    r = run(init_script="Object.defineProperty(Navigator.prototype, 'gpu', "
                        "{get: () => undefined, configurable: true});").open(autorun=1)
    assert r.wait_for_state("error", timeout=30_000) == "error"
    message = r.text("#error")
    assert "WebGPU" in message and "Chrome" in message, message


def test_readme_screenshot(run, site):
    """The README's picture: the default model after a generation, as a user sees the page."""
    default = SHIPPED if SHIPPED in shipped_models(site) else "tiny"
    prompt = "ROMEO:" if default == SHIPPED else "Hello world"
    r = run().open(model=default, prompt=prompt, max_new_tokens=200 if default == SHIPPED else 40,
                   temperature=0.8, top_k=40, seed=7, autorun=1)
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    r.page.evaluate("document.activeElement && document.activeElement.blur()")
    r.page.screenshot(path=SCREENSHOT, full_page=True)
    assert os.path.getsize(SCREENSHOT) > 10_000
    assert r.console_errors == []


# ---------------------------------------------------------------- the site and its server


def _request(server, path, method="GET", headers=None):
    u = urllib.parse.urlsplit(server)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_server_types_ranges_and_confinement(server, site):
    status, h, body = _request(server, "/")
    assert status == 200 and h["Content-Type"].startswith("text/html") and b"<html" in body
    assert _request(server, "/pyodide/pyodide.asm.wasm", "HEAD")[1]["Content-Type"] == "application/wasm"
    assert _request(server, "/pyodide/pyodide.mjs", "HEAD")[1]["Content-Type"].startswith("text/javascript")
    assert _request(server, "/worker.mjs", "HEAD")[1]["Content-Type"].startswith("text/javascript")

    weights = "/models/tiny/model.safetensors"
    size = os.path.getsize(os.path.join(site, weights[1:]))
    with open(os.path.join(site, weights[1:]), "rb") as f:
        data = f.read()
    status, h, body = _request(server, weights, "HEAD")
    assert status == 200 and int(h["Content-Length"]) == size and body == b""
    assert h["Accept-Ranges"] == "bytes"
    status, h, body = _request(server, weights, headers={"Range": "bytes=8-19"})
    assert status == 206 and body == data[8:20] and h["Content-Range"] == f"bytes 8-19/{size}"
    status, h, body = _request(server, weights, headers={"Range": f"bytes={size - 5}-"})
    assert status == 206 and body == data[-5:]
    status, h, body = _request(server, weights, headers={"Range": "bytes=-3"})
    assert status == 206 and body == data[-3:]
    status, h, _ = _request(server, weights, headers={"Range": f"bytes={size}-"})
    assert status == 416 and h["Content-Range"] == f"bytes */{size}"

    # Only the site: no way out of it, no listings.
    for path in ("/../build.py", "/%2e%2e/build.py", "/..%2fbuild.py", "/models/../../build.py",
                 "/nothing-here", "/%2fetc%2fpasswd"):
        assert _request(server, path)[0] == 404, path
    assert _request(server, "/models/")[0] == 404


def test_site_lists_models_and_pins_the_runtime(site):
    with open(os.path.join(site, "models", "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    names = [m["name"] for m in index["models"]]
    assert {"tiny", "tiny-f16", "broken", "no-vocab"} <= set(names)
    assert index["default"] == (SHIPPED if SHIPPED in names else names[0])
    for m in index["models"]:
        assert m["bytes"] == sum(m["files"].values())
        assert "config.json" in m["files"] and not any(n.endswith(".py") for n in m["files"])
    with open(os.path.join(site, "build.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(ROOT, "web", "package-lock.json"), encoding="utf-8") as f:
        lock = json.load(f)
    assert manifest["pyodide_version"] == lock["packages"]["node_modules/pyodide"]["version"]
    for path, size in manifest["boot_files"].items():
        assert os.path.getsize(os.path.join(site, path)) == size
    # No file of the page names another site to load from.
    for name in ("index.html", "main.js", "worker.mjs", "worker.py", "style.css"):
        with open(os.path.join(site, name), encoding="utf-8") as f:
            text = f.read()
        assert not re.search(r"https?://(?!localhost)", text), name


# ---------------------------------------------------------------- the worker protocol


PROTOCOL = os.path.join(ROOT, "web", "protocol.mjs")
# protocol.mjs's lists, and what its message() says of bad messages, from Node.
PROTOCOL_PROBE = """
const p = await import(process.argv[1]);
const refused = (...args) => {
  try { p.message(...args); return null; } catch (e) { return e.message; }
};
console.error = () => {};
process.stdout.write(JSON.stringify({
  lists: {TO_WORKER: p.TO_WORKER, FROM_WORKER: p.FROM_WORKER,
          TO_SERVICE_WORKER: p.TO_SERVICE_WORKER},
  unknown: refused(p.TO_WORKER, "nonsense", {}),
  inherited: refused(p.TO_WORKER, "toString", {}),
  wrong_way: refused(p.TO_WORKER, "loaded", {}),
  missing: refused(p.FROM_WORKER, "piece", {}),
  extra: refused(p.FROM_WORKER, "piece", {text: "a", html: "<b>"}),
  optional_left_out: refused(p.FROM_WORKER, "cache",
                             {event: "stored", model: "m", file: "f", detail: ""}),
  made: p.message(p.FROM_WORKER, "run-done", {status: "ok", seconds: 1, error: null, stats: null,
                                              reload: false, lost: false, bad_params: false}),
}));
"""


def _js_end(text, i):
    """Where the string, template literal or bracket that starts at text[i] ends (the index
    after it)."""
    c = text[i]
    j = i + 1
    if c in "\"'":
        while text[j] != c:
            j += 2 if text[j] == "\\" else 1
    elif c == "`":
        while text[j] != "`":
            j = (j + 2 if text[j] == "\\" else _js_end(text, j + 1) if text.startswith("${", j)
                 else j + 1)
    else:
        close = {"(": ")", "[": "]", "{": "}"}[c]
        while text[j] != close:
            j = _js_end(text, j) if text[j] in "\"'`([{" else j + 1
    return j + 1


def _js_keys(text, i):
    """The field names of the object literal at text[i] ("{"); only plain names (no spread)."""
    end = _js_end(text, i) - 1
    parts, j, start = [], i + 1, i + 1
    while j < end:
        if text[j] in "\"'`([{":
            j = _js_end(text, j)
            continue
        if text[j] == ",":
            parts.append(text[start:j])
            start = j + 1
        j += 1
    parts.append(text[start:end])
    keys = []
    for part in (p.strip() for p in parts):
        m = re.fullmatch(r"([A-Za-z_$][\w$]*)(\s*:.*)?", part, re.S)
        assert m or not part, f"a message field that is not a plain name: {part!r}"
        if m:
            keys.append(m.group(1))
    return keys


def _js_fields(text, i):
    """The fields a call passes after its type, from text[i] on: the object literal's names,
    () for none, or the name of a variable (fields made elsewhere)."""
    m = re.compile(r"\s*(?:,\s*)?(\{|\)|[A-Za-z_$][\w$]*)").match(text, i)
    assert m, text[i:i + 80]
    token = m.group(1)
    return tuple(_js_keys(text, m.start(1))) if token == "{" else () if token == ")" else token


def _js_function_body(text, name):
    i = text.index("{", re.search(rf"function {name}\(", text).end())
    return text[i:_js_end(text, i)]


def _posted_and_handled():
    """Every message web/ posts: [(list, type, fields, where)], and the types each side handles."""
    lists = "TO_WORKER|FROM_WORKER|TO_SERVICE_WORKER"
    posted = []
    web = os.path.join(ROOT, "web")
    sources = {}
    for name in sorted(os.listdir(web)):
        if name.endswith((".js", ".mjs")) and name != "protocol.mjs":
            with open(os.path.join(web, name), encoding="utf-8") as f:
                text = re.sub(r"(?m)(^|[\s;,(){}])//.*$", r"\1", f.read())  # comments out
                sources[name] = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    for name, text in sources.items():
        # Nothing posts but protocol.mjs's post(), which checks the message.
        assert not re.search(r"postMessage\(", text), f"{name} posts around post()"
        wrappers = dict(re.findall(
            rf"const (\w+) = \(type, fields\) => post\([\w.]+, ({lists}), type, fields\)", text))
        for m in re.finditer(r"(?<![\w.])(post|" + "|".join(wrappers or ["\0"]) + r")\(", text):
            if m.group(1) == "post":
                call = re.compile(rf"\s*[\w.]+,\s*({lists}),\s*(\"[^\"]+\"|type\b)")
                call = call.match(text, m.end())
                assert call, f"{name}: post() without a list and a type: " \
                             f"{text[m.start():m.start() + 80]}"
                if call.group(2) == "type":  # the wrapper itself
                    continue
                which, kind, end = call.group(1), call.group(2), call.end()
            else:
                call = re.compile(r"\s*(\"[^\"]+\")").match(text, m.end())
                assert call, f"{name}: a message whose type is not written out: " \
                             f"{text[m.start():m.start() + 80]}"
                which, kind, end = wrappers[m.group(1)], call.group(1), call.end()
            posted.append((which, json.loads(kind), _js_fields(text, end), name))
    # The model store's events become "cache" messages (worker.mjs: send("cache", e)).
    for m in re.finditer(r"(?<![\w.])report\(\s*\{", sources["store.js"]):
        posted.append(("FROM_WORKER", "cache", tuple(_js_keys(sources["store.js"], m.end() - 1)),
                       "store.js"))
    with open(os.path.join(web, "worker.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("postMessage", "webgptPost"):
            assert node.attr == "webgptPost", "worker.py posts around post()"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "post":
            assert len(node.args) == 1 and isinstance(node.args[0], ast.Constant), \
                ast.unparse(node)
            assert all(k.arg for k in node.keywords), f"**fields: {ast.unparse(node)}"
            posted.append(("FROM_WORKER", node.args[0].value,
                           tuple(k.arg for k in node.keywords), f"worker.py:{node.lineno}"))
    handled = {
        "FROM_WORKER": re.findall(r'case "([^"]+)":', _js_function_body(sources["main.js"],
                                                                        "onMessage")),
        "TO_WORKER": re.findall(r'case "([^"]+)":', _js_function_body(sources["worker.mjs"],
                                                                      "handle"))
                     + re.findall(r'm\.type === "([^"]+)"', sources["worker.mjs"]),
        "TO_SERVICE_WORKER": re.findall(r'type === "([^"]+)"', sources["sw.js"]),
    }
    return posted, handled


def test_every_message_is_in_the_protocol():
    """web/protocol.mjs lists each message of the page and its workers: every message web/
    posts (main.js, offline.js and worker.mjs in JavaScript, worker.py in Python, the model
    store's events) goes through its post() with a type written out and the fields its list
    gives (all the required ones, no other); each side handles every type of its list and no
    other; and message() refuses what is not in the lists."""
    node = shutil.which("node")
    assert node, "node is not installed: the site cannot be built without it either"
    r = subprocess.run([node, "--input-type=module", "-e", PROTOCOL_PROBE, "file://" + PROTOCOL],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    probe = json.loads(r.stdout)
    for case in ("unknown", "inherited", "wrong_way", "missing", "extra"):
        assert probe[case] and probe[case].startswith("Message refused"), (case, probe[case])
    assert probe["optional_left_out"] is None
    assert probe["made"]["type"] == "run-done" and probe["made"]["lost"] is False
    # {list: {type: (required fields, all fields)}}
    lists = {which: {t: ({f for f in fields if not f.endswith("?")},
                         {f.rstrip("?") for f in fields}) for t, fields in types.items()}
             for which, types in probe["lists"].items()}

    posted, handled = _posted_and_handled()
    seen = {which: set() for which in lists}
    for which, kind, fields, where in posted:
        assert kind in lists[which], f"{where}: {kind!r} is not in protocol.mjs's {which}"
        required, known = lists[which][kind]
        seen[which].add(kind)
        if isinstance(fields, str):  # made elsewhere: worker.mjs's "cache" (store.js's report)
            assert (where, kind, fields) == ("worker.mjs", "cache", "e"), (where, kind, fields)
            continue
        assert required <= set(fields) <= known, \
            f"{where}: {kind!r} with {sorted(fields)}; protocol.mjs: {sorted(required)} " \
            f"and maybe {sorted(known - required)}"
    for which, types in lists.items():
        assert seen[which] == set(types), f"{which}: never posted: {set(types) - seen[which]}"
        assert sorted(handled[which]) == sorted(types), \
            f"{which}: handled {sorted(handled[which])}, listed {sorted(types)}"


# ---------------------------------------------------------------- reliability


# Markup that runs code if it ever reaches the DOM as HTML: each sets window.__xss.
XSS = ('<img src=x onerror="window.__xss=1"><svg onload="window.__xss=2"></svg>'
       '<script>window.__xss=3</script><iframe srcdoc="<script>parent.__xss=4</script>">')


def _run_script(r, code):
    """Put `code` in the page's editor, press Run and wait for the run to end; returns the
    console's data-status."""
    r.page.wait_for_selector("#editor .cm-content")
    r.page.evaluate(
        "async code => { const { EditorView } = await import('./editor.js');"
        " const view = EditorView.findFromDOM(document.getElementById('editor'));"
        " view.dispatch({changes: {from: 0, to: view.state.doc.length, insert: code}}); }", code)
    n = int(r.page.get_attribute("#console", "data-runs") or 0)
    r.page.click("#run")
    r.page.wait_for_function(
        "n => Number(document.getElementById('console').dataset.runs) > n", arg=n,
        timeout=TIMEOUT_MS)
    return r.page.get_attribute("#console", "data-status")


def _no_markup_ran(r):
    r.page.wait_for_timeout(500)  # an image's error event comes a moment after it is added
    assert r.page.evaluate("window.__xss") is None, "markup from text ran as HTML"
    assert r.page.evaluate("""[...document.querySelectorAll('*')].filter(e =>
        [...e.attributes].some(a => a.name.startsWith('on')) || e.tagName === 'IFRAME'
        || e.tagName === 'IMG' || e.textContent.startsWith('window.__xss')).length""") == 0


def test_text_reaches_the_page_only_as_text(run):
    """Prompts, generated text, printed output, tracebacks, token views, chart labels and
    error messages that contain HTML are shown as that text, and none of it executes."""
    r = run().open(model="tiny", prompt=XSS, max_new_tokens=4, temperature=0, autorun=1)
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    assert r.text("#prompt-echo") == XSS
    status = _run_script(r, (
        f"x = {XSS!r}\n"
        "page.output(x)\n"
        "print(x)\n"
        "page.tokens([x, (x, 1)], title=x)\n"
        "page.bar_chart([x, 'b'], [1, 2], title=x)\n"
        "raise ValueError(x)\n"))
    assert status == "error"
    assert r.text("#output").endswith(XSS)
    console = r.text("#console")
    assert console.count(XSS) >= 4 and f"ValueError: {XSS}" in console, console
    _no_markup_ran(r)
    assert r.console_errors == [] and r.blocked == []

    # The messages of #error: a bad parameter and an unknown model, both quoting the URL.
    r2 = run().open(model="tiny", temperature='<img src=x onerror="window.__xss=1">', autorun=1)
    r2.page.wait_for_function("document.getElementById('error').textContent.includes('<img')",
                              timeout=TIMEOUT_MS)
    _no_markup_ran(r2)
    r3 = run().open(model=XSS, autorun=1)
    assert r3.wait_for_state("error", timeout=30_000) == "error"
    assert XSS in r3.text("#error")
    _no_markup_ran(r3)


@pytest.mark.parametrize("query, sentence, autorun", [
    ({"max_new_tokens": "-5"}, "max_new_tokens must be a whole number from 0 to", 1),
    ({"temperature": "abc"}, "temperature='abc' is not a number", 1),
    ({"top_p": "2"}, "top_p must be a number from", 1),
    ({"top_k": "1e999"}, "top_k='1e999' is not a whole number", 1),
    ({"temperature": "nan"}, "temperature must be 0 (greedy) or a number from", 1),
    # Without autorun the page checks the URL's values as it starts, before any Generate.
    ({"temperature": "abc"}, "temperature='abc' is not a number", 0),
])
def test_bad_url_parameter_is_explained_and_the_page_stays_usable(run, query, sentence, autorun):
    """A bad sampling parameter in the URL: #error names it in a sentence (from
    webgpt.sampling.params_from_strings), nothing is generated, and once the field is fixed
    Generate works."""
    r = run().open(model="tiny", prompt="Hello world", autorun=autorun, **query)
    r.page.wait_for_function("s => document.getElementById('error').textContent.includes(s)",
                             arg=sentence, timeout=TIMEOUT_MS)
    assert r.page.is_visible("#error")
    assert r.wait_for_state("ready") == "ready"  # the model is in; nothing was generated
    assert r.text("#output") == ""
    if autorun:
        assert r.text("#status") == "Nothing ran: a parameter is not usable."
    # The user fixes the field; Generate then works.
    name = next(iter(query))
    r.page.fill(f"#{name}", {"max_new_tokens": "6", "temperature": "0", "top_p": "1",
                             "top_k": "0"}[name])
    r.page.fill("#max_new_tokens", "6")
    r.page.click("#generate")
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    assert r.page.is_hidden("#error")
    assert r.text("#output") != "" and r.stats()["tokens"] == "6"
    assert r.console_errors == []


# What a driver reset does to the page's GPUDevice, done from the worker's Python.
DESTROY_DEVICE = ("self.pyodide.runPython("
                  "'import webgpt_page; webgpt_page._model.device._dev.destroy()')")


def test_lost_gpu_device_reloads_the_model_without_reloading_the_page(run):
    """device.destroy() in the worker (as a driver reset would lose it): the page says so,
    loads the model again on a new device, and the same greedy text comes out."""
    r = run().open(model="tiny", prompt="Hello world", max_new_tokens=8, temperature=0, autorun=1)
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    before = r.text("#output")
    r.page.evaluate("window.__sameDocument = true")
    r.page.workers[0].evaluate(DESTROY_DEVICE)
    r.page.wait_for_function(
        "document.getElementById('status').textContent.includes('loaded again')",
        timeout=TIMEOUT_MS)
    assert r.state() == "ready" and r.page.is_hidden("#error")
    r.page.click("#generate")
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    assert r.text("#output") == before
    assert r.page.evaluate("window.__sameDocument") is True  # the page was not reloaded
    # Losing it in the middle of a generation: the run ends with the message, then the same.
    r.page.fill("#max_new_tokens", "2000")
    r.page.fill("#temperature", "1")
    r.page.click("#generate")
    r.page.wait_for_function("document.getElementById('output').childNodes.length >= 3",
                             timeout=TIMEOUT_MS)
    r.page.workers[0].evaluate(DESTROY_DEVICE)
    r.page.wait_for_function(
        "document.getElementById('error').textContent.includes('GPU device was lost')",
        timeout=60_000)
    r.page.wait_for_function(
        "document.getElementById('status').textContent.includes('loaded again')",
        timeout=TIMEOUT_MS)
    r.page.fill("#max_new_tokens", "8")
    r.page.fill("#temperature", "0")
    r.page.click("#generate")
    assert r.wait_for_state("done", "error") == "done", r.text("#error")
    assert r.text("#output") == before
