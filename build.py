#!/usr/bin/env python3
"""One entry point: build the static site, serve it, run the tests.

    python3 build.py                      build the site into dist/
    python3 build.py serve [--port N]     build, then serve dist/ on http://127.0.0.1:8000/
        (both take --hub-endpoint URL: the hub the page loads owner/name models from;
         default https://huggingface.co)
    python3 build.py test [pytest args]   the whole test suite (browser tests included)
    python3 build.py fetch NAME [--dest D] download gpt2 (-medium, -large, -xl), distilgpt2
                                          or a hub repo from Hugging Face into weights/NAME
    python3 build.py import nanogpt CKPT OUT | import webgpt DIR OUT
                                          convert a nanoGPT ckpt.pt or a WebGPT weight folder
    python3 build.py quantize SRC DST --bits 8|4 [--block 32] [--max-shard MB] [--force]
                                          write a quantized copy of a model folder

A fresh machine runs this with the system Python before anything is installed, so the top
level uses the standard library only. Each command first makes what it needs, once (stamp
files make the checks fast when nothing changed):

- a virtual environment at .venv with requirements.txt (requirements-test.txt for `test`),
  then re-runs itself inside it;
- `npm ci` in web/ (Pyodide, CodeMirror, hash-wasm and esbuild, pinned in
  web/package-lock.json);
- for `test`, as root and where missing: `apt-get install chromium mesa-vulkan-drivers`.

The site (dist/): the page (web/), Pyodide's runtime files, the pure wheels packaging and
micropip (pinned by sha256 below), this project's own wheel built from py/ and shaders/, and
every model folder under weights/ that has a config.json, in models/<name>/ with
models/index.json listing them (each file's size and sha256). Nothing on the page comes from
anywhere else, except a model from the hub when a user asks for one: the hub's address is
fixed here (build.json's hub_endpoint). For offline use, sw.js (a service worker) keeps the
files that sw-shell.js lists, with their sha256 and a version named by them; the page keeps
models in the browser's Origin Private File System by their hash (SHA-256, or the hub's git
SHA-1, from hash-wasm, bundled into sha256.js). The page's code editor is CodeMirror,
bundled from web/editor/ into editor.js by esbuild; the files it shows (web/scripts/,
web/examples/, py/webgpt/, shaders/) are copied into code/, listed with their sha256 in
code/index.json.
"""

import argparse
import email.utils
import errno
import glob
import hashlib
import http.server
import json
import os
import posixpath
import shutil
import stat
import subprocess
import sys
import urllib.parse

ROOT = os.path.dirname(os.path.abspath(__file__))
DIST = os.path.join(ROOT, "dist")
WEB = os.path.join(ROOT, "web")
WEIGHTS = os.path.join(ROOT, "weights")
VENV = os.path.join(ROOT, ".venv")
CACHE = os.path.join(ROOT, "build")  # git-ignored: downloaded wheels, the built wheel

# What the page needs from the npm package `pyodide` (web/node_modules/pyodide).
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                 "pyodide-lock.json")
# The pure wheels Pyodide's npm package does not ship; loadPackage() takes them by URL.
# Python 3.14 is Pyodide 314's Python.
PURE_WHEELS = {
    "packaging-26.1-py3-none-any.whl":
        "5d9c0669c6285e491e0ced2eee587eaf67b670d94a19e94e3984a481aba6802f",
    "micropip-0.11.1-py3-none-any.whl":
        "768de165adb8e66906039d8fec4127a57f522dfdf8e6fbff877a4616941ecfd3",
}
PYODIDE_PYTHON = "3.14"
# Jinja2 and MarkupSafe: chat templates render with them (webgpt.chat_template). The page loads
# them only when a chat starts (build.json's chat_wheels), so Generate never fetches them.
# MarkupSafe has only platform wheels and an sdist on PyPI: the pure wheel is built here from the
# pinned sdist (its pure-Python fallback, markupsafe/_native.py), byte for byte the same each time.
CHAT_WHEELS = {
    "markupsafe-3.0.4-py3-none-any.whl":
        "af4137a2ef8783792cdc58d69bb2103ff49f67ca8c4640e6771be50f1e61cc6e",
    "jinja2-3.1.6-py3-none-any.whl":
        "85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67",
}
MARKUPSAFE_SDIST = ("markupsafe-3.0.4.tar.gz",
                    "2e9ad7dd851bf45fab9f75cbff4cb493fee9979e8d8c7c9c3ee119022518edd6")
# Files of web/ that are not part of the page.
WEB_EXCLUDE = {"node_modules", "package.json", "package-lock.json", "screenshot.png", "bench-h200.png",
               "bench-h200-round2.png", ".npmrc"}
# The in-page editor: the bundle's entry (CodeMirror from npm, bundled by esbuild) and the
# folders of the files it shows, by their path on the page (code/<path> in the site).
EDITOR_SOURCES = os.path.join(WEB, "editor")
CODE_FOLDERS = {"scripts": os.path.join(WEB, "scripts"), "examples": os.path.join(WEB, "examples"),
                "webgpt": os.path.join(ROOT, "py", "webgpt"), "shaders": os.path.join(ROOT, "shaders")}
