"""Chat templates, rendered to the text that transformers' `apply_chat_template` gives.

A chat model ships its prompt format as a Jinja2 program: `chat_template.jinja`, or the
`chat_template` key of `tokenizer_config.json`. It turns a list of messages into the prompt
text, and the model only answers well when that text is exactly the one it was trained on. So
the template runs in Jinja2 itself (not a home-made engine), set up the way transformers 5.24
sets it up in `transformers/utils/chat_template_utils.py`:

- an `ImmutableSandboxedEnvironment`: templates come from model repositories, so they are
  untrusted code, and the immutable sandbox also keeps them from changing the caller's data;
- `trim_blocks` and `lstrip_blocks`, which decide the whitespace around `{% ... %}` tags, the
  `loopcontrols` extension (`{% break %}`, `{% continue %}`) and a `{% generation %}` block
  (transformers uses it to mark the assistant's part for training masks; here its body is
  rendered as it stands, which is all the text needs);
- the globals `raise_exception(message)` (a template's refusal, here a `ChatTemplateError` with
  the template's message), `strftime_now(format)` (the local time, read as the template runs),
  a `dict` and a `namespace` that give nothing beyond plain data;
- a `tojson` filter that does not escape HTML (Jinja's own writes `<` as `\\u003c`) and takes
  json.dumps's `ensure_ascii`, `indent`, `separators` and `sort_keys`;
- the variables `messages`, `tools` and `documents` (None unless given), `add_generation_prompt`,
  `bos_token` and `eos_token` when the tokenizer has them, and any other keyword arguments
  (`enable_thinking`, `date_string`, ...).

Messages are checked at this boundary: a non-empty list of dicts, each with a string `role` and a
string `content` (content given as a list of parts is not supported). As transformers does, keys
whose value is None are dropped, a message's reasoning under any of its usual names
(`reasoning_content`, `thinking`, `reasoning`) is passed under all of them, and the template sees
plain copies (dicts, lists, tuples, strings, numbers), never the caller's objects.

Jinja2 (with MarkupSafe under it, both pure Python) is imported on first use, so that a model
without a chat template never needs it; the page ships both as pinned wheels.

A template is a program from whoever published the model, so the sandbox is not all: it must
also end, and not fill the memory. A render may take RENDER_SECONDS: the code Jinja compiles
a template into calls the environment's tick() at the start of every block it runs (each turn
of a loop, each branch, each macro call), which reads the clock every 256 ticks, so ten billion
turns of nested loops stop there (tracing every line instead made renders 4 times slower). No
string it makes
may pass OUTPUT_GROWTH times the characters it is given plus OUTPUT_SLACK: the output as it is
produced, and, checked before the work is done, every operation that can make a long string or
list from short ones (`*`, `+`, `%`, `~`, `**` on numbers, str methods such as center, ljust,
replace, join and format, the filters center, indent, wordwrap, replace, join, format and
tojson's indent, the lipsum global). Recursion too deep, a range past the sandbox's 100,000,
and any other Python error are a ChatTemplateError too: one sentence naming the template
(`ChatTemplate.source`), never a traceback.
"""

import contextvars
import json
import re
import string
import time
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

from .errors import ChatTemplateError

__all__ = ["ChatTemplateError", "ChatTemplate", "render_chat_template", "find_chat_template",
           "apply_chat_template"]

# Bounds on what a template may do: its text at most MAX_TEMPLATE characters (real ones are
# 2-20 KB), a render at most RENDER_SECONDS (real ones take milliseconds), no string or list it
# makes longer than OUTPUT_GROWTH times the characters it is given plus OUTPUT_SLACK, and no
# integer of more than MAX_INT_BITS bits.
MAX_TEMPLATE = 1 << 20
RENDER_SECONDS = 5.0
OUTPUT_GROWTH = 8
OUTPUT_SLACK = 1 << 20
MAX_INT_BITS = 1 << 16


class ChatTemplate(str):
    """A chat template's text that knows where it comes from (`source`: "chat_template.jinja"
    or "tokenizer_config.json's chat_template"), for messages."""

    def __new__(cls, text, source):
        self = super().__new__(cls, text)
        self.source = source
        return self

# Older Jinja2 releases have known sandbox escapes; transformers refuses them for the same reason.
_MIN_JINJA = (3, 1, 6)

