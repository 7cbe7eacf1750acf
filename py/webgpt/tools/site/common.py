"""The checkout's paths and the small file helpers the build's modules share (standard library
only: build.py uses them before .venv exists).

ROOT is the checkout: this file is py/webgpt/tools/site/common.py in it (the package's tools
exist only in a checkout, never in the page's wheel).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
DIST = os.path.join(ROOT, "dist")
WEB = os.path.join(ROOT, "web")
WEIGHTS = os.path.join(ROOT, "weights")
VENV = os.path.join(ROOT, ".venv")
CACHE = os.path.join(ROOT, "build")  # git-ignored: downloaded wheels, the built wheel


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


def write_json(path, data):
    """Write `data` as indented JSON, unless the file already holds exactly that."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if read_stamp(path) != text.strip():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


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


def remove(path):
    """Remove a file, a link (never what it points to) or a folder from the built site."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def shown(text):
    """A name for a message, with control characters escaped (a name can hold a terminal's
    escape sequences). webgpt.errors.printable does this for the package; the build uses the
    standard library only."""
    text = str(text)
    return text if text.isprintable() else text.encode("unicode_escape", "backslashreplace").decode("ascii")


def inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


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
