"""The objects the API returns: OpenAI's JSON, read with attributes as the `openai` package's are.

`APIObject(d)` wraps one of the JSON objects OpenAI's API returns (a chat completion, a chunk,
a choice, usage, ...): `resp.choices[0].message.content` reads it as code written for the
`openai` package does, `resp["choices"]` as a dict, and `model_dump()` / `to_dict()` /
`model_dump_json()` / `to_json()` give the JSON itself (the same dicts OpenAI sends, so code
that serialises responses works unchanged). The objects are plain data: no pydantic (it would
be one more wheel for the page, and the shapes are fixed by OpenAI's API anyway).
"""

import json


# Fields OpenAI's objects declare optional: absent from the JSON (a last chunk's empty delta),
# they read as None, as the `openai` package's models give them; any other absent name is an
# AttributeError (a typo should not read as None).
OPTIONAL = frozenset(("content", "role", "refusal", "tool_calls", "function_call", "logprobs",
                      "finish_reason", "usage", "system_fingerprint", "name", "audio",
                      "annotations", "reasoning_content", "service_tier"))


class APIObject:
    """OpenAI's JSON object `d` with attribute access (nested objects and lists of them too)."""

    __slots__ = ("_data",)

    def __init__(self, data):
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name):
        try:
            return _wrap(self._data[name])
        except KeyError:
            if name in OPTIONAL:
                return None
            raise AttributeError(f"{type(self).__name__} has no field {name!r} (it has "
                                 f"{', '.join(self._data)})") from None

    def __getitem__(self, key):
        return _wrap(self._data[key])

    def __contains__(self, key):
        return key in self._data

    def __setattr__(self, name, value):
        raise AttributeError("API objects are read-only; model_dump() gives a dict to change")

    def __eq__(self, other):
        return isinstance(other, APIObject) and other._data == self._data

    def __repr__(self):
        kind = self._data.get("object", "object")
        return f"<{kind} {json.dumps(self._data, ensure_ascii=False)[:200]}>"

    def model_dump(self, **_):
        """The JSON object as a dict of plain values (a copy)."""
        return json.loads(json.dumps(self._data))

    def model_dump_json(self, indent=None, **_):
        return json.dumps(self._data, indent=indent, ensure_ascii=False)

    to_dict = model_dump

    def to_json(self, indent=2):
        return self.model_dump_json(indent=indent)


def _wrap(value):
    if isinstance(value, dict):
        return APIObject(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class ModelList(APIObject):
    """`client.models.list()`: {"object": "list", "data": [models]}, iterable over the models."""

    __slots__ = ()

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self._data["data"])
