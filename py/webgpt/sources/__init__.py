"""Where a model folder's bytes come from: a directory on disk, or (in the browser) a URL.

    base.py   Source, the interface the loader reads through (async: the browser has no
              blocking I/O)
    local.py  LocalSource, a directory (natively, or Pyodide's virtual file system)
    fetch.py  FetchSource, a folder URL read with the browser's fetch (Pyodide only)

`open_source(path_or_url)` picks one.
"""

import os
import sys

from ..errors import ModelFolderError
from .base import Source
from .local import LocalSource

__all__ = ["Source", "LocalSource", "ModelFolderError", "open_source"]


def _is_url(s):
    return s.startswith(("http://", "https://"))


def open_source(path_or_url):
    """A Source for a local folder, or, in the browser, for a URL (absolute or page-relative)."""
    if isinstance(path_or_url, Source):
        return path_or_url
    where = os.fspath(path_or_url)
    if not where:
        raise ModelFolderError("no model folder was given: pass the folder that holds "
                               "config.json")
    if sys.platform == "emscripten":
        # In Pyodide a folder in the virtual file system (written by the user's own code)
        # is read directly; anything else is a URL, relative to the page when not absolute.
        if not _is_url(where) and os.path.isdir(where):
            return LocalSource(where)
        from .fetch import FetchSource
        return FetchSource(where)
    if _is_url(where):
        raise ModelFolderError(
            f"{where}: URLs are only supported in the browser; download the model with "
            f"'python build.py fetch' and pass its folder")
    if not os.path.exists(where):
        raise ModelFolderError(f"model folder {where} does not exist")
    if not os.path.isdir(where):
        raise ModelFolderError(
            f"{where} is not a folder; pass the model folder that holds config.json")
    return LocalSource(where)
