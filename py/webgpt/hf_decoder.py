"""The decoding side of a tokenizer.json pipeline: how token strings become text, as the
`tokenizers` library's decoders have it (ByteLevel; Metaspace; Replace, ByteFallback, Fuse,
Strip and a Sequence of them), reduced to the bytes of each token and a few steps on the whole.
"""

import re

from .bpe import symbols_to_bytes
from .errors import TokenizerError
from .hf_pipeline import (GROWTH, SLACK, bounded_replace, char_field, field, metaspace_fields,
                          replace_pattern, type_of)

__all__ = ["Decoder"]

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class Decoder:
    """What a decoder node does, reduced to per-token bytes and a few whole-text steps.

    byte_level:  tokens are byte symbols (a token not made only of symbols is its own UTF-8)
    replace:     (old, new) string replacements applied to each token, in order (within the
                 bound a normalizer has: GROWTH times the token and SLACK characters)
    byte_tokens: <0xAB> tokens are the byte 0xAB; a run of them that is not UTF-8 decodes to
                 one U+FFFD per token (ByteFallback)
    strip:       (char, n): up to n of char removed from the start of the text (Strip, which
                 follows Fuse, so it sees the whole text)
    first_drop:  a character removed everywhere in the first token (Metaspace: the word-start
                 marks of the first token do not become spaces)
    """

    def __init__(self, node, where, key="decoder"):
        self.byte_level = False
        self.replace = []
        self.byte_tokens = False
        self.strip = None
        self.first_drop = None
        self._where = f"{where} {key}"
        if node is None:
            raise TokenizerError(f"{where} has no {key}; this tokenizer needs one to know how "
                                 f"tokens become text")
        self._add(node, where, key)

    def _add(self, node, where, key):
        kind = type_of(node, where, key)
        if kind == "ByteLevel":
            self.byte_level = True
        elif kind == "Sequence":
            for k, sub in enumerate(field(node, "decoders", list, [], where, key)):
                self._add(sub, where, f"{key}.decoders[{k}]")
        elif kind == "Replace":
            literal, regex = replace_pattern(node, where, key)
            if regex is not None:
                raise TokenizerError(f"{where} {key} replaces a regex; only a String "
                                     f"pattern is supported in a decoder")
            self.replace.append((literal, field(node, "content", str, "", where, key)))
        elif kind == "ByteFallback":
            self.byte_tokens = True
        elif kind == "Fuse":
            pass        # tokens are joined anyway
        elif kind == "Strip":
            if field(node, "stop", int, 0, where, key):
                raise TokenizerError(f"{where} {key} strips the end of the text; only "
                                     f"\"start\" is supported")
            self.strip = (char_field(node, "content", " ", where, key),
                          field(node, "start", int, 0, where, key))
        elif kind == "Metaspace":
            replacement, scheme = metaspace_fields(node, where, key)
            self.replace.append((replacement, " "))
            if scheme != "never":
                self.first_drop = replacement
        else:
            raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer "
                                 f"does not support (it supports ByteLevel, Metaspace, "
                                 f"Replace, ByteFallback, Fuse, Strip and Sequence)")

    def token_bytes(self, token):
        """The bytes of one token string."""
        if self.byte_level:
            return symbols_to_bytes(token)
        if self.byte_tokens:
            m = _BYTE_TOKEN.fullmatch(token)
            if m:
                return bytes([int(m.group(1), 16)])
        limit = GROWTH * len(token) + SLACK
        for old, new in self.replace:
            token = bounded_replace(token, old, None, new, limit, self._where)
        return token.encode("utf-8")

    def text(self, tokens, parts):
        """The text of token strings `tokens`, whose bytes (token_bytes) are `parts`: bytes
        that are not valid UTF-8 become U+FFFD."""
        if parts and self.first_drop:
            parts[0] = self.token_bytes(tokens[0].replace(self.first_drop, ""))
        if not self.byte_tokens:
            # Join all bytes before decoding: a character may be split across tokens.
            text = b"".join(parts).decode("utf-8", errors="replace")
        else:
            text = _join_byte_fallback(tokens, parts)
        if self.strip:
            char, n = self.strip
            k = 0
            while k < n and text[k:k + 1] == char:
                k += 1
            text = text[k:]
        return text


def _join_byte_fallback(tokens, parts):
    """ByteFallback's rule: a run of <0xAB> tokens is UTF-8 text or, where it is not valid
    UTF-8, one U+FFFD per token; other tokens are text of their own."""
    out = []
    run = []
    for token, data in zip(tokens, parts):
        if _BYTE_TOKEN.fullmatch(token):
            run.append(data)
            continue
        if run:
            out.append(_byte_run_text(run))
            run = []
        out.append(data.decode("utf-8", errors="replace"))
    if run:
        out.append(_byte_run_text(run))
    return "".join(out)


def _byte_run_text(run):
    try:
        return b"".join(run).decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(run)