CODE_SUFFIXES = (".py", ".wgsl")
# Parts of py/webgpt/ the page does not have: the CPython-only tools (not in the page's wheel).
RUNTIME_EXCLUDE = ("tools", "__main__.py")
# Files of a model folder that go into the site (scripts, logs and caches stay behind).
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors.index.json",
               "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja"}
DEFAULT_MODEL = "shakespeare-char"
# The hub the page lists and loads `owner/name` models from, unless --hub-endpoint says another.
DEFAULT_HUB = "https://huggingface.co"
# Written by build(): the list of the page's files that the service worker (web/sw.js) keeps.
SHELL_MANIFEST = "sw-shell.js"

MIME = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".py": "text/x-python; charset=utf-8",
    ".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8",
    ".wasm": "application/wasm", ".zip": "application/zip", ".whl": "application/zip",
    ".safetensors": "application/octet-stream", ".png": "image/png", ".svg": "image/svg+xml",
    ".ico": "image/x-icon", ".map": "application/json",
}


def log(msg):
    print(f"build.py: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(paths):
    """sha256 over the names and contents of files (and folders, recursively)."""
    h = hashlib.sha256()
    for top in paths:
        if os.path.isfile(top):
            files = [top]
        else:
            files = []
            for d, dirs, names in os.walk(top):
                dirs[:] = sorted(x for x in dirs if x != "__pycache__")
                files += [os.path.join(d, n) for n in sorted(names) if not n.endswith(".pyc")]
        for f in files:
            h.update(os.path.relpath(f, ROOT).encode() + b"\0")
            h.update(sha256_file(f).encode())
    return h.hexdigest()


def read_stamp(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def write_stamp(path, value):
    with open(path, "w", encoding="utf-8") as f:
        f.write(value + "\n")


def is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


_apt_updated = False


def apt_install(*packages):
    global _apt_updated
    if not is_root() or not shutil.which("apt-get"):
        raise SystemExit(f"build.py: please install {' '.join(packages)} (e.g. sudo apt-get "
                         f"install {' '.join(packages)}) and run this again")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        run(["apt-get", "update"], env=env)
        _apt_updated = True
    run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env)


# ---------------------------------------------------------------- environment


def requirements_for(command):
    return "requirements-test.txt" if command == "test" else "requirements.txt"


def requirement_files(name):
    """The requirements file and the ones it includes with -r."""
    out, todo = [], [os.path.join(ROOT, name)]
    while todo:
        path = todo.pop()
        out.append(path)
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
                    todo.append(os.path.join(os.path.dirname(path), parts[1]))
    return out


def venv_python():
    return os.path.join(VENV, "bin", "python")


def in_venv():
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def ensure_venv(command):
    """Create .venv, install the requirements (once per change), then re-run inside it."""
    req = requirements_for(command)
    if not os.path.exists(venv_python()):
        log(f"creating the virtual environment {VENV}")
        try:
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        except subprocess.CalledProcessError:
            shutil.rmtree(VENV, ignore_errors=True)
            apt_install("python3-venv")  # Debian's Python has venv without ensurepip
            run([sys.executable, "-m", "venv", VENV])
    stamp = os.path.join(VENV, f".installed-{req}")
    digest = tree_digest(requirement_files(req))
    if read_stamp(stamp) != digest:
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        run([venv_python(), "-m", "pip", "install", "-q", "-r", os.path.join(ROOT, req)], env=env)
        write_stamp(stamp, digest)
    # The package itself, from py/ as it is (an editable install, without a build step):
    # `.venv/bin/python -m webgpt` runs the working tree.
    for site_packages in glob.glob(os.path.join(VENV, "lib", "python*", "site-packages")):
        pth = os.path.join(site_packages, "webgpt-src.pth")
        if read_stamp(pth) != os.path.join(ROOT, "py"):
            write_stamp(pth, os.path.join(ROOT, "py"))
    if not in_venv():
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        env.pop("PYTHONHOME", None)
        os.execve(venv_python(), [venv_python(), os.path.abspath(__file__), *sys.argv[1:]], env)


def ensure_npm():
    """`npm ci` in web/ when package-lock.json changed since the last one."""
    lock = os.path.join(WEB, "package-lock.json")
    stamp = os.path.join(WEB, "node_modules", ".webgpt-npm-ci")
    digest = sha256_file(lock)
    if read_stamp(stamp) == digest and os.path.exists(esbuild_path()) and all(
            os.path.exists(os.path.join(WEB, "node_modules", "pyodide", f)) for f in PYODIDE_FILES):
        return
    if not shutil.which("npm"):
        apt_install("nodejs", "npm")
    run(["npm", "ci", "--include=dev", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB)
    write_stamp(stamp, digest)


def ensure_browser():
    """Chromium and Mesa's Vulkan drivers (lavapipe: the native tests' CPU adapter)."""
    missing = []
    if not os.path.exists("/usr/bin/chromium"):
        missing.append("chromium")
    if shutil.which("dpkg-query"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "mesa-vulkan-drivers"],
                           capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append("mesa-vulkan-drivers")
    if missing:
        if is_root():
            apt_install(*missing)
        else:
            log(f"not installed: {', '.join(missing)}; the tests that need them will skip")


# ---------------------------------------------------------------- build


def copy_if_changed(src, dst):
    """Copy a file unless dst already has the same size and modification time."""
    try:
        s, d = os.stat(src), os.stat(dst)
        if s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime):
            return
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + ".tmp"
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def pure_wheels():
    """The pinned pure wheels, downloaded once into build/wheels and checked by sha256."""
    cache = os.path.join(CACHE, "wheels")
    os.makedirs(cache, exist_ok=True)
    missing = [w for w in PURE_WHEELS if not os.path.exists(os.path.join(cache, w))]
    if missing:
        specs = ["==".join(w.split("-")[:2]) for w in missing]
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", PYODIDE_PYTHON, "-d", cache, *specs])
    paths = []
    for name, want in PURE_WHEELS.items():
        path = os.path.join(cache, name)
        if not os.path.exists(path):
            raise SystemExit(f"build.py: pip did not download {name}")
        got = sha256_file(path)
        if got != want:
            os.remove(path)
            raise SystemExit(f"build.py: {name} has sha256 {got}, expected {want}; deleted it, "
                             f"run again to download it afresh")
        paths.append(path)
    return paths


def chat_wheels():
    """Jinja2's pinned wheel and MarkupSafe's pure wheel (built from its pinned sdist), made
    once into build/wheels and checked by sha256; returns their paths (MarkupSafe first)."""
    cache = os.path.join(CACHE, "wheels")
    os.makedirs(cache, exist_ok=True)
    sdist_name, sdist_sha = MARKUPSAFE_SDIST
    sdist = os.path.join(cache, sdist_name)
    jinja = next(w for w in CHAT_WHEELS if w.startswith("jinja2-"))
    markupsafe = next(w for w in CHAT_WHEELS if w.startswith("markupsafe-"))
    if not os.path.exists(os.path.join(cache, jinja)):
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", PYODIDE_PYTHON, "-d", cache, "==".join(jinja.split("-")[:2])])
    if not os.path.exists(os.path.join(cache, markupsafe)):
        if not os.path.exists(sdist):
            run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--no-binary=:all:", "-d", cache, "==".join(sdist_name[:-7].split("-"))])
        _check_sha256(sdist, sdist_sha)
        pure_markupsafe_wheel(sdist, cache)
    paths = []
    for name, want in CHAT_WHEELS.items():
        path = os.path.join(cache, name)
        if not os.path.exists(path):
            raise SystemExit(f"build.py: pip did not download {name}")
        _check_sha256(path, want)
        paths.append(path)
    return paths


def _check_sha256(path, want):
    got = sha256_file(path)
    if got != want:
        os.remove(path)
        raise SystemExit(f"build.py: {os.path.basename(path)} has sha256 {got}, expected {want}; "
                         f"deleted it, run again to make it afresh")


def pure_markupsafe_wheel(sdist, out_dir):
    """MarkupSafe's sdist -> a pure-Python wheel in out_dir: src/markupsafe/__init__.py,
    _native.py (the fallback its __init__ imports where the C _speedups are missing) and
    py.typed, with dist-info METADATA (the sdist's PKG-INFO), WHEEL, RECORD and the license;
    stored entries, fixed dates and modes, sorted names: the same bytes every time."""
    import base64
    import tarfile
    import zipfile

    base = os.path.basename(sdist)[:-len(".tar.gz")]  # markupsafe-3.0.4
    version = base.split("-")[1]
    dist_info = f"markupsafe-{version}.dist-info/"
    with tarfile.open(sdist, "r:gz") as tar:
        def read(name):
            return tar.extractfile(f"{base}/{name}").read()
        files = {f"markupsafe/{n}": read(f"src/markupsafe/{n}")
                 for n in ("__init__.py", "_native.py", "py.typed")}
        files[dist_info + "METADATA"] = read("PKG-INFO")
        files[dist_info + "licenses/LICENSE.txt"] = read("LICENSE.txt")
    files[dist_info + "WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: webgpt build.py\n"
                                  b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = dist_info + "RECORD"
    lines = []
    for name in sorted(files):
        digest = base64.urlsafe_b64encode(hashlib.sha256(files[name]).digest()).rstrip(b"=")
        lines.append(f"{name},sha256={digest.decode()},{len(files[name])}\n")
    lines.append(f"{record},,\n")
    files[record] = "".join(lines).encode()
    path = os.path.join(out_dir, f"markupsafe-{version}-py3-none-any.whl")
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as whl:
        for name in sorted(files, key=lambda n: (n.startswith(dist_info), n)):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            whl.writestr(info, files[name])
    os.replace(tmp, path)
    return path


def project_wheel():
    """This project's wheel (py/webgpt with shaders/ inside), rebuilt when a source changed."""
    out = os.path.join(CACHE, "wheel")
    stamp = os.path.join(out, ".sources")
    digest = tree_digest([os.path.join(ROOT, p) for p in
                          ("pyproject.toml", "README.md", "py", "shaders") if os.path.exists(os.path.join(ROOT, p))])
    wheels = [f for f in os.listdir(out) if f.endswith(".whl")] if os.path.isdir(out) else []
    if read_stamp(stamp) == digest and len(wheels) == 1:
        return os.path.join(out, wheels[0])
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    # hatchling comes with requirements.txt; without it pip fetches it for an isolated build.
    no_isolation = ["--no-build-isolation"] if _has_module("hatchling") else []
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *no_isolation, "-w", out, ROOT])
    wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
    if len(wheels) != 1:
        raise SystemExit(f"build.py: expected one wheel in {out}, found {wheels}")
    write_stamp(stamp, digest)
    return os.path.join(out, wheels[0])


