"""sw-shell.js: the list of the page's files that the service worker (web/sw.js) keeps for
offline use, with their sha256 and a version named by them all."""

import hashlib
import json
import os
import stat

from .common import cached_sha256, log, read_stamp, shown

# Written by build(): the list of the page's files that the service worker (web/sw.js) keeps.
SHELL_MANIFEST = "sw-shell.js"


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
