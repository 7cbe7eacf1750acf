"""OpenAI's request parameters, checked at the boundary: `chat_request(body)` and
`completion_request(body)` turn the keyword arguments of `create(...)` (or a request's JSON
body) into a Request, or raise a RequestError naming the parameter, with OpenAI's ranges where
OpenAI defines them.

Parameters (OpenAI's; * = an extension many local servers take, as transformers defines it):
    model, messages (chat) / prompt (completions), max_tokens / max_completion_tokens,
    temperature [0, 1e6] (OpenAI's [0, 2] and beyond), top_p [0, 1], n [1, 16], stop (a
    string or up to 4), seed,
    frequency_penalty and presence_penalty [-2, 2], logit_bias ({token id: [-100, 100]}),
    logprobs + top_logprobs [0, 20] (chat) / logprobs [0, 5] (completions), echo (completions),
    stream, stream_options {"include_usage"}, *top_k, *min_p [0, 1], *repetition_penalty;
    chat only: response_format ({"type": "text"}, {"type": "json_object"}, {"type":
    "json_schema", "json_schema": {"name", "schema", "strict", "description"}}), tools,
    tool_choice, parallel_tool_calls (api/tools.py); both: *regex (the output matches this
    regular expression whole), *grammar (the output is of this GBNF / Lark-style grammar), at
    most one of response_format's JSON, regex and grammar, and none of them beside tools.
Accepted and ignored (they change nothing here): user, metadata, store, service_tier.
Refused with a sentence: what this engine does not implement (functions, function_call,
suffix, best_of other than n, audio, modalities, prediction, reasoning_effort,
web_search_options), and any other name.
"""

import dataclasses

from ..errors import RequestError, short_repr
from ..sampling import MAX_TEMPERATURE, MIN_TOP_P
from .tools import check_tools

MAX_N = 16          # choices per request
MAX_STOP = 4        # stop sequences, as OpenAI allows
MAX_STOP_CHARS = 256
IGNORED = frozenset(("user", "metadata", "store", "service_tier"))
NOT_IMPLEMENTED = frozenset((
    "functions", "function_call", "audio", "modalities", "prediction", "reasoning_effort",
    "web_search_options"))
ROLES = frozenset(("system", "developer", "user", "assistant", "tool"))


@dataclasses.dataclass
class Request:
    """A checked request: what a completion or chat completion runs with."""
    kind: str                      # "chat" or "completion"
    model: str = None
    messages: list = None          # chat: [{"role", "content", ...}] as transformers takes them
    prompts: list = None           # completion: [str or [token ids]], one choice set each
    max_tokens: int = None         # None: as many as the context leaves (chat), 16 (completion)
    temperature: float = 1.0
    top_p: float = None
    top_k: int = None
    n: int = 1
    stop: list = dataclasses.field(default_factory=list)
    seed: int = None
    logprobs: bool = False
    top_logprobs: int = 0
    echo: bool = False
    stream: bool = False
    include_usage: bool = False
    controls: dict = dataclasses.field(default_factory=dict)   # decode.Controls' keywords
    # What the output must be: None, or ("json_object",), ("json_schema", schema),
    # ("regex", pattern), ("grammar", text).
    output: tuple = None
    tools: dict = None             # {name: function} (api/tools.py's check_tools)
    tool_choice: str = None        # "none", "auto", "required" or a tool's name
    parallel_tool_calls: bool = None

    def sampling_controls(self):
        """The keywords of decode.Controls (logits processors and log-probs)."""
        return dict(self.controls, logprobs=self.top_logprobs if self.logprobs else None)

    def sampling(self):
        """The keywords of Model.stream_steps (but the prompt and max_new_tokens)."""
        return dict(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                    seed=self.seed, **self.sampling_controls())


def _fail(param, message):
    raise RequestError(f"{param}: {message}", param=param)


