r"""Hugging Face `tokenizer.json` tokenizers (SmolLM2, Llama 3.x, Qwen2.5/3) in pure Python.

`tokenizer.json` is the single-file format of Hugging Face's `tokenizers` library: a pipeline of
  normalizer -> pre_tokenizer -> model -> post_processor (and a decoder for the way back),
with "added_tokens" (special tokens such as <|im_start|>, and others) matched in the text before
all of it. `tokenizer_config.json` (transformers' file beside it) names the bos/eos tokens. This
module reads both with the standard library only, so it runs in Pyodide (no `regex` wheel, no
`tokenizers`, no numpy), and encodes to the same ids as the `tokenizers` library.

Whether encode() adds BOS (or EOS) is the post_processor's decision, as in transformers v5's
AutoTokenizer: with a tokenizer.json present, transformers drops tokenizer_config.json's
`add_bos_token`/`add_eos_token`, so Llama 3.1's TemplateProcessing prepends <|begin_of_text|>,
while the first Llama 3 upload and Qwen (a ByteLevel post_processor) add nothing. Special tokens
written in the text (<|im_start|>) become their ids, as transformers encodes them by default.

Supported, which covers the byte-level BPE families and SentencePiece-style BPE:
  model            BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges,
                   byte_fallback, unk_token and fuse_unk; dropout must be null.
  normalizer       null, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence.
  pre_tokenizer    null, Split (Regex or String pattern, every behavior, invert), ByteLevel
                   (add_prefix_space, use_regex), Digits, Metaspace, Sequence.
  post_processor   null, TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing,
                   Sequence.
  decoder          ByteLevel; Metaspace; Replace, ByteFallback, Fuse, Strip and Sequence of them.
  added_tokens     longest match first, with lstrip, rstrip, single_word and normalized.
Anything else (a Unigram, WordPiece or WordLevel model, another pre-tokenizer, a regex feature
that Python's `re` cannot express the same way) raises TokenizerError naming the file and key.

Split patterns are written for Oniguruma (the `tokenizers` library's regex engine), with
Unicode properties (\p{L}, \p{N}, \p{M}, ...) that Python's `re` lacks. They are translated
once into `re` syntax, each property becoming an explicit character class built from
`unicodedata`; \s becomes Unicode White_Space and \w Oniguruma's word class, so both match what
they match in Oniguruma rather than what Python's own \s and \w would. The case-insensitive
contractions (?i:'s|'t|...) of Llama 3 and Qwen stay as they are: Python's `re` folds case the
same way for them.

decode() joins token bytes as the library's decoders do (transformers v5 ignores
`clean_up_tokenization_spaces` for BPE, so it decodes the same).

Where transformers v5 rebuilds a pipeline in a tokenizer class instead of reading tokenizer.json
(GPT2Tokenizer drops a Digits pre-tokenizer, LlamaTokenizer uses a Metaspace pre-tokenizer in
place of the legacy Prepend/Replace normalizer), this module follows tokenizer.json, as the
`tokenizers` library does; the ids differ from transformers' there (for example a leading space
in a SentencePiece tokenizer's text).
"""

import codecs
import gc
import operator
import re
import unicodedata
from heapq import heapify, heappop, heappush
from itertools import chain, groupby, repeat

from .tokenizer import (BYTE_SYMBOLS, MAX_TOKEN_ID, WHITE_SPACE, StreamDecoder, TokenizerError,
                        _BPE_CACHE_LIMIT, _BPE_CACHE_MAX_PIECE, _without_lone_surrogates)

__all__ = ["HFTokenizer"]

# The Sequence pre-tokenizer GPT-2's ByteLevel(use_regex=true) applies: GPT-2's own pattern.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

_LATIN1_TO_SYMBOL = {b: BYTE_SYMBOLS[b] for b in range(256)}
_SYMBOL_TO_LATIN1 = {ord(s): chr(b) for b, s in enumerate(BYTE_SYMBOLS)}


# ---------------------------------------------------------------------------------------------
# Unicode classes for the regex translation.

_CATEGORY_RANGES = {}      # general category ("Lu") -> [(first, last), ...], filled once


def _category_ranges():
    """Code point ranges of every general category, from this Python's unicodedata."""
    if _CATEGORY_RANGES:
        return _CATEGORY_RANGES

    def add(category, first, last):
        ranges = _CATEGORY_RANGES.setdefault(category, [])
        if ranges and ranges[-1][1] == first - 1:
            ranges[-1] = (ranges[-1][0], last)
        else:
            ranges.append((first, last))

    # Planes 4 to 13 hold no assigned character in any Unicode version so far (17.0): where
    # this Python's Unicode is not newer, they are one unassigned range, which saves 60% of
    # the time (a third of a second in Pyodide).
    if int(unicodedata.unidata_version.split(".")[0]) <= 17:
        spans = [(0, 0x40000), (0x40000, 0xE0000, "Cn"), (0xE0000, 0x110000)]
    else:
        spans = [(0, 0x110000)]
    for span in spans:
        start, stop = span[:2]
        if len(span) == 3:
            add(span[2], start, stop - 1)
            continue
        # groupby over the categories runs in C; the Python loop runs once per run of one
        # category (about 3,500 of them).
        for category, run in groupby(map(unicodedata.category, map(chr, range(start, stop)))):
            n = len(list(run))
            add(category, start, start + n - 1)
            start += n
    return _CATEGORY_RANGES


# Long property names the patterns in the wild use, as Oniguruma spells them.
_CATEGORY_ALIASES = {
    "letter": "L", "mark": "M", "number": "N", "punctuation": "P", "symbol": "S",
    "separator": "Z", "other": "C", "uppercase_letter": "Lu", "lowercase_letter": "Ll",
    "titlecase_letter": "Lt", "modifier_letter": "Lm", "other_letter": "Lo",
    "nonspacing_mark": "Mn", "spacing_mark": "Mc", "enclosing_mark": "Me",
    "decimal_number": "Nd", "letter_number": "Nl", "other_number": "No",
    "combining_mark": "M", "digit": "Nd",
}