SNAPSHOT = "snapshot.bin.gz"


def python_snapshot(pyodide_dir, wheel):
    """A memory snapshot of Pyodide started with `wheel` installed and the page's modules
    imported, gzipped (web/snapshot/make.mjs, run by Node), made again in build/snapshot/ when
    Pyodide, the wheel or the script changed. None where it cannot be made (no node): the page
    then starts Python without it."""
    out = os.path.join(CACHE, "snapshot")
    snapshot, stamp = os.path.join(out, SNAPSHOT), os.path.join(out, ".sources")
    script = os.path.join(WEB, "snapshot", "make.mjs")
    digest = tree_digest([os.path.join(pyodide_dir, name) for name in PYODIDE_FILES]
                         + [wheel, script])
    if read_stamp(stamp) == digest and os.path.exists(snapshot):
        return snapshot
    node = shutil.which("node")
    if node is None:
        log("node is not installed: the page will start Python without a snapshot")
        return None
    os.makedirs(out, exist_ok=True)
    try:
        run([node, script, pyodide_dir, wheel, snapshot])
    except subprocess.CalledProcessError:
        log("the Python snapshot could not be made: the page will start Python without one")
        return None
    write_stamp(stamp, digest)
    return snapshot


def _has_module(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


def find_models(extra=None):
    """{name: folder} of every folder under weights/ with a config.json, plus `extra`."""
    models = {}
    if os.path.isdir(WEIGHTS):
        for name in sorted(os.listdir(WEIGHTS)):
            folder = os.path.join(WEIGHTS, name)
            # Anything called config.json: copy_model says what is wrong with it if it is not
            # a file (a broken link, a pipe), rather than leaving the model out in silence.
            if os.path.isdir(folder) and os.path.lexists(os.path.join(folder, "config.json")):
                models[name] = folder
    models.update(extra or {})
    return models


def shown(text):
    """A name for a message, with control characters escaped (a name can hold a terminal's
    escape sequences). webgpt.errors.printable does this for the package; the build uses the
    standard library only."""
    text = str(text)
    return text if text.isprintable() else text.encode("unicode_escape", "backslashreplace").decode("ascii")


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def model_file_problem(folder, name):
    """None when file `name` of model folder `folder` may go into the site, else a sentence.

    The symlink policy: a link is followed only where it stays inside the model folder, or, for
    a Hugging Face cache snapshot (<repo>/snapshots/<rev>/, whose files are links to
    ../../blobs/<hash>), inside that repository's blobs/. A link anywhere else would publish a
    file of this machine on the site. Only regular files are copied (a pipe would block the
    build, a link to /dev/zero never end)."""
    src = os.path.join(folder, name)
    root = os.path.realpath(folder)
    if os.path.islink(src):
        real = os.path.realpath(src)
        allowed = [root]
        if os.path.basename(os.path.dirname(root)) == "snapshots":
            allowed.append(os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(root)),
                                                         "blobs")))
        if not any(_inside(real, a) for a in allowed):
            return (f"{shown(src)} is a symbolic link to {shown(os.readlink(src))}, outside the "
                    f"model folder (links are followed only inside it, or into the blobs/ of the "
                    f"Hugging Face cache repository it is a snapshot of); copy the file into the "
                    f"folder instead")
    try:
        st = os.stat(src)
    except OSError as e:
        if os.path.islink(src):
            why = "loops" if e.errno == errno.ELOOP else "leads nowhere"
            return f"{shown(src)} is a symbolic link that {why} ({e.strerror})"
        return f"{shown(src)} cannot be read ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else
                "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "not a regular file")
        return f"{shown(src)} is {kind}, not a file a model folder can hold"
    return None