# The names a message's reasoning goes by; templates read the first (Qwen3) or the second (gpt-oss).
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def find_chat_template(tokenizer_config, chat_template_jinja_text=None):
    """The chat template of a model folder: `chat_template.jinja`'s text (given as
    `chat_template_jinja_text`) when the folder has that file, else tokenizer_config.json's
    `chat_template` (a string, or a list of `{"name", "template"}` of which "default" is used);
    None when there is none."""
    # As transformers loads a folder: the .jinja file replaces the config's key.
    if chat_template_jinja_text is not None:
        return ChatTemplate(chat_template_jinja_text, "chat_template.jinja")
    if not isinstance(tokenizer_config, Mapping):
        raise ChatTemplateError("tokenizer_config.json must hold a JSON object")
    template = tokenizer_config.get("chat_template")
    if template is None:
        return None
    if isinstance(template, str):
        return ChatTemplate(template, "tokenizer_config.json's chat_template")
    if isinstance(template, list):
        named = {}
        for entry in template:
            if not (isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
                    and isinstance(entry.get("template"), str)):
                raise ChatTemplateError('tokenizer_config.json: each entry of "chat_template" must '
                                        'be {"name": ..., "template": ...} with string values')
            named[entry["name"]] = entry["template"]
        if "default" in named:
            return ChatTemplate(named["default"],
                                'tokenizer_config.json\'s chat_template "default"')
        names = ", ".join(sorted(named)) or "none"
        raise ChatTemplateError(f'tokenizer_config.json has no chat template named "default" '
                                f"(it has: {names})")
    raise ChatTemplateError(f'tokenizer_config.json: "chat_template" must be a string or a list '
                            f"of named templates, not {type(template).__name__}")


def render_chat_template(template, messages, *, add_generation_prompt=False, bos_token=None,
                         eos_token=None, **extra):
    """The prompt text that `template` makes of `messages`, as transformers'
    `tokenizer.apply_chat_template(messages, tokenize=False, ...)` renders it.

    `add_generation_prompt` ends the text with the header of the assistant's turn. `bos_token`
    and `eos_token` are the tokenizer's (None: the template sees them undefined, as it does for
    a tokenizer without one). `extra` are further template variables, e.g. `tools` (a list of
    JSON-schema dicts), `enable_thinking`, `date_string`. Raises ChatTemplateError for a bad
    template or one that refuses the messages, ValueError for malformed messages.
    """
    if not isinstance(template, str):
        raise ChatTemplateError(f"a chat template is text, not {type(template).__name__}")
    name = getattr(template, "source", None) or "the chat template"
    if len(template) > MAX_TEMPLATE:
        raise ChatTemplateError(f"{name} is {len(template)} characters long, more than the "
                                f"{MAX_TEMPLATE} a chat template may have here")
    chat = _checked_messages(messages)
    variables = {"messages": chat, "tools": None, "documents": None,
                 "add_generation_prompt": add_generation_prompt}
    # Only the tokens the tokenizer has: transformers passes its special_tokens_map, which
    # leaves out the unset ones, and templates test `bos_token is defined`.
    if bos_token is not None:
        variables["bos_token"] = bos_token
    if eos_token is not None:
        variables["eos_token"] = eos_token
    variables.update(_plain(extra))
    compiled = _compile(str(template), name)
    jinja2 = _jinja2()
    budget = _Budget(name, OUTPUT_GROWTH * _characters(variables) + OUTPUT_SLACK)
    try:
        with budget:
            out, size = [], 0
            for piece in compiled.generate(**variables):
                size += len(piece)
                budget.check_size(size, "a text")
                out.append(piece)
            return "".join(out)
    except ChatTemplateError:
        raise
    except jinja2.TemplateError as e:
        # Undefined names used as values, the sandbox's refusals and the like: the template's
        # fault, not the caller's, but one sentence either way.
        raise ChatTemplateError(f"{name} failed: {_shortened(str(e))}") from None
    except RecursionError:
        raise ChatTemplateError(f"{name} calls itself too deeply (a macro that never stops "
                                f"calling itself?)") from None
    except MemoryError:
        raise ChatTemplateError(f"{name} ran out of memory") from None
    except Exception as e:      # noqa: BLE001  (the template's own error, e.g. 1 / 0)
        raise ChatTemplateError(f"{name} failed: {type(e).__name__}: {_shortened(str(e))}") \
            from None


