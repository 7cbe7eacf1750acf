"""`Client`: the shape of `openai.AsyncOpenAI` over models loaded here, the same in the page
(Pyodide) and in CPython.

    client = webgpt.Client(model)                  # or Client([m1, m2]) / Client({"name": m})
    resp = await client.chat.completions.create(messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=50, temperature=0.7, stop=["\\n\\n"])
    resp.choices[0].message.content, resp.choices[0].finish_reason, resp.usage.total_tokens
    stream = await client.chat.completions.create(messages=..., stream=True,
                                                  stream_options={"include_usage": True})
    async for chunk in stream:
        print(chunk.choices[0].delta.content or "", end="") if chunk.choices else None
    resp = await client.completions.create(prompt="ROMEO:", max_tokens=40, logprobs=3)
    models = await client.models.list()            # [m.id for m in models]

Code written for the `openai` package needs only its client line changed. Parameters and their
checks are params.py's; a bad one raises RequestError (a ValueError) naming it. Each model runs
one request at a time (its KV cache is one conversation): requests for it wait their turn.
"""

import asyncio
import time

from ..errors import RequestError
from . import engine
from .objects import APIObject, ModelList
from .params import chat_request, completion_request


class Client:
    """An OpenAI-shaped client over `models`: a Model, a list of Models (each under its
    `name`, its folder's), or {name: Model}."""

    def __init__(self, models):
        if isinstance(models, dict):
            named = dict(models)
        else:
            models = list(models) if isinstance(models, (list, tuple)) else [models]
            named = {m.name: m for m in models}
            if len(named) != len(models):
                raise ValueError("two models have the same name: give them names with "
                                 "Client({name: model, ...})")
        if not named:
            raise ValueError("a Client needs at least one model")
        self._models = named
        self._locks = {}
        self._created = int(time.time())
        self.chat = _Chat(self)
        self.completions = _Completions(self)
        self.models = _Models(self)

    def model(self, name):
        """(name, Model) of the model a request names (None: the only one)."""
        if name is None:
            if len(self._models) == 1:
                return next(iter(self._models.items()))
            raise RequestError(f"model: this client serves {', '.join(self._models)}; name "
                               f"one", param="model", code="model_not_found")
        if name not in self._models:
            raise RequestError(f"model: {name!r} is not one of this client's models "
                               f"({', '.join(self._models)})", param="model",
                               code="model_not_found")
        return name, self._models[name]

    def lock(self, name):
        """The lock that makes requests for model `name` take turns."""
        if name not in self._locks:
            self._locks[name] = asyncio.Lock()
        return self._locks[name]

    async def run(self, request):
        """The response to a checked request: an APIObject, or a Stream of them."""
        name, model = self.model(request.model)
        if request.stream:
            return Stream(self, name, model, request)
        async with self.lock(name):
            return APIObject(await engine.create(model, name, request))


class Stream:
    """The chunks of a streamed response (`async for chunk in stream`), as the `openai`
    package's AsyncStream gives them. The model is held from the first chunk to the last;
    leaving the loop early (break, an error, `await stream.close()`) ends the generation."""

    def __init__(self, client, name, model, request):
        self._client, self._name, self._model, self._request = client, name, model, request
        self._chunks = None

    def __aiter__(self):
        if self._chunks is None:
            self._chunks = self._iterate()
        return self._chunks

    async def _iterate(self):
        async with self._client.lock(self._name):
            chunks = engine.stream(self._model, self._name, self._request)
            try:
                async for chunk in chunks:
                    yield APIObject(chunk)
            finally:
                await chunks.aclose()   # ends the generation, records what the cache holds

    async def close(self):
        """End the stream (and its generation) where it is, freeing the model."""
        if self._chunks is not None:
            await self._chunks.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class _Completions:
    """client.completions: `await create(prompt=..., ...)` (OpenAI's legacy completions)."""

    def __init__(self, client):
        self._client = client

    async def create(self, **params):
        """A text completion of `prompt` (a string, strings, token ids); with stream=True an
        async iterator of its chunks. Parameters as OpenAI's (webgpt/api/params.py lists them)."""
        return await self._client.run(completion_request(params))


class _ChatCompletions(_Completions):
    """client.chat.completions: `await create(messages=..., ...)`."""

    async def create(self, **params):
        """The assistant's reply to `messages` ([{"role", "content"}], rendered by the model's
        chat template); with stream=True an async iterator of its chunks. Parameters as
        OpenAI's (webgpt/api/params.py lists them)."""
        return await self._client.run(chat_request(params))


class _Chat:
    def __init__(self, client):
        self.completions = _ChatCompletions(client)


class _Models:
    """client.models: `await list()`, `await retrieve(name)`."""

    def __init__(self, client):
        self._client = client

    def _entry(self, name):
        return {"id": name, "object": "model", "created": self._client._created,
                "owned_by": "webgpt"}

    async def list(self):
        """The client's models: {"object": "list", "data": [{"id": name, ...}]}, iterable over
        the models (`[m.id for m in await client.models.list()]`)."""
        return ModelList({"object": "list",
                          "data": [self._entry(name) for name in self._client._models]})

    async def retrieve(self, name):
        """The model called `name`: {"id", "object": "model", "created", "owned_by"}; an
        unknown name is a RequestError (code model_not_found)."""
        return APIObject(self._entry(self._client.model(name)[0]))