def _remove(path):
    """Remove a file, a link (never what it points to) or a folder from the built site."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def copy_model(folder, dst):
    """Copy model folder `folder`'s files (MODEL_FILES and the weights) into `dst`; returns
    {name: size}. A file the symlink policy refuses (model_file_problem) stops the build with
    its sentence."""
    files = {}
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(folder)):
        if name not in MODEL_FILES and not name.endswith(".safetensors"):
            continue
        problem = model_file_problem(folder, name)
        if problem:
            raise SystemExit(f"build.py: {problem}")
        src = os.path.join(folder, name)
        copy_if_changed(src, os.path.join(dst, name))
        files[name] = os.path.getsize(src)
    for name in os.listdir(dst):  # files removed from the source folder since the last build
        if name not in files:
            _remove(os.path.join(dst, name))
    return files


def build(out=DIST, extra_models=None, hub_endpoint=None):
    """Build the site into `out`; `extra_models` {name: folder} adds model folders beside
    those found under weights/; `hub_endpoint` is the hub the page lists and loads owner/name
    models from (default DEFAULT_HUB). Returns `out`."""
    hub_endpoint = check_hub_endpoint(hub_endpoint or DEFAULT_HUB)
    ensure_npm()
    os.makedirs(out, exist_ok=True)

    # The page itself (and no page file left over from an earlier build).
    page_files = {"build.json"}
    for name in sorted(os.listdir(WEB)):
        src = os.path.join(WEB, name)
        if name not in WEB_EXCLUDE and os.path.isfile(src):
            copy_if_changed(src, os.path.join(out, name))
            page_files.add(name)
    for path in editor_bundle() + [hash_bundle()]:  # editor.js (+ licenses), sha256.js
        copy_if_changed(path, os.path.join(out, os.path.basename(path)))
        page_files.add(os.path.basename(path))
    page_files.add(SHELL_MANIFEST)  # written last, below
    copy_code(os.path.join(out, "code"))
    for name in os.listdir(out):  # and any stray link, which the site must not serve
        path = os.path.join(out, name)
        if name not in page_files and (os.path.islink(path) or os.path.isfile(path)):
            os.remove(path)

    # Pyodide, the pure wheels, our wheel.
    boot_files = {}
    npm_pyodide = os.path.join(WEB, "node_modules", "pyodide")
    for name in PYODIDE_FILES:
        copy_if_changed(os.path.join(npm_pyodide, name), os.path.join(out, "pyodide", name))
        boot_files["pyodide/" + name] = os.path.getsize(os.path.join(out, "pyodide", name))
    with open(os.path.join(npm_pyodide, "package.json"), encoding="utf-8") as f:
        pyodide_version = json.load(f)["version"]
    wheels_dir = os.path.join(out, "wheels")
    os.makedirs(wheels_dir, exist_ok=True)
    micropip_wheels = []
    for path in pure_wheels():
        name = os.path.basename(path)
        copy_if_changed(path, os.path.join(wheels_dir, name))
        micropip_wheels.append(name)
    chat = []  # loaded by the worker when a chat starts (not boot files)
    for path in chat_wheels():
        chat.append(os.path.basename(path))
        copy_if_changed(path, os.path.join(wheels_dir, chat[-1]))
    wheel = project_wheel()
    wheel_name = os.path.basename(wheel)
    copy_if_changed(wheel, os.path.join(wheels_dir, wheel_name))
    # Python's start saved (web/snapshot/make.mjs): the worker restores it instead of starting.
    snapshot = python_snapshot(npm_pyodide, wheel)
    snapshot_path = os.path.join(out, "pyodide", SNAPSHOT)
    if snapshot:
        copy_if_changed(snapshot, snapshot_path)
        boot_files["pyodide/" + SNAPSHOT] = os.path.getsize(snapshot_path)
    elif os.path.exists(snapshot_path):
        os.remove(snapshot_path)
    for name in os.listdir(wheels_dir):  # an older version of our wheel
        if name not in micropip_wheels and name not in chat and name != wheel_name:
            os.remove(os.path.join(wheels_dir, name))
    for name in micropip_wheels + [wheel_name]:
        boot_files["wheels/" + name] = os.path.getsize(os.path.join(wheels_dir, name))

    # Models.
    models_dir = os.path.join(out, "models")
    os.makedirs(models_dir, exist_ok=True)
    index = []
    models = find_models(extra_models)
    for name, folder in models.items():
        files = copy_model(folder, os.path.join(models_dir, name))
        # Each file's sha256: the page keeps files on the device by it, and checks them.
        hashes = {f: cached_sha256(os.path.join(folder, f)) for f in files}
        index.append({"name": name, "bytes": sum(files.values()), "files": files,
                      "sha256": hashes})
    for name in os.listdir(models_dir):
        path = os.path.join(models_dir, name)
        if (os.path.isdir(path) or os.path.islink(path)) and name not in models:
            _remove(path)
    default = DEFAULT_MODEL if DEFAULT_MODEL in models else (index[0]["name"] if index else None)
    _write_json(os.path.join(models_dir, "index.json"), {"default": default, "models": index})

    _write_json(os.path.join(out, "build.json"), {
        "pyodide_version": pyodide_version,
        "boot_files": boot_files,
        "micropip_wheels": micropip_wheels,
        "chat_wheels": chat,
        "webgpt_wheel": wheel_name,
        "snapshot": "pyodide/" + SNAPSHOT if snapshot else None,
        "hub_endpoint": hub_endpoint,
    })
    shell = write_shell_manifest(out)
    save_sha256_cache()
    log(f"built {os.path.relpath(out, ROOT) if out.startswith(ROOT) else out}: Pyodide "
        f"{pyodide_version}, {wheel_name}, models: {', '.join(models) or 'none'}; "
        f"offline shell {shell}")
    return out


def write_shell_manifest(out):
    """Write out/sw-shell.js: the page's files (everything but the models and the service
    worker's own two files) with their sha256, and a version named by them all. sw.js imports
    it and keeps these files for offline use; a build that changes any of them changes this
    file, which the browser takes as a new service worker (it replaces the old files in one
    go). Returns the version."""
    files = {}
    for d, dirs, names in os.walk(out):  # links to folders are listed in dirs, never entered
        rel_dir = os.path.relpath(d, out).replace(os.sep, "/")
        if rel_dir == "models" or rel_dir.startswith("models/"):
            dirs[:] = []
            continue
        dirs.sort()
        for name in sorted(names):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in ("sw.js", SHELL_MANIFEST) or name.endswith(".tmp"):
                continue
            # Only the files the build wrote: a stray link (a loop, or out of dist/) is left
            # out, as the server leaves it out.
            if not stat.S_ISREG(os.lstat(os.path.join(d, name)).st_mode):
                log(f"not in the offline shell: {shown(rel)}, which is not a file the build wrote")
                continue
            files[rel] = cached_sha256(os.path.join(d, name))
    version = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    shell = json.dumps({"version": version, "files": files}, indent=1, sort_keys=True)
    text = ("// Written by build.py: the files sw.js keeps for offline use (the page, Pyodide, the\n"
            "// wheels, the editor's code files) with their sha256; the version names them all.\n"
            f"self.SHELL = {shell};\n")
    path = os.path.join(out, SHELL_MANIFEST)
    if read_stamp(path) != text.strip():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return version


_sha256_cache = None  # {path: [size, mtime_ns, sha256]}, kept in build/sha256.json


def cached_sha256(path):
    """sha256 of a file, remembered by its path, size and modification time, so that the
    weights of unchanged models (hundreds of MB) are not read again at every build."""
    global _sha256_cache
    if _sha256_cache is None:
        try:
            with open(os.path.join(CACHE, "sha256.json"), encoding="utf-8") as f:
                _sha256_cache = json.load(f)
        except (OSError, ValueError):
            _sha256_cache = {}
    path = os.path.abspath(path)
    st = os.stat(path)
    known = _sha256_cache.get(path)
    if known and known[:2] == [st.st_size, st.st_mtime_ns]:
        return known[2]
    digest = sha256_file(path)
    _sha256_cache[path] = [st.st_size, st.st_mtime_ns, digest]
    return digest


def save_sha256_cache():
    """Write build/sha256.json (atomically: other builds may run at the same time), without
    the files that are gone."""
    if _sha256_cache is None:
        return
    for path in [p for p in _sha256_cache if not os.path.exists(p)]:
        del _sha256_cache[path]
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, "sha256.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_sha256_cache, f)
    os.replace(tmp, path)


def hash_bundle():
    """sha256.js: hash-wasm's incremental SHA-256 and SHA-1 (from npm, pinned in
    web/package-lock.json) as one ES module, bundled by esbuild into build/hash/ when the
    lockfile changed. The page's model store (web/store.js) hashes weights with it as they
    stream, a few MiB at a time (the browser's crypto.subtle.digest needs a whole file in
    memory); SHA-1 checks the hub's files that are not in LFS (their git blob ids)."""
    out = os.path.join(CACHE, "hash")
    bundle = os.path.join(out, "sha256.js")
    stamp = os.path.join(out, ".sources")
    entry = 'export { createSHA1, createSHA256 } from "hash-wasm";\n'
    with open(os.path.join(WEB, "package-lock.json"), "rb") as f:
        digest = hashlib.sha256(entry.encode() + f.read()).hexdigest()
    if read_stamp(stamp) == digest and os.path.exists(bundle):
        return bundle
    os.makedirs(out, exist_ok=True)
    package = os.path.join(WEB, "node_modules", "hash-wasm")
    with open(os.path.join(package, "package.json"), encoding="utf-8") as f:
        info = json.load(f)
    with open(os.path.join(package, "LICENSE"), encoding="utf-8") as f:
        license_text = f.read().strip().replace("*/", "* /")
    log("$ esbuild (hash-wasm's createSHA1, createSHA256) > build/hash/sha256.js")
    code = subprocess.run(
        [esbuild_path(), "--bundle", "--format=esm", "--minify", "--target=es2022",
         "--log-level=warning"], input=entry,
        capture_output=True, text=True, cwd=WEB, check=True).stdout
    tmp = bundle + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"/* sha256.js: createSHA1 and createSHA256 of {info['name']} {info['version']}, "
                f"bundled by build.py with esbuild.\n\n{license_text}\n*/\n{code}")
    os.replace(tmp, bundle)
    write_stamp(stamp, digest)
    return bundle


