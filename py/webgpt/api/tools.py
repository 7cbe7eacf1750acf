"""Tool calling: OpenAI's `tools` / `tool_choice` on the model's own tool-call format.

Each model family was trained to write its calls one way; the chat template says which:

    hermes       <tool_call>\\n{"name": N, "arguments": A}\\n</tool_call>, one block per call
                 (Qwen2.5, Qwen3: templates that render `tools` and `<tool_call>`; SmolLM3)
    llama3_json  {"name": N, "parameters": A}, the whole reply, one call (Llama 3.1 / 3.2)
    smollm2      <tool_call>[{"name": N, "arguments": A}, ...]</tool_call> (SmolLM2; also any
                 other template that knows no tools)

Where the template renders tools, they reach it as transformers passes them
(`apply_chat_template(messages, tools=[...])`, each {"type": "function", "function": {...}});
an assistant message's tool_calls go back with their arguments as objects (templates write
`arguments | tojson`), and "tool" messages with the results go through the template as they
are. Where it does not (SmolLM2's; the SmolLM3 template that Unsloth's edit left without tools),
the tools go into the system message, in SmolLM2's model card's function-calling prompt or the
Hermes prompt Qwen2.5's template writes, and past calls into the assistant's text as the
model writes them.

While a call is generated, its text is constrained (webgpt.constrain): the format's markers,
a name of one of the tools, and arguments valid against that tool's `parameters` schema.
tool_choice "required" or a named function constrains the whole reply to calls; "auto" leaves
the reply free until the call's marker (hermes, smollm2: `<tool_call>`; llama3_json: a reply
that starts with `{`), and constrains it from there; "none" leaves it free and parses nothing.
The reply is parsed back into OpenAI's `tool_calls` (finish_reason "tool_calls").

`function_tool(f)` makes a tool of a Python function (its type hints and docstring give the
schema) that `run(call)` calls with a call's arguments: the page's Python tools.
"""

import inspect
import json
import re
import secrets
import typing

from ..constrain import for_grammar
from ..constrain.automaton import DEAD
from ..constrain.rules import Grammar, Ref, Repeat, Special, alt, lit, seq
from ..constrain.schema import DUMPS, schema_rules
from ..errors import ConstraintError, RequestError

HERMES, LLAMA3_JSON, SMOLLM2 = "hermes", "llama3_json", "smollm2"
START, END = "<tool_call>", "</tool_call>"

# SmolLM2's function-calling system prompt, from its model card (SmolLM2-1.7B-Instruct).
SMOLLM2_PROMPT = """You are an expert in composing functions. You are given a question and a set \
of possible functions. Based on the question, you will need to make one or more function/tool \
calls to achieve the purpose. If none of the functions can be used, point it out and refuse to \
answer. If the given question lacks the parameters required by the function, also point it out.

You have access to the following tools:
<tools>{tools}</tools>

The output MUST strictly adhere to the following format, and NO other text MUST be included.
The example format is as follows. Please make sure the parameter type is correct. If no \
function call is needed, please make the tool calls an empty list '[]'.
<tool_call>[
{{"name": "func_name1", "arguments": {{"argument1": "value1", "argument2": "value2"}}}},
... (more tool calls as required)
]</tool_call>"""