def _shortened(text, limit=300):
    """A message from a template, cut where it is long (one may raise a megabyte of text)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _characters(value):
    """The characters of the strings in plain data (the template's variables)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_characters(k) + _characters(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(map(_characters, value))
    return 8


# The budget of the render in progress (renders in other threads or tasks have their own).
_CURRENT = contextvars.ContextVar("webgpt_chat_template_budget", default=None)


class _Budget:
    """A render's limits: a deadline, checked as its blocks run (tick), and the longest string
    it may make."""

    def __init__(self, name, limit):
        self.name, self.limit = name, limit
        self.ticks = 0
        self._sizes = {}        # id -> (estimated size, the list or dict, kept alive)

    def __enter__(self):
        self.deadline = time.monotonic() + RENDER_SECONDS
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, *exc):
        _CURRENT.reset(self._token)

    def tick(self):
        self.ticks += 1
        if not self.ticks & 255 and time.monotonic() > self.deadline:
            raise ChatTemplateError(f"{self.name} ran for more than {RENDER_SECONDS:g} s "
                                    f"without finishing (a loop that does not end?)")

    def estimate(self, value):
        """An upper bound, near enough, on the characters str() or json.dumps make of a value.
        A list can hold the same long string a hundred thousand times: what printing it would
        make is counted before it is made. (Lists and dicts cannot change in the immutable
        sandbox, so each is counted once a render.)"""
        if isinstance(value, str):
            return len(value) + 2
        if value is None or isinstance(value, (bool, float)):
            return 24
        if isinstance(value, int):
            return value.bit_length() // 3 + 2
        if isinstance(value, (bytes, bytearray)):
            return 4 * len(value) + 3
        known = self._sizes.get(id(value))
        if known is not None:
            return known[0]
        if isinstance(value, Mapping):
            size = 2 + sum(self.estimate(k) + self.estimate(v) + 4 for k, v in value.items())
        elif isinstance(value, (list, tuple, set, frozenset)):
            size = 2 + sum(self.estimate(v) + 2 for v in value)
        elif type(value).__name__ == "Namespace":     # mutable: counted each time
            return 16 + sum(self.estimate(v) for v in vars(value).values())
        else:
            return 64
        self._sizes[id(value)] = (size, value)
        return size

    def check_size(self, size, what):
        if size > self.limit:
            raise ChatTemplateError(
                f"{self.name} makes {what} of more than {self.limit} characters or items, "
                f"more than it may ({OUTPUT_GROWTH} times what it is given and "
                f"{OUTPUT_SLACK} more)")


def _check_size(size, what):
    budget = _CURRENT.get()
    if budget is not None:
        budget.check_size(size, what)


def _estimate(value):
    budget = _CURRENT.get()
    return budget.estimate(value) if budget is not None else 0


def _check_values(values):
    """Before a filter, call or output: the values it takes, were they printed, fit."""
    budget = _CURRENT.get()
    if budget is not None:
        for value in values:
            if not isinstance(value, (str, int, float)) or isinstance(value, str) \
                    and len(value) > budget.limit:
                budget.check_size(budget.estimate(value), "a text")


def _check_int(bits, name):
    budget = _CURRENT.get()
    if bits > MAX_INT_BITS and budget is not None:
        raise ChatTemplateError(f"{budget.name} makes a number of more than {MAX_INT_BITS} "
                                f"bits")


def _checked_messages(messages):
    """The messages as the template sees them, or ValueError saying what is wrong."""
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                         f"not {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty: a chat needs at least one message")
    chat = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', "
                             f"not {type(message).__name__}")
        # Keys set to None count as absent: some APIs send content=None or tool_calls=None,
        # and templates test for a key's presence.
        message = {key: value for key, value in message.items() if value is not None}
        for key in ("role", "content"):
            if key not in message:
                raise ValueError(f"messages[{i}] has no '{key}'")
            if not isinstance(message[key], str):
                raise ValueError(f"messages[{i}]['{key}'] must be a string, not "
                                 f"{type(message[key]).__name__}")
        reasoning = next((message[k] for k in _REASONING_FIELDS if k in message), None)
        if reasoning is not None:
            # Whichever name the caller used, the template finds it under its own; an explicit
            # "thinking" is kept, and "reasoning_content" is the one that wins.
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        chat.append(_plain(message))
    return chat