def _property(name, where):
    """Ranges of \\p{name}: a general category, one letter (L) or two (Lu), or its long name."""
    table = _category_ranges()
    key = name.replace(" ", "_").replace("-", "_")
    key = _CATEGORY_ALIASES.get(key.lower(), key)
    if key in ("L&", "LC"):
        key = ("Lu", "Ll", "Lt")
    elif len(key) == 1 and key in "LMNPSZC":
        key = tuple(c for c in table if c[0] == key)
    elif len(key) == 2 and key[0] in "LMNPSZC" and key[1].islower():
        key = (key,)
    else:
        raise TokenizerError(f"{where} uses the Unicode property \\p{{{name}}}; only general "
                             f"categories (\\p{{L}}, \\p{{Lu}}, \\p{{N}}, ...) are supported")
    return _merged(r for c in key for r in table.get(c, ()))


def _merged(ranges):
    """Sorted ranges with neighbours joined: \\p{L}'s alternating Lu/Ll runs become one."""
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _set_ranges(chars):
    return [(ord(c), ord(c)) for c in sorted(chars)]


def _escape_ranges(ranges):
    """A character class body (no brackets) for the given code point ranges."""
    def esc(cp):
        ch = chr(cp)
        # ASCII punctuation could mean something inside [...] (\ ] [ ^ - and the set
        # operators & ~ | that Python warns about): escape it; everything else is literal.
        return "\\" + ch if cp < 128 and not ch.isalnum() and ch != " " else ch
    return "".join(esc(a) if a == b else esc(a) + "-" + esc(b) for a, b in ranges)


def _complement(ranges):
    """The ranges of every code point not in `ranges`."""
    out, nxt = [], 0
    for a, b in sorted(ranges):
        if a > nxt:
            out.append((nxt, a - 1))
        nxt = max(nxt, b + 1)
    if nxt <= 0x10FFFF:
        out.append((nxt, 0x10FFFF))
    return out


def _word_ranges(where):
    # Oniguruma's \w for Unicode: Letter, Mark, Decimal_Number, Connector_Punctuation.
    return _merged(_property("L", where) + _property("M", where) + _property("Nd", where)
                   + _property("Pc", where))


_CLASS_ESCAPES = {
    "s": lambda where: _set_ranges(WHITE_SPACE),
    "d": lambda where: _property("Nd", where),
    "w": _word_ranges,
    "h": lambda where: _set_ranges("0123456789abcdefABCDEF"),
}

# Escapes that mean the same in Python's re as in Oniguruma and are copied as they are.
_SAME_ESCAPES = set("tnrfva0123456789AZ") | set(r"\.^$|?*+()[]{}/-'\"#&~:!<>=,%@` _;")

_TRANSLATED = {}           # Oniguruma pattern -> compiled re, shared by every tokenizer


def _compile(pattern, where):
    """Compile an Oniguruma pattern (as `tokenizers` writes it) into Python's re, translated."""
    compiled = _TRANSLATED.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(_translate(pattern, where))
        except re.error as e:
            raise TokenizerError(f"{where} has the regex {pattern!r}, which this tokenizer "
                                 f"cannot use ({e})") from None
        _TRANSLATED[pattern] = compiled
    return compiled


def _translate(pattern, where):
    """Oniguruma (Ruby syntax) -> Python re. Properties and \\s \\w \\d \\h become explicit
    classes; ^ and $ match at line boundaries as in Ruby; other features must mean the same in
    both or are refused."""
    out = []
    in_class = False
    multiline = False
    i, n = 0, len(pattern)

    def unsupported(what):
        return TokenizerError(f"{where} has the regex {pattern!r}, whose {what} this tokenizer "
                              f"does not support")

    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise unsupported("trailing backslash")
            e = pattern[i + 1]
            i += 2
            if e in "pP":
                if i < n and pattern[i] == "{":
                    close = pattern.find("}", i)
                    if close < 0:
                        raise unsupported("unclosed \\p{")
                    name = pattern[i + 1:close]
                    i = close + 1
                elif i < n:
                    name = pattern[i]
                    i += 1
                else:
                    raise unsupported("bare \\p")
                negate = e == "P"
                if name.startswith("^"):
                    name, negate = name[1:], not negate
                ranges = _property(name, where)
            elif e.lower() in _CLASS_ESCAPES:
                ranges = _CLASS_ESCAPES[e.lower()](where)
                negate = e.isupper()
            elif e == "x" and i < n and pattern[i] == "{":
                close = pattern.find("}", i)
                try:
                    code_point = int(pattern[i + 1:close], 16) if close > i else -1
                except ValueError:
                    code_point = -1
                if not 0 <= code_point <= 0x10FFFF:
                    raise unsupported("\\x{...} escape")
                out.append(f"\\U{code_point:08x}")
                i = close + 1
                continue
            elif e in ("x", "u"):
                out.append("\\" + e)
                continue
            elif e in _SAME_ESCAPES or not e.isascii():
                if e == "Z":
                    # Oniguruma's \Z also matches before a final newline; Python's \Z only at
                    # the very end. (?=\n?\Z) is Oniguruma's meaning.
                    out.append(r"(?=\n?\Z)" if not in_class else "Z")
                else:
                    out.append("\\" + e)
                continue
            elif e == "z":
                out.append(r"\Z")      # the very end, which Python spells \Z
                continue
            else:
                raise unsupported(f"escape \\{e}")
            if in_class:
                out.append(_escape_ranges(_complement(ranges) if negate else ranges))
            else:
                out.append(("[^" if negate else "[") + _escape_ranges(ranges) + "]")
            continue
        if in_class:
            if c == "[":
                raise unsupported("nested character class")
            if c == "&" and pattern.startswith("&&", i):
                raise unsupported("class intersection &&")
            if c == "]":
                in_class = False
            out.append(c if c not in "&~|" else "\\" + c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            # A ']' right after '[' or '[^' is a literal in both syntaxes.
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):
                out.append(r"\]")
                i += 1
            continue
        if c == "(" and pattern.startswith("(?", i):
            # (?: (?= (?! (?<= (?<! (?> and scoped flags (?i: mean the same in Python 3.11+;
            # named groups are spelt (?P<name> there.
            rest = pattern[i + 2:i + 4]
            if rest[:1] == "<" and rest[1:2] not in ("=", "!"):
                out.append("(?P<")
                i += 3
                continue
            if rest[:1] not in (":", "=", "!", "<", ">", "i", "m", "x", "-"):
                raise unsupported(f"group {pattern[i:i + 4]!r}")
            if rest[:1] == "m" or pattern.startswith("(?-m", i):
                # Ruby's (?m) is Python's DOTALL, not MULTILINE.
                raise unsupported("(?m) flag")
        if c in "^$":
            multiline = True
        out.append(c)
        i += 1
    if in_class:
        raise unsupported("unclosed character class")
    return ("(?m)" if multiline else "") + "".join(out)