# The Hermes tools prompt, as Qwen2.5's template writes it, for a template that writes none.
HERMES_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def tool_format(tokenizer):
    """The tool-call format of a model, read from its chat template."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if "tools" in template and START in template:
        return HERMES
    if "tools" in template and "<|start_header_id|>" in template:
        return LLAMA3_JSON
    if "SmolLM" in template and "/think" in template:      # SmolLM3's
        return HERMES
    return SMOLLM2


def renders_tools(tokenizer):
    """Whether the chat template writes the tools and past calls itself."""
    return "tools" in (getattr(tokenizer, "chat_template", None) or "")


# ---------------------------------------------------------------- the request's side

def check_tools(tools, tool_choice, parallel):
    """The request's tools as {name: function dict}, its tool_choice as "none", "auto",
    "required" or a tool's name; a RequestError names what is wrong."""
    if not isinstance(tools, list) or not tools:
        raise RequestError("tools: must be a non-empty list of {\"type\": \"function\", "
                           "\"function\": {...}}", param="tools")
    named = {}
    for k, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" \
                or not isinstance(function, dict):
            raise RequestError(f"tools[{k}]: must be {{\"type\": \"function\", \"function\": "
                               f"{{\"name\", \"parameters\", ...}}}}", param="tools")
        name = function.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise RequestError(f"tools[{k}].function.name: must be 1 to 64 letters, digits, "
                               f"'_', '.' or '-', not {name!r}", param="tools")
        if name in named:
            raise RequestError(f"tools: two tools are named {name!r}", param="tools")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise RequestError(f"tools[{k}].function.parameters: must be a JSON schema object",
                               param="tools")
        named[name] = dict(function, parameters=parameters)
    choice = "auto" if tool_choice is None else tool_choice
    if isinstance(choice, dict):
        function = choice.get("function") if choice.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        if name not in named:
            raise RequestError(f"tool_choice: must name one of the tools "
                               f"({', '.join(named)}), as {{\"type\": \"function\", "
                               f"\"function\": {{\"name\": ...}}}}", param="tool_choice")
        choice = name
    elif choice not in ("none", "auto", "required"):
        raise RequestError(f"tool_choice: must be \"none\", \"auto\", \"required\" or "
                           f"{{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, not "
                           f"{choice!r}", param="tool_choice")
    if parallel is not None and not isinstance(parallel, bool):
        raise RequestError("parallel_tool_calls: must be true or false",
                           param="parallel_tool_calls")
    return named, choice


def template_messages(messages, tools, fmt, rendered):
    """The messages as the template takes them: tool calls' arguments as objects; for a
    template that does not render tools (`rendered` false), the tools in a system message
    and past calls written in the model's format."""
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if calls:
            m = dict(m, tool_calls=[_template_call(c) for c in calls])
            if not rendered:
                m["content"] = (m.get("content") or "") + _calls_text(m.pop("tool_calls"), fmt)
        out.append(m)
    if not rendered and tools:
        listed = [{"type": "function", "function": f} for f in tools.values()]
        system = (SMOLLM2_PROMPT.format(tools=json.dumps(listed, ensure_ascii=False))
                  if fmt == SMOLLM2 else HERMES_PROMPT.format(tools="\n".join(
                      json.dumps(t, ensure_ascii=False) for t in listed)))
        if out and out[0]["role"] == "system":
            out[0] = dict(out[0], content=out[0]["content"] + "\n\n" + system)
        else:
            out.insert(0, {"role": "system", "content": system})
    return out


def _calls_text(calls, fmt):
    """Past calls as the model writes them, for a template that does not."""
    pairs = [(c["function"]["name"], c["function"]["arguments"]) for c in calls]
    if fmt == SMOLLM2:
        return START + json.dumps([{"name": n, "arguments": a} for n, a in pairs],
                                  ensure_ascii=False) + END
    return "\n".join(f'{START}\n{{"name": {json.dumps(n, ensure_ascii=False)}, "arguments": '
                     f'{json.dumps(a, ensure_ascii=False)}}}\n{END}' for n, a in pairs)


def _template_call(call):
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise RequestError("messages: each tool_calls entry must be {\"id\", \"type\": "
                           "\"function\", \"function\": {\"name\", \"arguments\"}}",
                           param="messages")
    function = dict(call["function"])
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise RequestError(f"messages: the arguments of a tool call to "
                               f"{function.get('name')!r} are not JSON", param="messages") from None
    function["arguments"] = arguments
    return dict(call, function=function)


def template_tools(tools):
    """`tools=` for apply_chat_template, as transformers passes OpenAI's tools."""
    return [{"type": "function", "function": f} for f in tools.values()]


# ---------------------------------------------------------------- the constraint

def call_grammar(tools, fmt, choice, parallel=True):
    """The Grammar of a reply that is tool calls only: to one of `tools` ({name: function})
    or to `choice` where it names one."""
    names = [choice] if choice in tools else list(tools)
    rules, calls = {}, []
    key_word = "parameters" if fmt == LLAMA3_JSON else "arguments"
    for k, name in enumerate(names):
        try:
            args = schema_rules(tools[name]["parameters"], rules, f"t{k}_", DUMPS)
        except ConstraintError as e:
            raise RequestError(f"tools: the parameters of {name!r}: {e}", param="tools") from None
        calls.append(seq(lit(f'{{"name": {json.dumps(name, ensure_ascii=False)}, '
                             f'"{key_word}": '), args, lit("}")))
    rules["call"] = alt(*calls)
    many = parallel and choice not in tools
    if fmt == HERMES:
        block = seq(Special(START), lit("\n"), Ref("call"), lit("\n"), Special(END))
        rules["root"] = seq(block, Repeat(seq(lit("\n"), block), 0, None if many else 0))
    elif fmt == SMOLLM2:
        more = Repeat(seq(lit(", "), Ref("call")), 0, None if many else 0)
        rules["root"] = seq(Special(START), lit("["), Ref("call"), more, lit("]"), Special(END))
    else:
        rules["root"] = Ref("call")
    return Grammar(rules, "root")


