"""Offline use: the page and its models kept on this device, driven in Chromium.

Each test serves a site with build.py's server on a port of its own, in a browser context of
its own (a context keeps its service worker and caches across reloads, as a browser profile
does). The server records every request and can be stopped (its open connections closed: the
page then sees a server that is gone) and started again on the same port, the same origin, with
another build. No request interception here: Playwright's routing bypasses service workers.

What is checked: after one visit the page boots and generates the same greedy text with the
server gone (cross-origin isolated still); a model rebuilt with other weights is fetched again,
never read from the old copy; a damaged copy is found by its sha256 and fetched again; the
Offline panel lists the saved models with their sizes and Delete removes one (and the storage
used goes down); a new build's page files replace the old ones when the page reloads into it.
"""

import json
import os
import shutil
import socket
import threading
import urllib.parse

import pytest

from conftest import ROOT, _import_build, wait_for_state
from test_web import cli_generate

TIMEOUT_MS = 240_000
PROMPT = "Hello world, this is"
N = 12


class SiteServer:
    """build.py's server for one site on a fixed port of 127.0.0.1: stop() closes it and every
    connection the browser keeps open; start(root) serves a site there again."""

    def __init__(self, root):
        self.port = None
        self.requests = []  # (method, path, Range header)
        self.srv = None
        self.start(root)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}/"

    def start(self, root):
        build = _import_build()
        srv = build.make_server(root, "127.0.0.1", self.port or 0)
        self.port = srv.server_address[1]
        log, conns = self.requests, set()

        class Recording(srv.RequestHandlerClass):
            def setup(self):
                super().setup()
                conns.add(self.connection)

            def _serve(self, body):
                log.append((self.command, urllib.parse.urlsplit(self.path).path,
                            self.headers.get("Range")))
                super()._serve(body)

        srv.RequestHandlerClass = Recording
        self.srv, self.conns = srv, conns
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
        for conn in list(self.conns):  # keep-alive connections would go on serving
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.srv = None

    def gets(self, path, whole=False):
        """How many GET requests for `path` (`whole`: without a Range header) came."""
        return sum(1 for method, p, rng in self.requests
                   if method == "GET" and p == path and not (whole and rng))


class Visit:
    """One browser context (its storage kept across reloads) with one page."""

    def __init__(self, browser, server):
        self.server = server
        self.context = browser.new_context(viewport={"width": 1000, "height": 1100})
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _console(self, msg):
        # A request to a server that is gone is logged as a failed load: expected offline.
        if msg.type == "error" and "net::ERR_" not in msg.text:
            self.errors.append(msg.text)

    def open(self, **params):
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        self.page.goto(self.server.base + "index.html?" + query)
        return self

    def wait_for_state(self, *states, timeout=TIMEOUT_MS):
        return wait_for_state(self.page, states, timeout)

    def generate(self):
        """Wait for the autorun generation; its text."""
        assert self.wait_for_state("done", "error") == "done", self.page.text_content("#error")
        return self.page.text_content("#output")

    def wait_saved(self, model):
        """Until the Offline panel lists every file of `model` as saved."""
        self.page.wait_for_selector(f'#cached-models li[data-model="{model}"][data-complete="1"]',
                                    timeout=TIMEOUT_MS)

    def wait_offline_ready(self):
        """Until the service worker is active and the panel says the page's files are saved."""
        self.page.evaluate("navigator.serviceWorker.ready.then(r => r.active.state)")
        self.page.wait_for_function(
            "document.getElementById('offline-status').dataset.state === 'ready'",
            timeout=TIMEOUT_MS)

    def stored_hashes(self):
        """sha256 of every model file kept in the model cache."""
        return set(self.page.evaluate("""async () => {
            const keys = await (await caches.open('webgpt-models')).keys();
            return keys.map(r => r.url).filter(u => u.includes('/models/sha256/'))
                       .map(u => u.split('/').pop()); }"""))

    def usage(self):
        return self.page.evaluate("navigator.storage.estimate().then(e => e.usage)")

    def close(self):
        self.context.close()


@pytest.fixture
def visits(browser):
    opened = []

    def visit(server):
        v = Visit(browser, server)
        opened.append(v)
        return v

    yield visit
    for v in opened:
        v.close()


@pytest.fixture
def serve():
    servers = []

    def start(root):
        s = SiteServer(root)
        servers.append(s)
        return s

    yield start
    for s in servers:
        if s.srv is not None:
            s.stop()


