"""The wheels the page installs, each checked or rebuilt only when needed, in build/wheels and
build/wheel: the pure wheels Pyodide's npm package lacks (packaging, micropip), the chat's
Jinja2 and MarkupSafe (a pure wheel built here from the pinned sdist), and this project's own
wheel from py/ and shaders/."""

import hashlib
import importlib.util
import os
import shutil
import sys

from .common import CACHE, ROOT, read_stamp, run, sha256_file, tree_digest, write_stamp

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


def _has_module(name):
    return importlib.util.find_spec(name) is not None
