"""Download GPT-2 model folders from the Hugging Face hub, with the standard library only.

    fetch("gpt2", "weights/gpt2")     # config.json, model.safetensors, vocab.json, merges.txt

Only what a model folder needs is downloaded (not pytorch_model.bin, tf_model.h5, onnx/, ...).
Each file goes to `<file>.part` first; an interrupted download resumes from there with a Range
request (within the run, and in a later run); a finished file is checked against the size and
hash the hub publishes for it, then renamed into place. Progress goes to stderr.

How the hub serves a repository (as huggingface_hub's own client uses it):

- `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true` is JSON with "id" (the
  canonical repository id: "gpt2" answers as "openai-community/gpt2"), "sha" (the commit the
  revision points to) and "siblings": [{"rfilename", "size", "blobId" (the git blob sha1),
  "lfs": {"sha256", "size", "pointerSize"}}], "lfs" only for files kept in LFS (or Xet): the
  weights.
- `{endpoint}/{repo}/resolve/{revision}/{filename}` serves a file. A HEAD request answers, without
  following redirects, with X-Repo-Commit and an ETag; for an LFS file it redirects to the
  storage location and adds X-Linked-Etag (the file's sha256, quoted) and X-Linked-Size. For
  other files the ETag is the git blob sha1. GET serves the bytes and honours Range.
- Errors carry X-Error-Code: RepoNotFound (status 401 for anonymous requests, which cannot
  tell a missing repository from a private one), RevisionNotFound, EntryNotFound (404).

Files are resolved at the commit the API names, so every file comes from the same revision even
if the branch moves during a long download. HF_ENDPOINT overrides the endpoint (a mirror, or the
tests' local server).

What a hub answers is input from anyone, so: a repository id is owner/name in the hub's own
characters (`fetch evil/..` wrote to weights/..); only http and https are spoken, before and
after any redirect (a redirect to file:// copied a local file into the folder); a file is
never written past the size the hub lists for it (a body that never ended was); the listing's
commit, sizes and hashes must have their types; each response's headers must come within
HEADERS_SECONDS, and each body must bring STALL_BYTES every STALL_SECONDS, else the download
stops, saying so (a hub that sent a byte every 29 s held it forever: each read was within the
socket's timeout).
"""

import hashlib
import http.client
import os
import re
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from ..config import parse_config
from ..arch import arch_for
from ..errors import HubError, ModelFolderError, printable, short_repr
from ..limits import check_text_size, parse_json, text_limit

__all__ = ["HubError", "MODELS", "endpoint", "fetch"]

DEFAULT_ENDPOINT = "https://huggingface.co"

# The official GPT-2 checkpoints, by the names transformers and nanoGPT use for them, and the
# repositories they live in now (the short names redirect there).
MODELS = {
    "gpt2": "openai-community/gpt2",                # 124M
    "gpt2-medium": "openai-community/gpt2-medium",  # 355M
    "gpt2-large": "openai-community/gpt2-large",    # 774M
    "gpt2-xl": "openai-community/gpt2-xl",          # 1.5B
    "distilgpt2": "distilbert/distilgpt2",          # 82M
}

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
# Fetched where the repository has them: generation settings (eos ids), the tokenizer's
# settings (bos/eos tokens, the chat template) and a chat template of its own.
OPTIONAL = ("generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
            "chat_template.jinja")

USER_AGENT = "webgpt-py (urllib)"
CHUNK = 1 << 20
# The API's listing of a repository's files: openai-community/gpt2's is 10 KB; a repository of
# ten thousand files a few MB. More is not a hub's answer.
MAX_LISTING = 64 << 20
LISTING_BUDGET = 256 << 20
# A response's status and headers must come within HEADERS_SECONDS of the request, and a body
# must bring STALL_BYTES within every STALL_SECONDS (about 0.8 KB/s): less is a stalled download.
HEADERS_SECONDS = 20.0
STALL_SECONDS = 20.0
STALL_BYTES = 16 << 10
# A repository id as the hub allows it: owner/name, letters, digits, '-', '_', '.', each part
# starting with a letter or digit, at most 96 characters; no '..' or '--' anywhere.
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


