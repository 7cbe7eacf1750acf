"""A model folder served over HTTP, read with the browser's `fetch` (Pyodide).

`FetchSource` implements webgpt.sources.base.Source for a folder URL. Weights are
never held whole, neither in the Python heap nor in one JS ArrayBuffer: `chunks()` keeps one
streaming response per file open and hands out pieces of it (JS `Uint8Array`s, which
`Device.write` passes to `queue.writeBuffer` as they are), so memory stays bounded by the
chunk size whatever the model size. The loader asks for tensors in increasing offset order
within a file, which is the order in which the stream delivers them.

In the page's worker, fetch is the model store's (web/store.js): a file kept on the device is
answered from there, and one that is not streams from the network through the store, which
writes and hashes each piece as it passes on (a byte stream too).

Where the body is a byte stream (a response from the server, or from the model store) a BYOB
reader reads straight into one staging ArrayBuffer of the source, so
reading allocates nothing per piece: JS memory that becomes garbage is freed only when the
worker's collector runs, which can be 100 MB or more later (tests/test_web.py measures the
page's peak memory during a load). A chunk handed out by `chunks()` is therefore valid only
until the next one is asked for; `Device.write` (`queue.writeBuffer`) copies it at once. A
plain stream hands out its pieces, or copies where a chunk spans two of them.

Small reads (the safetensors header) use HTTP Range requests; a server that ignores `Range`
still works: the body is read up to the wanted end, then the stream is cancelled.
"""

import js
from pyodide.ffi import to_js

from ..errors import ModelFolderError
from ..limits import check_text_size
from .base import Source

CHUNK_SIZE = 4 << 20
# Progress is reported at most once per this many streamed bytes (and at each file's end).
PROGRESS_STEP = 1 << 20


def _header(resp, name):
    """A response header as a str, or None (JS null arrives in Python as the falsy jsnull)."""
    value = resp.headers.get(name)
    return value if isinstance(value, str) else None


