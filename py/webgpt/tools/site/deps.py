"""What the build and the tests need from outside Python: the npm packages of web/ (`npm ci`,
pinned in web/package-lock.json) and, as root, Debian packages through apt (nodejs and npm,
chromium, mesa-vulkan-drivers, python3-venv). Standard library only: build.py installs
python3-venv with it before .venv exists."""

import os
import shutil
import subprocess

from .common import WEB, log, read_stamp, run, sha256_file, write_stamp

# What the page needs from the npm package `pyodide` (web/node_modules/pyodide).
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                 "pyodide-lock.json")


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


def esbuild_path():
    return os.path.join(WEB, "node_modules", ".bin", "esbuild")


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