def endpoint():
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_repo_id(text):
    """Whether `text` is owner/name as the hub writes repository ids."""
    owner, slash, name = text.partition("/")
    return bool(slash) and all(_REPO_PART.fullmatch(part) for part in (owner, name)) \
        and ".." not in text and "--" not in text


def fetch(name, dest, revision="main", endpoint_url=None, log=None, timeout=30.0, retries=5,
          retry_wait=1.0):
    """Download model `name` (a key of MODELS or an "owner/repo" id) into folder `dest`.

    `owner/repo:QUANT` (llama.cpp's convention: bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M)
    downloads the GGUF file of that quantization (all parts of a split one); a repository of
    GGUF files named without a tag is a HubError that lists them with their sizes.

    Returns {file name: size} of the folder's files. `log(line)` gets progress and messages
    (default: stderr). A failed download raises HubError and keeps what it had in `.part`
    files, so running it again resumes.
    """
    log = log or _stderr
    base = (endpoint_url or endpoint()).rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise HubError(f"the hub's address {base!r} is not an http or https address")
    name, colon, tag = name.partition(":")     # OWNER/NAME:QUANT picks a GGUF file (llama.cpp's -hf)
    if colon and not _QUANT_TAG.fullmatch(tag):
        raise HubError(f"{tag!r} is not a quantization tag (such as Q4_K_M or Q8_0)")
    hub = _Hub(base, timeout)
    repo, commit, siblings, where = _listing(hub, name, revision)
    if colon or ("config.json" not in siblings and gguf_files(siblings)):
        names = pick_gguf(where, repo, siblings, tag)
        return _fetch_files(hub, repo, commit, where, siblings, dest, names, log, retries,
                            retry_wait)
    return _fetch_folder(hub, repo, commit, where, siblings, dest, log, retries, retry_wait)


def _listing(hub, name, revision):
    """(repo, commit, {file name: sibling}, where) of model `name` at `revision`, as the hub
    lists it, each name the hub gives checked before it is used."""
    repo = MODELS.get(name, name)
    if "/" not in repo:
        raise HubError(f"unknown model {name!r}: use one of {', '.join(MODELS)} or a hub "
                       f"repository id such as openai-community/gpt2")
    if not is_repo_id(repo):
        raise HubError(f"{repo!r} is not a hub repository id: write owner/name, each of "
                       f"letters, digits, '-', '_' and '.' (as openai-community/gpt2)")
    info = hub.model_info(repo, revision)
    listed = info.get("id")
    if listed is not None and not (isinstance(listed, str) and is_repo_id(listed)):
        raise HubError(f"the hub lists {repo} under the id {short_repr(listed)}, which is not "
                       f"a repository id")
    repo = listed or repo
    commit = info.get("sha")
    if commit is not None and not _is_hex(commit, 40):
        raise HubError(f"the hub lists {repo} at the commit {short_repr(commit)}, which is not "
                       f"a commit id (40 hexadecimal digits)")
    commit = commit or revision
    siblings = {s["rfilename"]: s for s in info.get("siblings") or []
                if isinstance(s, dict) and isinstance(s.get("rfilename"), str)}
    where = f"{repo} at {revision}" + (f" ({commit[:7]})" if commit != revision else "")
    return repo, commit, siblings, where


