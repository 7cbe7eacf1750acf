"""A model folder on the local file system (or in Pyodide's virtual one)."""

import os

from ..errors import ModelFolderError
from .base import Source


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
