"""`python -m webgpt serve`: the OpenAI-compatible server, with the official `openai` package as
its client (pinned in requirements-test.txt), and raw HTTP for what a client library hides:
malformed JSON, a body over the limit, a client too slow to send its request, a client that
disconnects mid-stream.

The server runs in a thread of this process with its own event loop, over a small instruct
model (a random Qwen2 with the real Qwen2.5-Instruct chat template, tests/hfmodels.py); its
greedy replies are compared with the same model's `model.chat` in the same thread (which
tests/test_chat.py compares with transformers).
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import hfmodels

import webgpt
from webgpt.tools import serve

openai = pytest.importorskip("openai", reason="the openai package is not installed "
                                              "(pip install -r requirements-test.txt)")

MESSAGES = [{"role": "system", "content": "You are brief."},
            {"role": "user", "content": "But soft, what light through yonder window breaks?"}]


class Server:
    """The server on a free port, its loop in a thread; `call(coro)` runs on that loop."""

    def __init__(self, folder):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.model = self.call(webgpt.load(folder))
        self.server = self.call(serve.start(webgpt.Client(self.model), "127.0.0.1", 0,
                                            read_timeout=2.0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def call(self, coro, timeout=300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        async def stop():   # on the server's own loop: asyncio's objects are not thread-safe
            self.server.close()
            await self.server.wait_closed()
        self.call(stop())
        self.model.release()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory, adapter):
    folder = str(tmp_path_factory.mktemp("served") / "tiny-chat")
    hfmodels.write_chat_folder(folder)
    s = Server(folder)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)


def test_models(client):
    assert [m.id for m in client.models.list()] == ["tiny-chat"]
    assert client.models.retrieve("tiny-chat").id == "tiny-chat"


def test_chat_reply_equals_the_models_and_streams_the_same(server, client):
    want = server.call(server.model.chat(MESSAGES, max_new_tokens=20, temperature=0))
    resp = client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=20,
                                          temperature=0)
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == want
    assert choice.finish_reason in ("stop", "length") and resp.object == "chat.completion"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    chunks = list(client.chat.completions.create(
        model="tiny-chat", messages=MESSAGES, max_tokens=20, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == choice.finish_reason and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == \
        resp.usage.completion_tokens


def test_stop_strings_and_logprobs(server, client):
    full = client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=24, temperature=0,
                                          logprobs=True, top_logprobs=3)
    text = full.choices[0].message.content
    entries = full.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == text or len(entries) == \
        full.usage.completion_tokens - (full.choices[0].finish_reason == "stop")
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        tops = [t.logprob for t in e.top_logprobs]
        assert tops == sorted(tops, reverse=True) and e.logprob <= tops[0] + 1e-6
    stop = text[len(text) // 2: len(text) // 2 + 2]
    if stop.strip():
        cut = client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=24, temperature=0,
                                             stop=[stop])
        assert cut.choices[0].message.content == text[:text.index(stop)]
        assert cut.choices[0].finish_reason == "stop"


def test_completions(client):
    a = client.completions.create(model="tiny-chat", prompt="ROMEO: But soft", max_tokens=8,
                                  temperature=0, n=2)
    assert [c.index for c in a.choices] == [0, 1] and a.choices[0].text == a.choices[1].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny-chat", prompt="ROMEO: But soft", max_tokens=8, temperature=0, stream=True))
    assert streamed == a.choices[0].text


@pytest.mark.parametrize("params, status, param", [
    (dict(top_p=2), 400, "top_p"),
    (dict(max_tokens=-5), 400, "max_tokens"),
    (dict(stop=["a"] * 100), 400, "stop"),
    (dict(logit_bias={"99999": 1}), 400, "logit_bias"),
    (dict(extra_body={"frobnicate": 1}), 400, "frobnicate"),
    (dict(model="nope"), 404, "model"),
])
def test_bad_requests_are_openai_errors(client, params, status, param):
    params = dict(dict(model="tiny-chat", messages=MESSAGES), **params)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(**params)
    assert e.value.status_code == status
    body = e.value.body
    assert body["param"] == param and body["type"] == "invalid_request_error" and body["message"]


# ---------------------------------------------------------------- raw HTTP

def raw(server, data, read=True):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(data)
        if not read:
            return None
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), body


def post(path, body, extra=b""):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode() + extra + \
        b"\r\n" + body


def test_malformed_json_and_unknown_paths(server):
    status, _, body = raw(server, post("/v1/chat/completions", b"{not json"))
    assert status == 400 and json.loads(body)["error"]["message"]
    status, _, body = raw(server, b"GET /v2/nothing HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 404 and json.loads(body)["error"]
    status, _, _ = raw(server, b"GET /v1/chat/completions HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 405


def test_a_huge_body_is_refused_unread(server):
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {serve.MAX_BODY + 1}\r\n"
            f"Connection: close\r\n\r\n").encode()
    status, _, body = raw(server, head)     # the body never comes: the size alone is refused
    assert status == 413 and "at most" in json.loads(body)["error"]["message"]


def test_a_slow_client_times_out(server):
    t = time.monotonic()
    status, _, body = raw(server, b"POST /v1/completions HTTP/1.1\r\nContent-Le")
    assert status == 408 and time.monotonic() - t < 10


def test_streams_are_server_sent_events(server):
    body = json.dumps({"messages": MESSAGES, "max_tokens": 6, "temperature": 0,
                       "stream": True}).encode()
    status, head, data = raw(server, post("/v1/chat/completions", body,
                                          b"Accept: application/json\r\n"))
    assert status == 200 and "text/event-stream" in head and "chunked" in head
    text = b"".join(part for part in data.split(b"\r\n")[1::2]).decode()   # de-chunked
    frames = [f[len("data: "):] for f in text.split("\n\n") if f]
    assert frames[-1] == "[DONE]" and all(json.loads(f)["object"] == "chat.completion.chunk"
                                          for f in frames[:-1])


def test_a_client_that_leaves_mid_stream_stops_its_generation(server):
    """The reply could run to the context's end (its end-of-turn ids banned); the client reads
    three frames and leaves: the generation ends at one of the next tokens."""
    banned = {str(i): -100 for i in server.model.stopping_ids()}
    body = json.dumps({"messages": MESSAGES, "temperature": 0, "stream": True,
                       "logit_bias": banned}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(post("/v1/chat/completions", body))
        got = b""
        while got.count(b"data: ") < 3:
            got += s.recv(4096)
    room = server.model.n_ctx - server.model.stats["prefill_tokens"]
    time.sleep(2)
    aborted = server.model.stats      # the left request's (the next replaces it)
    assert aborted["decode_tokens"] < min(20, room - 10), (aborted, room)
    status, _, _ = raw(server, post("/v1/completions", json.dumps(
        {"prompt": "ROMEO:", "max_tokens": 2}).encode()))
    assert status == 200


def test_the_command_line_serves_and_says_where(tmp_path, server):
    folder = str(tmp_path / "m")
    hfmodels.write_chat_folder(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "py"),
               XDG_RUNTIME_DIR=str(tmp_path))     # else Mesa's loader warns on stderr
    proc = subprocess.Popen([sys.executable, "-m", "webgpt", "serve", "--model", folder,
                             "--port", str(port)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert f"serving m at http://127.0.0.1:{port}/v1" in line, line
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert c.chat.completions.create(model="m", messages=MESSAGES, max_tokens=3,
                                         temperature=0).choices[0].message.content is not None
    finally:
        proc.terminate()
        proc.wait(30)
    busy = subprocess.run([sys.executable, "-m", "webgpt", "serve", "--model", folder,
                           "--port", str(server.port)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert busy.returncode == 1 and "cannot listen on 127.0.0.1" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1