def _whole(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _number(body, name, low, high, default=None, low_open=False):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or not (
            (low < v if low_open else low <= v) and v <= high):
        _fail(name, f"must be a number from {low:g} to {high:g}"
                    f"{' (not included)' if low_open else ''}, not {short_repr(v)}")
    return float(v)


def _int(body, name, low, high, default=None):
    v = body.get(name)
    if v is None:
        return default
    if not _whole(v) or not low <= v <= high:
        _fail(name, f"must be a whole number from {low} to {high}, not {short_repr(v)}")
    return v


def _bool(body, name):
    v = body.get(name, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        _fail(name, f"must be true or false, not {short_repr(v)}")
    return v


def _stop(body):
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        _fail("stop", f"must be a string or a list of non-empty strings, not {short_repr(stop)}")
    if len(stop) > MAX_STOP:
        _fail("stop", f"has {len(stop)} sequences; at most {MAX_STOP} are allowed")
    if any(len(s) > MAX_STOP_CHARS for s in stop):
        _fail("stop", f"sequences must be at most {MAX_STOP_CHARS} characters")
    return stop


def _check_names(body, known):
    if not isinstance(body, dict):
        raise RequestError(f"the request must be a JSON object of parameters, not "
                           f"{short_repr(body)}")
    for name in body:
        if name in ("functions", "function_call"):
            _fail(name, "is OpenAI's deprecated form: give tools and tool_choice instead")
        if name in NOT_IMPLEMENTED:
            _fail(name, "is not supported by this engine (yet)")
        if name not in known and name not in IGNORED:
            _fail(name, "is not a parameter of this request (see the API's parameters)")


COMMON = frozenset(("model", "max_tokens", "temperature", "top_p", "n", "stop", "seed",
                    "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "stream",
                    "stream_options", "top_k", "min_p", "repetition_penalty", "regex",
                    "grammar"))
CHAT = COMMON | {"messages", "max_completion_tokens", "top_logprobs", "response_format",
                 "tools", "tool_choice", "parallel_tool_calls"}
COMPLETION = COMMON | {"prompt", "echo", "suffix", "best_of"}
PARAMS = CHAT | COMPLETION


def _common(body, kind):
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        _fail("model", f"must be a model's name, not {short_repr(model)}")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}):
        _fail("stream_options", f"must be {{\"include_usage\": true or false}}, not "
                                f"{short_repr(options)}")
    stream = _bool(body, "stream")
    if options is not None and not stream:
        _fail("stream_options", "is only allowed with stream: true")
    # OpenAI's range is [0, 2]; the engine samples at any temperature the page allows.
    temperature = _number(body, "temperature", 0, MAX_TEMPERATURE, 1.0)
    controls = {"min_p": _number(body, "min_p", 0, 1),
                "repetition_penalty": _number(body, "repetition_penalty", 0, 1e6,
                                              low_open=True),
                "frequency_penalty": _number(body, "frequency_penalty", -2, 2),
                "presence_penalty": _number(body, "presence_penalty", -2, 2),
                "logit_bias": body.get("logit_bias")}
    if controls["logit_bias"] is not None and not isinstance(controls["logit_bias"], dict):
        _fail("logit_bias", f"must map token ids to numbers from -100 to 100, not "
                            f"{short_repr(controls['logit_bias'])}")
    top_p = _number(body, "top_p", 0, 1)
    outputs = [_output(body, name) for name in ("response_format", "regex", "grammar")
               if body.get(name) is not None]
    outputs = [o for o in outputs if o is not None]
    if len(outputs) > 1:
        _fail("regex" if "regex" in body else "grammar",
              "give one of response_format (JSON), regex and grammar, not several")
    return Request(
        kind=kind, model=model, stream=stream,
        include_usage=bool((options or {}).get("include_usage")),
        temperature=temperature if temperature == 0 else max(temperature, 1 / MAX_TEMPERATURE),
        top_p=None if top_p is None else max(top_p, MIN_TOP_P),
        top_k=_int(body, "top_k", 0, 1 << 30) or None, n=_int(body, "n", 1, MAX_N, 1),
        stop=_stop(body), seed=_int(body, "seed", -(1 << 63), (1 << 64) - 1),
        controls={k: v for k, v in controls.items() if v is not None},
        output=outputs[0] if outputs else None)


def _output(body, name):
    """What `name` asks the output to be (None: plain text)."""
    value = body[name]
    if name in ("regex", "grammar"):
        if not isinstance(value, str) or not value:
            _fail(name, f"must be a non-empty string, not {short_repr(value)}")
        return (name, value)
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text" and set(value) == {"type"}:
        return None
    if kind == "json_object" and set(value) == {"type"}:
        return ("json_object",)
    if kind == "json_schema":
        spec = value.get("json_schema")
        if set(value) == {"type", "json_schema"} and isinstance(spec, dict) \
                and isinstance(spec.get("name"), str) \
                and isinstance(spec.get("schema", {}), (dict, bool)) \
                and set(spec) <= {"name", "schema", "strict", "description"}:
            return ("json_schema", spec.get("schema", {}))
        _fail(name, "json_schema must be {\"name\": ..., \"schema\": {...}, \"strict\": "
                    "true or false, \"description\": ...}")
    _fail(name, f"must be {{\"type\": \"text\"}}, {{\"type\": \"json_object\"}} or "
                f"{{\"type\": \"json_schema\", \"json_schema\": {{...}}}}, not "
                f"{short_repr(value)}")