class FetchSource(Source):
    def __init__(self, base_url, progress=None):
        """`base_url`: the folder's URL. `progress(stage, done_bytes, total_bytes)` is told
        how many bytes of weights have streamed in, out of the sizes of the files opened."""
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.progress = progress
        self._streams = {}
        self._sizes = {}
        self._streamed = 0
        self._reported = 0
        self._staging = None  # the JS ArrayBuffer that BYOB reads fill (each read moves it)

    def where(self, name):
        return self.base_url + name

    def __repr__(self):
        return f"FetchSource({self.base_url!r})"

    async def _fetch(self, name, headers=None, method="GET"):
        url = self.where(name)
        init = {"method": method}
        if headers:
            init["headers"] = headers
        try:
            resp = await js.fetch(url, to_js(init, dict_converter=js.Object.fromEntries))
        except Exception as e:  # network failure: a JsException wrapping a TypeError
            raise ModelFolderError(f"{url}: could not be fetched ({e})") from e
        if resp.status == 404:
            raise ModelFolderError(f"{url}: not found (HTTP 404)")
        if resp.status in (401, 403):   # the hub, for a gated or private repository
            raise ModelFolderError(f"{url}: access refused (HTTP {resp.status}): the file is "
                                   f"not public")
        if not resp.ok and resp.status != 416:
            raise ModelFolderError(f"{url}: HTTP {resp.status} {resp.statusText}")
        return resp

    async def exists(self, name):
        try:
            resp = await js.fetch(self.where(name), to_js({"method": "HEAD"},
                                                          dict_converter=js.Object.fromEntries))
        except Exception:
            return False
        return bool(resp.ok)

    async def text(self, name):
        """The whole of a small text file, at most limits.text_limit(name) bytes: a larger
        Content-Length is refused before the body is read, and a body that runs past the
        limit (no length, or a compressed one) is cancelled there."""
        where = self.where(name)
        resp = await self._fetch(name)
        length = _header(resp, "Content-Length")
        data, reader = bytearray(), None
        try:
            if length is not None and length.isdigit():
                check_text_size(where, name, int(length))
            reader = resp.body.getReader() if resp.body else None
            while reader is not None:
                result = await reader.read()
                if result.done:
                    break
                check_text_size(where, name, len(data) + result.value.length)
                data += result.value.to_bytes()
        except ModelFolderError:
            try:    # stop the download: the rest is never read
                await (reader.cancel() if reader is not None else resp.body.cancel())
            except Exception:
                pass
            raise
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFolderError(f"{where} is not UTF-8 text") from None

    async def size(self, name):
        if name not in self._sizes:
            resp = await self._fetch(name, method="HEAD")
            length = _header(resp, "Content-Length")
            if length is None:
                # No length on HEAD: ask for one byte and read the total from Content-Range.
                resp = await self._fetch(name, {"Range": "bytes=0-0"})
                total = (_header(resp, "Content-Range") or "").rpartition("/")[2]
                if resp.body:
                    await resp.body.cancel()
                if not total.isdigit():
                    raise ModelFolderError(f"{self.where(name)}: the server tells no size")
                length = total
            self._sizes[name] = int(length)
        return self._sizes[name]

    async def read(self, name, start, end):
        """Bytes [start, end) of a file as Python bytes (for small ranges: headers)."""
        if end <= start:
            return b""
        resp = await self._fetch(name, {"Range": f"bytes={start}-{end - 1}"})
        if resp.status == 416:  # the file is shorter than `start`
            return b""
        if resp.status == 206:
            return (await resp.arrayBuffer()).to_bytes()
        # The server ignored Range and sends the whole file: read up to `end`, then stop.
        stream = _Stream(self, name, resp, 0)
        try:
            await stream.skip(start)
            piece = await stream.take(end - start)
            return piece.to_bytes() if piece is not None else b""
        finally:
            await stream.close()

    async def chunks(self, name, start, end, chunk_size=CHUNK_SIZE):
        """Bytes [start, end) of a file as JS Uint8Arrays of `chunk_size` bytes (the last
        one shorter), from one streaming response per file kept open between calls."""
        stream = self._streams.get(name)
        if stream is None or stream.pos > start:
            if stream is not None:
                await stream.close()
            stream = await self._open(name, start)
            self._streams[name] = stream
        await stream.skip(start - stream.pos)
        remaining = end - start
        while remaining > 0:
            piece = await stream.take(min(chunk_size, remaining))
            if piece is None:
                raise ModelFolderError(
                    f"{self.where(name)}: the file ends at byte {stream.pos}, but bytes up to "
                    f"{end} were expected (a truncated file?)")
            remaining -= piece.length
            yield piece
        if stream.at_end():
            await stream.close()
            self._streams.pop(name, None)

    async def _open(self, name, start):
        headers = {"Range": f"bytes={start}-"} if start > 0 else None
        resp = await self._fetch(name, headers)
        if resp.status == 416:
            raise ModelFolderError(
                f"{self.where(name)}: the file is shorter than {start + 1} bytes (a truncated file?)")
        pos = start if resp.status == 206 else 0
        if pos:
            self._count(pos)  # the bytes before (the header) came in through read()
        stream = _Stream(self, name, resp, pos)
        if name not in self._sizes and stream.length is not None:
            self._sizes[name] = pos + stream.length
        return stream

    def _count(self, n, final=False):
        self._streamed += n
        if self.progress is None:
            return
        if final or self._streamed - self._reported >= PROGRESS_STEP:
            self._reported = self._streamed
            total = sum(self._sizes[k] for k in self._sizes
                        if k.endswith((".safetensors", ".gguf")))
            self.progress("download", self._streamed, max(total, self._streamed))

    def _buffer(self, n):
        """The staging ArrayBuffer, at least n bytes (made once: CHUNK_SIZE, or n if more)."""
        if self._staging is None or self._staging.byteLength < n:
            self._staging = js.ArrayBuffer.new(max(n, CHUNK_SIZE))
        return self._staging

    async def close(self):
        for stream in list(self._streams.values()):
            await stream.close()
        self._streams.clear()
        self._staging = None


