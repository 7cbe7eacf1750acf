"""Fixtures shared by the test modules: a native WebGPU device (`adapter`, `gpu_device`,
`new_device`), and for the browser tests the site as build.py builds it, a server, Chromium.

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