def _fetch_folder(hub, repo, commit, where, siblings, dest, log, retries, retry_wait):
    """A safetensors model folder: config.json first (an architecture webgpt cannot run fails
    before gigabytes are downloaded), the tokenizer files, then the weights."""
    if "config.json" not in siblings:
        raise HubError(f"{where} has no config.json; a model folder needs config.json, its "
                       f"weights and its tokenizer files")
    if SINGLE not in siblings and INDEX not in siblings:
        if "pytorch_model.bin" in siblings:
            raise HubError(f"{where} has only pytorch_model.bin (a pickle), no safetensors "
                           f"weights; webgpt reads safetensors only: load it with transformers "
                           f"and save_pretrained() it (that writes model.safetensors), then "
                           f"use that folder")
        raise HubError(f"{where} has no {SINGLE} and no {INDEX}")

    fresh = not os.path.isdir(dest) or not os.listdir(dest)
    os.makedirs(dest, exist_ok=True)
    if fresh:  # a folder made for the download (never a folder that held other things)
        _ignore_in_git(dest)
    files = {}

    def get(filename):
        url = hub.resolve_url(repo, commit, filename)
        want = _expected(filename, siblings.get(filename), hub.head(url, filename))
        if not filename.endswith(".safetensors"):   # a text file, which is read whole
            check_text_size(f"{where}: {filename}", filename, want.size, HubError)
        # Storage URLs are signed for a while only: a retry asks the hub for a fresh one.
        want.relocate = lambda: hub.head(url, filename)["location"]
        path = os.path.join(dest, filename)
        _download(hub, want, path, log, retries, retry_wait)
        files[filename] = want.size
        return path

    with open(get("config.json"), encoding="utf-8", errors="replace") as f:
        config_text = f.read(text_limit("config.json") + 1)
    try:
        arch = arch_for(parse_config(config_text, f"{where}: config.json"))
    except ModelFolderError as e:
        raise HubError(str(e)) from None
    # The architecture's tokenizer files: vocab.json + merges.txt (GPT-2), tokenizer.json
    # (the others).
    missing = [f for f in arch.tokenizer_files if f not in siblings]
    if missing:
        raise HubError(f"{where} has no {' or '.join(missing)}; a {arch.name} model folder "
                       f"needs {' and '.join(arch.tokenizer_files)}")
    for filename in arch.tokenizer_files + tuple(f for f in OPTIONAL if f in siblings):
        get(filename)
    weights = [SINGLE] if SINGLE in siblings else _shards(get(INDEX), where, siblings)
    _check_space(dest, weights, siblings)
    for filename in weights:
        get(filename)

    total = sum(files.values())
    log(f"{dest}: {', '.join(files)} ({_mb(total)}) from {repo} at commit {commit}")
    return files


# ---------------------------------------------------------------- GGUF repositories

# A quantization tag as llama.cpp's -hf takes it: Q4_K_M, Q8_0, IQ4_XS, BF16, f16, ...
_QUANT_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,31}")
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.I)


def gguf_files(siblings):
    """{file: size} of a repository's GGUF model files (not multimodal projectors)."""
    return {f: _size_of(s) for f, s in siblings.items()
            if f.lower().endswith(".gguf") and "mmproj" not in f.lower()}


def gguf_models(siblings):
    """{model: [its files in order]}: each GGUF model of a repository, split parts together
    under the name of their first part."""
    models = {}
    for f in sorted(gguf_files(siblings)):
        m = _SPLIT.search(f)
        key = f[:m.start()] + ".gguf" if m else f
        models.setdefault(key, []).append(f)
    return models


def _tag_of(model):
    """The quantization tag a GGUF file name ends with (Llama-3.2-1B-Instruct-Q4_K_M.gguf ->
    Q4_K_M), or the name itself."""
    stem = os.path.basename(model)[:-len(".gguf")]
    m = re.search(r"[-_.]((?:I?Q\d[A-Z0-9_]*)|(?:[BF]F?\d\d)|(?:F\d\d))$", stem, re.I)
    return m.group(1) if m else stem


def describe_ggufs(siblings):
    """"Q4_K_M (808 MB), Q8_0 (1.3 GB), ...": a repository's GGUF models by tag and size."""
    files = gguf_files(siblings)
    return ", ".join(f"{_tag_of(model)} ({_mb(sum(files[f] for f in parts))})"
                     for model, parts in gguf_models(siblings).items())


