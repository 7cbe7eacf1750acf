"""Models from the hub, loaded by the page (Chromium, WebGPU on SwiftShader).

The hub is test_fetch.py's mock, made what a browser sees of the real one: on a second origin
(another port of 127.0.0.1), with CORS headers on every answer, and the weights (LFS files)
answered by a redirect to a storage server on a third origin. The site is built for it
(build.py's hub_endpoint). Every request of the page to any other origin is blocked and
recorded: there must be none.

One page walks through what a user does: ?hub=owner/name runs a model from the hub (greedy ==
the CLI on the same folder), with only the files a model folder needs fetched (not README.md,
not pytorch_model.bin), every file resolved at the listed commit; a sharded repository loads
too; the errors are sentences: no such repository or a private one (401), no such revision
(404), a gated repository, an architecture webgpt.load refuses (said by webgpt.load, before any
weights are downloaded), a model too big for this adapter (before its weights stream), a badly
written id; Keep puts the model in the Offline panel (source: the hub); with the hub gone, the
kept model loads from this device and one not kept says the hub cannot be reached.
"""

import hashlib
import json
import os
import socket
import threading
import urllib.parse

import pytest

import refmodels
from conftest import _import_build, wait_for_state
from test_fetch import COMMIT, LFS_SUFFIXES, REPO, SHARDED, Hub, make_repos
from test_web import cli_generate

