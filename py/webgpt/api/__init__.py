"""An OpenAI-shaped API over loaded models, the same in the page and in CPython:

    client = webgpt.Client(model)
    resp = await client.chat.completions.create(messages=[...], max_tokens=..., stream=...)

    client.py    Client (chat.completions, completions, models) and Stream
    params.py    OpenAI's parameters, checked (a bad one is a RequestError naming it)
    engine.py    running a request: each choice a model/chat.py Reply; OpenAI's response
                 objects whole or as a stream's chunks
    objects.py   APIObject: OpenAI's JSON with attribute access, model_dump() / to_dict()
    tools.py     tool calling: each model family's call format, the constraint of a call, the
                 calls parsed back; function_tool (a Python function as a tool)

The local server (`python -m webgpt serve`, webgpt/tools/serve.py) speaks the same API over
HTTP.
"""

from ..errors import RequestError
from .client import Client, Stream
from .objects import APIObject
from .tools import FunctionTool, function_tool

__all__ = ["Client", "Stream", "APIObject", "RequestError", "function_tool", "FunctionTool"]
