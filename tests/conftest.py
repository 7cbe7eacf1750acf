"""Fixtures shared by the test modules: a native WebGPU device (`adapter`, `gpu_device`,
`new_device`), and for the browser tests the site as build.py builds it, a server, Chromium,
and the page driver the browser test modules share (`PageDriver`, opened by `pages`).

Native GPU tests run on wgpu-py (lavapipe on a CPU). The site is built once per session into a temporary folder, with the models under weights/
plus small test models made here from seeded weights (tests/refmodels.py). The server is
build.py's own, in a thread, on a free port of 127.0.0.1. Chromium is Debian's
(/usr/bin/chromium), driven by Playwright, which never downloads a browser of its own;
WebGPU runs on SwiftShader there.

Where Chromium or a WebGPU adapter is missing the tests that need it skip, saying why, except under CI
(CI=true), where both are installed and a missing one is a failure.
"""

import asyncio
import http.server
import os
import shutil
import sys
import threading
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    # navigator.storage.estimate() as without Chromium's anti-fingerprinting figure (usage +
    # 10 GiB whatever the room): the real quota, so a quota set through CDP (tests/
    # test_offline.py) shows in the page as a full disk would.
    "--disable-features=StaticStorageQuota",
]
IN_CI = os.environ.get("CI") == "true"
# How long a page may take to boot, load a model and run (SwiftShader), with a wide margin for a
# busy machine.
PAGE_TIMEOUT_MS = 240_000

# The test models: (refmodels config, seed, dtype).
TEST_MODELS = {
    "tiny": ("tiny", 1, "float32"),
    "tiny-f16": ("tiny", 2, "float16"),
    # GPT-2 124M's shapes (full vocabulary and context, 2 layers): 214 MB of f32 weights.
    "gpt2-shape": ("gpt2_2l", 3, "float32"),
}


def missing(reason):
    """Skip for lack of `reason`'s tool, or fail under CI, where nothing may skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


def open_device():
    """A new native WebGPU device (wgpu-py); skips (or fails under CI) where there is none."""
    from webgpt import gpu

    try:
        return asyncio.run(gpu.request_device())
    except (ImportError, gpu.GPUError) as e:
        missing(f"no WebGPU adapter through wgpu: {e}")


@pytest.fixture(scope="session")
def adapter():
    """The native adapter's description, for tests that open their own devices (webgpt.load)."""
    return open_device().describe()


@pytest.fixture(scope="module")
def gpu_device():
    """One native WebGPU device for a test module."""
    return open_device()


@pytest.fixture
def new_device():
    """open_device, for a test that breaks devices (loses one, fills its memory)."""
    return open_device


def _import_build():
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    import build
    return build