def esbuild_path():
    return os.path.join(WEB, "node_modules", ".bin", "esbuild")


def editor_bundle():
    """The code editor (web/editor/index.js and CodeMirror from web/node_modules) bundled
    into one ES module by esbuild, rebuilt in build/editor/ when a source or the lockfile
    changed. Returns the paths of editor.js and editor-licenses.txt (the licenses of the
    npm packages the bundle contains)."""
    out = os.path.join(CACHE, "editor")
    bundle, licenses = os.path.join(out, "editor.js"), os.path.join(out, "editor-licenses.txt")
    stamp = os.path.join(out, ".sources")
    digest = tree_digest([EDITOR_SOURCES, os.path.join(WEB, "package-lock.json")])
    if read_stamp(stamp) == digest and os.path.exists(bundle) and os.path.exists(licenses):
        return [bundle, licenses]
    os.makedirs(out, exist_ok=True)
    meta = os.path.join(out, "meta.json")
    run([esbuild_path(), os.path.join("editor", "index.js"), "--bundle", "--format=esm",
         "--minify", "--target=es2022", "--log-level=warning", f"--metafile={meta}",
         "--banner:js=// The page's code editor: CodeMirror 6, bundled by build.py with esbuild. "
         "Licenses: editor-licenses.txt", f"--outfile={bundle}"], cwd=WEB)
    with open(meta, encoding="utf-8") as f:
        inputs = json.load(f)["inputs"]
    packages = sorted({_npm_package_dir(p) for p in inputs} - {None})
    parts = ["Packages bundled into editor.js (from npm, pinned in web/package-lock.json).\n"]
    for rel in packages:
        folder = os.path.join(WEB, rel)
        with open(os.path.join(folder, "package.json"), encoding="utf-8") as f:
            info = json.load(f)
        parts.append(f"\n{'=' * 72}\n{info['name']} {info['version']} ({info.get('license', '?')})\n\n")
        for name in sorted(os.listdir(folder)):
            if name.lower().startswith(("license", "licence")):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    parts.append(f.read())
    with open(licenses, "w", encoding="utf-8") as f:
        f.write("".join(parts))
    write_stamp(stamp, digest)
    return [bundle, licenses]