# ---------------------------------------------------------------------------------------------
# Pipeline parts. Normalizers are str -> str; pre-tokenizers are (pieces, first) -> pieces,
# where `first` says the text starts at offset 0 of the input (Metaspace's "first" scheme).

def _type_of(node, where, key):
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise TokenizerError(f"{where} has a {key} that is not an object with a \"type\"")
    return node["type"]


def _replace_pattern(node, where, key):
    pattern = node.get("pattern")
    if isinstance(pattern, dict) and isinstance(pattern.get("String"), str):
        return pattern["String"], None
    if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
        return None, _compile(pattern["Regex"], f"{where} {key}")
    raise TokenizerError(f"{where} {key} needs a pattern {{\"String\": ...}} or "
                         f"{{\"Regex\": ...}}")


def _normalizer(node, where, key="normalizer"):
    """A function that normalizes a str, or None for no normalizer."""
    if node is None:
        return None
    kind = _type_of(node, where, key)
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        def normalize(text, form=kind):
            return text if text.isascii() else unicodedata.normalize(form, text)
        return normalize
    if kind == "Lowercase":
        return str.lower
    if kind == "Prepend":
        prefix = node.get("prepend", "")
        return lambda text: prefix + text if text else text
    if kind == "Replace":
        literal, regex = _replace_pattern(node, where, key)
        content = node.get("content", "")
        if regex is None:
            return lambda text: text.replace(literal, content)
        return lambda text: regex.sub(lambda m: content, text)
    if kind == "Strip":
        left, right = node.get("left", True), node.get("right", True)
        ws = "".join(sorted(WHITE_SPACE))
        def strip(text):
            if left:
                text = text.lstrip(ws)
            return text.rstrip(ws) if right else text
        return strip
    if kind == "Sequence":
        parts = [_normalizer(sub, where, f"{key}.normalizers[{k}]")
                 for k, sub in enumerate(node.get("normalizers") or [])]
        parts = [p for p in parts if p is not None]
        def sequence(text):
            for part in parts:
                text = part(text)
            return text
        return sequence
    raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer does not "
                         f"support (it supports NFC, NFD, NFKC, NFKD, Lowercase, Prepend, "
                         f"Replace, Strip and Sequence)")


def _splitter(regex, behavior, invert, where):
    """Split pieces on a regex the way the `tokenizers` library's Split does."""
    behaviors = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")
    if behavior not in behaviors:
        raise TokenizerError(f"{where} has behavior {behavior!r}; expected one of "
                             f"{', '.join(behaviors)}")
    findall, finditer = regex.findall, regex.finditer
    # findall returns group contents when the pattern has groups: use it only without them.
    fast = behavior == "Isolated" and not invert and regex.groups == 0

    def split_one(text, out):
        if fast:
            pieces = findall(text)
            # Matches never overlap, so they cover the text exactly when their lengths add up:
            # then the matches are the pieces and there are no gaps to add.
            if sum(map(len, pieces)) == len(text):
                out.extend(p for p in pieces if p)
                return
        # (is_match, text) runs covering the text; `invert` swaps what counts as a match.
        runs = []
        at = 0
        for m in finditer(text):
            a, b = m.span()
            if a == b:
                continue
            if a > at:
                runs.append((invert, text[at:a]))
            runs.append((not invert, text[a:b]))
            at = b
        if at < len(text):
            runs.append((invert, text[at:]))
        if behavior == "Isolated":
            out.extend(t for _, t in runs)
        elif behavior == "Removed":
            out.extend(t for matched, t in runs if not matched)
        elif behavior == "Contiguous":
            # The library joins neighbouring runs of the same kind, matches or not.
            for _, group in groupby(runs, key=operator.itemgetter(0)):
                out.append("".join(t for _, t in group))
        elif behavior == "MergedWithPrevious":
            pending = ""
            for matched, t in runs:
                if matched:
                    out.append(pending + t)
                    pending = ""
                else:
                    if pending:
                        out.append(pending)
                    pending = t
            if pending:
                out.append(pending)
        else:   # MergedWithNext
            pending = ""
            for matched, t in runs:
                if matched:
                    if pending:
                        out.append(pending)
                    pending = t
                else:
                    out.append(pending + t)
                    pending = ""
            if pending:
                out.append(pending)

    def split(pieces, first):
        out = []
        for piece in pieces:
            split_one(piece, out)
        return out
    return split


