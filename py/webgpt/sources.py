"""Where a model folder's bytes come from: a directory on disk, or (in the browser) a URL.

Every method is async because the browser has no blocking I/O: there a Source is backed by
`fetch`, and the same loader code awaits it. File names are relative to the folder
("config.json", "model-00001-of-00002.safetensors"); `where(name)` gives the full path or URL
for messages.
"""

import os
import sys


class ModelFolderError(ValueError):
    """A model folder that cannot be used: missing file, bad config, bad or truncated weights.

    The message is one sentence for the user, naming the file (and tensor where there is one).
    """


class Source:
    """The interface every source implements (LocalSource here, FetchSource in the browser)."""

    def where(self, name):
        """Path or URL of file `name`, for messages."""
        raise NotImplementedError

    async def exists(self, name):
        raise NotImplementedError

    async def text(self, name):
        """The whole of a small text file (JSON, vocabulary), decoded as UTF-8."""
        raise NotImplementedError

    async def size(self, name):
        raise NotImplementedError

    async def read(self, name, start, end):
        """Bytes [start, end) of a file: a small range, such as a safetensors header."""
        raise NotImplementedError

    async def chunks(self, name, start, end, chunk_size=8 << 20):
        """Async generator of bytes-like chunks that cover [start, end) in order."""
        raise NotImplementedError
        yield


class LocalSource(Source):
    """A model folder on the local file system (or in Pyodide's virtual one).

    Reads are plain blocking file calls inside async methods: they are short (one chunk at a
    time), Pyodide has no threads to push them to, and the event loop has nothing else to do
    while weights load.
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"LocalSource({self.path!r})"

    def where(self, name):
        return os.path.join(self.path, name)

    def _missing(self, name):
        return ModelFolderError(f"{self.where(name)} does not exist")

    def _unreadable(self, name, e):
        # Permission denied, a folder where a file should be, an I/O error of the disk.
        return ModelFolderError(f"{self.where(name)} cannot be read: {e.strerror or e}")

    async def exists(self, name):
        return os.path.isfile(self.where(name))

    async def text(self, name):
        try:
            with open(self.where(name), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            raise self._missing(name) from None
        except UnicodeDecodeError:
            raise ModelFolderError(f"{self.where(name)} is not UTF-8 text") from None
        except OSError as e:
            raise self._unreadable(name, e) from None

    async def size(self, name):
        try:
            return os.path.getsize(self.where(name))
        except FileNotFoundError:
            raise self._missing(name) from None
        except OSError as e:
            raise self._unreadable(name, e) from None

    async def read(self, name, start, end):
        try:
            with open(self.where(name), "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        except FileNotFoundError:
            raise self._missing(name) from None
        except OSError as e:
            raise self._unreadable(name, e) from None
        if len(data) != end - start:
            raise _short(self.where(name), start, end, start + len(data))
        return data

    async def chunks(self, name, start, end, chunk_size=8 << 20):
        """Chunks of at most chunk_size bytes, each a memoryview of its own fresh buffer.

        A fresh buffer per chunk (not one reused buffer) keeps a chunk valid after the next
        is read, as fetch's chunks are; memory stays bounded because consumers copy each chunk
        to the GPU and drop it. readinto avoids the extra copy that read() would make.
        """
        try:
            f = open(self.where(name), "rb")
        except FileNotFoundError:
            raise self._missing(name) from None
        except OSError as e:
            raise self._unreadable(name, e) from None
        with f:
            f.seek(start)
            pos = start
            while pos < end:
                buf = bytearray(min(chunk_size, end - pos))
                view = memoryview(buf)
                got = 0
                while got < len(buf):
                    n = f.readinto(view[got:])
                    if not n:
                        raise _short(self.where(name), start, end, pos + got)
                    got += n
                pos += got
                yield view


def _short(where, start, end, reached):
    return ModelFolderError(
        f"{where} is truncated: bytes {start}..{end} were expected, "
        f"but the file ends at byte {reached}")


def _is_url(s):
    return s.startswith(("http://", "https://"))


def open_source(path_or_url):
    """A Source for a local folder, or, in the browser, for a URL (absolute or page-relative)."""
    # Already a source (FetchSource need not subclass Source: the interface is duck-typed).
    if isinstance(path_or_url, Source) or hasattr(path_or_url, "chunks"):
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
        from .fetch_source import FetchSource
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
