"""Offline use: the page and its models kept on this device, driven in Chromium.

Each test serves a site with build.py's server on a port of its own, in a browser context of
its own (a context keeps its service worker and storage across reloads, as a browser profile
does). The server records every request and the bytes it sends for each path; it can be
stopped (its open connections closed: the page then sees a server that is gone) and started
again on the same port, the same origin, with another build; and it can hold a file's download
halfway, or be killed halfway through one. No request interception here: Playwright's routing
bypasses service workers.

What is checked: after one visit the page boots and generates the same greedy text with the
server gone (cross-origin isolated still); a model rebuilt with other weights is fetched again,
never read from the old copy; a flipped byte in the stored copy (OPFS) is found by its sha256
once the first run is over (a visit does not read the whole file before its first token), and
the model loaded again with the file fetched afresh; the Offline panel lists the kept models with their sizes, source,
the storage used and free and whether persistence was granted, and Delete removes one (not
while another tab loads it); a download cut off halfway (the server killed) goes on from where
it stopped once the server is back, fetching only the rest; two tabs loading the same model
download it once (the second waits, then reads the stored copy) and both run; a quota too small
for the model (set through the DevTools protocol) is said in a sentence and the model runs from
the network; a write that fails does the same; models kept by the Cache API of before are moved
into OPFS; a new build's page files replace the old ones when the page reloads into it.
tests/test_offline_big.py keeps the 498 MB model.
"""

import hashlib
import json
import os
import shutil
import socket
import threading
import time
import urllib.parse

import pytest

from conftest import _import_build, wait_for_state
from test_web import cli_generate

TIMEOUT_MS = 240_000
PROMPT = "Hello world, this is"
N = 12


class SiteServer:
    """build.py's server for one site on a fixed port of 127.0.0.1: stop() closes it and every
    connection the browser keeps open; start(root) serves a site there again. A rule for a path
    acts on its first whole-file GET (no Range) once half the file is sent: it waits there
    until the test sets the rule's "go" event, then sends the rest, or (cut) ends the
    connection."""

    def __init__(self, root):
        self.port = None
        self.requests = []  # (method, path, Range header)
        self.sent = {}  # path -> bytes of response bodies sent
        self.rules = {}  # path -> {"at_half": Event, "go": Event, "cut": bool}
        self.srv = None
        self.start(root)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}/"

    def start(self, root):
        build = _import_build()
        srv = build.make_server(root, "127.0.0.1", self.port or 0)
        self.port, self.root = srv.server_address[1], root
        owner, conns = self, set()

        class Recording(srv.RequestHandlerClass):
            def setup(self):
                super().setup()
                conns.add(self.connection)
                self.raw_wfile = self.wfile  # each response's _Counted writes to it

            def _serve(self, body):
                path = urllib.parse.urlsplit(self.path).path
                rng = self.headers.get("Range")
                owner.requests.append((self.command, path, rng))
                if body:
                    rule = owner.rules.pop(path, None) if rng is None else None
                    self.wfile = _Counted(self.raw_wfile, owner, path, rule, self.connection)
                super()._serve(body)

        srv.RequestHandlerClass = Recording
        self.srv, self.conns = srv, conns
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    def stop(self):
        if self.srv is None:
            return
        srv, self.srv = self.srv, None
        srv.shutdown()
        srv.server_close()
        for conn in list(self.conns):  # keep-alive connections would go on serving
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def gets(self, path, whole=False):
        """How many GET requests for `path` (`whole`: without a Range header) came."""
        return sum(1 for method, p, rng in self.requests
                   if method == "GET" and p == path and not (whole and rng))

    def ranges(self, path):
        """The Range headers of the GET requests for `path`, in order (None: no Range)."""
        return [rng for method, p, rng in self.requests if method == "GET" and p == path]

    def hold(self, path, cut=False):
        """Stop the next whole download of `path` halfway until rule["go"] is set; then go on,
        or with `cut` end the connection there (and the test stops the server: killed
        halfway through the file)."""
        rule = self.rules[path] = {"at_half": threading.Event(), "go": threading.Event(),
                                   "cut": cut}
        return rule