def _npm_package_dir(path):
    """'node_modules/@scope/name/dist/x.js' -> 'node_modules/@scope/name' (None for our own)."""
    parts = path.replace("\\", "/").split("/")
    if "node_modules" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("node_modules")
    n = 3 if parts[i + 1].startswith("@") else 2
    return "/".join(parts[i:i + n])


def code_files():
    """{path on the page: file} of what the editor shows: scripts, examples, modules, shaders."""
    files = {}
    for prefix, top in CODE_FOLDERS.items():
        for d, dirs, names in os.walk(top):
            runtime_top = prefix == "webgpt" and d == top
            dirs[:] = sorted(x for x in dirs if x != "__pycache__"
                             and not (runtime_top and x in RUNTIME_EXCLUDE))
            for name in sorted(names):
                if runtime_top and name in RUNTIME_EXCLUDE:
                    continue
                # The symlink policy: a link that leaves the folder is not published.
                real = os.path.realpath(os.path.join(d, name))
                if not _inside(real, os.path.realpath(top)) or not os.path.isfile(real):
                    continue
                if name.endswith(CODE_SUFFIXES):
                    rel = os.path.relpath(os.path.join(d, name), top).replace(os.sep, "/")
                    files[f"{prefix}/{rel}"] = os.path.join(d, name)
    return files


