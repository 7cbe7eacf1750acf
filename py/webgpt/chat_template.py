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
"""

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

from .errors import ChatTemplateError

__all__ = ["ChatTemplateError", "render_chat_template", "find_chat_template",
           "apply_chat_template"]

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
        return chat_template_jinja_text
    if not isinstance(tokenizer_config, Mapping):
        raise ChatTemplateError("tokenizer_config.json must hold a JSON object")
    template = tokenizer_config.get("chat_template")
    if template is None or isinstance(template, str):
        return template
    if isinstance(template, list):
        named = {}
        for entry in template:
            if not (isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
                    and isinstance(entry.get("template"), str)):
                raise ChatTemplateError('tokenizer_config.json: each entry of "chat_template" must '
                                        'be {"name": ..., "template": ...} with string values')
            named[entry["name"]] = entry["template"]
        if "default" in named:
            return named["default"]
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
    compiled = _compile(template)
    jinja2 = _jinja2()
    try:
        return compiled.render(**variables)
    except jinja2.TemplateError as e:
        # Undefined names used as values, the sandbox's refusals and the like: the template's
        # fault, not the caller's, but one sentence either way.
        raise ChatTemplateError(f"the chat template failed: {e}") from None


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
def _compile(template):
    # A chat's every turn renders the same template: parse it once.
    jinja2 = _jinja2()
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template, line {e.lineno}: {e.message}") from None


@lru_cache(maxsize=1)
def _environment():
    """The Jinja2 environment every chat template runs in (see the module's docstring)."""
    jinja2 = _jinja2()
    import jinja2.ext
    import jinja2.nodes
    import jinja2.sandbox
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

    def raise_exception(message):
        raise ChatTemplateError(message)

    def strftime_now(format):
        return datetime.now().strftime(format)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now,
                       dict=PlainDict(), namespace=Namespace)
    return env


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