def _pre_tokenizer(node, where, key="pre_tokenizer"):
    """([steps], maps_bytes): text splitting steps, and whether the last step is ByteLevel's
    mapping of UTF-8 bytes to symbols (done per piece, on a BPE cache miss, not here)."""
    if node is None:
        return [], False
    kind = _type_of(node, where, key)
    if kind == "Sequence":
        steps, maps_bytes = [], False
        subs = node.get("pretokenizers") or []
        for k, sub in enumerate(subs):
            sub_steps, sub_maps = _pre_tokenizer(sub, where, f"{key}.pretokenizers[{k}]")
            if maps_bytes:
                # A step after the byte mapping sees byte symbols, not text.
                steps.append(_byte_map_step)
                maps_bytes = False
            steps += sub_steps
            maps_bytes = sub_maps
        return steps, maps_bytes
    if kind == "Split":
        pattern = node.get("pattern")
        if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
            regex = _compile(pattern["Regex"], f"{where} {key}.pattern")
        elif isinstance(pattern, dict) and isinstance(pattern.get("String"), str):
            regex = re.compile(re.escape(pattern["String"]))
        else:
            raise TokenizerError(f"{where} {key}.pattern must be {{\"Regex\": ...}} or "
                                 f"{{\"String\": ...}}")
        return [_splitter(regex, node.get("behavior"), bool(node.get("invert")),
                          f"{where} {key}")], False
    if kind == "ByteLevel":
        steps = []
        if node.get("add_prefix_space", False):
            def prefix_space(pieces, first):
                return [p if p.startswith(" ") else " " + p for p in pieces]
            steps.append(prefix_space)
        if node.get("use_regex", True):
            steps.append(_splitter(_compile(GPT2_PATTERN, f"{where} {key}"), "Isolated", False,
                                   f"{where} {key}"))
        return steps, True
    if kind == "Digits":
        digits = _compile(r"\p{N}" if node.get("individual_digits") else r"\p{N}+",
                          f"{where} {key}")
        return [_splitter(digits, "Isolated", False, f"{where} {key}")], False
    if kind == "Metaspace":
        replacement = node.get("replacement", "\u2581")
        scheme = node.get("prepend_scheme")
        if scheme is None:      # the older form: add_prefix_space true means "always"
            scheme = "always" if node.get("add_prefix_space", True) else "never"
        if scheme not in ("always", "first", "never"):
            raise TokenizerError(f"{where} {key}.prepend_scheme is {scheme!r}; expected "
                                 f"always, first or never")
        split_on = _splitter(re.compile(re.escape(replacement)), "MergedWithNext", False,
                             f"{where} {key}") if node.get("split", True) else None

        def metaspace(pieces, first):
            out = []
            for k, piece in enumerate(pieces):
                piece = piece.replace(" ", replacement)
                if (scheme == "always" or (scheme == "first" and first and k == 0)) \
                        and not piece.startswith(replacement):
                    piece = replacement + piece
                out.append(piece)
            return split_on(out, first) if split_on else out
        return [metaspace], False
    raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer does not "
                         f"support (it supports Split, ByteLevel, Digits, Metaspace and "
                         f"Sequence)")


def _byte_map_step(pieces, first):
    return [p.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_SYMBOL) for p in pieces]


def _post_processor(node, where, key="post_processor"):
    """(prefix ids, suffix ids) that encode() puts around a single text."""
    if node is None:
        return [], []
    kind = _type_of(node, where, key)
    if kind == "ByteLevel":
        return [], []       # it only adjusts offsets
    if kind == "Sequence":
        prefix, suffix = [], []
        for k, sub in enumerate(node.get("processors") or []):
            p, s = _post_processor(sub, where, f"{key}.processors[{k}]")
            prefix, suffix = p + prefix, suffix + s
        return prefix, suffix
    if kind == "TemplateProcessing":
        specials = node.get("special_tokens") or {}
        prefix, suffix, seen_sequence = [], [], False
        for item in node.get("single") or []:
            if not isinstance(item, dict):
                item = {}       # reported below
            if "Sequence" in item:
                seen_sequence = True
            elif isinstance(item.get("SpecialToken"), dict):
                name = item["SpecialToken"].get("id")
                spec = specials.get(name)
                if not isinstance(spec, dict) or not isinstance(spec.get("ids"), list):
                    raise TokenizerError(f"{where} {key}.single names the special token "
                                         f"{name!r}, which {key}.special_tokens lacks")
                (suffix if seen_sequence else prefix).extend(spec["ids"])
            else:
                raise TokenizerError(f"{where} {key}.single has an item that is neither "
                                     f"a SpecialToken nor a Sequence")
        return prefix, suffix
    if kind in ("RobertaProcessing", "BertProcessing"):
        try:
            return [int(node["cls"][1])], [int(node["sep"][1])]
        except (KeyError, IndexError, TypeError, ValueError):
            raise TokenizerError(f"{where} {key} needs \"cls\" and \"sep\" as [token, id]") \
                from None
    raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer does not "
                         f"support (it supports TemplateProcessing, ByteLevel, "
                         f"RobertaProcessing, BertProcessing and Sequence)")


