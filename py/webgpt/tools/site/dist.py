"""build(): the static site (dist/) from the page (web/), Pyodide, the wheels, the snapshot, the
editor's files and the model folders, with build.json (what the page boots from) and
sw-shell.js (what the service worker keeps) written last. Each part is rebuilt only when its
sources changed (bundles, wheels, snapshot), and copied only when it changed."""

import json
import os
import urllib.parse

from . import models as model_folders
from .bundles import editor_bundle, hash_bundle
from .common import (DIST, ROOT, WEB, copy_if_changed, log, save_sha256_cache, write_json)
from .deps import PYODIDE_FILES, ensure_npm
from .editor_code import copy_code
from .shell import SHELL_MANIFEST, write_shell_manifest
from .snapshot import SNAPSHOT, python_snapshot
from .wheels import chat_wheels, project_wheel, pure_wheels

# Files of web/ that are not part of the page.
WEB_EXCLUDE = {"node_modules", "package.json", "package-lock.json", "screenshot.png", "bench-h200.png",
               "bench-h200-round2.png", ".npmrc"}
# The hub the page lists and loads `owner/name` models from, unless --hub-endpoint says another.
DEFAULT_HUB = "https://huggingface.co"


def check_hub_endpoint(url):
    """The hub's address as the page uses it (no trailing slash), or SystemExit saying why not."""
    parts = urllib.parse.urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SystemExit(f"build.py: --hub-endpoint {url!r} is not an http(s) address such as "
                         f"{DEFAULT_HUB}")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def build(out=DIST, extra_models=None, hub_endpoint=None):
    """Build the site into `out`; `extra_models` {name: folder} adds model folders beside
    those found under weights/; `hub_endpoint` is the hub the page lists and loads owner/name
    models from (default DEFAULT_HUB). Returns `out`."""
    hub_endpoint = check_hub_endpoint(hub_endpoint or DEFAULT_HUB)
    ensure_npm()
    os.makedirs(out, exist_ok=True)
    copy_page(out)
    boot = copy_python(out)
    models = model_folders.copy_models(os.path.join(out, "models"), extra_models)
    write_json(os.path.join(out, "build.json"), dict(boot, hub_endpoint=hub_endpoint))
    shell = write_shell_manifest(out)
    save_sha256_cache()
    log(f"built {os.path.relpath(out, ROOT) if out.startswith(ROOT) else out}: Pyodide "
        f"{boot['pyodide_version']}, {boot['webgpt_wheel']}, models: {', '.join(models) or 'none'}; "
        f"offline shell {shell}")
    return out


def copy_page(out):
    """The page itself: web/'s files, the bundles and the editor's code/ (and no page file left
    over from an earlier build, nor any stray link, which the site must not serve)."""
    page_files = {"build.json"}
    for name in sorted(os.listdir(WEB)):
        src = os.path.join(WEB, name)
        if name not in WEB_EXCLUDE and os.path.isfile(src):
            copy_if_changed(src, os.path.join(out, name))
            page_files.add(name)
    for path in editor_bundle() + [hash_bundle()]:  # editor.js (+ licenses), sha256.js
        copy_if_changed(path, os.path.join(out, os.path.basename(path)))
        page_files.add(os.path.basename(path))
    page_files.add(SHELL_MANIFEST)  # written last, by build()
    copy_code(os.path.join(out, "code"))
    for name in os.listdir(out):
        path = os.path.join(out, name)
        if name not in page_files and (os.path.islink(path) or os.path.isfile(path)):
            os.remove(path)


def copy_python(out):
    """Pyodide's files, the wheels and the memory snapshot into out/pyodide/ and out/wheels/;
    returns build.json's entries about them (all but hub_endpoint)."""
    boot_files = {}
    npm_pyodide = os.path.join(WEB, "node_modules", "pyodide")
    for name in PYODIDE_FILES:
        copy_if_changed(os.path.join(npm_pyodide, name), os.path.join(out, "pyodide", name))
        boot_files["pyodide/" + name] = os.path.getsize(os.path.join(out, "pyodide", name))
    with open(os.path.join(npm_pyodide, "package.json"), encoding="utf-8") as f:
        pyodide_version = json.load(f)["version"]
    micropip_wheels, chat, wheel = copy_wheels(os.path.join(out, "wheels"))
    wheel_name = os.path.basename(wheel)
    # Python's start saved (web/snapshot/make.mjs): the worker restores it instead of starting.
    snapshot = python_snapshot(npm_pyodide, wheel)
    snapshot_path = os.path.join(out, "pyodide", SNAPSHOT)
    if snapshot:
        copy_if_changed(snapshot, snapshot_path)
        boot_files["pyodide/" + SNAPSHOT] = os.path.getsize(snapshot_path)
    elif os.path.exists(snapshot_path):
        os.remove(snapshot_path)
    for name in micropip_wheels + [wheel_name]:
        boot_files["wheels/" + name] = os.path.getsize(os.path.join(out, "wheels", name))
    return {"pyodide_version": pyodide_version, "boot_files": boot_files,
            "micropip_wheels": micropip_wheels, "chat_wheels": chat, "webgpt_wheel": wheel_name,
            "snapshot": "pyodide/" + SNAPSHOT if snapshot else None}


def copy_wheels(wheels_dir):
    """The pure wheels (booted), the chat's wheels (loaded when a chat starts) and this
    project's wheel into wheels_dir, and no other wheel; returns (the pure wheels' names, the
    chat wheels' names, the path of the project's wheel in build/)."""
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
    for name in os.listdir(wheels_dir):  # an older version of our wheel
        if name not in micropip_wheels and name not in chat and name != wheel_name:
            os.remove(os.path.join(wheels_dir, name))
    return micropip_wheels, chat, wheel