def _plain(value):
    """A copy of `value` made of plain data only; anything else becomes "<TypeName>".

    Objects have methods that the sandbox does not know to be harmful, so the template gets
    only dicts, lists, tuples, strings, numbers, booleans and None (subclasses cast back).
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    return f"<{type(value).__name__}>"


def _jinja2():
    try:
        import jinja2
    except ImportError:
        raise ImportError("rendering a chat template needs Jinja2 "
                          "(pip install jinja2; the page ships it)") from None
    version = tuple(int(p) if p.isdigit() else 0 for p in jinja2.__version__.split(".")[:3])
    if version < _MIN_JINJA:
        raise ImportError(f"Jinja2 {jinja2.__version__} is too old to run chat templates safely "
                          f"(its sandbox has known escapes); install jinja2>=3.1.6")
    return jinja2


@lru_cache(maxsize=16)
def _compile(template, name):
    # A chat's every turn renders the same template: parse it once.
    jinja2 = _jinja2()
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"{name}, line {e.lineno}: {e.message}") from None
    except RecursionError:
        raise ChatTemplateError(f"{name} is nested too deeply to be read") from None


@lru_cache(maxsize=1)
def _environment():
    """The Jinja2 environment every chat template runs in (see the module's docstring)."""
    jinja2 = _jinja2()
    import jinja2.ext
    import jinja2.nodes

    def raise_exception(message):
        raise ChatTemplateError(_shortened(str(message)))

    def strftime_now(format):
        return datetime.now().strftime(format)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def finalize(value):
        # Each {{ value }}, before it is made a string.
        _check_values((value,))
        return value

    generation_block, plain_dict, namespace = _template_globals(jinja2)
    env = _bounded_environment(jinja2)(trim_blocks=True, lstrip_blocks=True, finalize=finalize,
                                       extensions=[generation_block, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    for name, function in env.filters.items():
        env.filters[name] = _checked_filter(function, _FILTER_CHECKS.get(name),
                                            jinja2.nodes.Impossible)
    lipsum = env.globals["lipsum"]
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now,
                       dict=plain_dict(), namespace=namespace,
                       lipsum=_checked_filter(lipsum, _check_lipsum, jinja2.nodes.Impossible))
    return env


def _template_globals(jinja2):
    """(the {% generation %} extension, dict(), namespace()) as transformers' environment
    has them, without what would lead out of the sandbox."""
    import jinja2.ext
    import jinja2.nodes
    import jinja2.utils

    class GenerationBlock(jinja2.ext.Extension):
        # {% generation %} ... {% endgeneration %}: its body, rendered in its own scope as
        # transformers renders it (a call block), with nothing recorded.
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            call = self.call_method("_body")
            return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class PlainDict:
        # `dict(...)` and `dict.fromkeys(...)` for templates, without handing them the type
        # itself (whose attributes lead out of the sandbox).
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    def check_name(name):
        # Dunder names on a namespace would reach Python's internals.
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"a chat template cannot store {name!r} on a namespace (names starting with "
                f"'_' are refused)")

    class Namespace(jinja2.utils.Namespace):
        # Jinja's namespace() that refuses names starting with an underscore. Its first
        # parameter is taken from *args, as Jinja's own does, so namespace(self=1) works.
        def __init__(*args, **kwargs):
            self, attrs = args[0], dict(*args[1:], **kwargs)
            for name in attrs:
                check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

    return GenerationBlock, PlainDict, Namespace


def _bounded_environment(jinja2):
    """Jinja2's immutable sandbox whose templates run within the render's budget: every block
    ticks the clock, and what can grow a value (a binary operator, `~`, a call) is checked
    before it runs."""
    import jinja2.compiler
    import jinja2.sandbox

    class BoundedCode(jinja2.compiler.CodeGenerator):
        # Every block (a loop's body, a branch, a macro) starts with environment.tick().
        def blockvisit(self, nodes, frame):
            self.writeline("environment.tick()")
            super().blockvisit(nodes, frame)

        # `a ~ b` joins through the environment's concat_within_budget, not Jinja's str_join.
        def visit_Concat(self, node, frame):
            self.write("environment.concat_within_budget((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class Environment(jinja2.sandbox.ImmutableSandboxedEnvironment):
        code_generator_class = BoundedCode
        intercepted_binops = frozenset(["*", "+", "%", "**"])

        def tick(self):
            budget = _CURRENT.get()
            if budget is not None:
                budget.tick()

        def concat_within_budget(self, parts):
            _check_size(sum(map(_estimate, parts)), "a string")
            return "".join(map(str, parts))

        def call_binop(self, context, operator, left, right):
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's names)
            _check_values(args)
            _check_values(kwargs.values())
            args = _check_call(__obj, args, kwargs)
            return super().call(__context, __obj, *args, **kwargs)

    return Environment


# ---------------------------------------------------------------- what a template computes
#
# Each check runs before the operation and raises where its result would pass the budget.


def _is_sequence(value):
    return isinstance(value, (str, bytes, list, tuple))


def _size(value):
    """A string's length, or what printing a list or tuple would make."""
    return len(value) if isinstance(value, (str, bytes)) else _estimate(value)


def _check_binop(operator, left, right):
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _is_sequence(seq) and isinstance(n, int):
                _check_size(_size(seq) * max(n, 0), "a string or list")
        if isinstance(left, int) and isinstance(right, int):
            _check_int(left.bit_length() + right.bit_length(), "*")
    elif operator == "+":
        if _is_sequence(left) and _is_sequence(right):
            _check_size(_size(left) + _size(right), "a string or list")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            _check_int(max(left.bit_length(), 1) * right, "**")
    elif operator == "%" and isinstance(left, str):
        _check_size(_printf_size(left, right), "a string")


# A printf-style conversion: flags, then a width and a precision (numbers, or * from the args).
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.)")


def _printf_size(fmt, args):
    """An upper bound on the length of fmt % args."""
    values = list(args.values()) if isinstance(args, Mapping) else \
        list(args) if isinstance(args, tuple) else [args]
    longest = max(map(_estimate, values), default=0)
    size = len(fmt)
    for width, precision, _ in _PRINTF.findall(fmt):
        if "*" in (width, precision):
            raise ChatTemplateError("a chat template's % format takes its width from its "
                                    "arguments (*), which is not supported")
        size += int(width or 0) + int(precision or 0) + longest
    return size


def _format_size(fmt, args, kwargs):
    """An upper bound on the length of fmt.format(*args, **kwargs)."""
    longest = max(map(_estimate, [*args, *kwargs.values()]), default=0)
    size = len(fmt)
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None:
            continue
        if spec and "{" in spec:
            raise ChatTemplateError("a chat template's format takes a width from its "
                                    "arguments ({...} inside {...}), which is not supported")
        size += longest + sum(int(n) for n in re.findall(r"\d+", spec or ""))
    return size


def _check_call(obj, args, kwargs):
    """Before a call from a template: a str method that can make a long string. Returns the
    arguments to call it with (an iterable given to join, read into a list to be measured)."""
    method = getattr(obj, "__wrapped__", obj)     # str.format comes wrapped by the sandbox
    text = getattr(method, "__self__", None)
    if not isinstance(text, (str, bytes)):
        return args
    name = getattr(method, "__name__", "")
    size = None
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        size = args[0]
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            size = len(text) + text.count("\t" if isinstance(text, str) else b"\t") * tab
    elif name == "replace" and len(args) >= 2 and _is_sequence(args[0]) \
            and _is_sequence(args[1]):
        size = len(text) + text.count(args[0]) * max(len(args[1]) - len(args[0]), 0)
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], (str, bytes, list, tuple)) else list(args[0])
        args = (items,) + args[1:]
        size = sum(map(_estimate, items)) + len(text) * len(items)
    elif name in ("format", "format_map"):
        if name == "format_map" and args and isinstance(args[0], Mapping):
            kwargs = args[0]
        size = _format_size(str(text), args if name == "format" else (), kwargs)
    elif name == "translate":
        size = len(text) * 64     # a table may map a character to any string
    if size is not None:
        _check_size(size, "a string")
    return args


