"""The web page as build.py builds and serves it, driven in Chromium (WebGPU on SwiftShader).

Every page load blocks requests that leave the page's origin and records them, and records
console errors; a normal run must have neither. Fixtures are in conftest.py.
"""

import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

import pytest

from conftest import IN_CI, ROOT

# Boot (about 4 s) + load + generation on SwiftShader, with a wide margin for a busy machine.
TIMEOUT_MS = 240_000
SHIPPED = "shakespeare-char"
SCREENSHOT = os.path.join(ROOT, "web", "screenshot.png")


class PageRun:
    """One page in a fresh browser context, its requests and console watched."""

    def __init__(self, browser, base, init_script=None):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1000, "height": 860})
        self.requests, self.blocked, self.console_errors = [], [], []
        self.context.route("**/*", self._route)
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.base):
            self.requests.append(url[len(self.base):])
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _console(self, msg):
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def open(self, **params):
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        self.page.goto(self.base + "index.html" + ("?" + query if query else ""))
        return self

    def state(self):
        return self.page.evaluate("document.documentElement.dataset.state")

    def wait_for_state(self, *states, timeout=TIMEOUT_MS):
        self.page.wait_for_function(
            "states => states.includes(document.documentElement.dataset.state)",
            arg=list(states), timeout=timeout)
        return self.state()

    def text(self, selector):
        return self.page.text_content(selector)

    def stats(self):
        """#stats as {key: value text}."""
        return self.page.evaluate("""() => Object.fromEntries(
            [...document.querySelectorAll('#stats .stat')].map(s => [s.dataset.key,
             s.textContent.slice(s.dataset.key.length + 2)]))""")

    def close(self):
        self.context.close()


@pytest.fixture
def run(browser, server):
    runs = []

    def start(**kw):
        r = PageRun(browser, server, **kw)
        runs.append(r)
        return r

    yield start
    for r in runs:
        r.close()


def shipped_models(site):
    with open(os.path.join(site, "models", "index.json"), encoding="utf-8") as f:
        return {m["name"] for m in json.load(f)["models"]}


def cli_generate(folder, prompt, n):
    """The continuation the command line prints for greedy decoding (native wgpu)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "py"))
    r = subprocess.run(
        [sys.executable, "-m", "webgpt", "generate", "--model", folder, "--prompt", prompt,
         "-n", str(n), "--temperature", "0"],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
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
    paths = {urllib.parse.urlsplit(u).path for u in r.requests}
    assert "pyodide/pyodide.asm.wasm" in paths and "pyodide/python_stdlib.zip" in paths
    wheels = sorted(p.split("/")[-1].split("-")[0] for p in paths if p.endswith(".whl"))
    assert wheels == ["micropip", "packaging", "webgpt"], wheels  # no numpy, nothing else
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


@pytest.mark.parametrize("model", ["tiny", "tiny-f16", "gpt2-shape", SHIPPED])
def test_greedy_continuation_equals_the_cli(run, site, test_models, model):
    """temperature=0 in the page (Pyodide, SwiftShader) gives the CLI's tokens (wgpu, lavapipe)."""
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


def test_any_static_server_will_do(browser, plain_server, test_models):
    """A server that ignores Range (the page then reads headers from the stream's start and
    skips ahead to each tensor) gives the same greedy text."""
    r = PageRun(browser, plain_server)
    try:
        r.open(model="tiny", prompt="Hello world, this is", max_new_tokens=24, temperature=0,
               autorun=1)
        assert r.wait_for_state("done", "error") == "done", r.text("#error")
        assert r.text("#output") == cli_generate(test_models["tiny"], "Hello world, this is", 24)
        assert r.blocked == []
    finally:
        r.close()


def test_weights_bypass_the_python_heap(run, site):
    """214 MB of weights stream into GPU buffers while Python's whole heap (the wasm memory)
    stays far smaller: they never pass through it."""
    r = run().open(model="gpt2-shape", autorun=0)
    assert r.wait_for_state("ready", "error") == "ready", r.text("#error")
    weights = os.path.getsize(os.path.join(site, "models", "gpt2-shape", "model.safetensors"))
    heap = r.page.workers[0].evaluate("self.pyodide._module.HEAPU8.length")
    assert heap < weights / 2, (heap, weights)
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