def copy_code(dst):
    """The editor's files into dst/ with dst/index.json: [{path, kind, sha256, bytes}], where
    kind is script, example, module or shader. The page keys a user's edits by sha256."""
    kinds = {"scripts": "script", "examples": "example", "webgpt": "module", "shaders": "shader"}
    index = []
    for path, src in code_files().items():
        copy_if_changed(src, os.path.join(dst, *path.split("/")))
        index.append({"path": path, "kind": kinds[path.split("/")[0]],
                      "sha256": sha256_file(src), "bytes": os.path.getsize(src)})
    keep = {os.path.join(dst, *e["path"].split("/")) for e in index} | {os.path.join(dst, "index.json")}
    for d, dirs, names in os.walk(dst, topdown=False):
        for name in names:
            if os.path.join(d, name) not in keep:
                os.remove(os.path.join(d, name))
        if d != dst and not os.listdir(d):
            os.rmdir(d)
    _write_json(os.path.join(dst, "index.json"), {"files": index})


def _write_json(path, data):
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if read_stamp(path) != text.strip():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


# ---------------------------------------------------------------- serve


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from one folder: GET and HEAD, single byte ranges, If-Modified-Since.

    Paths are resolved inside the folder only ('..' and symlinks out of it give 404),
    folders serve their index.html and are never listed.
    """

    protocol_version = "HTTP/1.1"
    server_version = "webgpt-build"
    quiet = True
    # Cross-origin isolation: it gives the page SharedArrayBuffer, which Pyodide's interrupt
    # buffer needs for the editor's Stop to interrupt any running Python. A static host
    # needs the same two headers (see README); without them, Stop works between tokens only.
    isolation_headers = {"Cross-Origin-Opener-Policy": "same-origin",
                         "Cross-Origin-Embedder-Policy": "require-corp"}

    def end_headers(self):
        for name, value in self.isolation_headers.items():
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self):
        self._serve(body=True)

    def do_HEAD(self):
        self._serve(body=False)

    def log_message(self, fmt, *args):
        if not self.quiet:
            super().log_message(fmt, *args)

    def _file(self):
        root = os.path.realpath(self.directory)
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in posixpath.normpath(path).split("/") if p not in ("", ".")]
        if ".." in parts or any("\\" in p or "\0" in p for p in parts):
            return None
        full = os.path.realpath(os.path.join(root, *parts))
        if full != root and not full.startswith(root + os.sep):
            return None
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        return full if os.path.isfile(full) else None

    def _serve(self, body):
        path = self._file()
        if path is None:
            self.send_error(404, "Not found")
            return
        st = os.stat(path)
        size = st.st_size
        start, end, status = 0, size, 200
        rng = self.headers.get("Range")
        if rng:
            parsed = parse_range(rng, size)
            if parsed == "unsatisfiable":
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if parsed is not None:
                (start, end), status = parsed, 206
        elif self._not_modified(st):
            self.send_response(304)
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            return
        ext = os.path.splitext(path)[1].lower()
        self.send_response(status)
        self.send_header("Content-Type", MIME.get(ext, "application/octet-stream"))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(st.st_mtime))
        self.send_header("Cache-Control", "no-cache")  # revalidate: rebuilt files show at once
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not body:
            return
        try:
            with open(path, "rb") as f:
                f.seek(start)
                left = end - start
                while left > 0:
                    block = f.read(min(left, 1 << 20))
                    if not block:
                        break
                    self.wfile.write(block)
                    left -= len(block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the page cancelled a stream: normal

    def _not_modified(self, st):
        since = self.headers.get("If-Modified-Since")
        if not since:
            return False
        try:
            when = email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(st.st_mtime) <= when

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass


def parse_range(header, size):
    """One 'bytes=a-b' range as (start, end) with end exclusive; None to ignore the header
    (malformed, or several ranges); 'unsatisfiable' when it starts past the end."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":  # the last N bytes
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return max(0, size - n), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if end <= start:
        return None
    return start, min(end, size)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog: socketserver's default of 5 drops connections when a page opens
    # dozens at once (the kernel caps it at net.core.somaxconn).
    request_queue_size = 1024