def index_of(site):
    with open(os.path.join(site, "models", "index.json"), encoding="utf-8") as f:
        return {m["name"]: m for m in json.load(f)["models"]}


def test_index_gives_each_files_size_and_sha256(site):
    import hashlib
    for name, m in index_of(site).items():
        assert m["bytes"] == sum(m["files"].values())
        assert set(m["sha256"]) == set(m["files"]), name
        for file, digest in m["sha256"].items():
            with open(os.path.join(site, "models", name, file), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == digest, (name, file)


def test_page_works_offline_after_one_visit(visits, serve, site):
    server = serve(site)
    v = visits(server).open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0,
                            autorun=1)
    online = v.generate()
    assert online
    assert server.gets("/models/tiny/model.safetensors") >= 1
    v.wait_saved("tiny")
    v.wait_offline_ready()

    server.stop()
    v.page.reload()
    assert v.generate() == online
    status = v.page.locator("#offline-status")
    assert status.get_attribute("data-state") == "offline", status.text_content()
    assert v.page.evaluate("navigator.serviceWorker.controller !== null")
    # Served from the service worker's cache with the server's COOP/COEP headers: still
    # cross-origin isolated, so the editor's Stop can interrupt Python.
    assert v.page.evaluate("crossOriginIsolated") is True
    assert v.page.is_hidden("#isolation-note")
    # A model that was never saved says so, instead of failing in the loader.
    v.page.select_option("#model", "tiny-f16")
    v.page.wait_for_function("document.getElementById('error').textContent.includes('not saved')",
                             timeout=TIMEOUT_MS)
    assert v.page.input_value("#model") == "tiny"  # the loaded model stays, and usable
    assert v.page.evaluate("document.documentElement.dataset.state") == "ready"
    assert v.errors == [], v.errors


def test_a_model_changed_on_the_server_is_fetched_again(visits, serve, site, tmp_path):
    import refmodels
    server = serve(site)
    v = visits(server).open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0,
                            autorun=1)
    before = v.generate()
    v.wait_saved("tiny")
    old = index_of(site)["tiny"]["sha256"]["model.safetensors"]
    assert old in v.stored_hashes()

    # A new build of the site whose "tiny" has other weights (same shapes, another seed).
    cfg = refmodels.CONFIGS["tiny"]
    folder = refmodels.write_folder(str(tmp_path / "tiny"), cfg, refmodels.make_weights(cfg, 11))
    rebuilt = _import_build().build(str(tmp_path / "site"), extra_models={"tiny": folder})
    new = index_of(rebuilt)["tiny"]["sha256"]["model.safetensors"]
    assert new != old
    server.stop()
    server.start(rebuilt)
    fetched = server.gets("/models/tiny/model.safetensors")

    v.page.reload()
    after = v.generate()
    assert after == cli_generate(folder, PROMPT, N) and after != before
    assert server.gets("/models/tiny/model.safetensors") > fetched
    v.wait_saved("tiny")
    hashes = v.stored_hashes()
    assert new in hashes and old not in hashes  # the old weights are gone from the device
    assert v.errors == [], v.errors


def test_a_damaged_copy_is_found_and_fetched_again(visits, serve, site):
    server = serve(site)
    v = visits(server).open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0,
                            autorun=1)
    before = v.generate()
    v.wait_saved("tiny")
    digest = index_of(site)["tiny"]["sha256"]["model.safetensors"]
    # Flip one byte in the middle of the saved weights (the same size, other bytes).
    v.page.evaluate("""async digest => {
        const cache = await caches.open('webgpt-models');
        const key = new URL('models/sha256/' + digest, location.href).href;
        const resp = await cache.match(key);
        const bytes = new Uint8Array(await resp.arrayBuffer());
        bytes[bytes.length >> 1] ^= 0x40;
        await cache.put(key, new Response(bytes, {headers: resp.headers}));
    }""", digest)
    fetched = server.gets("/models/tiny/model.safetensors", whole=True)

    v.page.reload()
    assert v.generate() == before
    # Fetched again, whole, once (the loader's Range reads of its header come beside it).
    assert server.gets("/models/tiny/model.safetensors", whole=True) == fetched + 1
    note = v.page.text_content("#offline-note")
    assert "tiny/model.safetensors" in note and "damaged" in note, note
    v.wait_saved("tiny")
    # The copy saved again is the right one.
    again = v.page.evaluate("""async digest => {
        const cache = await caches.open('webgpt-models');
        const resp = await cache.match(new URL('models/sha256/' + digest, location.href).href);
        const hash = await crypto.subtle.digest('SHA-256', await resp.arrayBuffer());
        return [...new Uint8Array(hash)].map(b => b.toString(16).padStart(2, '0')).join('');
    }""", digest)
    assert again == digest
    assert v.errors == [], v.errors


