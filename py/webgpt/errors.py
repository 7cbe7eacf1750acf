"""The package's user-facing error types, in one place, and `printable` for their text.

Each carries one sentence for the user; the command line prints it on one line and the page
shows it in #error. GPUError (no adapter, a lost device) lives with the GPU layer in
webgpt.gpu, and TokenizerError (text the vocabulary cannot encode) with the tokenizer: both are
re-exported here so that callers can import every error from one module.

Messages name files, tensors and shards, and those names come from the user's folder (a shard
name in an index, a tensor name in a header): they may hold terminal escape sequences, a NUL or
a right-to-left override. `printable` writes every such character as an escape, and every error
type that mixes in EscapedMessage passes its message through it when it is made, so no message
can move a terminal's cursor, retitle its window or reorder what it shows.
"""

import unicodedata

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


class EscapedMessage:
    """Mixed into an exception type: its message is made printable (see `printable`)."""

    def __init__(self, *args):
        super().__init__(*(printable(a) if isinstance(a, str) else a for a in args))


class ModelFolderError(EscapedMessage, ValueError):
    """A model folder that cannot be used: missing file, bad config, bad or truncated weights.

    The message is one sentence for the user, naming the file (and tensor where there is one).
    """


def __getattr__(name):
    # Lazy, so that importing the errors does not import the GPU layer or the tokenizer.
    if name == "GPUError":
        from .gpu.base import GPUError
        return GPUError
    if name == "TokenizerError":
        from .tokenizer import TokenizerError
        return TokenizerError
    raise AttributeError(name)
