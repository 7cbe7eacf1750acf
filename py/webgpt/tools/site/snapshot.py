"""The Pyodide memory snapshot: Python started with this project's wheel installed and the
page's modules imported, saved by web/snapshot/make.mjs under Node. The page's worker restores
it instead of starting Python."""

import os
import shutil
import subprocess

from .common import CACHE, WEB, log, read_stamp, run, tree_digest, write_stamp
from .deps import PYODIDE_FILES

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