def chat_request(body):
    """A chat completion's Request from its parameters."""
    _check_names(body, CHAT)
    r = _common(body, "chat")
    if "max_tokens" in body and "max_completion_tokens" in body:
        _fail("max_tokens", "give max_tokens or max_completion_tokens, not both")
    name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    r.max_tokens = _int(body, name, 1, 1 << 30)
    r.logprobs = _bool(body, "logprobs")
    r.top_logprobs = _int(body, "top_logprobs", 0, 20, 0)
    if r.top_logprobs and not r.logprobs:
        _fail("top_logprobs", "needs logprobs: true")
    r.messages = _messages(body.get("messages"))
    if body.get("tools") is not None:
        r.tools, r.tool_choice = check_tools(body["tools"], body.get("tool_choice"),
                                             body.get("parallel_tool_calls"))
        r.parallel_tool_calls = body.get("parallel_tool_calls")
        if r.output is not None and r.tool_choice != "none":
            _fail("response_format" if r.output[0].startswith("json") else r.output[0],
                  "beside tools is not supported by this engine: the reply is either free "
                  "text or tool calls (give tool_choice \"none\" to use it)")
    elif body.get("tool_choice") not in (None, "none"):
        _fail("tool_choice", "needs tools")
    return r


def completion_request(body):
    """A (legacy) completion's Request from its parameters."""
    _check_names(body, COMPLETION)
    r = _common(body, "completion")
    r.max_tokens = _int(body, "max_tokens", 1, 1 << 30, 16)
    if body.get("suffix") is not None:
        _fail("suffix", "is not supported by this engine (no fill-in-the-middle)")
    best_of = body.get("best_of")
    if best_of is not None and best_of != r.n:
        _fail("best_of", "is not supported by this engine, but for best_of = n")
    top = _int(body, "logprobs", 0, 5)
    r.logprobs, r.top_logprobs = top is not None, top or 0
    r.echo = _bool(body, "echo")
    if r.echo and r.logprobs:
        _fail("echo", "with logprobs is not supported by this engine (no prompt log-probs)")
    r.prompts = _prompts(body.get("prompt"))
    return r


def _prompts(prompt):
    """[str or [token ids]]: one prompt, or a batch of them."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(_whole(t) for t in prompt):
            return [prompt]
        if all(isinstance(p, str) for p in prompt):
            return prompt
        if all(isinstance(p, list) and p and all(_whole(t) for t in p) for p in prompt):
            return prompt
    _fail("prompt", f"must be a string, a list of strings, a list of token ids or a list of "
                    f"such lists, not {short_repr(prompt)}")


def _messages(messages):
    """The messages as transformers' chat templates take them: content as text (OpenAI's
    list of {"type": "text", "text"} parts joined), "developer" as "system"."""
    if not isinstance(messages, list) or not messages:
        _fail("messages", "must be a non-empty list of {\"role\", \"content\"} objects")
    out = []
    for k, m in enumerate(messages):
        where = f"messages[{k}]"
        if not isinstance(m, dict):
            _fail(where, f"must be an object with a role and a content, not {short_repr(m)}")
        role = m.get("role")
        if role not in ROLES:
            _fail(f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}, not "
                                   f"{short_repr(role)}")
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" \
                        or not isinstance(part.get("text"), str):
                    _fail(f"{where}.content[{j}]", "must be a {\"type\": \"text\", \"text\"} "
                                                   "part (this engine reads text only)")
                parts.append(part["text"])
            content = "".join(parts)
        if content is not None and not isinstance(content, str):
            _fail(f"{where}.content", f"must be a string or a list of text parts, not "
                                      f"{short_repr(content)}")
        if content is None and role != "assistant":
            _fail(f"{where}.content", "is missing")
        extra = {k: v for k, v in m.items() if k not in ("role", "content")}
        out.append({"role": "system" if role == "developer" else role,
                    "content": content or "", **extra})
    return out