class ToolCalls:
    """The constraint of a reply that may call tools (tool_choice auto): free text until the
    format's marker, then the calls' grammar (see the module docstring). With `required` (or
    a named function) the calls' grammar from the first token."""

    def __init__(self, calls, free, tokenizer, fmt):
        self.calls, self.free, self.tokenizer, self.fmt = calls, free, tokenizer, fmt
        self.seen = None
        self.text = b""          # the free text so far (special tokens left out)
        self.searched = 0        # the marker is not in text[:searched]
        self.constrained = not free
        self.given_up = False    # the text after the marker is not a call: left free

    def fresh(self):
        """Another for the next generation (the calls' automaton shared)."""
        return ToolCalls(self.calls.fresh(), self.free, self.tokenizer, self.fmt)

    def mask(self, ids):
        if self.seen is None:
            self.seen = len(ids)
            if self.constrained:
                return self.calls.mask(ids)
        new = ids[self.seen:]
        self.seen = len(ids)
        if self.constrained:
            return self.calls.mask(ids)
        if self.given_up:
            return self._all()
        special = self.calls.vocab.special_ids
        for token in new:
            data = self.tokenizer.token_bytes(token)
            self.text += data if token not in special or data == START.encode() else b""
        start = self._start()
        if start is not None:
            self._begin(start, ids)
            if self.constrained:
                return self.calls.mask(ids)
        return self._all()

    def _start(self):
        """Where the calls begin in the text so far (None: not yet)."""
        if self.fmt == LLAMA3_JSON:
            stripped = self.text.lstrip()
            return len(self.text) - len(stripped) if stripped[:1] == b"{" else None
        marker = START.encode()
        at = self.text.find(marker, self.searched)
        self.searched = max(0, len(self.text) - len(marker) + 1)
        return None if at < 0 else at

    def _begin(self, start, ids):
        """Constrain from here: the calls' automaton fed what came after their start."""
        c = self.calls
        a = c.automaton
        tail = self.text[start:]
        marker = START.encode()
        state = a.start
        if tail.startswith(marker) and self.fmt != LLAMA3_JSON:
            symbol = c.vocab.special.get(START)
            after = a.symbols(state).get(symbol) if symbol is not None else None
            if after is not None:
                state, tail = after, tail[len(marker):]
        state = a.advance(state, tail)
        if state != DEAD:     # else the text went its own way: left free, parsed as it is
            c.resume(state, ids)
            self.constrained = True
        else:
            self.given_up = True

    def _all(self):
        vocab = self.calls.vocab
        return ((1 << vocab.V) - 1).to_bytes(vocab.nbytes, "little")


def tool_constraint(model, tools, choice, parallel):
    """The constraint of a reply under `tools` and tool_choice `choice` (None for "none")."""
    if choice == "none":
        return None
    tokenizer = model.tokenizer
    fmt = tool_format(tokenizer)
    key = ("tools", fmt, choice, bool(parallel),
           json.dumps(sorted(tools.items()), sort_keys=True))
    calls = for_grammar(tokenizer, lambda: call_grammar(tools, fmt, choice, parallel is not False),
                        sorted(model.stopping_ids()), key)
    return ToolCalls(calls, choice == "auto", tokenizer, fmt)


# ---------------------------------------------------------------- the reply's side