TIMEOUT_MS = 240_000
PROMPT = "Hello world, this is"
N = 12
BERT = "test-org/bert-like"
LONG = "test-org/long-context"
GATED = "test-org/gated"
EXPOSED = ("X-Error-Code, X-Error-Message, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, ETag, "
           "Content-Range, Accept-Ranges, Content-Length")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class PageHub(Hub):
    """test_fetch's hub as a page sees the real one: CORS headers on every answer (and on
    preflights), and LFS files redirected to `storage` (another origin) rather than to its own
    /cdn/. GATED lists as a gated repository."""

    def __init__(self, repos, storage=None):
        super().__init__(repos)
        self.storage = storage or self.url
        self.conns = set()
        handler = self.server.RequestHandlerClass
        handler.do_OPTIONS = lambda h: self.handle(h, body=False)
        setup = handler.setup

        def track(h):
            setup(h)
            self.conns.add(h.connection)

        handler.setup = track

    def close(self):
        """Gone: the server and every connection the browser keeps open to it."""
        super().close()
        for conn in list(self.conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server = None

    def handle(self, h, body):
        # The handler's own methods (one handler serves every request of a connection).
        send_header, end_headers = type(h).send_header.__get__(h), type(h).end_headers.__get__(h)
        own_cdn = self.url + "/cdn/"

        def header(name, value):
            if name == "Location" and value.startswith(own_cdn):
                value = self.storage + "/cdn/" + value[len(own_cdn):]
            send_header(name, value)

        def end():
            send_header("Access-Control-Allow-Origin", "*")
            send_header("Access-Control-Expose-Headers", EXPOSED)
            end_headers()

        h.send_header, h.end_headers = header, end
        if h.command == "OPTIONS":
            self.requests.append(("OPTIONS", urllib.parse.urlsplit(h.path).path, None))
            h.send_response(204)
            h.send_header("Access-Control-Allow-Methods", "GET, HEAD")
            h.send_header("Access-Control-Allow-Headers", "Range")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if urllib.parse.urlsplit(h.path).path.startswith(f"/api/models/{GATED}/"):
            self.requests.append((h.command, urllib.parse.urlsplit(h.path).path, None))
            data = json.dumps({"id": GATED, "sha": COMMIT, "gated": "manual", "siblings": [
                {"rfilename": "config.json", "size": 10, "blobId": "0" * 40}]}).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if body:
                h.wfile.write(data)
            return None
        return super().handle(h, body)

    def files(self, repo):
        """The files of `repo` that were fetched (resolved, or read from storage), by name."""
        blobs = {sha256(data): name for name, data in self.repos[repo].items()
                 if name.endswith(LFS_SUFFIXES)}
        out = set()
        for method, path, _ in self.requests:
            if method == "GET" and path.startswith(f"/{repo}/resolve/"):
                out.add(path.rsplit("/", 1)[1])
            elif method == "GET" and path.startswith("/cdn/") and path[5:] in blobs:
                out.add(blobs[path[5:]])
        return out


@pytest.fixture(scope="module")
def hub_repos(tmp_path_factory):
    """(the source folder of REPO, {repo: {file: bytes}}): test_fetch's repositories, one whose
    config.json names another architecture, and one too long a context for this adapter."""
    tmp = tmp_path_factory.mktemp("hub")
    src, repos = make_repos(tmp)
    # A generation_config.json that names no token (test_fetch's names 50256, past this
    # vocabulary of 1000): fetched, and the greedy text stays the CLI's on the source folder.
    for files in repos.values():
        files["generation_config.json"] = b'{"_from_model_config": true}\n'
    bert = dict(repos[REPO])
    config = json.loads(bert["config.json"])
    config.update(model_type="bert", architectures=["BertModel"])
    bert["config.json"] = json.dumps(config).encode()
    repos[BERT] = bert
    cfg = dict(n_layer=1, n_head=2, n_embd=16, vocab_size=1000, n_positions=65536)
    folder = refmodels.write_folder(str(tmp / "long"), cfg, refmodels.make_weights(cfg, 3))
    repos[LONG] = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            repos[LONG][name] = f.read()
    return src, repos


@pytest.fixture(scope="module")
def hubs(hub_repos):
    """(hub, storage): the mock hub and the storage its weights redirect to, two origins."""
    storage = PageHub(hub_repos[1])
    hub = PageHub(hub_repos[1], storage=storage.url)
    yield hub, storage
    for h in (hub, storage):
        if h.server is not None:
            h.close()


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory, hubs):
    """Base URL of build.py's server serving a site built for the mock hub."""
    build = _import_build()
    site = build.build(str(tmp_path_factory.mktemp("hubsite") / "dist"), hub_endpoint=hubs[0].url)
    with open(os.path.join(site, "build.json"), encoding="utf-8") as f:
        assert json.load(f)["hub_endpoint"] == hubs[0].url
    srv = build.make_server(site, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


class HubVisit:
    """A browser context whose requests may reach the site, the hub and its storage only."""

    def __init__(self, browser, base, hubs):
        self.base = base
        self.allowed = (base, hubs[0].url + "/", hubs[1].url + "/")
        self.blocked, self.errors = [], []
        self.context = browser.new_context(viewport={"width": 1000, "height": 1100})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _route(self, route):
        if route.request.url.startswith(self.allowed):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def _console(self, msg):
        # The hub's error answers (401, 404) and a hub that is gone are logged as failed loads.
        if msg.type == "error" and "status of 40" not in msg.text and "net::ERR_" not in msg.text:
            self.errors.append(msg.text)

    def open(self, **params):
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        self.page.goto(self.base + "index.html?" + query)

    def state(self, *states):
        return wait_for_state(self.page, states, TIMEOUT_MS)

    def error(self):
        return " ".join(self.page.text_content("#error").split())

    def load(self, text):
        """Type `text` into the hub field and press Load; the state it ends in."""
        self.page.evaluate("document.getElementById('error').hidden = true")
        self.page.fill("#hub-id", text)
        self.page.click("#hub-load")
        return self.settle()

    def settle(self):
        """Wait until an error shows, or the page is ready (or done) with nothing being listed
        or loaded; the state it ends in."""
        self.page.wait_for_function(
            "!document.getElementById('error').hidden || "
            "['ready', 'done'].includes(document.documentElement.dataset.state) && "
            "!document.getElementById('status').textContent.startsWith('Listing') && "
            "!document.getElementById('status').textContent.startsWith('Loading')",
            timeout=TIMEOUT_MS)
        return self.page.evaluate("document.documentElement.dataset.state")

    def close(self):
        self.context.close()


def test_hub_models_load_in_the_page(browser, hub_server, hubs, hub_repos):
    hub, storage = hubs
    src = hub_repos[0]
    want = cli_generate(src, PROMPT, N)
    v = HubVisit(browser, hub_server, hubs)
    try:
        # ?hub= runs the model, from the hub's resolve URLs at the listed commit, the weights
        # through the storage redirect; only a folder's files are fetched.
        v.open(hub=REPO, prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=1)
        assert v.state("done", "error") == "done", v.error()
        assert v.page.text_content("#output") == want
        assert v.page.input_value("#model") == REPO
        assert hub.files(REPO) | storage.files(REPO) == {
            "config.json", "generation_config.json", "vocab.json", "merges.txt",
            "model.safetensors"}, hub.files(REPO) | storage.files(REPO)
        assert all(COMMIT in p for m, p, _ in hub.requests if f"/{REPO}/resolve/" in p)
        assert storage.files(REPO) == {"model.safetensors"}
        # Offered once its files are checked (hashed after the run: store.js) and stored.
        v.page.wait_for_selector("#hub-keep:visible", timeout=TIMEOUT_MS)

        # The same weights in two shards (model.safetensors.index.json).
        assert v.load(SHARDED) == "ready", v.error()
        assert {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"} <= hub.files(SHARDED) | storage.files(SHARDED)
        v.page.click("#generate")
        assert v.state("done", "error") == "done", v.error()
        assert v.page.text_content("#output") == want

        # Errors, as sentences; the model that is in stays usable.
        for text, sentence in [
            ("test-org/nope", "There is no model test-org/nope on the hub, or it is private "
                              "(HTTP 401)."),
            (f"{REPO}@v9", f"{REPO} has no revision \u201cv9\u201d (HTTP 404)."),
            (GATED, f"{GATED} is gated: the hub gives its files only to signed-in users"),
            ("not a model id", "\u201cnot a model id\u201d is not a model id from the hub"),
        ]:
            assert v.load(text) == "ready", text
            assert sentence in v.error(), (text, v.error())
            assert v.page.input_value("#model") == SHARDED
        # An architecture webgpt.load does not run: said by it, before any weights come.
        before = len(storage.requests)
        assert v.load(BERT) == "error"
        assert "could not be loaded" in v.error() and "'bert'" in v.error(), v.error()
        assert storage.requests[before:] == [] and "model.safetensors" not in hub.files(BERT)
        # Too big for this adapter: refused before the weights stream (only the header's
        # Range reads reached the storage).
        assert v.load(LONG) == "error"
        assert "does not fit this GPU" in v.error() and "65536" in v.error(), v.error()
        long_sha = sha256(hub_repos[1][LONG]["model.safetensors"])
        reads = [r for m, p, r in storage.requests if m == "GET" and p == f"/cdn/{long_sha}"]
        assert reads and all(r and not r.endswith("-") for r in reads), reads

        # Keep: the panel lists it, from the hub.
        assert v.load(REPO) == "ready", v.error()
        v.page.wait_for_selector("#hub-keep:visible", timeout=TIMEOUT_MS)
        v.page.click("#hub-keep")
        row = f'#cached-models li[data-model="{REPO}"][data-complete="1"]'
        v.page.wait_for_selector(row, timeout=TIMEOUT_MS)
        assert v.page.get_attribute(row, "data-source") == "hub"
        assert f"from the hub, commit {COMMIT[:7]}" in v.page.text_content(row)
        assert v.page.is_hidden("#hub-keep")
        assert v.page.locator(f'#cached-models li[data-model="{SHARDED}"]').count() == 0

        # The hub gone: the kept model loads from this device; one not kept says why not.
        for h in (hub, storage):
            h.close()
        v.open(hub=REPO, prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=1)
        assert v.state("done", "error") == "done", v.error()
        assert v.page.text_content("#output") == want
        assert "runs from its copy on this device" in v.page.text_content("#offline-note")
        assert v.load(BERT) == "ready"
        assert f"The hub ({hub.url}) cannot be reached, so {BERT} cannot be loaded." in \
            v.error(), v.error()
        assert v.blocked == [], v.blocked
        assert v.errors == [], v.errors
    finally:
        v.close()


def test_build_fixes_the_hub_endpoint(monkeypatch):
    """build.py --hub-endpoint (build and serve): an http(s) address, written to build.json
    without a trailing slash; anything else is one line, before anything is built."""
    build = _import_build()
    assert build.check_hub_endpoint("https://hf-mirror.example/") == "https://hf-mirror.example"
    assert build.check_hub_endpoint("http://127.0.0.1:8080/hub") == "http://127.0.0.1:8080/hub"
    monkeypatch.setenv("WEBGPT_NO_VENV", "1")
    for argv in (["--hub-endpoint", "huggingface.co"], ["serve", "--hub-endpoint", "ftp://x"],
                 ["build", "--hub-endpoint", "https://x/?token=1"]):
        with pytest.raises(SystemExit, match=r"build.py: --hub-endpoint .* is not an http\(s\) "
                                             r"address such as https://huggingface.co"):
            build.main(argv)