def make_server(root=DIST, host="127.0.0.1", port=8000, quiet=True):
    """An HTTP server for `root` (not yet serving: call serve_forever). Port 0 picks a free one."""
    root = os.path.abspath(root)

    class RootHandler(Handler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=root, **kw)

    RootHandler.quiet = quiet
    return Server((host, port), RootHandler)


# ---------------------------------------------------------------- commands


def check_hub_endpoint(url):
    """The hub's address as the page uses it (no trailing slash), or SystemExit saying why not."""
    parts = urllib.parse.urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SystemExit(f"build.py: --hub-endpoint {url!r} is not an http(s) address such as "
                         f"{DEFAULT_HUB}")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def cmd_build(args):
    build(args.out, hub_endpoint=args.hub_endpoint)


def cmd_serve(args):
    out = build(args.out, hub_endpoint=args.hub_endpoint)
    try:
        server = make_server(out, args.host, args.port, quiet=not args.verbose)
    except OSError as e:
        raise SystemExit(f"build.py: cannot listen on {args.host}:{args.port}: {e.strerror}; "
                         f"try another port with --port") from None
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"Serving {out} at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def cmd_test(pytest_args):
    ensure_browser()
    ensure_npm()
    os.chdir(ROOT)
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *pytest_args])


# ---------------------------------------------------------------- models: fetch, import


def cmd_model(command, argv):
    """fetch, import, quantize: webgpt's own command line (py/webgpt/tools/cli.py) runs them,
    with messages that start "build.py: COMMAND: " and models written under weights/."""
    sys.path.insert(0, os.path.join(ROOT, "py"))  # also where the venv's .pth is not in effect
    from webgpt.tools import cli
    return cli.main([command, *argv], prog="build.py", weights_dir=WEIGHTS)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(__doc__.split("\n\n")[1])
        return 0
    command = argv[0] if argv and not argv[0].startswith("-") else "build"
    if command not in ("build", "serve", "test", "fetch", "import", "quantize"):
        print(f"build.py: unknown command {command!r}; commands:", file=sys.stderr)
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    # fetch needs the standard library only: it runs before (or without) the venv.
    if not os.environ.get("WEBGPT_NO_VENV") and command != "fetch":
        ensure_venv(command)  # returns only inside the venv
    if command in ("fetch", "import", "quantize"):
        return cmd_model(command, argv[1:])
    if command == "test":
        cmd_test(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog=f"build.py {command}")
    p.add_argument("--out", default=DIST, help="where to build the site (default dist/)")
    p.add_argument("--hub-endpoint", default=DEFAULT_HUB, metavar="URL",
                   help=f"the hub the page loads owner/name models from (default {DEFAULT_HUB})")
    if command == "serve":
        p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv[1:] if argv and argv[0] == command else argv)
    args.out = os.path.abspath(args.out)
    {"build": cmd_build, "serve": cmd_serve}[command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
