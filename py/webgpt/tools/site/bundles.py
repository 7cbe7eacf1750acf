"""The page's JavaScript from npm (pinned in web/package-lock.json), bundled by esbuild into
build/: editor.js (CodeMirror and web/editor/, with the licenses of what it holds) and
sha256.js (hash-wasm's incremental SHA-256 and SHA-1)."""

import hashlib
import json
import os
import subprocess

from .common import CACHE, WEB, log, read_stamp, run, tree_digest, write_stamp
from .deps import esbuild_path

# The in-page editor's bundle entry: CodeMirror from npm, bundled by esbuild.
EDITOR_SOURCES = os.path.join(WEB, "editor")


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