class _Counted:
    """A response's writer that counts the bytes sent for its path and applies its rule."""

    def __init__(self, wfile, server, path, rule, conn):
        self.wfile, self.server, self.path, self.rule, self.conn = wfile, server, path, rule, conn
        self.at = 0
        self.head = True  # the first write is the status line and headers: not counted
        self.half = None
        if rule is not None:
            self.half = os.path.getsize(os.path.join(server.root, *path.split("/"))) // 2

    def write(self, data):
        data = memoryview(data)
        if self.head:
            self.head = False
            return self.wfile.write(data)
        if self.half is not None and self.at + len(data) >= self.half:
            first = self.half - self.at
            self._send(data[:first])
            self.wfile.flush()
            self.half = None
            self.rule["at_half"].set()
            self.rule["go"].wait(120)
            if self.rule["cut"]:  # the connection ends halfway through the file
                self.conn.shutdown(socket.SHUT_WR)
                raise ConnectionResetError("the server was killed")
            data = data[first:]
        return self._send(data)

    def _send(self, data):
        self.wfile.write(data)
        self.at += len(data)
        self.server.sent[self.path] = self.server.sent.get(self.path, 0) + len(data)
        return len(data)

    def flush(self):
        self.wfile.flush()

    def __getattr__(self, name):
        return getattr(self.wfile, name)


# The store's OPFS folder, read and changed from the page's main thread.
STORE_JS = """async (op) => {
  const top = await navigator.storage.getDirectory();
  const root = await top.getDirectoryHandle('webgpt-models', {create: true});
  const dir = (name) => root.getDirectoryHandle(name, {create: true});
  if (op.list) {
    const out = {};
    for (const name of ['blobs', 'parts']) {
      out[name] = {};
      for await (const [n, h] of (await dir(name)).entries()) {
        out[name][n] = (await h.getFile()).size;
      }
    }
    return out;
  }
  if (op.flip) { // one byte in the middle of a blob: the same size, other bytes
    const handle = await (await dir('blobs')).getFileHandle(op.flip);
    const file = await handle.getFile();
    const at = file.size >> 1;
    const byte = new Uint8Array(await file.slice(at, at + 1).arrayBuffer());
    const w = await handle.createWritable({keepExistingData: true});
    await w.write({type: 'write', position: at, data: new Uint8Array([byte[0] ^ 0x40])});
    await w.close();
    return byte[0];
  }
  if (op.hash) { // sha256 of a blob, computed here
    const file = await (await (await dir('blobs')).getFileHandle(op.hash)).getFile();
    const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
    return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
  }
  if (op.text) {
    const handle = await (await dir(op.text[0])).getFileHandle(op.text[1]);
    return (await handle.getFile()).text();
  }
  if (op.manifest) {
    try {
      return JSON.parse(await (await (await root.getFileHandle('manifest.json')).getFile()).text());
    } catch (e) { return null; }
  }
}"""


class Visit:
    """One browser context (its storage kept across reloads) with one page, or more."""

    def __init__(self, browser, server):
        self.server = server
        self.context = browser.new_context(viewport={"width": 1000, "height": 1100})
        self.errors = []
        self.page = self.new_page()

    def new_page(self):
        page = self.context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        return page

    def _console(self, msg):
        # A request to a server that is gone is logged as a failed load: expected offline.
        if msg.type == "error" and "net::ERR_" not in msg.text:
            self.errors.append(msg.text)

    def open(self, page=None, **params):
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        (page or self.page).goto(self.server.base + "index.html?" + query)
        return self

    def wait_for_state(self, *states, timeout=TIMEOUT_MS, page=None):
        return wait_for_state(page or self.page, states, timeout)

    def generate(self, page=None):
        """Wait for the autorun generation; its text."""
        page = page or self.page
        assert self.wait_for_state("done", "error", page=page) == "done", \
            page.text_content("#error")
        return page.text_content("#output")

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

    def store(self, **op):
        return self.page.evaluate(STORE_JS, op)

    def stored_hashes(self):
        """sha256 of every complete file in the model store."""
        return {name[len("sha256-"):] for name in self.store(list=True)["blobs"]
                if name.startswith("sha256-")}

    def note(self, page=None):
        return (page or self.page).text_content("#offline-note")

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
        for rule in s.rules.values():
            rule["go"].set()
        s.stop()


def index_of(site):
    with open(os.path.join(site, "models", "index.json"), encoding="utf-8") as f:
        return {m["name"]: m for m in json.load(f)["models"]}


def small_reads(ranges):
    """Bytes asked for by the closed ranges "bytes=a-b" among `ranges` (the loader's reads of
    a safetensors header)."""
    return sum(int(b) - int(a) + 1 for a, b in (r[len("bytes="):].split("-") for r in ranges
                                                 if r is not None and not r.endswith("-")))


def test_index_gives_each_files_size_and_sha256(site):
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
    assert set(index_of(site)["tiny"]["sha256"].values()) <= v.stored_hashes()

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


