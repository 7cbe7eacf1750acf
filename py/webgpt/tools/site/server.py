"""The dev server of `build.py serve` (and of the browser tests): static files from one folder,
GET and HEAD, single byte ranges (206, 416), If-Modified-Since (304), the cross-origin isolation
headers (COOP/COEP) on every response, content types by extension; paths resolved inside the
folder only, folders never listed."""

import email.utils
import http.server
import os
import posixpath
import urllib.parse

from .common import DIST

MIME = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".py": "text/x-python; charset=utf-8",
    ".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8",
    ".wasm": "application/wasm", ".zip": "application/zip", ".whl": "application/zip",
    ".safetensors": "application/octet-stream", ".png": "image/png", ".svg": "image/svg+xml",
    ".ico": "image/x-icon", ".map": "application/json",
}


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from one folder: GET and HEAD, single byte ranges, If-Modified-Since.

    Paths are resolved inside the folder only ('..' and symlinks out of it give 404),
    folders serve their index.html and are never listed.
    """

    protocol_version = "HTTP/1.1"
    server_version = "webgpt-build"
    quiet = True
    # Cross-origin isolation: it gives the page SharedArrayBuffer, which Pyodide's interrupt
    # buffer needs for the editor's Stop to interrupt any running Python. A static host
    # needs the same two headers (see README); without them, Stop works between tokens only.
    isolation_headers = {"Cross-Origin-Opener-Policy": "same-origin",
                         "Cross-Origin-Embedder-Policy": "require-corp"}

    def end_headers(self):
        for name, value in self.isolation_headers.items():
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self):
        self._serve(body=True)

    def do_HEAD(self):
        self._serve(body=False)

    def log_message(self, fmt, *args):
        if not self.quiet:
            super().log_message(fmt, *args)

    def _file(self):
        root = os.path.realpath(self.directory)
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in posixpath.normpath(path).split("/") if p not in ("", ".")]
        if ".." in parts or any("\\" in p or "\0" in p for p in parts):
            return None
        full = os.path.realpath(os.path.join(root, *parts))
        if full != root and not full.startswith(root + os.sep):
            return None
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        return full if os.path.isfile(full) else None

    def _serve(self, body):
        path = self._file()
        if path is None:
            self.send_error(404, "Not found")
            return
        st = os.stat(path)
        size = st.st_size
        start, end, status = 0, size, 200
        rng = self.headers.get("Range")
        if rng:
            parsed = parse_range(rng, size)
            if parsed == "unsatisfiable":
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if parsed is not None:
                (start, end), status = parsed, 206
        elif self._not_modified(st):
            self.send_response(304)
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            return
        ext = os.path.splitext(path)[1].lower()
        self.send_response(status)
        self.send_header("Content-Type", MIME.get(ext, "application/octet-stream"))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(st.st_mtime))
        self.send_header("Cache-Control", "no-cache")  # revalidate: rebuilt files show at once
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if not body:
            return
        try:
            with open(path, "rb") as f:
                f.seek(start)
                left = end - start
                while left > 0:
                    block = f.read(min(left, 1 << 20))
                    if not block:
                        break
                    self.wfile.write(block)
                    left -= len(block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the page cancelled a stream: normal

    def _not_modified(self, st):
        since = self.headers.get("If-Modified-Since")
        if not since:
            return False
        try:
            when = email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(st.st_mtime) <= when

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass


def parse_range(header, size):
    """One 'bytes=a-b' range as (start, end) with end exclusive; None to ignore the header
    (malformed, or several ranges); 'unsatisfiable' when it starts past the end."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":  # the last N bytes
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return max(0, size - n), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if end <= start:
        return None
    return start, min(end, size)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The listen backlog: socketserver's default of 5 drops connections when a page opens
    # dozens at once (the kernel caps it at net.core.somaxconn).
    request_queue_size = 1024


def make_server(root=DIST, host="127.0.0.1", port=8000, quiet=True):
    """An HTTP server for `root` (not yet serving: call serve_forever). Port 0 picks a free one."""
    root = os.path.abspath(root)

    class RootHandler(Handler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=root, **kw)

    RootHandler.quiet = quiet
    return Server((host, port), RootHandler)