def _checked_filter(filter_function, check, impossible):
    """A filter (or global) that first measures its arguments (_check_values) and runs its own
    `check(args, kwargs)`, which returns the arguments to call it with. Outside a render it
    raises `impossible` (Jinja's nodes.Impossible): Jinja calls a filter on constants while it
    compiles a template, to write the result in, and that would be outside any budget
    ('%0999999999d'|format(1) took 29 s and 3.8 GB there)."""
    import functools

    @functools.wraps(filter_function)      # (keeps Jinja's pass_context and the like)
    def checked(*args, **kwargs):
        if _CURRENT.get() is None:
            raise impossible()
        _check_values(args)
        _check_values(kwargs.values())
        if check is not None:
            args = check(args, kwargs) or args
        return filter_function(*args, **kwargs)
    return checked


def _argument(args, kwargs, position, name, default):
    return args[position] if len(args) > position else kwargs.get(name, default)


def _filter_value(args, kwargs, position=0, name="s"):
    value = _argument(args, kwargs, position, name, "")
    return value if isinstance(value, str) else str(value)


def _check_center(args, kwargs):
    width = _argument(args, kwargs, 1, "width", 80)
    if isinstance(width, int):
        _check_size(width, "a string")


def _check_indent(args, kwargs):
    text = _filter_value(args, kwargs)
    width = _argument(args, kwargs, 1, "width", 4)
    unit = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    _check_size(len(text) + (text.count("\n") + 1) * max(unit, 0), "a string")