def test_a_flipped_byte_in_the_stored_copy_is_caught_and_fetched_again(visits, serve, site):
    """A later visit loads the stored copy without hashing it first (the first token does not
    wait for the whole file to be read), then hashes it once the first run is over: a copy
    damaged since it was stored is caught by its sha256, said, deleted, and the model loads
    again with the file fetched afresh, which gives the text of before."""
    path = "/models/tiny/model.safetensors"
    server = serve(site)
    v = visits(server).open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0,
                            autorun=1)
    before = v.generate()
    v.wait_saved("tiny")
    digest = index_of(site)["tiny"]["sha256"]["model.safetensors"]
    v.store(flip="sha256-" + digest)
    assert v.store(hash="sha256-" + digest) != digest
    fetched = server.gets(path, whole=True)

    # The next visit, without autorun: the model loads from the stored copy, which is not
    # read through first (nothing said, nothing fetched: its hash waits for the first run, or
    # 15 s).
    v.open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=0)
    assert v.wait_for_state("ready", "error") == "ready", v.page.text_content("#error")
    assert "damaged" not in v.note() and server.gets(path, whole=True) == fetched, v.note()
    v.page.click("#generate")
    assert v.wait_for_state("done", "error") == "done", v.page.text_content("#error")
    v.page.wait_for_function("document.getElementById('offline-note').textContent"
                             ".includes('damaged')", timeout=TIMEOUT_MS)
    note = v.note()
    assert "tiny/model.safetensors" in note and "damaged" in note, note
    # Loaded again: the file fetched, whole, once (the loader's Range reads of its header
    # come beside it), and the text of before.
    v.page.wait_for_function(
        "document.getElementById('status').textContent.includes('tiny loaded')",
        timeout=TIMEOUT_MS)
    assert server.gets(path, whole=True) == fetched + 1
    v.page.click("#generate")
    assert v.wait_for_state("done", "error") == "done", v.page.text_content("#error")
    assert v.page.text_content("#output") == before
    v.wait_saved("tiny")
    assert v.store(hash="sha256-" + digest) == digest  # the copy stored again is the right one
    assert v.errors == [], v.errors


def test_the_panel_lists_kept_models_and_deletes_them(visits, serve, site):
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
        assert row.get_attribute("data-source") == "site"
        mb = index[name]["bytes"] / 1e6
        text = row.text_content()
        assert f"{mb:.2f} MB" in text and "built in" in text, text
    assert set(index["tiny"]["sha256"].values()) <= v.stored_hashes()
    storage = v.page.text_content("#storage-used")
    assert storage.startswith("Storage used by this site:") and "free:" in storage, storage
    # Asked for once a model was kept; the browser decides (headless Chromium says no).
    persisted = v.page.evaluate("navigator.storage.persisted()")
    line = v.page.locator("#storage-persisted")
    assert line.get_attribute("data-persisted") == ("1" if persisted else "0")
    assert line.text_content().startswith(
        "Persistent storage: granted" if persisted else "Persistent storage: not granted"), \
        line.text_content()
    used = v.usage()
    assert used >= index["tiny"]["bytes"], used

    # Another tab that loads tiny holds its files' use locks (store.js): Delete leaves them,
    # and says why.
    digest = index["tiny"]["sha256"]["model.safetensors"]
    other = v.context.new_page()  # (its /favicon.ico 404 is not the page's)
    other.goto(server.base + "build.json")
    other.evaluate("""hash => { navigator.locks.request('webgpt-use:' + hash, {mode: 'shared'},
        () => new Promise((resolve) => { window.__release = resolve; })); }""", "sha256-" + digest)
    v.page.click('#cached-models li[data-model="tiny"] button.delete')
    v.page.wait_for_function(
        "document.getElementById('offline-note').textContent.includes('another tab')",
        timeout=30_000)
    assert digest in v.stored_hashes()
    assert v.page.locator('#cached-models li[data-model="tiny"]').count() == 1
    other.evaluate("window.__release()")
    other.close()

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