_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class _Decoder:
    """What a decoder does, reduced to per-token bytes and a few whole-text steps.

    byte_level:  tokens are byte symbols (a token not made only of symbols is its own UTF-8)
    replace:     (old, new) string replacements applied to each token, in order
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
        if node is None:
            raise TokenizerError(f"{where} has no {key}; this tokenizer needs one to know how "
                                 f"tokens become text")
        self._add(node, where, key)

    def _add(self, node, where, key):
        kind = _type_of(node, where, key)
        if kind == "ByteLevel":
            self.byte_level = True
        elif kind == "Sequence":
            for k, sub in enumerate(node.get("decoders") or []):
                self._add(sub, where, f"{key}.decoders[{k}]")
        elif kind == "Replace":
            literal, regex = _replace_pattern(node, where, key)
            if regex is not None:
                raise TokenizerError(f"{where} {key} replaces a regex; only a String "
                                     f"pattern is supported in a decoder")
            self.replace.append((literal, node.get("content", "")))
        elif kind == "ByteFallback":
            self.byte_tokens = True
        elif kind == "Fuse":
            pass        # tokens are joined anyway
        elif kind == "Strip":
            if node.get("stop", 0):
                raise TokenizerError(f"{where} {key} strips the end of the text; only "
                                     f"\"start\" is supported")
            self.strip = (node.get("content", " "), int(node.get("start", 0)))
        elif kind == "Metaspace":
            replacement = node.get("replacement", "\u2581")
            self.replace.append((replacement, " "))
            scheme = node.get("prepend_scheme")
            if scheme is None:
                scheme = "always" if node.get("add_prefix_space", True) else "never"
            if scheme != "never":
                self.first_drop = replacement
        else:
            raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer "
                                 f"does not support (it supports ByteLevel, Metaspace, "
                                 f"Replace, ByteFallback, Fuse, Strip and Sequence)")

    def token_bytes(self, token):
        if self.byte_level:
            try:
                return token.translate(_SYMBOL_TO_LATIN1).encode("latin-1")
            except UnicodeEncodeError:
                # Not all byte symbols: the library keeps such a token as its own text.
                return token.encode("utf-8")
        if self.byte_tokens:
            m = _BYTE_TOKEN.fullmatch(token)
            if m:
                return bytes([int(m.group(1), 16)])
        for old, new in self.replace:
            token = token.replace(old, new)
        return token.encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Added tokens.

def _is_word_char(ch):
    """Rust regex's \\w, which the library's single_word test uses: Alphabetic (letters, Nl
    and the circled letters among Other_Alphabetic; the rest of it are marks) + Mark +
    Decimal_Number + Connector_Punctuation + Join_Control."""
    if ch in "\u200c\u200d":
        return True
    category = unicodedata.category(ch)
    return category[0] in "LM" or category in ("Nd", "Pc", "Nl") or "\u24b6" <= ch <= "\u24e9"


class _AddedToken:
    __slots__ = ("id", "content", "special", "lstrip", "rstrip", "single_word", "normalized")

    def __init__(self, entry, where, k):
        try:
            self.id = entry["id"]
            self.content = entry["content"]
        except (KeyError, TypeError):
            raise TokenizerError(f"{where} added_tokens[{k}] needs an \"id\" and a "
                                 f"\"content\"") from None
        if not isinstance(self.content, str) or not isinstance(self.id, int) \
                or isinstance(self.id, bool) or not 0 <= self.id < MAX_TOKEN_ID:
            raise TokenizerError(f"{where} added_tokens[{k}] must have a string content and "
                                 f"an id from 0 to {MAX_TOKEN_ID - 1}")
        self.special = bool(entry.get("special", False))
        self.lstrip = bool(entry.get("lstrip", False))
        self.rstrip = bool(entry.get("rstrip", False))
        self.single_word = bool(entry.get("single_word", False))
        # The library's default: special tokens match the raw text, others the normalized one.
        self.normalized = bool(entry.get("normalized", not self.special))


class _AddedMatcher:
    """Finds added tokens in text: leftmost, and longest at that position, like the library's
    Aho-Corasick automaton (MatchKind::LeftmostLongest). An alternation of the escaped tokens,
    longest first, makes Python's re take the same matches."""

    def __init__(self, tokens):
        self.by_content = {t.content: t for t in tokens if t.content}
        self.regex = None
        if self.by_content:
            contents = sorted(self.by_content, key=len, reverse=True)
            self.regex = re.compile("|".join(map(re.escape, contents)))

    def split(self, text):
        """[(text, None) or (token text, _AddedToken)] covering text, as the library's
        find_matches splits it."""
        if self.regex is None or not text:
            return [(text, None)]
        out = []
        at = 0
        for m in self.regex.finditer(text):
            start, stop = m.span()
            token = self.by_content[m.group()]
            if token.single_word:
                if (start > 0 and _is_word_char(text[start - 1])) or \
                        (stop < len(text) and _is_word_char(text[stop])):
                    continue
            if token.lstrip:
                while start > at and text[start - 1] in WHITE_SPACE:
                    start -= 1
            if token.rstrip:
                while stop < len(text) and text[stop] in WHITE_SPACE:
                    stop += 1
            if at < start:
                out.append((text[at:start], None))
            out.append((text[start:stop], token))
            at = stop
        if at < len(text):
            out.append((text[at:], None))
        return out


# ---------------------------------------------------------------------------------------------
# What transformers (v5) adds to a tokenizer.json: the bos/eos tokens a tokenizer class has
# when tokenizer_config.json does not name them.
_CLASS_DEFAULTS = {
    "GPT2Tokenizer": ("<|endoftext|>", "<|endoftext|>"),
    "LlamaTokenizer": ("<s>", "</s>"),
    "Qwen2Tokenizer": (None, "<|endoftext|>"),
}
# With no tokenizer_config.json, the eos token is the first of these in the vocabulary.
_EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<eos>")


def _config_token(config, key, default, where):
    """The text of tokenizer_config.json's `key` token: a string, null, or an AddedToken
    object {"content": ...}; `default` where the key is absent."""
    if key not in config:
        return default
    value = config[key]
    if isinstance(value, dict):
        value = value.get("content")
    if value is not None and not isinstance(value, str):
        raise TokenizerError(f"{where} has {key} {value!r}; expected a string or null")
    return value


