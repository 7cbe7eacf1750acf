"""Every error type of the package, in one place, with `printable` and `short_repr` for their text.

Each carries one sentence for the user; the command line prints it on one line and the page
shows it in #error. The types, by what went wrong:

    ModelFolderError    a model folder that cannot be used (missing file, bad config or weights)
    TokenizerError      text the vocabulary cannot encode, an unknown id, bad tokenizer files
    ChatTemplateError   a chat template that cannot be found, parsed or rendered
    GPUError            no adapter, a device that cannot be opened, a limit it cannot give
    BindingError        a bind group that does not match its shader's bindings
    QuantizeError       arguments or a source that `build.py quantize` cannot quantize
    ConversionError     a checkpoint that `build.py import` cannot convert
    HubError            a download from the hub that cannot go on
    RequestError        an API request (webgpt.api, the server) with a parameter that is wrong
    ConstraintError     a JSON schema, regular expression or grammar that cannot constrain output

The modules that raise them name them too (webgpt.tokenizer.TokenizerError, webgpt.gpu.GPUError,
webgpt.tools.hub.HubError, ...). This module imports nothing from the package, so any module
can import it without a cycle.

Messages name files, tensors and shards, and those names come from the user's folder (a shard
name in an index, a tensor name in a header): they may hold terminal escape sequences, a NUL or
a right-to-left override. `printable` writes every such character as an escape, and every error
type that mixes in EscapedMessage passes its message through it when it is made, so no message
can move a terminal's cursor, retitle its window or reorder what it shows. `short_repr` shows a
value from the user's input in a message, cut short.
"""

import unicodedata

__all__ = ["printable", "short_repr", "EscapedMessage", "ModelFolderError", "TokenizerError",
           "ChatTemplateError", "GPUError", "BindingError", "QuantizeError", "ConversionError",
           "HubError", "RequestError", "ConstraintError"]

# Control (C0, DEL, C1), format (bidi overrides and isolates, zero-width characters), lone
# surrogates (undecodable bytes of a file name) and the two Unicode line breaks.
_ESCAPED = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(text):
    """`text` with each control, format or line-break character written as an escape
    (\\x1b, \\u202e, \\n), as repr() writes them; everything else is left as it is."""
    text = str(text)
    if text.isprintable():      # the usual case, checked in C
        return text
    out = []
    for ch in text:
        if ch.isprintable() or unicodedata.category(ch) not in _ESCAPED:
            out.append(ch)
        elif ch in _SHORT:
            out.append(_SHORT[ch])
        else:
            n = ord(ch)
            out.append(f"\\x{n:02x}" if n < 0x100 else
                       f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
    return "".join(out)


def short_repr(value, limit=60):
    """repr(value) for a message, cut to `limit - 10` characters and its length where it is
    longer than `limit` (a corrupt file or an edited URL may hold anything). A value repr()
    cannot write (nested too deeply, an int of more than 4300 digits) is described instead."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"a deeply nested {type(value).__name__}"
    except ValueError:      # int -> str refuses more than sys.get_int_max_str_digits() digits
        text = "an integer of more than 4300 digits"
    return text if len(text) <= limit else text[:limit - 10] + f"... ({len(text)} characters)"


class EscapedMessage:
    """Mixed into an exception type: its message is made printable (see `printable`)."""

    def __init__(self, *args):
        super().__init__(*(printable(a) if isinstance(a, str) else a for a in args))


class ModelFolderError(EscapedMessage, ValueError):
    """A model folder that cannot be used: missing file, bad config, bad or truncated weights.

    The message is one sentence for the user, naming the file (and tensor where there is one).
    """


class TokenizerError(EscapedMessage, ValueError):
    """Text the vocabulary cannot encode, an id it cannot decode, or unusable tokenizer files.

    The message is one sentence for the user. For text that cannot be encoded, `position` is
    the index in the text of the first character that cannot be, and `chars` those characters.
    """

    def __init__(self, message, position=None, chars=None):
        super().__init__(message)
        self.position = position
        self.chars = chars


class ChatTemplateError(ValueError):
    """A chat template that cannot be found, parsed or rendered, or that refuses the messages.

    For a template's own `raise_exception(message)` the error's text is that message; for a
    syntax error it names the line.
    """


class GPUError(RuntimeError):
    """No adapter, a device that cannot be opened, or a limit the adapter cannot give."""


class BindingError(ValueError):
    """A bind group that does not match its shader's declared bindings."""


class QuantizeError(EscapedMessage, ValueError):
    """Arguments or a source that cannot be quantized; the message is one line."""


class ConversionError(EscapedMessage, ValueError):
    """A source that cannot be converted; the message is one line naming the file."""


class HubError(EscapedMessage, Exception):
    """A download that cannot go on: no network, no such model or file, a bad hash, no space.
    The message is one line for the user (names from the hub with control characters escaped)."""


class ConstraintError(EscapedMessage, ValueError):
    """A JSON schema, regular expression or grammar that cannot constrain generation: a keyword
    or construct not supported, or one that no output can satisfy. One sentence, naming it."""


class RequestError(EscapedMessage, ValueError):
    """An OpenAI-shaped API request that cannot run: an unknown parameter, a bad value, a model
    the client does not have. `param` names the parameter (None where no one is at fault),
    `code` is OpenAI's short code where it has one; the server answers HTTP 400 with
    {"error": {"message", "type", "param", "code"}}."""

    type = "invalid_request_error"

    def __init__(self, message, param=None, code=None):
        super().__init__(message)
        self.param, self.code = param, code

    def body(self):
        """The error as OpenAI's API returns it."""
        return {"error": {"message": str(self), "type": self.type, "param": self.param,
                          "code": self.code}}
