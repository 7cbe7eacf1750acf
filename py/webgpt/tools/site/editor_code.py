"""The files the page's editor shows (web/scripts/, web/examples/, the runtime package
py/webgpt/ and shaders/), copied into the site's code/ with code/index.json listing them."""

import os

from .common import ROOT, WEB, copy_if_changed, inside, sha256_file, write_json

# The folders of the files the editor shows, by their path on the page (code/<path> in the site).
CODE_FOLDERS = {"scripts": os.path.join(WEB, "scripts"), "examples": os.path.join(WEB, "examples"),
                "webgpt": os.path.join(ROOT, "py", "webgpt"), "shaders": os.path.join(ROOT, "shaders")}
CODE_SUFFIXES = (".py", ".wgsl")
# Parts of py/webgpt/ the page does not have: the CPython-only tools (not in the page's wheel).
RUNTIME_EXCLUDE = ("tools", "__main__.py")


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
                if not inside(real, os.path.realpath(top)) or not os.path.isfile(real):
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
    write_json(os.path.join(dst, "index.json"), {"files": index})