def _check_wordwrap(args, kwargs):
    text = _filter_value(args, kwargs)
    wrap = _argument(args, kwargs, 3, "wrapstring", "\n")
    _check_size(len(text) * (1 + len(wrap if isinstance(wrap, str) else "")), "a string")


def _check_replace(args, kwargs):
    text = _filter_value(args, kwargs, 1, "s")
    old, new = _argument(args, kwargs, 2, "old", ""), _argument(args, kwargs, 3, "new", "")
    if isinstance(old, str) and isinstance(new, str):
        _check_size(len(text) + text.count(old) * max(len(new) - len(old), 0), "a string")


def _check_join(args, kwargs):
    if len(args) < 2:
        return args
    items = args[1] if isinstance(args[1], (str, list, tuple)) else list(args[1])
    joiner = _argument(args, kwargs, 2, "d", "")
    _check_size(sum(map(_estimate, items)) + _estimate(joiner) * len(items), "a string")
    return (args[0], items) + args[2:]


def _check_format(args, kwargs):
    fmt = _filter_value(args, kwargs, name="value")
    _check_size(_printf_size(fmt, dict(kwargs) if kwargs else tuple(args[1:])), "a string")


def _check_tojson(args, kwargs):
    indent = _argument(args, kwargs, 2, "indent", None)
    if isinstance(indent, int) and indent > 64 or isinstance(indent, str) and len(indent) > 64:
        _check_size(OUTPUT_SLACK * 1024, "a JSON indent")


def _check_lipsum(args, kwargs):
    n, top = _argument(args, kwargs, 0, "n", 5), _argument(args, kwargs, 3, "max", 100)
    if isinstance(n, int) and isinstance(top, int):
        _check_size(n * top * 16, "a string")


# The filters that can make a long string of short arguments, each with its check. (Filters are
# called without the sandbox's call(), so every filter is wrapped. Where Jinja passes the
# environment or the evaluation context first, the filter's text is the second argument.)
_FILTER_CHECKS = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": lambda a, k: _check_wordwrap(a[1:], k),
    "replace": _check_replace,
    "join": _check_join,
    "format": _check_format,
    "tojson": _check_tojson,
}


def apply_chat_template(tokenizer, messages, add_generation_prompt=False, tokenize=True,
                        **extra):
    """transformers' `tokenizer.apply_chat_template` for our tokenizers: the text of
    `tokenizer.chat_template` rendered for `messages`, or its ids (encoded without adding
    special tokens: the template writes them itself, as transformers encodes it)."""
    template = getattr(tokenizer, "chat_template", None)
    if template is None:
        raise ChatTemplateError("this model has no chat template (no chat_template in "
                                "tokenizer_config.json and no chat_template.jinja): it is not "
                                "a chat model; use generate() with a prompt instead")
    text = render_chat_template(template, messages, add_generation_prompt=add_generation_prompt,
                                bos_token=getattr(tokenizer, "bos_token", None),
                                eos_token=getattr(tokenizer, "eos_token", None), **extra)
    if not tokenize:
        return text
    return tokenizer.encode(text, add_special_tokens=False)
