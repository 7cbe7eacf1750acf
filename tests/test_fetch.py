"""`build.py fetch` against a local server that answers as the Hugging Face hub does.

The server (a thread in this module) serves small random-init GPT-2 folders (tests/refmodels.py)
in the hub's layout: the file listing at /api/models/{repo}/revision/{rev}?blobs=true (siblings
with blobId and, for LFS files, lfs {sha256, size, pointerSize}); files at
/{repo}/resolve/{rev}/{file}, whose HEAD carries X-Repo-Commit and ETag (the git blob sha1), and
for LFS files a 302 to a storage URL with X-Linked-Etag (the quoted sha256) and X-Linked-Size;
the storage URL serves the bytes with Range support; errors carry X-Error-Code (RepoNotFound with
401, RevisionNotFound and EntryNotFound with 404). hub.py's download code runs unchanged against
it: only the data is small.

Faults it can inject: drop the connection halfway through a file once, serve corrupted bytes,
forget a file it lists; and as a hostile hub (issue 23): a body that goes on past the file,
a redirect to another address (file://), a byte at a time with pauses (in the body or in the
headers), and any change to the listing.
"""

import asyncio
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np
import pytest

import refmodels
from conftest import missing

import webgpt
from webgpt.tools import hub

REPO = "test-org/tiny-gpt2"
SHARDED = "test-org/sharded-gpt2"
BIN_ONLY = "test-org/bin-only"
COMMIT = hashlib.sha1(b"test commit").hexdigest()
LFS_SUFFIXES = (".safetensors", ".bin")


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_repos(tmp):
    """{repo: {file name: bytes}}: a GPT-2 folder, the same weights in two shards, and a repo
    with pytorch_model.bin only."""
    from safetensors.numpy import save_file

    cfg = refmodels.CONFIGS["tiny"]
    weights = refmodels.make_weights(cfg, 7)
    src = refmodels.write_folder(str(tmp / "source"), cfg, weights)
    files = {}
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        with open(os.path.join(src, name), "rb") as f:
            files[name] = f.read()
    files["generation_config.json"] = b'{"bos_token_id": 50256, "eos_token_id": 50256}\n'
    files["README.md"] = b"# tiny-gpt2\n"
    files["pytorch_model.bin"] = os.urandom(5000)   # must never be downloaded

    names = sorted(weights)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half],
              "model-00002-of-00002.safetensors": names[half:]}
    sharded = {k: v for k, v in files.items() if k != "model.safetensors"}
    weight_map = {}
    for shard, keys in shards.items():
        path = str(tmp / shard)
        save_file({k: weights[k] for k in keys}, path, metadata={"format": "pt"})
        with open(path, "rb") as f:
            sharded[shard] = f.read()
        weight_map.update({k: shard for k in keys})
    sharded["model.safetensors.index.json"] = json.dumps(
        {"metadata": {}, "weight_map": weight_map}).encode()

    bin_only = {k: v for k, v in files.items() if k != "model.safetensors"}
    return src, {REPO: files, SHARDED: sharded, BIN_ONLY: bin_only}