@pytest.fixture(scope="session")
def test_models(tmp_path_factory):
    """{name: folder}: the test models, 'broken' (its weights cut short) and 'no-vocab'."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import refmodels

    base = tmp_path_factory.mktemp("models")
    folders = {}
    for name, (config, seed, dtype) in TEST_MODELS.items():
        cfg = refmodels.CONFIGS[config]
        folders[name] = refmodels.write_folder(
            str(base / name), cfg, refmodels.make_weights(cfg, seed), dtype=dtype)
    import hfmodels  # Llama- and Qwen3-shaped folders, written by transformers itself

    for name, (cls, keys, dtype) in hfmodels.PAGE_MODELS.items():
        folders[name] = hfmodels.write_folder(str(base / name), cls, keys, dtype)
    # An instruct-shaped Qwen2 with the real Qwen2.5-Instruct chat template (the page's chat).
    folders["tiny-chat"] = str(base / "tiny-chat")
    hfmodels.write_chat_folder(folders["tiny-chat"])
    broken = str(base / "broken")
    shutil.copytree(folders["tiny"], broken)
    path = os.path.join(broken, "model.safetensors")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 1000)
    folders["broken"] = broken
    no_vocab = str(base / "no-vocab")
    shutil.copytree(folders["tiny"], no_vocab)
    os.remove(os.path.join(no_vocab, "vocab.json"))
    folders["no-vocab"] = no_vocab
    return folders


@pytest.fixture(scope="session")
def site(tmp_path_factory, test_models):
    """The site build.py builds, with the test models beside the shipped ones."""
    build = _import_build()
    out = str(tmp_path_factory.mktemp("site") / "dist")
    return build.build(out, extra_models=test_models)


@pytest.fixture(scope="session")
def server(site):
    """Base URL ('http://127.0.0.1:PORT/') of build.py's server serving the site."""
    build = _import_build()
    srv = build.make_server(site, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def plain_server(site):
    """Python's own static server on the site: no Range requests, no COOP/COEP headers (so no
    SharedArrayBuffer on the page): what a plain static host gives."""

    class Plain(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                          ".mjs": "text/javascript", ".js": "text/javascript",
                          ".wasm": "application/wasm"}

        def __init__(self, *args, **kw):
            super().__init__(*args, directory=site, **kw)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser(server):
    """Chromium with WebGPU on SwiftShader (one per test module: Playwright's sync API keeps
    its own event loop, which must not outlive into other modules' asyncio.run)."""
    if not os.path.exists(CHROMIUM):
        missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright is not installed (pip install -r requirements-test.txt)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = b.new_page()
            page.goto(server + "build.json")
            adapter = page.evaluate(
                "async () => !!(navigator.gpu && await navigator.gpu.requestAdapter())")
            page.close()
            if not adapter:
                missing("Chromium here has no WebGPU adapter (SwiftShader)")
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


def wait_for_state(page, states, timeout):
    """Wait until the page's root data-state is one of `states`; return it."""
    page.wait_for_function("states => states.includes(document.documentElement.dataset.state)",
                           arg=list(states), timeout=timeout)
    return page.evaluate("document.documentElement.dataset.state")


class PageDriver:
    """The page (index.html of the site at `base`) in a fresh browser context of its own
    (storage included). Requests that leave the site are blocked and recorded in `blocked`;
    the site's are recorded in `requests` (URLs relative to `base`); console errors (the
    workers' too) and uncaught exceptions are recorded in `console_errors`. A normal run has
    neither. The test modules subclass it with their own helpers (and viewport)."""

    VIEWPORT = {"width": 1000, "height": 860}

    def __init__(self, browser, base, init_script=None, **context_options):
        self.base = base
        self.context = browser.new_context(**{"viewport": self.VIEWPORT, **context_options})
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
        """Go to index.html?params (and return at once)."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        self.page.goto(self.base + "index.html" + ("?" + query if query else ""))
        return self

    def ready(self):
        """Wait until the page is ready (a model loaded) or done; an error fails the test."""
        state = self.wait_for_state("ready", "done", "error")
        assert state != "error", self.text("#error")
        return self

    def state(self):
        return self.page.evaluate("document.documentElement.dataset.state")

    def wait_for_state(self, *states, timeout=PAGE_TIMEOUT_MS):
        return wait_for_state(self.page, states, timeout)

    def text(self, selector):
        return self.page.text_content(selector)

    def paths(self):
        """The paths of the site's files the page requested, in order (no query)."""
        return [urllib.parse.urlsplit(u).path for u in self.requests]

    def stats(self, selector="#stats"):
        """The .stat items under `selector` (#stats: the generator's) as {key: value text}."""
        return self.page.evaluate("""sel => Object.fromEntries(
            [...document.querySelectorAll(sel + ' .stat')].map(s => [s.dataset.key,
             s.textContent.slice(s.dataset.key.length + 2)]))""", selector)

    def close(self):
        self.context.close()


@pytest.fixture
def pages(browser, server):
    """pages(cls=PageDriver, base=None, **options): a new page driver on the site (or on
    `base`), closed after the test."""
    opened = []

    def start(cls=PageDriver, base=None, **options):
        opened.append(cls(browser, base or server, **options))
        return opened[-1]

    yield start
    for p in opened:
        p.close()