class _Stream:
    """One response body being read in order. `pos` is the file offset of the next byte."""

    def __init__(self, source, name, resp, pos):
        self.source = source
        self.name = name
        self.pos = pos
        length = _header(resp, "Content-Length")
        self.length = int(length) if length is not None and length.isdigit() else None
        self.end = pos + self.length if self.length is not None else None
        try:  # a byte stream: read into the source's staging buffer, no piece allocated
            self._reader = resp.body.getReader(to_js({"mode": "byob"},
                                                     dict_converter=js.Object.fromEntries))
            self._byob = True
        except Exception:  # a plain stream (TypeError): take its pieces as they come
            self._reader = resp.body.getReader()
            self._byob = False
        self._piece = None  # the Uint8Array last read from the network (plain reader)
        self._used = 0  # bytes of it already handed out
        self._eof = False

    def at_end(self):
        return self._eof or (self.end is not None and self.pos >= self.end)

    def _ended(self):
        self._eof = True
        self._piece = None
        self.source._count(0, final=True)

    def _counted(self, n):
        """n more bytes came from the network (self.pos not yet advanced past them)."""
        self.source._count(n, final=self.end is not None and self.pos + n >= self.end)

    async def _read(self, *into):
        """The reader's next piece; a read that fails (the connection dropped) is a
        ModelFolderError naming the file and where it stopped."""
        try:
            return await self._reader.read(*into)
        except Exception as e:  # a JsException wrapping a TypeError
            self._eof = True
            raise ModelFolderError(f"{self.source.where(self.name)}: the download stopped at "
                                   f"byte {self.pos} ({e})") from e

    async def _next(self):
        """The next network piece into self._piece (plain reader); False at the end."""
        result = await self._read()
        if result.done:
            self._ended()
            return False
        self._piece = result.value
        self._used = 0
        self._counted(self._piece.length)
        return True

    def _left(self):
        return 0 if self._piece is None else self._piece.length - self._used

    async def _fill(self, n):
        """BYOB: read up to n bytes into the staging buffer; a view of what came (None at
        the end of the body)."""
        buf = self.source._buffer(n)
        filled = 0
        while filled < n and not self._eof:
            # The read moves the buffer's memory into a new ArrayBuffer: keep that one.
            result = await self._read(js.Uint8Array.new(buf, filled, n - filled))
            if result.value is not None:
                buf = result.value.buffer
                self.source._staging = buf
            if result.done:
                self._ended()
                break
            k = result.value.byteLength
            self._counted(k)
            self.pos += k
            filled += k
        return js.Uint8Array.new(buf, 0, filled) if filled else None

    async def skip(self, n):
        if self._byob:
            while n > 0 and not self._eof:
                got = await self._fill(min(n, CHUNK_SIZE))
                n -= got.length if got is not None else n
            return
        while n > 0:
            if self._left() == 0 and not await self._next():
                return
            k = min(n, self._left())
            self._used += k
            self.pos += k
            n -= k

    async def take(self, n):
        """Exactly n bytes as a Uint8Array (fewer at the end of the file, None past it).
        BYOB: a view of the source's staging buffer, valid until the next take. Otherwise a
        view into the network piece where it holds them all, else a copy into a new one."""
        if self._byob:
            return await self._fill(n) if not self._eof else None
        if self._left() == 0 and not await self._next():
            return None
        if self._left() >= n:
            out = self._piece.subarray(self._used, self._used + n)
            self._used += n
            self.pos += n
            return out
        out = js.Uint8Array.new(n)
        filled = 0
        while filled < n:
            if self._left() == 0 and not await self._next():
                break
            k = min(n - filled, self._left())
            out.set(self._piece.subarray(self._used, self._used + k), filled)
            self._used += k
            self.pos += k
            filled += k
        return out if filled == n else out.subarray(0, filled)

    async def close(self):
        if not self._eof:
            self._eof = True
            try:
                await self._reader.cancel()
            except Exception:
                pass
        self._piece = None