class Hub:
    """The fake hub: repos, fault switches and a log of the requests it answered."""

    def __init__(self, repos):
        self.repos = repos
        self.blobs = {hashlib.sha256(data).hexdigest(): (name, data)
                      for files in repos.values() for name, data in files.items()}
        self.drop_once = set()      # file names whose next download is cut off halfway
        self.drop_always = set()    # file names whose every download is cut off halfway
        self.corrupt = set()        # file names served with one byte changed
        self.unlisted = set()       # file names listed by the API but answered with 404
        self.endless = set()        # file names whose body goes on past their end
        self.redirect = {}          # file name -> where its resolve URL redirects (HEAD, GET)
        self.storage_redirect = None    # where every storage (LFS) URL redirects
        self.drip = {}              # file name -> seconds between the bytes of its body
        self.drip_listing = None    # seconds between the bytes of the listing's headers
        self.listing = {}           # changes to every listing's JSON
        self.requests = []          # (method, path, Range header)
        hub_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub_self.handle(self, body=False)

            def do_GET(self):
                hub_self.handle(self, body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A client that leaves mid-body (as it should from an endless one) is not an error.
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def gets(self, prefix):
        return [(p, r) for m, p, r in self.requests if m == "GET" and p.startswith(prefix)]

    # -- responses

    def handle(self, h, body):
        parts = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(parts.path)
        self.requests.append((h.command, path, h.headers.get("Range")))
        if path.startswith("/api/models/"):
            return self.api(h, path[len("/api/models/"):], body)
        if path.startswith("/cdn/"):
            return self.cdn(h, path[len("/cdn/"):], body)
        if "/resolve/" in path:
            repo, rest = path[1:].split("/resolve/", 1)
            revision, _, filename = rest.partition("/")
            return self.resolve(h, repo, revision, filename, body)
        self.error(h, 404, None, body)

    def error(self, h, status, code, body, message="not found"):
        data = json.dumps({"error": message}).encode()
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
            h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    def api(self, h, rest, body):
        if self.drip_listing:       # the status line, a byte at a time
            for byte in b"HTTP/1.1 200 OK\r\n":
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(self.drip_listing)
            return
        repo, _, revision = rest.partition("/revision/")
        if repo not in self.repos:
            # The hub answers 401 to anonymous requests for repos it does not show them.
            return self.error(h, 401, "RepoNotFound", body, "Repository not found")
        if revision not in ("", "main", COMMIT):
            return self.error(h, 404, "RevisionNotFound", body, f"Invalid rev id: {revision}")
        siblings = []
        for name, data in sorted(self.repos[repo].items()):
            s = {"rfilename": name, "size": len(data), "blobId": git_blob_sha1(data)}
            if name.endswith(LFS_SUFFIXES):
                s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "pointerSize": 134}
                s["blobId"] = git_blob_sha1(b"version https://git-lfs.github.com/spec/v1\n")
            siblings.append(s)
        data = json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "private": False,
                           "siblings": siblings, **self.listing}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    def resolve(self, h, repo, revision, filename, body):
        if repo not in self.repos:
            return self.error(h, 401, "RepoNotFound", body, "Repository not found")
        if revision not in ("main", COMMIT):
            return self.error(h, 404, "RevisionNotFound", body, "Invalid rev id")
        files = self.repos[repo]
        if filename not in files or filename in self.unlisted:
            return self.error(h, 404, "EntryNotFound", body, "Entry not found")
        data = files[filename]
        if filename in self.redirect:
            h.send_response(302)
            h.send_header("Location", self.redirect[filename])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if filename.endswith(LFS_SUFFIXES):
            # LFS files: a redirect to the storage, with the file's sha256 and size.
            sha = hashlib.sha256(data).hexdigest()
            h.send_response(302)
            h.send_header("Location", f"{self.url}/cdn/{sha}")
            h.send_header("X-Linked-Etag", f'"{sha}"')
            h.send_header("X-Linked-Size", str(len(data)))
            h.send_header("ETag", f'"{git_blob_sha1(b"pointer")}"')
            h.send_header("X-Repo-Commit", COMMIT)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        self.send_bytes(h, filename, data, body, {"ETag": f'"{git_blob_sha1(data)}"',
                                                  "X-Repo-Commit": COMMIT})

    def cdn(self, h, sha, body):
        if self.storage_redirect:
            h.send_response(302)
            h.send_header("Location", self.storage_redirect)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if sha not in self.blobs:
            return self.error(h, 404, None, body)
        filename, data = self.blobs[sha]
        self.send_bytes(h, filename, data, body, {"ETag": f'"{sha}"'})

    def send_bytes(self, h, filename, data, body, headers):
        if filename in self.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        start, status = 0, 200
        rng = h.headers.get("Range")
        if rng:
            first = int(rng.split("=")[1].split("-")[0])
            if first >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            start, status = first, 206
        h.send_response(status)
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not body:
            return
        if filename in self.drop_once or filename in self.drop_always:
            self.drop_once.discard(filename)
            h.wfile.write(data[start:start + (len(data) - start) // 2])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
            h.close_connection = True
            return
        if filename in self.drip:
            for k in range(start, len(data)):
                h.wfile.write(data[k:k + 1])
                h.wfile.flush()
                time.sleep(self.drip[filename])
            return
        h.wfile.write(data[start:])
        if filename in self.endless:    # 64 MiB more than it said, or until the client leaves
            h.close_connection = True
            try:
                for _ in range(64):
                    h.wfile.write(b"\0" * (1 << 20))
            except OSError:
                pass


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    return make_repos(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def server(repos):
    srv = Hub(repos[1])
    yield srv
    srv.close()


def fetch(server, dest, name=REPO, **kw):
    lines = []
    files = hub.fetch(name, str(dest), endpoint_url=server.url, log=lines.append, retry_wait=0, **kw)
    return files, "\n".join(lines)


def same_files(dest, files):
    for name, data in files.items():
        with open(os.path.join(dest, name), "rb") as f:
            assert f.read() == data, f"{name} differs from the hub's"


def test_full_download(server, repos, tmp_path):
    dest = tmp_path / "tiny"
    files, log = fetch(server, dest)
    want = ["config.json", "vocab.json", "merges.txt", "generation_config.json", "model.safetensors"]
    assert list(files) == want
    same_files(dest, {k: repos[1][REPO][k] for k in want})
    assert sorted(os.listdir(dest)) == sorted(want + [".gitignore"])  # no .part, no .bin
    assert not server.gets("/cdn/" + hashlib.sha256(repos[1][REPO]["pytorch_model.bin"]).hexdigest())
    # Files are resolved at the commit the API named, the weights through the redirect.
    assert all(COMMIT in p for p, _ in server.gets(f"/{REPO}/resolve/"))
    assert server.gets("/cdn/")
    assert "model.safetensors: downloading" in log and "100%" in log, log
    print(log)

    # Again: everything is there and checked, nothing is downloaded.
    before = len(server.requests)
    _, log = fetch(server, dest)
    assert "already here" in log
    assert not [r for r in server.requests[before:] if r[0] == "GET" and r[1].startswith("/cdn/")]


def test_sharded_download(server, repos, tmp_path):
    files, _ = fetch(server, tmp_path / "sharded", SHARDED)
    assert "model.safetensors.index.json" in files
    assert "model-00001-of-00002.safetensors" in files and "model-00002-of-00002.safetensors" in files
    same_files(tmp_path / "sharded", {k: repos[1][SHARDED][k] for k in files})


def test_dropped_connection_resumes(server, repos, tmp_path):
    """The server cuts the weights off halfway once: the download goes on from there."""
    data = repos[1][REPO]["model.safetensors"]
    server.drop_once.add("model.safetensors")
    dest = tmp_path / "tiny"
    _, log = fetch(server, dest)
    same_files(dest, {"model.safetensors": data})
    gets = server.gets("/cdn/" + hashlib.sha256(data).hexdigest())
    assert [r for _, r in gets] == [None, f"bytes={len(data) // 2}-"], gets
    assert "interrupted at byte" in log and "resuming" in log, log


def test_gives_up_then_resumes_next_run(server, repos, tmp_path):
    """A connection that keeps dropping: after the retries the error says so and keeps the
    .part; the next run continues from it."""
    data = repos[1][REPO]["model.safetensors"]
    server.drop_always.add("model.safetensors")
    dest = tmp_path / "tiny"
    with pytest.raises(hub.HubError, match=r"model.safetensors: download failed at byte \d+ of "
                                           rf"{len(data)} .*kept in .*model.safetensors.part: run "
                                           r"the command again to resume") as e:
        fetch(server, dest, retries=2)
    print(e.value)
    kept = os.path.getsize(dest / "model.safetensors.part")
    assert len(data) // 2 < kept < len(data)  # three tries, each cut off halfway
    server.drop_always.clear()
    del server.requests[:]
    fetch(server, dest)
    same_files(dest, {"model.safetensors": data})
    assert [r for _, r in server.gets("/cdn/")] == [f"bytes={kept}-"]


def test_resume_from_earlier_run(server, repos, tmp_path):
    """A .part left by an earlier run is continued with a Range request."""
    data = repos[1][REPO]["model.safetensors"]
    dest = tmp_path / "tiny"
    os.makedirs(dest)
    with open(dest / "model.safetensors.part", "wb") as f:
        f.write(data[:12345])
    _, log = fetch(server, dest)
    same_files(dest, {"model.safetensors": data})
    assert [r for _, r in server.gets("/cdn/")] == ["bytes=12345-"]
    assert "resuming at" in log, log


def test_stale_part_starts_again(server, repos, tmp_path):
    """A .part that is not a prefix of the file fails the hash after resuming; the download
    starts again from zero once."""
    data = repos[1][REPO]["model.safetensors"]
    dest = tmp_path / "tiny"
    os.makedirs(dest)
    with open(dest / "model.safetensors.part", "wb") as f:
        f.write(b"\0" * 1000)
    _, log = fetch(server, dest)
    same_files(dest, {"model.safetensors": data})
    assert [r for _, r in server.gets("/cdn/")] == ["bytes=1000-", None]
    assert "starting it again from zero" in log, log


def test_sha_mismatch(server, tmp_path):
    server.corrupt.add("model.safetensors")
    dest = tmp_path / "tiny"
    with pytest.raises(hub.HubError, match=r"model.safetensors: sha256 [0-9a-f]{64} does not "
                                           r"match the hub's [0-9a-f]{64}; deleted") as e:
        fetch(server, dest)
    print(e.value)
    assert not os.path.exists(dest / "model.safetensors")
    assert not os.path.exists(dest / "model.safetensors.part")


def test_small_file_hash_mismatch(server, tmp_path):
    """Files outside LFS are checked against their git blob sha1."""
    server.corrupt.add("vocab.json")
    with pytest.raises(hub.HubError, match="vocab.json: git blob sha1 .* does not match"):
        fetch(server, tmp_path / "tiny")


def test_not_found(server, tmp_path):
    with pytest.raises(hub.HubError, match=r"model test-org/nope \(revision main\): no such "
                                           r"repository on http://127.0.0.1:\d+ \(HTTP 401"):
        fetch(server, tmp_path / "x", "test-org/nope")
    with pytest.raises(hub.HubError, match=r"no such revision \(HTTP 404"):
        fetch(server, tmp_path / "x", revision="v9")
    server.unlisted.add("vocab.json")
    with pytest.raises(hub.HubError, match=r"vocab.json: not found at http://.*/resolve/"
                                           rf"{COMMIT}/vocab.json \(HTTP 404"):
        fetch(server, tmp_path / "x")
    with pytest.raises(hub.HubError, match="unknown model 'gpt3'"):
        fetch(server, tmp_path / "x", "gpt3")


def test_only_pytorch_bin(server, tmp_path):
    with pytest.raises(hub.HubError, match="has only pytorch_model.bin .* safetensors only"):
        fetch(server, tmp_path / "x", BIN_ONLY)
    assert not os.path.exists(tmp_path / "x")


def test_no_network(tmp_path):
    """Connection refused: one line that says the hub cannot be reached."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(hub.HubError, match=r"cannot reach http://127.0.0.1:\d+: Connection "
                                           r"refused; check the network"):
        hub.fetch("gpt2", str(tmp_path / "x"), endpoint_url=f"http://127.0.0.1:{port}",
                  log=lambda line: None)


def test_known_models():
    assert hub.MODELS["gpt2"] == "openai-community/gpt2"
    assert hub.MODELS["distilgpt2"] == "distilbert/distilgpt2"
    assert set(hub.MODELS) == {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"}


def run_build(args, endpoint_url):
    env = dict(os.environ, HF_ENDPOINT=endpoint_url, WEBGPT_NO_VENV="1")
    return subprocess.run([sys.executable, "build.py", *args], cwd=refmodels.REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli(server, repos, tmp_path):
    dest = tmp_path / "cli"
    r = run_build(["fetch", REPO, "--dest", str(dest)], server.url)
    assert r.returncode == 0, r.stderr
    same_files(dest, {"model.safetensors": repos[1][REPO]["model.safetensors"]})
    assert "model.safetensors: downloading" in r.stderr

    r = run_build(["fetch", "test-org/nope", "--dest", str(tmp_path / "no")], server.url)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build.py: fetch: model test-org/nope"), r.stderr


def test_downloaded_folder_gives_source_logits(server, repos, tmp_path):
    """The downloaded folder loads, and its logits are the source folder's."""
    try:
        asyncio.run(webgpt.gpu.request_device())
    except (ImportError, webgpt.gpu.GPUError) as e:
        missing(f"no WebGPU adapter through wgpu: {e}")
    src = repos[0]
    dest = tmp_path / "tiny"
    fetch(server, dest)
    ids = [5, 99, 512, 7, 300, 999, 0, 42, 17]

    async def run(folder):
        model = await webgpt.load(str(folder))
        return np.asarray(await model.logits(ids))

    ref, got = asyncio.run(run(src)), asyncio.run(run(dest))
    err = float(np.abs(got - ref).max())
    print(f"max |downloaded - source| = {err} (same bytes: expected 0)")
    assert got.shape == (len(ids), 1000)
    np.testing.assert_array_equal(got, ref)


def test_llama_family_repo(tmp_path):
    """A Qwen3 repository (tokenizer.json, tokenizer_config.json, chat template, generation
    config) downloads as such, loads, and gives transformers' greedy tokens."""
    pytest.importorskip("transformers")
    import hfmodels

    src = hfmodels.write_folder(str(tmp_path / "src"), "Qwen3ForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32))
    with open(os.path.join(src, "chat_template.jinja"), "w") as f:
        f.write("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    files = {}
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), "rb") as f:
            files[name] = f.read()
    files["README.md"] = b"# tiny-qwen3\n"
    hub_server = Hub({"test-org/tiny-qwen3": files})
    try:
        dest = tmp_path / "got"
        got = hub.fetch("test-org/tiny-qwen3", str(dest), endpoint_url=hub_server.url,
                        log=lambda line: None)
    finally:
        hub_server.close()
    assert set(got) == set(files) - {"README.md"}
    same_files(dest, {k: v for k, v in files.items() if k in got})

    async def run():
        model = await webgpt.load(str(dest))
        try:
            return model.config.model_type, await model.generate_ids([5, 9, 13], 4, temperature=0,
                                                                     stop_at_eot=False)
        finally:
            model.release()

    try:
        kind, ids = asyncio.run(run())
    except webgpt.gpu.GPUError as e:
        missing(f"no WebGPU adapter through wgpu: {e}")
    import torch
    import transformers
    ref = transformers.Qwen3ForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    want = ref.generate(torch.tensor([[5, 9, 13]]), max_new_tokens=4, do_sample=False)[0, 3:]
    assert kind == "qwen3" and ids == want.tolist()



# ---------------------------------------------------------------------------------------------
# A hostile hub (issue 23): nothing written past a file's listed size or outside the folder, no
# local file read through a redirect, a drip of bytes ended, the listing's types checked.


def test_a_body_that_goes_on_is_not_written_past_the_listed_size(server, repos, tmp_path):
    server.endless.update({"config.json", "model.safetensors"})
    t0 = time.monotonic()
    files, _ = fetch(server, tmp_path / "m")
    seconds = time.monotonic() - t0
    same_files(tmp_path / "m", {k: repos[1][REPO][k] for k in files})
    for name, size in files.items():
        assert os.path.getsize(tmp_path / "m" / name) == size
    assert seconds < 10, seconds


@pytest.mark.parametrize("where", ["file://localhost{}", "file://{}", "ftp://127.0.0.1{}",
                                   "data:text/plain,x"])
def test_a_redirect_to_a_local_file_is_refused(server, tmp_path, where):
    secret = tmp_path / "secret.txt"
    secret.write_text('{"n_layer": 1, "secret": true}')
    server.redirect["config.json"] = where.format(secret)
    with pytest.raises(hub.HubError, match="not an http or https address: refused"):
        fetch(server, tmp_path / "m")
    assert not any("secret" in p.read_text(errors="replace")
                   for p in (tmp_path / "m").iterdir() if p.is_file())
    # The storage's own redirect (followed by the GET of a weights file) too.
    del server.redirect["config.json"]
    server.storage_redirect = where.format(secret)
    with pytest.raises(hub.HubError, match="not an http or https address: refused"):
        fetch(server, tmp_path / "m2")
    assert not (tmp_path / "m2" / "model.safetensors").exists()


def test_a_byte_at_a_time_ends(server, tmp_path, monkeypatch):
    """A body that sends a byte now and then (each within the socket's timeout) stalls, and
    a listing whose headers come a byte at a time misses its deadline: each in a sentence."""
    monkeypatch.setattr(hub, "STALL_SECONDS", 1.0)
    monkeypatch.setattr(hub, "STALL_BYTES", 1024)
    server.drip["vocab.json"] = 0.05
    t0 = time.monotonic()
    with pytest.raises(hub.HubError, match=r"vocab.json: the download stalled \(\d+ bytes in "
                                           r"the last 1 s\); the part is kept in .*vocab.json.part"):
        fetch(server, tmp_path / "m")
    assert time.monotonic() - t0 < 5
    monkeypatch.setattr(hub, "HEADERS_SECONDS", 1.0)
    server.drip_listing = 0.2
    t0 = time.monotonic()
    with pytest.raises(hub.HubError, match=r"did not answer within 1 s"):
        fetch(server, tmp_path / "m2")
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("listing,words", [
    ({"sha": 5}, "at the commit 5, which is not a commit id"),
    ({"sha": "../x"}, "which is not a commit id"),
    ({"id": "../../etc"}, "under the id '../../etc', which is not a repository id"),
    ({"id": ["a"]}, "which is not a repository id"),
    ({"siblings": 5}, "did not list the repository's files"),
    ({"siblings": [{"rfilename": 5}, "config.json"]}, "has no config.json"),
])
def test_a_listing_of_the_wrong_types_is_a_sentence(server, tmp_path, listing, words):
    server.listing = listing
    with pytest.raises(hub.HubError) as info:
        fetch(server, tmp_path / "m")
    assert words in str(info.value), str(info.value)


def test_an_empty_file_downloads(repos, tmp_path):
    files = dict(repos[1][REPO], **{"generation_config.json": b""})
    srv = Hub({REPO: files})
    try:
        got, _ = fetch(srv, tmp_path / "m")
    finally:
        srv.close()
    assert got["generation_config.json"] == 0
    assert (tmp_path / "m" / "generation_config.json").read_bytes() == b""


@pytest.mark.parametrize("name", ["evil/..", "../x", "a/b/c", "a/.", "x/a--b", "/etc",
                                  "a/" + "b" * 97])
def test_a_repository_id_outside_the_hubs_is_refused(server, tmp_path, name):
    """`python -m webgpt fetch evil/..` wrote into weights/..: refused, and nothing asked of
    the hub or written (run where weights/.. is this test's own folder)."""
    env = dict(os.environ, HF_ENDPOINT=server.url,
               PYTHONPATH=os.path.join(refmodels.REPO, "py"))
    (tmp_path / "weights").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "webgpt", "fetch", name], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "is not a hub repository id" in lines[0] or "unknown model" in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert os.listdir(tmp_path / "weights") == [] and server.requests == []


def test_the_cli_against_a_hostile_hub_is_bounded(server, tmp_path):
    """The command itself, as test_hostile.py measures it (peak RSS of the child, time): a
    body that never ends, and a redirect to a local file, each one line, status 1 or 0."""
    from test_hostile import MiB, RSS_LIMIT, SECONDS_LIMIT, measured

    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    server.endless.add("model.safetensors")
    server.redirect["vocab.json"] = f"file://localhost{secret}"
    os.environ["HF_ENDPOINT"] = server.url
    try:
        rc, out, err, rss, seconds = measured([sys.executable, "-m", "webgpt", "fetch", REPO,
                                               "--dest", str(tmp_path / "m")], tmp_path)
    finally:
        del os.environ["HF_ENDPOINT"]
    print(f"{rss / MiB:.0f} MiB peak RSS, {seconds:.1f} s: {err.strip()[-300:]}")
    lines = err.strip().splitlines()
    assert rc == 1 and "Traceback" not in err and lines[-1].startswith("error: vocab.json: "), err
    assert "not an http or https address: refused" in lines[-1]
    assert rss < RSS_LIMIT and seconds < SECONDS_LIMIT, (rss, seconds)
    assert not (tmp_path / "m" / "vocab.json").exists()
