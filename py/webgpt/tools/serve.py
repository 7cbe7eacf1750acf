"""`python -m webgpt serve --model DIR [--model DIR2] [--port 8080] [--host 127.0.0.1]`: an
OpenAI-compatible HTTP server over webgpt.Client, for any OpenAI client.

    GET  /v1/models                 {"object": "list", "data": [{"id": <folder name>, ...}]}
    GET  /v1/models/<id>
    POST /v1/chat/completions       a chat completion, or with "stream": true server-sent events
    POST /v1/completions            a text completion, likewise
    GET  /health                    {"status": "ok"}

Requests for one model queue and run one at a time (its KV cache holds one conversation); the
server reads other requests meanwhile. Behaviour OpenAI's clients depend on: a bad request is
HTTP 400 (never 5xx, which clients retry) with {"error": {"message", "type", "param",
"code"}}; an unknown path 404, a body over MAX_BODY 413, a client too slow to send its request
408, all with the same error body; streaming is decided by "stream" in the body alone; each
chunk is one `data: {json}` frame, flushed as it is made, `finish_reason` on the last chunk
of each choice, then `data: [DONE]`. A client that disconnects mid-stream ends its generation
at the next token. HTTP/1.1 with keep-alive; a stream's body is sent chunked.

Plain asyncio (no web framework): the same event loop runs the model (wgpu-py's async API),
so a request waits on the GPU without blocking the others' reading. It binds 127.0.0.1 unless
--host says otherwise.
"""

import asyncio
import json
import sys

from ..errors import RequestError

MAX_BODY = 8 << 20          # bytes of a request's body
MAX_HEADERS = 64 << 10      # bytes of its request line and headers
READ_TIMEOUT = 30.0         # seconds a client may take to send a request, once it started
IDLE_TIMEOUT = 120.0        # seconds a kept-alive connection may wait for its next request
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 413: "Payload Too Large", 500: "Internal Server Error"}