def test_an_interrupted_download_resumes_where_it_stopped(visits, serve, site, test_models):
    """The server is killed halfway through the weights: the load fails and says so; once the
    server is back, the page fetches only the rest of the file (a Range request from where its
    part stopped) and runs the model."""
    path = "/models/tiny/model.safetensors"
    size = index_of(site)["tiny"]["files"]["model.safetensors"]
    digest = "sha256-" + index_of(site)["tiny"]["sha256"]["model.safetensors"]
    server = serve(site)
    cut = server.hold(path, cut=True)
    v = visits(server).open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0,
                            autorun=1)
    assert cut["at_half"].wait(TIMEOUT_MS / 1000)
    # Once the page has written some of what came, the connection ends and the server is gone
    # (what the network had not handed on yet is lost: the page keeps what it wrote).
    v.page.wait_for_function(f"({STORE_JS})({{list: true}}).then(s => s.parts['{digest}'] "
                             f"> {size // 4})", timeout=TIMEOUT_MS)
    cut["go"].set()
    assert v.wait_for_state("done", "error") == "error"
    server.stop()
    error = v.page.text_content("#error")
    assert "model.safetensors: the download stopped at byte" in error, error
    have = v.store(list=True)["parts"][digest]
    # What it kept: some of the file, at most what came before the cut. (Not "more than the
    # quarter the page had written when the cut was let go": the part can end at an earlier
    # recorded point, 302168 of 1306712 bytes in most runs here, so that bound was flaky.)
    assert 0 < have <= size // 2, (have, size)
    state = json.loads(v.store(text=["parts", digest + ".state"]))
    assert state["bytes"] == have, (state, have)

    server.start(site)
    del server.requests[:]
    server.sent.clear()
    v.page.reload()
    assert v.generate() == cli_generate(test_models["tiny"], PROMPT, N)
    # Only the rest: one Range request from where the part stopped, beside the loader's own
    # small reads of the header, and no more bytes than those.
    ranges = server.ranges(path)
    assert [r for r in ranges if r is None or r.endswith("-")] == [f"bytes={have}-"], ranges
    assert server.sent[path] == size - have + small_reads(ranges), \
        (server.sent[path], size, have, ranges)
    assert f"where it stopped, at {have / 1e6:.2f} MB" in v.note(), v.note()
    v.wait_saved("tiny")
    assert v.store(hash=digest) == digest[len("sha256-"):]
    assert v.store(list=True)["parts"] == {}
    errors = [e for e in v.errors if "Failed to fetch" not in e]
    assert errors == [], errors


def test_two_tabs_load_an_uncached_model_once(visits, serve, site, test_models):
    """Two pages load the same model, not stored yet, at the same time: the first downloads it
    (held halfway here until the second is waiting for it), the second waits, then reads the
    stored copy: one download, and both run."""
    path = "/models/tiny/model.safetensors"
    size = index_of(site)["tiny"]["files"]["model.safetensors"]
    server = serve(site)
    held = server.hold(path)
    v = visits(server)
    first = v.page
    v.open(page=first, model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=1)
    assert held["at_half"].wait(TIMEOUT_MS / 1000), "the first tab never downloaded the weights"
    second = v.new_page()
    v.open(page=second, model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=1)
    second.wait_for_function(
        "document.getElementById('offline-note').textContent.includes('Another tab is "
        "downloading tiny/model.safetensors')", timeout=TIMEOUT_MS)
    t0 = time.monotonic()
    held["go"].set()
    want = cli_generate(test_models["tiny"], PROMPT, N)
    assert v.generate(page=first) == want
    assert v.generate(page=second) == want
    print(f"\nboth tabs done {time.monotonic() - t0:.1f} s after the download went on")
    # One download of the weights, beside each tab's small reads of its header.
    ranges = server.ranges(path)
    assert [r for r in ranges if r is None or r.endswith("-")] == [None], ranges
    assert server.sent[path] == size + small_reads(ranges), (server.sent[path], size, ranges)
    assert v.errors == [], v.errors


def test_a_quota_too_small_is_said_and_the_model_runs_from_the_network(visits, serve, site,
                                                                        test_models):
    server = serve(site)
    v = visits(server)
    cdp = v.context.new_cdp_session(v.page)
    quota = 200_000  # bytes: less than tiny needs (1.3 MB)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": server.base[:-1], "quotaSize": quota})
    v.open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=1)
    assert v.generate() == cli_generate(test_models["tiny"], PROMPT, N)
    note = v.note()
    need = index_of(site)["tiny"]["bytes"] / 1e6
    assert f"tiny needs {need:.2f} MB more to be kept on this device, but this site has only " \
        in note and "free: it runs from the network and is not kept." in note, note
    assert v.stored_hashes() == set() and v.store(list=True)["parts"] == {}
    assert v.page.locator('#cached-models li[data-model="tiny"]').count() == 0
    assert v.errors == [], v.errors