def test_the_panel_lists_saved_models_and_deletes_them(visits, serve, site):
    server = serve(site)
    v = visits(server).open(model="tiny", autorun=0)
    assert v.wait_for_state("ready", "error") == "ready", v.page.text_content("#error")
    v.wait_saved("tiny")
    v.page.select_option("#model", "tiny-f16")
    v.page.wait_for_function(
        "document.getElementById('status').textContent.includes('tiny-f16 loaded')",
        timeout=TIMEOUT_MS)
    v.wait_saved("tiny-f16")
    index = index_of(site)
    for name in ("tiny", "tiny-f16"):
        row = v.page.locator(f'#cached-models li[data-model="{name}"]')
        assert int(row.get_attribute("data-bytes")) == index[name]["bytes"]
        mb = index[name]["bytes"] / 1e6
        assert f"{mb:.2f} MB" in row.text_content(), row.text_content()
    assert set(index["tiny"]["sha256"].values()) <= v.stored_hashes()
    storage = v.page.text_content("#storage-used")
    assert storage.startswith("Storage used by this site:"), storage
    used = v.usage()
    assert used >= index["tiny"]["bytes"], used

    v.page.click('#cached-models li[data-model="tiny"] button.delete')
    v.page.wait_for_selector('#cached-models li[data-model="tiny"]', state="detached",
                             timeout=30_000)
    hashes = v.stored_hashes()
    assert index["tiny"]["sha256"]["model.safetensors"] not in hashes
    # What tiny-f16 shares with it (the tokenizer files) stays, and so does tiny-f16.
    assert set(index["tiny-f16"]["sha256"].values()) <= hashes
    assert v.page.locator('#cached-models li[data-model="tiny-f16"]').count() == 1
    v.page.wait_for_function("used => navigator.storage.estimate().then(e => e.usage < used)",
                             arg=used, timeout=30_000)
    assert v.errors == [], v.errors


def test_a_new_build_replaces_the_saved_page(visits, serve, site, tmp_path):
    server = serve(site)
    v = visits(server).open(model="tiny", autorun=0)
    assert v.wait_for_state("ready", "error") == "ready", v.page.text_content("#error")
    v.wait_offline_ready()
    old_caches = v.page.evaluate("caches.keys()")
    assert len([c for c in old_caches if c.startswith("webgpt-shell-")]) == 1, old_caches

    # The same site with one page file changed, and its list of files written again.
    build = _import_build()
    rebuilt = str(tmp_path / "site")
    shutil.copytree(site, rebuilt, copy_function=os.link)
    css = os.path.join(rebuilt, "style.css")
    with open(css, encoding="utf-8") as f:
        text = f.read() + "\n/* a new build */\n"
    os.remove(css)  # a hard link to the first site's file: write a new one
    with open(css, "w", encoding="utf-8") as f:
        f.write(text)
    version = build.write_shell_manifest(rebuilt)
    assert f"webgpt-shell-{version}" not in old_caches
    server.stop()
    server.start(rebuilt)

    # The reload opens the saved (old) page, which finds the new build and offers it.
    v.page.reload()
    v.page.wait_for_function(
        "document.getElementById('offline-status').dataset.state === 'update'", timeout=TIMEOUT_MS)
    assert "a new build" not in v.page.evaluate("fetch('style.css').then(r => r.text())")
    v.page.evaluate("window.__oldPage = true")
    v.page.click("#offline-update")  # the new service worker takes over, the page reloads
    v.page.wait_for_function("window.__oldPage === undefined", timeout=TIMEOUT_MS)
    assert v.wait_for_state("ready", "error") == "ready", v.page.text_content("#error")
    caches = v.page.evaluate("caches.keys()")
    assert [c for c in caches if c.startswith("webgpt-shell-")] == [f"webgpt-shell-{version}"]
    assert "a new build" in v.page.evaluate("fetch('style.css').then(r => r.text())")
    assert v.errors == [], v.errors