class HFTokenizer:
    """A tokenizer.json BPE tokenizer, with the interface of webgpt.tokenizer.Tokenizer:

        tok = HFTokenizer.from_texts(tokenizer_json_text, tokenizer_config_text)
        ids = tok.encode("<|im_start|>user\nhi<|im_end|>")    # + BOS where the file adds one
        text = tok.decode(ids, skip_special_tokens=True)
        stream = tok.stream_decoder()                         # push(id) -> text so far

    Encoded pieces are cached (as in webgpt.tokenizer), so repeated words cost a dict lookup.
    """

    def __init__(self, spec, config=None, json_name="tokenizer.json",
                 config_name="tokenizer_config.json"):
        """`spec`: tokenizer.json parsed; `config`: tokenizer_config.json parsed, or None."""
        where = json_name
        if not isinstance(spec, dict):
            raise TokenizerError(f"{where} must hold a JSON object")
        if config is not None and not isinstance(config, dict):
            raise TokenizerError(f"{config_name} must hold a JSON object")
        self.config = config or {}
        model = spec.get("model")
        if not isinstance(model, dict):
            raise TokenizerError(f"{where} has no \"model\" object")
        model_type = model.get("type", "BPE" if "merges" in model else None)
        if model_type != "BPE":
            raise TokenizerError(f"{where} has model.type {model_type!r}; this tokenizer "
                                 f"supports only BPE models (Unigram, WordPiece and WordLevel "
                                 f"are not supported)")
        if model.get("dropout") not in (None, 0, 0.0):
            raise TokenizerError(f"{where} has model.dropout {model.get('dropout')!r}; BPE "
                                 f"dropout (random merges) is for training and not supported")
        for affix in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(affix):
                raise TokenizerError(f"{where} has model.{affix} {model[affix]!r}, which this "
                                     f"tokenizer does not support")

        vocab = model.get("vocab")
        if not isinstance(vocab, dict):
            raise TokenizerError(f"{where} model.vocab must be an object of token -> id")
        ids = list(vocab.values())
        # Checked in C: every id an int (not a bool) in range.
        if not all(map(int.__instancecheck__, ids)) or any(map(bool.__instancecheck__, ids)) \
                or (ids and not 0 <= min(ids) <= max(ids) < MAX_TOKEN_ID):
            raise TokenizerError(f"{where} model.vocab must map tokens to ids from 0 to "
                                 f"{MAX_TOKEN_ID - 1}")
        self._vocab = vocab
        self._merge_ranks = self._parse_merges(model.get("merges", []), where)
        self._ignore_merges = bool(model.get("ignore_merges", False))
        self._byte_fallback = bool(model.get("byte_fallback", False))
        self._fuse_unk = bool(model.get("fuse_unk", False))
        unk = model.get("unk_token")
        self._unk = unk if isinstance(unk, str) and unk in vocab else None

        added = spec.get("added_tokens") or []
        if not isinstance(added, list):
            raise TokenizerError(f"{where} added_tokens must be a list")
        self._added = [_AddedToken(entry, where, k) for k, entry in enumerate(added)]
        self._normalize = _normalizer(spec.get("normalizer"), where)
        self._raw_matcher = _AddedMatcher([t for t in self._added if not t.normalized])
        self._normalized_matcher = _AddedMatcher(
            [_normalized_copy(t, self._normalize) for t in self._added if t.normalized])
        self._steps, self._maps_bytes = _pre_tokenizer(spec.get("pre_tokenizer"), where)
        self._decoder = _Decoder(spec.get("decoder"), where)

        # id -> token string; added tokens take the place of the vocabulary's entry.
        size = max([max(ids, default=-1)] + [t.id for t in self._added]) + 1
        self._id_to_token = [None] * size
        for token, token_id in vocab.items():
            self._id_to_token[token_id] = token
        self._added_ids = {}
        for t in self._added:
            self._id_to_token[t.id] = t.content
            self._added_ids[t.content] = t.id
        self._special_ids = frozenset(t.id for t in self._added if t.special)
        self._bytes_cache = {}
        self._cache = {}

        self._prefix, self._suffix, self._bos, self._eos = self._special_tokens(
            spec.get("post_processor"), where, config_name)

    @staticmethod
    def _parse_merges(merges, where):
        """{"left right": rank}. Later duplicates win, as in the library's map.

        The keys are strings rather than (left, right) tuples: the "left right" form needs no
        work at all, and 280,000 tuples would cost 3x the time (and the garbage collector's
        attention) at every load. Byte-level and SentencePiece tokens never hold a space, so
        the space separates the two sides unambiguously; that is checked.
        """
        if not isinstance(merges, list):
            raise TokenizerError(f"{where} model.merges must be a list")
        if not merges:
            return {}
        if all(map(str.__instancecheck__, merges)):
            keys = merges
        elif all(map(list.__instancecheck__, merges)) and set(map(len, merges)) == {2} \
                and all(map(str.__instancecheck__, chain.from_iterable(merges))):
            keys = list(map(" ".join, merges))
        else:
            raise TokenizerError(f"{where} model.merges must be all \"left right\" strings or "
                                 f"all [left, right] pairs of strings")
        # One space each (an entry " a" cannot match anything, as a symbol is never empty).
        if sum(map(str.count, keys, repeat(" ", len(keys)))) != len(keys):
            raise TokenizerError(f"{where} model.merges has an entry that is not two tokens "
                                 f"without spaces (\"left right\"), which this tokenizer "
                                 f"does not support")
        return dict(zip(keys, range(len(keys))))

    def _special_tokens(self, post_processor, where, config_name):
        """(prefix ids, suffix ids, bos token, eos token) as transformers.AutoTokenizer has
        them. transformers v5 drops tokenizer_config.json's add_bos_token and add_eos_token
        when there is a tokenizer.json (PreTrainedTokenizerBase._from_pretrained), so the
        file's post_processor alone decides what encode() adds; a null one adds nothing. The
        config names the bos and eos tokens (or the tokenizer class's defaults do)."""
        config = self.config
        cls = str(config.get("tokenizer_class", "")).removesuffix("Fast")
        default_bos, default_eos = _CLASS_DEFAULTS.get(cls, (None, None))
        bos = _config_token(config, "bos_token", default_bos, config_name)
        eos = _config_token(config, "eos_token", default_eos, config_name)
        if not config:
            eos = next((name for name in _EOS_NAMES if self.id_of(name) is not None), None)
        for key, name in (("bos_token", bos), ("eos_token", eos)):
            if name is not None and self.id_of(name) is None:
                raise TokenizerError(f"{config_name} has {key} {name!r}, which is not in "
                                     f"{where}")
        prefix, suffix = _post_processor(post_processor, where)
        size = len(self._id_to_token)
        for token_id in prefix + suffix:
            if not isinstance(token_id, int) or isinstance(token_id, bool) \
                    or not 0 <= token_id < size or self._id_to_token[token_id] is None:
                raise TokenizerError(f"{where} post_processor adds the id {token_id!r}, which "
                                     f"is not in the vocabulary")
        return prefix, suffix, bos, eos

    @classmethod
    def from_texts(cls, tokenizer_json_text, tokenizer_config_text=None,
                   json_name="tokenizer.json", config_name="tokenizer_config.json"):
        """Build from the text of tokenizer.json and (optionally) tokenizer_config.json.

        `json_name` and `config_name` (paths or URLs) name the files in error messages.
        """
        # The garbage collector would walk the growing vocabulary again and again while the
        # JSON parser and the tables allocate (a third of the load time): it waits until the
        # end, as it would for any other burst of allocation that frees nothing.
        collecting = gc.isenabled()
        gc.disable()
        try:
            spec = _load_json(tokenizer_json_text, json_name)
            config = None if tokenizer_config_text is None else \
                _load_json(tokenizer_config_text, config_name)
            return cls(spec, config, json_name, config_name)
        finally:
            if collecting:
                gc.enable()

    # -- the vocabulary ------------------------------------------------------------------------

    @property
    def vocab_size(self):
        """Number of token ids: one more than the largest id, added tokens included."""
        return len(self._id_to_token)

    chat_template = None  # the folder's chat template (set by webgpt.load), or None

    @property
    def bos_token(self):
        """The text of the beginning-of-sequence token (a chat template's bos_token), or None."""
        return self._bos

    @property
    def eos_token(self):
        """The text of the end-of-sequence token (a chat template's eos_token), or None."""
        return self._eos

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, **extra):
        """The ids (or with tokenize=False the text) of `messages` rendered by the chat
        template, as transformers' apply_chat_template gives them (webgpt.chat_template)."""
        from .chat_template import apply_chat_template
        return apply_chat_template(self, messages, add_generation_prompt, tokenize, **extra)

    @property
    def bos_id(self):
        """Id of the beginning-of-sequence token (tokenizer_config.json's bos_token), or None."""
        return None if self._bos is None else self.id_of(self._bos)

    @property
    def eos_id(self):
        """Id of the end-of-sequence token (tokenizer_config.json's eos_token), or None."""
        return None if self._eos is None else self.id_of(self._eos)

    @property
    def eot_id(self):
        """The id that ends generation: eos_id (as webgpt.tokenizer.Tokenizer's eot_id)."""
        return self.eos_id

    @property
    def special_ids(self):
        """Ids of the special added tokens (those decode(skip_special_tokens=True) drops)."""
        return self._special_ids

    def id_of(self, token_text):
        """Id of a token as tokenizer.json writes it (an added token's content such as
        '<|im_end|>', or a vocabulary entry such as 'Ġthe'), or None."""
        token_id = self._added_ids.get(token_text)
        return self._vocab.get(token_text) if token_id is None else token_id

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, text, add_special_tokens=True):
        """Token ids of text, special tokens written in it included (as transformers does),
        with the BOS/EOS the tokenizer adds when `add_special_tokens`."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, not {type(text).__name__}")
        text = _without_lone_surrogates(text)
        ids = list(self._prefix) if add_special_tokens else []
        normalize = self._normalize
        at = 0      # offset in text: Metaspace's "first" scheme prefixes only at offset 0
        for part, token in self._raw_matcher.split(text):
            first = at == 0
            at += len(part)
            if token is not None:
                ids.append(token.id)
                continue
            if normalize is not None:
                part = normalize(part)
            for sub, sub_token in self._normalized_matcher.split(part):
                if sub_token is not None:
                    ids.append(sub_token.id)
                elif sub:
                    self._encode_text(sub, first, ids)
                first = False
        if add_special_tokens:
            ids += self._suffix
        return ids

    def _encode_text(self, text, first, ids):
        """Append the ids of normalized text without added tokens."""
        pieces = [text]
        for step in self._steps:
            pieces = step(pieces, first)
        cache = self._cache
        for piece in pieces:
            piece_ids = cache.get(piece)
            if piece_ids is None:
                piece_ids = self._encode_piece(piece)
                if len(piece) <= _BPE_CACHE_MAX_PIECE:
                    if len(cache) >= _BPE_CACHE_LIMIT:
                        del cache[next(iter(cache))]    # the oldest entry
                    cache[piece] = piece_ids
            ids.extend(piece_ids)

    def _encode_piece(self, piece):
        vocab = self._vocab
        word = piece.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_SYMBOL) \
            if self._maps_bytes else piece
        if self._ignore_merges:
            token_id = vocab.get(word)
            if token_id is not None:
                return (token_id,)
        symbols = self._bpe(self._initial_symbols(word))
        try:
            return tuple([vocab[s] for s in symbols])
        except KeyError as e:
            raise TokenizerError(f"a merge of the tokenizer makes {e.args[0]!r}, which is not "
                                 f"in its vocabulary (model.merges and model.vocab disagree)") \
                from None

    def _bpe(self, symbols):
        """Merge adjacent symbols as the `tokenizers` library does: always the pair of lowest
        rank, the leftmost of equal ones, until no adjacent pair has a rank.

        A heap of (rank, left node) over a linked list makes this O(n log n) in the length of
        the piece; that matters where a piece is long (a SentencePiece tokenizer has no
        pre-tokenizer, so a whole paragraph is one piece). Entries go stale when their nodes
        merge; a popped entry counts only if its pair is still there with that rank.
        """
        n = len(symbols)
        if n < 2:
            return symbols
        ranks = self._merge_ranks
        next_node = list(range(1, n + 1))     # n stands for "none"
        prev_node = list(range(-1, n - 1))    # -1 stands for "none"
        heap = []
        for k in range(n - 1):
            rank = ranks.get(symbols[k] + " " + symbols[k + 1])
            if rank is not None:
                heap.append((rank, k))
        heapify(heap)
        while heap:
            rank, left = heappop(heap)
            right = next_node[left]
            if right >= n or symbols[left] is None \
                    or ranks.get(symbols[left] + " " + symbols[right]) != rank:
                continue
            merged = symbols[left] = symbols[left] + symbols[right]
            symbols[right] = None
            after = next_node[left] = next_node[right]
            if after < n:
                prev_node[after] = left
                new_rank = ranks.get(merged + " " + symbols[after])
                if new_rank is not None:
                    heappush(heap, (new_rank, left))
            before = prev_node[left]
            if before >= 0:
                new_rank = ranks.get(symbols[before] + " " + merged)
                if new_rank is not None:
                    heappush(heap, (new_rank, before))
        return [s for s in symbols if s is not None]

    def _initial_symbols(self, word):
        """The characters of word, each a vocabulary entry: a character the vocabulary lacks
        becomes its <0xAB> byte tokens (byte_fallback), or the unk token (consecutive ones
        fused with fuse_unk), or is dropped, as the library drops it without an unk token."""
        vocab = self._vocab
        if all(map(vocab.__contains__, word)):
            return list(word)
        symbols = []
        last_unk = False
        for ch in word:
            if ch in vocab:
                symbols.append(ch)
                last_unk = False
                continue
            if self._byte_fallback:
                byte_tokens = [f"<0x{b:02X}>" for b in ch.encode("utf-8")]
                if all(map(vocab.__contains__, byte_tokens)):
                    symbols += byte_tokens
                    last_unk = False
                    continue
            if self._unk is not None and not (self._fuse_unk and last_unk):
                symbols.append(self._unk)
                last_unk = True
        return symbols

    # -- decoding ------------------------------------------------------------------------------

    def token_bytes(self, token_id):
        """The bytes of one token (part of a UTF-8 character, possibly); a special token is
        its text. webgpt.tokenizer.StreamDecoder decodes a stream of tokens with this."""
        i = token_id
        if type(i) is not int:
            try:
                # Any integer (numpy's too), but not a float, a string or a bool.
                i = -1 if isinstance(i, bool) else operator.index(i)
            except TypeError:
                i = -1
        data = self._bytes_cache.get(i)
        if data is not None:
            return data
        table = self._id_to_token
        if not 0 <= i < len(table) or table[i] is None:
            raise TokenizerError(
                f"token id {token_id!r} is not in the vocabulary (ids 0..{len(table) - 1})")
        data = self._decoder.token_bytes(table[i])
        self._bytes_cache[i] = data
        return data

    def decode(self, ids, skip_special_tokens=False):
        """Text of token ids, as the `tokenizers` library decodes them: bytes that are not
        valid UTF-8 become U+FFFD; with skip_special_tokens, special tokens are left out."""
        if skip_special_tokens:
            special = self._special_ids
            ids = [i for i in ids if i not in special]
        decoder = self._decoder
        parts = [self.token_bytes(i) for i in ids]
        if parts and decoder.first_drop:
            parts[0] = decoder.token_bytes(self._id_to_token[ids[0]].replace(
                decoder.first_drop, ""))
        if not decoder.byte_tokens:
            # Join all bytes before decoding: a character may be split across tokens.
            text = b"".join(parts).decode("utf-8", errors="replace")
        else:
            text = self._join_byte_fallback(ids, parts)
        if decoder.strip:
            char, n = decoder.strip
            k = 0
            while k < n and text[k:k + 1] == char:
                k += 1
            text = text[k:]
        return text

    def _join_byte_fallback(self, ids, parts):
        """ByteFallback's rule: a run of <0xAB> tokens is UTF-8 text or, where it is not valid
        UTF-8, one U+FFFD per token; other tokens are text of their own."""
        out = []
        run = []
        for token_id, data in zip(ids, parts):
            if _BYTE_TOKEN.fullmatch(self._id_to_token[token_id]):
                run.append(data)
                continue
            if run:
                out.append(_byte_run_text(run))
                run = []
            out.append(data.decode("utf-8", errors="replace"))
        if run:
            out.append(_byte_run_text(run))
        return "".join(out)

    def stream_decoder(self, skip_special_tokens=False):
        """A webgpt.tokenizer.StreamDecoder for this tokenizer (push(id) -> text so far)."""
        return StreamDecoder(_SkipSpecial(self) if skip_special_tokens else self)


def _byte_run_text(run):
    try:
        return b"".join(run).decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(run)


class _SkipSpecial:
    """A tokenizer view whose special tokens have no bytes, for StreamDecoder."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def token_bytes(self, token_id):
        data = self._tokenizer.token_bytes(token_id)
        return b"" if token_id in self._tokenizer.special_ids else data


def _normalized_copy(token, normalize):
    """A normalized added token matches its own normalized form in normalized text."""
    if normalize is None:
        return token
    copy = _AddedToken.__new__(_AddedToken)
    for name in _AddedToken.__slots__:
        setattr(copy, name, getattr(token, name))
    copy.content = normalize(token.content)
    return copy


def _load_json(text, name):
    """The JSON of `name`, parsed within the memory budget webgpt.limits gives that file (a
    JSON bomb, or absurdly deep nesting, is a TokenizerError sentence, never gigabytes)."""
    from .limits import parse_json

    if isinstance(text, (bytes, bytearray)):
        try:
            text = codecs.decode(text, "utf-8-sig")
        except UnicodeDecodeError as e:
            raise TokenizerError(f"{name} is not UTF-8 text: {e}") from None
    return parse_json(text, name, TokenizerError)