# store.js with a write that fails after the first piece, as a full disk does.
WRITE = "part.handle.write(value, { at });"
FAILING_WRITE = ("if (at > 0) throw new DOMException('The quota has been exceeded.', "
                 "'QuotaExceededError');\n                " + WRITE)


def test_a_write_that_fails_still_loads(visits, serve, site, test_models):
    """When the store cannot write a file part way through (the disk full), the loader's stream
    goes on alone: the model runs, and the panel says the file was not saved."""
    server = serve(site)
    v = visits(server)

    def patched(route):
        resp = route.fetch()
        text = resp.text()
        assert WRITE in text, "store.js no longer writes files as this test expects"
        route.fulfill(response=resp, body=text.replace(WRITE, FAILING_WRITE))

    v.context.route("**/store.js", patched)
    v.open(model="tiny", prompt=PROMPT, max_new_tokens=24, temperature=0, autorun=1)
    assert v.generate() == cli_generate(test_models["tiny"], PROMPT, 24)
    v.page.wait_for_function(
        "document.getElementById('offline-note').textContent.includes('could not be saved')",
        timeout=30_000)
    note = v.note()
    assert "tiny/model.safetensors" in note and "no room left" in note, note
    digest = index_of(site)["tiny"]["sha256"]["model.safetensors"]
    assert digest not in v.stored_hashes()
    assert v.store(list=True)["parts"] == {}
    assert v.errors == [], v.errors


# The model cache of before (the Cache API, "webgpt-models"): each file under
# models/sha256/<hex>, the kept models in models/kept.json.
OLD_CACHE = """async ({name, files}) => {
  const cache = await caches.open('webgpt-models');
  for (const [path, hex] of files) {
    const resp = await fetch(path);
    await cache.put(new URL('models/sha256/' + hex, location.href).href, resp);
  }
  await cache.put(new URL('models/kept.json', location.href).href,
                  new Response(JSON.stringify({models: [name]})));
}"""


def test_models_kept_in_the_cache_api_move_to_opfs(visits, serve, site, test_models):
    server = serve(site)
    v = visits(server)
    setup = v.context.new_page()  # (its /favicon.ico 404 is not the page's)
    setup.goto(server.base + "build.json")
    entry = index_of(site)["tiny"]
    setup.evaluate(OLD_CACHE, {"name": "tiny", "files": [
        [f"models/tiny/{f}", hex] for f, hex in entry["sha256"].items()]})
    setup.close()
    del server.requests[:]
    v.open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=1)
    assert v.generate() == cli_generate(test_models["tiny"], PROMPT, N)
    assert [r for r in server.requests if r[1].startswith("/models/tiny/")] == []
    assert v.page.evaluate("caches.has('webgpt-models')") is False
    assert set(entry["sha256"].values()) <= v.stored_hashes()
    v.wait_saved("tiny")
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


def test_a_body_longer_than_declared_is_not_stored_nor_read_past(visits, serve, site, tmp_path):
    """The site's index declares tiny's vocab.json 1000 bytes shorter than the server sends
    it: the store writes no byte past the declared size, keeps nothing, says why, and the
    loader gets only the declared bytes (a JSON cut short: a sentence naming the file)."""
    path = "/models/tiny/vocab.json"
    copy = str(tmp_path / "site")
    shutil.copytree(site, copy, copy_function=os.link)
    index_path = os.path.join(copy, "models", "index.json")
    with open(index_path, encoding="utf-8") as f:
        index = json.load(f)
    tiny = next(m for m in index["models"] if m["name"] == "tiny")
    size = tiny["files"]["vocab.json"] - 1000
    tiny["files"]["vocab.json"] = size
    tiny["bytes"] -= 1000
    os.remove(index_path)       # a hard link to the first site's file: write a new one
    with open(index_path, "w", encoding="utf-8") as f:
        json.dump(index, f)
    server = serve(copy)
    v = visits(server).open(model="tiny", prompt=PROMPT, max_new_tokens=N, temperature=0,
                            autorun=1)
    assert v.wait_for_state("done", "error") == "error"
    error = v.page.text_content("#error")
    assert "vocab.json" in error and "JSON" in error, error
    note = v.note()
    assert f"tiny/vocab.json could not be saved on this device (the server sent more than the " \
           f"{size} bytes it declared)" in note, note
    stored = v.store(list=True)
    digest = "sha256-" + tiny["sha256"]["vocab.json"]
    assert digest not in stored["blobs"] and digest not in stored["parts"], stored
    assert server.gets(path, whole=True) >= 1
    v.errors.clear()    # the loader's error is the page's to show, and it did