def pick_gguf(where, repo, siblings, tag):
    """The files of the GGUF model tagged `tag` (a split model's parts, in order); without a
    tag, or with one no file has, a HubError listing the repository's GGUF models."""
    models = gguf_models(siblings)
    if not models:
        raise HubError(f"{where} has no GGUF files" + (f" (so no {tag!r})" if tag else ""))
    listing = describe_ggufs(siblings)
    if not tag:
        raise HubError(f"{where} holds GGUF files, one per quantization: name one as "
                       f"{repo}:TAG, with TAG one of {listing}")
    found = [m for m in models if _tag_of(m).lower() == tag.lower()]
    if not found:
        found = [m for m in models if tag.lower() in os.path.basename(m).lower()]
    if len(found) != 1:
        what = "several" if found else "none"
        raise HubError(f"{where}: {what} of its GGUF files match {tag!r}; it has {listing}")
    return models[found[0]]


def _fetch_files(hub, repo, commit, where, siblings, dest, names, log, retries, retry_wait):
    """Download files `names` of the repository into `dest` (each under its base name), as
    fetch() downloads a model folder's; returns {file name: size}."""
    fresh = not os.path.isdir(dest) or not os.listdir(dest)
    os.makedirs(dest, exist_ok=True)
    if fresh:
        _ignore_in_git(dest)
    _check_space(dest, names, siblings)
    files = {}
    for filename in names:
        url = hub.resolve_url(repo, commit, filename)
        want = _expected(filename, siblings.get(filename), hub.head(url, filename))
        want.relocate = lambda url=url, filename=filename: hub.head(url, filename)["location"]
        base = os.path.basename(filename)
        _download(hub, want, os.path.join(dest, base), log, retries, retry_wait)
        files[base] = want.size
    log(f"{dest}: {', '.join(files)} ({_mb(sum(files.values()))}) from {repo} at commit "
        f"{commit}")
    return files


# ---------------------------------------------------------------- the hub's HTTP interface


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # HEAD reports the redirect itself (the hub's headers are on it)


class _HTTPRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects followed to http and https only (urllib would also follow one to ftp)."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = urllib.parse.urljoin(req.full_url, headers.get("Location") or "")
        if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
            raise _final(f"{_host(req.full_url)} redirected to {short_repr(target)}, which is "
                         f"not an http or https address: refused")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _Connections:
    """The sockets of this thread's requests in flight, which a watchdog shuts down when a
    response's headers do not come in time (each recv has the socket's timeout, but a server
    can send one byte per timeout for ever)."""

    def __init__(self):
        self.current = None

    def connection_class(self, base):
        connections = self

        class Watched(base):
            def connect(self):
                super().connect()
                connections.current = self.sock
        return Watched