class HTTPError(Exception):
    """A request the server answers with an error status and OpenAI's error body."""

    def __init__(self, status, message, type="invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}


async def read_request(reader, first_wait, read_timeout=READ_TIMEOUT):
    """(method, path, headers, body) of the next request, or None when the client closed the
    connection (or stayed idle past `first_wait`) before starting one; a client that takes
    more than `read_timeout` seconds to send the rest is a 408."""
    try:
        line = await asyncio.wait_for(reader.readline(), first_wait)
    except (asyncio.TimeoutError, ConnectionError):
        return None
    except ValueError:   # a request line longer than the reader's limit
        raise HTTPError(413, f"the request line is over {MAX_HEADERS} bytes") from None
    if not line:
        return None
    try:
        return await asyncio.wait_for(_read_rest(reader, line), read_timeout)
    except asyncio.TimeoutError:
        raise HTTPError(408, f"the request was not received within {read_timeout:g} s") from None
    except ValueError:   # a header line longer than the reader's limit
        raise HTTPError(413, f"the request's headers are over {MAX_HEADERS} bytes") from None


async def _read_rest(reader, line):
    try:
        method, path, _ = line.decode("latin-1").split(" ", 2)
    except ValueError:
        raise HTTPError(400, "malformed request line") from None
    headers, size = {}, len(line)
    while True:
        line = await reader.readline()
        size += len(line)
        if size > MAX_HEADERS:
            raise HTTPError(413, f"the request's headers are over {MAX_HEADERS} bytes")
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HTTPError(400, "a chunked request body is not supported: send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HTTPError(400, "Content-Length is not a number") from None
    if length > MAX_BODY:
        raise HTTPError(413, f"the request body is {length} bytes; at most {MAX_BODY} are "
                             f"allowed")
    body = await reader.readexactly(length) if length > 0 else b""
    return method, path.split("?", 1)[0], headers, body


class Connection:
    """One client connection: its requests in turn, each answered whole or streamed."""

    def __init__(self, client, reader, writer, read_timeout=READ_TIMEOUT):
        self.client, self.reader, self.writer = client, reader, writer
        self.read_timeout = read_timeout

    async def serve(self):
        wait = self.read_timeout
        try:
            while True:
                try:
                    request = await read_request(self.reader, wait, self.read_timeout)
                    if request is None:
                        return
                    keep = await self.answer(*request)
                except HTTPError as e:
                    await self.send_json(e.status, e.body, keep=False)
                    return
                if not keep:
                    return
                wait = IDLE_TIMEOUT
        except (ConnectionError, asyncio.IncompleteReadError):
            return   # the client went away
        finally:
            self.writer.close()

    async def answer(self, method, path, headers, body):
        """Answer one request; False when the connection must close after it."""
        keep = headers.get("connection", "").lower() != "close"
        if path in ("/v1/chat/completions", "/v1/completions"):
            if method != "POST":
                raise HTTPError(405, f"{path} takes POST")
            return await self.complete(path, body, keep)
        if method != "GET":
            raise HTTPError(405, f"{path} takes GET" if path.startswith("/v1/models")
                            or path == "/health" else f"no such endpoint: {method} {path}")
        if path == "/v1/models":
            data = (await self.client.models.list()).model_dump()
        elif path.startswith("/v1/models/"):
            try:
                data = (await self.client.models.retrieve(path[len("/v1/models/"):])).model_dump()
            except RequestError as e:
                raise HTTPError(404, str(e), param="model", code="model_not_found") from None
        elif path == "/health":
            data = {"status": "ok"}
        else:
            raise HTTPError(404, f"no such endpoint: {method} {path}")
        await self.send_json(200, data, keep)
        return keep

    async def complete(self, path, body, keep):
        try:
            params = json.loads(body)
        except (ValueError, RecursionError):
            raise HTTPError(400, "the request body is not valid JSON") from None
        if not isinstance(params, dict):
            raise HTTPError(400, "the request body must be a JSON object of parameters")
        create = (self.client.chat.completions.create if path == "/v1/chat/completions"
                  else self.client.completions.create)
        try:
            result = await create(**params)
            if not params.get("stream"):
                await self.send_json(200, result.model_dump(), keep)
                return keep
            chunks = aiter(result)
            first = await anext(chunks)   # request errors show before the 200 is sent
        except RequestError as e:
            raise HTTPError(404 if e.code == "model_not_found" else 400, str(e), param=e.param,
                            code=e.code) from None
        except ValueError as e:   # what the model refused (a token it cannot encode, ...)
            raise HTTPError(400, str(e)) from None
        await self.stream(chunks, first)
        return keep

    async def stream(self, chunks, first):
        """Server-sent events: one `data:` frame per chunk, then `data: [DONE]`. A client that
        goes away ends the generation (the chunks' generator is closed)."""
        w = self.writer
        w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            chunk = first
            while chunk is not None:
                await self._frame(json.dumps(chunk.model_dump(), ensure_ascii=False))
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    chunk = None
                except (RequestError, ValueError) as e:   # after the 200: an error frame
                    await self._frame(json.dumps({"error": {
                        "message": str(e), "type": "invalid_request_error",
                        "param": getattr(e, "param", None), "code": getattr(e, "code", None)}}))
                    break
            await self._frame("[DONE]")
            w.write(b"0\r\n\r\n")
            await w.drain()
        finally:
            await chunks.aclose()

    async def _frame(self, data):
        payload = f"data: {data}\n\n".encode()
        self.writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        await self.writer.drain()

    async def send_json(self, status, data, keep=True):
        payload = json.dumps(data, ensure_ascii=False).encode()
        self.writer.write(
            f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: {'keep-alive' if keep else 'close'}"
            f"\r\n\r\n".encode() + payload)
        await self.writer.drain()


async def start(client, host="127.0.0.1", port=8080, read_timeout=READ_TIMEOUT):
    """An asyncio server answering the API of `client` (a webgpt.Client) on host:port."""
    try:
        return await asyncio.start_server(
            lambda r, w: Connection(client, r, w, read_timeout).serve(), host, port,
            limit=MAX_HEADERS)
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


async def main(paths, host, port, log=None):
    """Load the model folders and serve them until interrupted."""
    import webgpt

    models = [await webgpt.load(path) for path in paths]
    server = await start(webgpt.Client(models), host, port)
    bound = server.sockets[0].getsockname()
    (log or _log)(f"serving {', '.join(m.name for m in models)} at "
                  f"http://{bound[0]}:{bound[1]}/v1 (Ctrl+C stops)")
    async with server:
        await server.serve_forever()


def _log(line):
    print(line, file=sys.stderr, flush=True)