def parse_calls(text, fmt, tools):
    """(content, tool_calls) of a reply's raw text (special tokens kept): the calls to known
    tools in OpenAI's shape, and the text around them (None where there is none)."""
    calls, content = [], text
    if fmt in (HERMES, SMOLLM2):
        pieces = re.split(r"<tool_call>(.*?)(?:</tool_call>|$)", text, flags=re.S)
        content = "".join(pieces[0::2])
        for body in pieces[1::2]:
            found = _json(body)
            for call in (found if isinstance(found, list) else [found]):
                calls.append(call)
    else:
        body = text.strip()
        if body.startswith("<|python_tag|>"):
            body = body[len("<|python_tag|>"):]
        found = _json(body)
        if isinstance(found, dict) and "name" in found:
            calls, content = [found], ""
    out = []
    for call in calls:
        if not isinstance(call, dict) or call.get("name") not in tools:
            continue
        arguments = call.get("arguments", call.get("parameters", {}))
        out.append({"id": f"call_{secrets.token_hex(12)}", "type": "function",
                    "function": {"name": call["name"],
                                 "arguments": json.dumps(arguments, ensure_ascii=False)}})
    if not out:
        return text, []
    content = content.strip()
    return content or None, out


def _json(text):
    try:
        return json.loads(text.strip())
    except ValueError:
        return None


# ---------------------------------------------------------------- Python functions as tools

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean",
               type(None): "null"}


def _annotation_schema(hint, where):
    """The JSON schema of a type hint: str, int, float, bool, None, list[T], dict[str, T],
    Optional/Union, Literal[...]."""
    if hint is inspect.Parameter.empty or hint is typing.Any:
        return {}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {"type": "array", "prefixItems": [_annotation_schema(a, where) for a in args],
                    "minItems": len(args), "maxItems": len(args)}
        return {"type": "array", **({"items": _annotation_schema(args[0], where)} if args else {})}
    if origin is dict or hint is dict:
        return {"type": "object",
                **({"additionalProperties": _annotation_schema(args[1], where)} if args else {})}
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return {"anyOf": [_annotation_schema(a, where) for a in args]}
    raise TypeError(f"{where}: the type {hint!r} has no JSON schema here (use str, int, float, "
                    f"bool, list, dict, Literal, Optional)")


def _docstring(f):
    """(summary, {parameter: description}) from a docstring: its first paragraph, and
    'name: text' lines (Google's Args: section, or plain lines)."""
    doc = inspect.getdoc(f) or ""
    summary = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params = {}
    for line in doc.splitlines()[1:]:
        m = re.match(r"\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)", line)
        if m:
            params[m.group(1)] = m.group(2).strip()
    return summary, params


class FunctionTool:
    """A Python function as a tool: `schema` for `tools=[...]`, and `run(call)` to call it with
    a tool call's arguments (a JSON string or a dict), giving the result as text."""

    def __init__(self, function, name=None, description=None):
        self.function = function
        self.name = name or function.__name__
        summary, described = _docstring(function)
        hints = typing.get_type_hints(function)
        properties, required = {}, []
        for p in inspect.signature(function).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            schema = _annotation_schema(hints.get(p.name, p.empty),
                                        f"{self.name}'s parameter {p.name!r}")
            if p.name in described:
                schema["description"] = described[p.name]
            properties[p.name] = schema
            if p.default is p.empty:
                required.append(p.name)
        self.parameters = {"type": "object", "properties": properties, "required": required,
                           "additionalProperties": False}
        self.description = description or summary
        self.schema = {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}

    def arguments(self, call):
        """The keyword arguments of a tool call (an OpenAI tool_calls entry, its function, or
        the arguments themselves as a JSON string or a dict)."""
        if isinstance(call, dict) and "function" in call:
            call = call["function"]
        elif hasattr(call, "function"):
            call = call.function.model_dump()
        if isinstance(call, dict) and "arguments" in call and "name" in call:
            call = call["arguments"]
        if isinstance(call, str):
            call = json.loads(call) if call.strip() else {}
        if not isinstance(call, dict):
            raise ValueError(f"the arguments of a call to {self.name} must be a JSON object")
        return call

    def run(self, call):
        """Call the function with the call's arguments; its result as text (JSON for what is
        not a string). An awaitable result is returned as it is: await it."""
        result = self.function(**self.arguments(call))
        if inspect.isawaitable(result):
            return result
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False,
                                                                 default=str)

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)


def function_tool(function=None, *, name=None, description=None):
    """A FunctionTool of `function` (or a decorator giving one): its type hints make the
    parameters' schema, its docstring the description and each parameter's."""
    if function is None:
        return lambda f: FunctionTool(f, name, description)
    return FunctionTool(function, name, description)


__all__ = ["function_tool", "FunctionTool", "tool_format", "check_tools", "tool_constraint",
           "parse_calls"]