def _opener(redirects, connections):
    """An opener for http and https only (no file:, ftp: or data: handler), whose
    connections report their sockets to `connections`."""
    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(connections.connection_class(http.client.HTTPConnection), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(connections.connection_class(http.client.HTTPSConnection), req,
                                context=self._context)

    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), HTTP(),
                    HTTPS(), urllib.request.HTTPDefaultErrorHandler(),
                    _HTTPRedirect() if redirects else _NoRedirect(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


class _Hub:
    def __init__(self, base, timeout):
        self.base = base
        self.timeout = timeout
        self._connections = _Connections()
        self._opener = _opener(True, self._connections)
        self._head_opener = _opener(False, self._connections)

    def resolve_url(self, repo, revision, filename):
        return (f"{self.base}/{repo}/resolve/{urllib.parse.quote(revision, safe='')}/"
                f"{urllib.parse.quote(filename)}")

    def open(self, url, headers=None, method="GET", head=False):
        """The response to one request, its status and headers within HEADERS_SECONDS."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise _final(f"{short_repr(url)} is not an http or https address: refused")
        req = urllib.request.Request(url, method=method,
                                     headers={"User-Agent": USER_AGENT, **(headers or {})})
        late = threading.Event()

        def shut():
            late.set()
            sock = self._connections.current
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._connections.current = None
        watchdog = threading.Timer(HEADERS_SECONDS, shut)
        watchdog.daemon = True
        watchdog.start()
        try:
            return (self._head_opener if head else self._opener).open(req, timeout=self.timeout)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if late.is_set():
                raise HubError(f"{_host(url)} did not answer within {HEADERS_SECONDS:g} s; "
                               f"check the network connection (or set HF_ENDPOINT to a "
                               f"mirror)") from None
            raise HubError(f"cannot reach {_host(url)}: {_reason(e)}; check the network connection "
                           f"(or set HF_ENDPOINT to a mirror)") from None
        finally:
            watchdog.cancel()

    def model_info(self, repo, revision):
        url = (f"{self.base}/api/models/{repo}/revision/{urllib.parse.quote(revision, safe='')}"
               f"?blobs=true")
        try:
            with self.open(url) as r:
                body = _read(r, MAX_LISTING + 1, url)
        except urllib.error.HTTPError as e:
            raise _http_error(e, f"model {repo} (revision {revision})") from None
        if len(body) > MAX_LISTING:
            raise HubError(f"{url} answered with more than {MAX_LISTING >> 20} MiB; is "
                           f"{self.base} a Hugging Face hub?")
        try:
            info = parse_json(body, url, HubError, budget=LISTING_BUDGET)
        except HubError as e:
            raise HubError(f"{url} did not answer with JSON a hub sends ({e}); is {self.base} a "
                           f"Hugging Face hub?") from None
        if not isinstance(info, dict) or not isinstance(info.get("siblings"), list):
            raise HubError(f"{url} did not list the repository's files (no \"siblings\")")
        return info

    def head(self, url, filename):
        """The hub's metadata for a file: {etag, size, commit, location}. Relative redirects
        (a renamed repository) are followed; an absolute one is the storage location."""
        for _ in range(5):
            try:
                r = self.open(url, method="HEAD", head=True)
                r.close()
                status, headers = r.status, r.headers
            except urllib.error.HTTPError as e:
                status, headers = e.code, e.headers
                e.close()
                if not 300 <= status < 400:
                    raise _http_error(e, filename) from None
            location = headers.get("Location")
            if location and urllib.parse.urlsplit(urllib.parse.urljoin(url, location)).scheme \
                    not in ("http", "https"):
                raise HubError(f"{filename}: {_host(url)} redirected to {short_repr(location)}, "
                               f"which is not an http or https address: refused")
            if 300 <= status < 400 and location and not urllib.parse.urlsplit(location).netloc:
                url = urllib.parse.urljoin(url, location)
                continue
            redirected = 300 <= status < 400 and bool(location)
            # A redirect's own ETag and Content-Length describe the redirect, not the file.
            etag = headers.get("X-Linked-Etag") or (None if redirected else headers.get("ETag"))
            size = headers.get("X-Linked-Size") or (
                None if redirected else headers.get("Content-Length"))
            return {"etag": _unquote_etag(etag or ""),
                    "size": int(size) if size and size.isdigit() else None,
                    "commit": headers.get("X-Repo-Commit"),
                    "location": location if redirected else url}
        raise HubError(f"{filename}: too many redirects from {_host(url)}")


def _final(message):
    """A HubError that a retry cannot help (_fill does not retry it)."""
    error = HubError(message)
    error.retry = False
    return error


def _http_error(e, what):
    code = e.headers.get("X-Error-Code") if e.headers else None
    message = e.headers.get("X-Error-Message") if e.headers else None
    detail = f" ({message})" if message else ""
    if code == "RepoNotFound" or (e.code == 401 and code is None):
        return HubError(f"{what}: no such repository on {_host(e.url)} (HTTP {e.code}{detail}); "
                        f"check the name (private or gated repositories are not supported)")
    if code == "RevisionNotFound":
        return HubError(f"{what}: no such revision (HTTP {e.code}{detail})")
    if code == "EntryNotFound" or e.code == 404:
        return HubError(f"{what}: not found at {e.url} (HTTP {e.code}{detail})")
    return HubError(f"{what}: HTTP {e.code} {e.reason} from {e.url}{detail}")


def _host(url):
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


def _reason(e):
    reason = getattr(e, "reason", None) or e
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _read(response, limit, what):
    """Up to `limit` bytes of a response's body, which must keep coming (_Stall)."""
    data = bytearray()
    stall = _Stall(what)
    while len(data) < limit:
        block = response.read1(min(CHUNK, limit - len(data)))
        if not block:
            break
        data += block
        stall.update(len(block))
    return bytes(data)


class _Stall:
    """Ends a body that brings fewer than STALL_BYTES in STALL_SECONDS: update(n) after each
    read raises HubError then. (A read itself waits at most the socket's timeout, so a server
    that sends nothing at all ends there.)"""

    def __init__(self, what):
        self.what = what
        self.since, self.bytes = time.monotonic(), 0
        self.stalled = False

    def update(self, n):
        self.bytes += n
        now = time.monotonic()
        if now - self.since < STALL_SECONDS:
            return
        if self.bytes < STALL_BYTES:
            self.stalled = True
            raise HubError(f"{self.what}: the download stalled ({self.bytes} bytes in the last "
                           f"{now - self.since:.0f} s)")
        self.since, self.bytes = now, 0


def _unquote_etag(etag):
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


# ---------------------------------------------------------------- what a file must be


class _Want:
    """A file to download: where from, its size, and the hash it must have."""

    def __init__(self, filename, url, size, sha256=None, git_sha1=None):
        self.filename, self.url, self.size = filename, url, size
        self.sha256, self.git_sha1 = sha256, git_sha1
        self.relocate = None


def _is_hex(s, n):
    return isinstance(s, str) and len(s) == n and all(c in "0123456789abcdef" for c in s)


def _expected(filename, sibling, head):
    """Size and hash from the API listing, checked against the HEAD response's headers."""
    sibling = sibling or {}
    lfs = sibling.get("lfs") if isinstance(sibling.get("lfs"), dict) else None
    sha256 = lfs.get("sha256") if lfs else None
    git_sha1 = None if lfs else sibling.get("blobId")
    size = (lfs or sibling).get("size")
    if isinstance(size, bool):
        size = None
    etag = head["etag"].lower()
    # The HEAD response's ETag: the sha256 for LFS files, the git blob sha1 for the others.
    if _is_hex(etag, 64):
        if sha256 and sha256 != etag:
            raise HubError(f"{filename}: the hub lists sha256 {sha256} but serves {etag}")
        sha256 = etag
    elif _is_hex(etag, 40) and not sha256:
        if git_sha1 and git_sha1 != etag:
            raise HubError(f"{filename}: the hub lists blob {git_sha1} but serves {etag}")
        git_sha1 = etag
    if head["size"] is not None:
        if size is not None and size != head["size"]:
            raise HubError(f"{filename}: the hub lists {size} bytes but serves {head['size']}")
        size = head["size"]
    if not isinstance(size, int) or size < 0:
        raise HubError(f"{filename}: the hub does not say its size")
    if not (_is_hex(sha256, 64) or _is_hex(git_sha1, 40)):
        raise HubError(f"{filename}: the hub publishes no sha256 for it, so it cannot be checked")
    return _Want(filename, head["location"], size, sha256, git_sha1)


def _size_of(sibling):
    if not sibling:
        return 0
    lfs = sibling.get("lfs")
    size = (lfs if isinstance(lfs, dict) else sibling).get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0


def _shards(index_path, where, siblings):
    try:
        with open(index_path, "rb") as f:
            index = parse_json(f.read(text_limit(INDEX) + 1), f"{where}: {INDEX}", HubError)
    except OSError as e:
        raise HubError(f"{where}: {INDEX} cannot be read ({e.strerror})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise HubError(f"{where}: {INDEX} has no weight_map")
    shards = sorted(set(map(str, weight_map.values())))
    for shard in shards:
        # A file beside the index, as webgpt.folder reads it: no paths out of the folder.
        if (not shard or "/" in shard or "\\" in shard or "\0" in shard or shard in (".", "..")
                or shard not in siblings):
            raise HubError(f"{where}: {INDEX} names shard {shard!r}, which the repository lacks")
    return shards


# ---------------------------------------------------------------- downloading one file


def _download(hub, want, path, log, retries, retry_wait):
    """Download want.url to path via path.part: resume, retry, check, rename."""
    name = want.filename
    if os.path.isfile(path) and os.path.getsize(path) == want.size and _check(path, want) is None:
        log(f"{name}: already here ({_mb(want.size)}), hash checked")
        return
    part = path + ".part"
    resumed_from_before = os.path.isfile(part) and 0 < os.path.getsize(part) <= want.size
    for fresh_start in (False, True):
        _fill(hub, want, part, log, retries, retry_wait)
        bad = _check(part, want)
        if bad is None:
            os.replace(part, path)
            return
        os.remove(part)
        if fresh_start or not resumed_from_before:
            raise HubError(f"{name}: {bad}; deleted the download, run the command again to retry")
        # The .part left by an earlier run may be from another version of the file.
        log(f"{name}: {bad} after resuming an earlier download; starting it again from zero")


def _fill(hub, want, part, log, retries, retry_wait):
    """Bring part to want.size bytes, resuming with Range requests; up to `retries` more tries
    when the connection drops."""
    name, total = want.filename, want.size
    failures = 0
    progress = None
    if total == 0:      # an empty file: nothing to download
        open(part, "wb").close()
    while True:
        have = os.path.getsize(part) if os.path.isfile(part) else 0
        if have > total:
            os.remove(part)
            have = 0
        if have == total:
            break
        if progress is None:
            progress = _Progress(name, total, have, log)
        headers = {"Range": f"bytes={have}-"} if have else {}
        error = None
        stall = None
        try:
            with hub.open(want.url, headers) as r:
                if have and r.status != 206:
                    have = 0  # the server ignored Range: start over
                elif have and not _range_starts_at(r.headers.get("Content-Range"), have):
                    raise HubError(f"{name}: the server answered Range bytes={have}- with "
                                   f"{r.headers.get('Content-Range')!r}")
                progress.restart(have)
                stall = _Stall(name)
                with open(part, "ab" if have else "wb") as f:
                    # Never past the listed size: the hash check then says whether the bytes
                    # are the file (a body that goes on for ever is not read on).
                    while have < total:
                        block = r.read1(min(CHUNK, total - have))
                        if not block:
                            break
                        f.write(block)
                        have += len(block)
                        progress.update(len(block))
                        stall.update(len(block))
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:
                # Range past the end: the .part is not a prefix of this file.
                os.remove(part)
                continue
            if not (e.code in (403, 408, 429) or e.code >= 500):  # 403: an expired signed URL
                raise _http_error(e, name) from None
            error = f"HTTP {e.code} {e.reason}"
        except HubError as e:
            if stall is not None and stall.stalled:     # not retried: it would stall again
                raise HubError(f"{e}; the part is kept in {part}: run the command again to "
                               f"resume") from None
            if not getattr(e, "retry", True):
                raise
            error = str(e)
        except (OSError, http.client.HTTPException) as e:
            error = _reason(e)
        now = os.path.getsize(part) if os.path.isfile(part) else 0
        if now >= total:
            continue
        failures += 1
        why = error or "the connection closed early"
        if failures > retries:
            raise HubError(f"{name}: download failed at byte {now} of {total} ({why}); the part "
                           f"is kept in {part}: run the command again to resume")
        log(f"{name}: interrupted at byte {now} of {total} ({why}); resuming "
            f"(retry {failures} of {retries})")
        time.sleep(retry_wait * failures)
        if want.relocate is not None:
            try:
                want.url = want.relocate()
            except HubError:
                pass  # the next try fails too, and counts
    if progress is not None:
        progress.done()


def _range_starts_at(content_range, start):
    # "bytes 1000-4999/5000"
    try:
        unit, rest = content_range.split(" ", 1)
        return unit == "bytes" and int(rest.split("-", 1)[0]) == start
    except (AttributeError, ValueError):
        return False


def _check(path, want):
    """None when the file has the size and hash the hub published; else what is wrong."""
    size = os.path.getsize(path)
    if size != want.size:
        return f"{size} bytes, expected {want.size}"
    if want.sha256:
        h = hashlib.sha256()
    else:
        h = hashlib.sha1()
        h.update(b"blob %d\0" % size)  # a git blob's id: sha1 over this header and the bytes
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    got = h.hexdigest()
    want_hash = want.sha256 or want.git_sha1
    if got != want_hash:
        kind = "sha256" if want.sha256 else "git blob sha1"
        return f"{kind} {got} does not match the hub's {want_hash}"
    return None


def _check_space(dest, names, siblings):
    """Fail before a download that cannot fit (counting what is already there)."""
    need = 0
    for name in names:
        size = _size_of(siblings.get(name))
        path = os.path.join(dest, name)
        if os.path.isfile(path) and os.path.getsize(path) == size:
            continue
        part = path + ".part"
        need += size - (os.path.getsize(part) if os.path.isfile(part) else 0)
    free = shutil.disk_usage(dest).free
    if need > free:
        raise HubError(f"{', '.join(names)} need {_mb(need)} more but {dest} has "
                       f"{_mb(free)} free")


def _ignore_in_git(dest):
    """A downloaded model is data, not source: keep it out of `git status`."""
    path = os.path.join(dest, ".gitignore")
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write("# Downloaded by `python build.py fetch`: not part of the repository.\n*\n")


# ---------------------------------------------------------------- progress


def _stderr(line):
    print(printable(line), file=sys.stderr, flush=True)


def _mb(n):
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


class _Progress:
    """Bytes done / total and the rate: one line redrawn on a terminal, else a line every 10 s."""

    def __init__(self, name, total, done, log):
        self.name, self.total, self.done_bytes = name, total, done
        self.log = log
        self.tty = log is _stderr and sys.stderr.isatty()
        self.t0 = self.last = time.monotonic()
        self.start_bytes = done
        if done:
            log(f"{name}: resuming at {_mb(done)} of {_mb(total)}")
        elif total >= 1 << 20:  # small files get only the closing line
            log(f"{name}: downloading {_mb(total)}")

    def restart(self, done):
        self.done_bytes = done

    def update(self, n):
        self.done_bytes += n
        now = time.monotonic()
        if now - self.last >= (0.25 if self.tty else 10.0):
            self.last = now
            self._show(now, end="")

    def _show(self, now, end):
        rate = (self.done_bytes - self.start_bytes) / max(now - self.t0, 1e-6)
        pct = 100.0 * self.done_bytes / self.total if self.total else 100.0
        line = (f"{self.name}: {_mb(self.done_bytes)} / {_mb(self.total)} ({pct:.0f}%) "
                f"{rate / 1e6:.1f} MB/s")
        if self.tty:   # our own escape (erase the line), then the line with any escaped
            sys.stderr.write("\r\x1b[K" + printable(line) + ("\n" if end == "\n" else ""))
            sys.stderr.flush()
        else:
            self.log(line)

    def done(self):
        self._show(time.monotonic(), end="\n")
