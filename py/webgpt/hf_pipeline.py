"""The encoding side of a tokenizer.json pipeline, built from the file's nodes: normalizers,
pre-tokenizers and post-processors, as the `tokenizers` library runs them.

    normalize = normalizer(spec["normalizer"], where)           # str -> str, or None
    steps, maps_bytes = pre_tokenizer(spec["pre_tokenizer"], where)
    prefix, suffix = post_processor(spec["post_processor"], where)

A pre-tokenizer step is a function (pieces, first) -> pieces, where `first` says the text
starts at offset 0 of the input (Metaspace's "first" scheme). `maps_bytes` says the last step
is ByteLevel's mapping of UTF-8 bytes to byte symbols, which the tokenizer does per piece, on
a cache miss (webgpt.hf_tokenizer), rather than here. Split patterns are Oniguruma regexes, compiled
by webgpt.oniguruma. A node this module does not support is a TokenizerError naming the file
and key, and the types it does support.

The file is input from anyone, so what it makes the pipeline compute is bounded, and each of
its values is read with the JSON type it must have (`field`: a wrong one is a sentence naming
it, never a TypeError). A normalizer may make a text at most GROWTH times longer, plus SLACK
characters: a Replace that grows the text counts what it will add before it adds it, so a
chain of thirty that each double the text is refused at the step that passes the bound
(`bounded_replace`, which the decoder's Replace uses too). Real normalizers add one character
(Prepend) or none. A post-processor adds at most MAX_ADDED_IDS ids.
"""

import operator
import re
import unicodedata
from itertools import groupby

from .bpe import to_symbols
from .errors import TokenizerError, short_repr
from .oniguruma import compile_pattern
from .tokenizer import WHITE_SPACE

__all__ = ["GPT2_PATTERN", "normalizer", "pre_tokenizer", "post_processor", "type_of",
           "replace_pattern", "field", "bounded_replace", "GROWTH", "SLACK"]

# The Split that GPT-2's ByteLevel(use_regex=true) applies: GPT-2's own pattern.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

SPLIT_BEHAVIORS = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")

# A normalizer's output is at most GROWTH times its input plus SLACK characters (NFKC makes
# some characters longer: U+FDFA is 18 of them, but text made mostly of those is no language).
GROWTH = 4
SLACK = 4096
# The ids a post-processor puts around a text (real ones: a BOS, perhaps an EOS).
MAX_ADDED_IDS = 256

_KIND_NAMES = {str: "a string", bool: "true or false", int: "an integer", list: "a list",
               dict: "an object"}


def field(node, name, kind, default, where, key):
    """node[name] where it has the JSON type `kind` (str, bool, int, list or dict); `default`
    where it is absent or null; else a TokenizerError naming it and the type it needs."""
    value = node.get(name)
    if value is None:
        return default
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise TokenizerError(f"{where} {key}.{name} is {short_repr(value)}; it must be "
                         f"{_KIND_NAMES[kind]}")


def char_field(node, name, default, where, key):
    """A field that must be one character (Metaspace's replacement, a Strip's content)."""
    value = field(node, name, str, default, where, key)
    if len(value) != 1:
        raise TokenizerError(f"{where} {key}.{name} is {short_repr(value)}; it must be one "
                             f"character")
    return value


def type_of(node, where, key):
    """The "type" of a pipeline node, which must be an object that has one."""
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise TokenizerError(f"{where} has a {key} that is not an object with a \"type\"")
    return node["type"]


def replace_pattern(node, where, key):
    """(literal, None) or (None, compiled regex): a Replace node's pattern."""
    pattern = node.get("pattern")
    if isinstance(pattern, dict) and isinstance(pattern.get("String"), str):
        return pattern["String"], None
    if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
        return None, compile_pattern(pattern["Regex"], f"{where} {key}")
    raise TokenizerError(f"{where} {key} needs a pattern {{\"String\": ...}} or "
                         f"{{\"Regex\": ...}}")


def bounded_replace(text, literal, regex, content, limit, where):
    """text with each match of `literal` (or of the compiled `regex`) replaced by `content`,
    or a TokenizerError, before the work is done, where the result would pass `limit`
    characters."""
    if regex is None:
        # str.count("") is len + 1, the places where replace("", ...) inserts.
        size = len(text) + text.count(literal) * (len(content) - len(literal))
        if size > limit:
            raise _grown(where, size, limit)
        return text.replace(literal, content)
    size = len(text)

    def replacement(m):
        nonlocal size
        size += len(content) - (m.end() - m.start())
        if size > limit:
            raise _grown(where, size, limit)
        return content
    return regex.sub(replacement, text)


def _grown(where, size, limit):
    return TokenizerError(f"{where} makes a text {size} characters long, more than the {limit} "
                          f"it may (at most {GROWTH} times the text and {SLACK} more): it is "
                          f"not a model's tokenizer (a corrupt or hostile file?)")


def _checked(where, text, limit):
    """text, where it is at most `limit` characters long."""
    if len(text) > limit:
        raise _grown(where, len(text), limit)
    return text


# ---------------------------------------------------------------------------------------------
# Normalizers: str -> str.

def normalizer(node, where, key="normalizer"):
    """A function that normalizes a str (within the bound GROWTH and SLACK give), or None for
    no normalizer."""
    part = _normalizer_part(node, where, key)
    if part is None:
        return None
    return lambda text: part(text, GROWTH * len(text) + SLACK)


def _normalizer_part(node, where, key):
    """A function (text, limit) -> normalized text of at most `limit` characters, or None."""
    if node is None:
        return None
    kind = type_of(node, where, key)
    name = f"{where} {key}"
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        def normalize(text, limit, form=kind):
            # A Unicode form makes a text at most 18 times longer: then checked.
            return text if text.isascii() else _checked(
                name, unicodedata.normalize(form, text), limit)
        return normalize
    if kind == "Lowercase":
        return lambda text, limit: _checked(name, text.lower(), limit)
    if kind == "Prepend":
        prefix = field(node, "prepend", str, "", where, key)
        return lambda text, limit: _checked(name, prefix + text, limit) if text else text
    if kind == "Replace":
        literal, regex = replace_pattern(node, where, key)
        content = field(node, "content", str, "", where, key)
        return lambda text, limit: bounded_replace(text, literal, regex, content, limit, name)
    if kind == "Strip":
        left = field(node, "left", bool, True, where, key)
        right = field(node, "right", bool, True, where, key)
        ws = "".join(sorted(WHITE_SPACE))

        def strip(text, limit):
            if left:
                text = text.lstrip(ws)
            return text.rstrip(ws) if right else text
        return strip
    if kind == "Sequence":
        parts = [_normalizer_part(sub, where, f"{key}.normalizers[{k}]")
                 for k, sub in enumerate(field(node, "normalizers", list, [], where, key))]
        parts = [p for p in parts if p is not None]

        def sequence(text, limit):
            for part in parts:
                text = part(text, limit)
            return text
        return sequence
    raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer does not "
                         f"support (it supports NFC, NFD, NFKC, NFKD, Lowercase, Prepend, "
                         f"Replace, Strip and Sequence)")


# ---------------------------------------------------------------------------------------------
# Pre-tokenizers: lists of steps (pieces, first) -> pieces.

def pre_tokenizer(node, where, key="pre_tokenizer"):
    """([steps], maps_bytes): text splitting steps, and whether the last step is ByteLevel's
    mapping of UTF-8 bytes to symbols (done per piece, on a BPE cache miss, not here)."""
    if node is None:
        return [], False
    kind = type_of(node, where, key)
    if kind == "Sequence":
        steps, maps_bytes = [], False
        for k, sub in enumerate(field(node, "pretokenizers", list, [], where, key)):
            sub_steps, sub_maps = pre_tokenizer(sub, where, f"{key}.pretokenizers[{k}]")
            if maps_bytes:
                # A step after the byte mapping sees byte symbols, not text.
                steps.append(_byte_map_step)
            steps += sub_steps
            maps_bytes = sub_maps
        return steps, maps_bytes
    if kind == "Split":
        return [_split_step(node, where, key)], False
    if kind == "ByteLevel":
        return _byte_level_steps(node, where, key), True
    if kind == "Digits":
        individual = field(node, "individual_digits", bool, False, where, key)
        digits = compile_pattern(r"\p{N}" if individual else r"\p{N}+", f"{where} {key}")
        return [_splitter(digits, "Isolated", False, f"{where} {key}")], False
    if kind == "Metaspace":
        return [_metaspace_step(node, where, key)], False
    raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer does not "
                         f"support (it supports Split, ByteLevel, Digits, Metaspace and "
                         f"Sequence)")


def _split_step(node, where, key):
    pattern = node.get("pattern")
    if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
        regex = compile_pattern(pattern["Regex"], f"{where} {key}.pattern")
    elif isinstance(pattern, dict) and isinstance(pattern.get("String"), str):
        regex = re.compile(re.escape(pattern["String"]))
    else:
        raise TokenizerError(f"{where} {key}.pattern must be {{\"Regex\": ...}} or "
                             f"{{\"String\": ...}}")
    return _splitter(regex, field(node, "behavior", str, None, where, key),
                     field(node, "invert", bool, False, where, key), f"{where} {key}")


def _byte_level_steps(node, where, key):
    steps = []
    if field(node, "add_prefix_space", bool, False, where, key):
        def prefix_space(pieces, first):
            return [p if p.startswith(" ") else " " + p for p in pieces]
        steps.append(prefix_space)
    if field(node, "use_regex", bool, True, where, key):
        steps.append(_splitter(compile_pattern(GPT2_PATTERN, f"{where} {key}"), "Isolated",
                               False, f"{where} {key}"))
    return steps


def _byte_map_step(pieces, first):
    return [to_symbols(p) for p in pieces]


def _metaspace_step(node, where, key):
    """Spaces become the replacement character (U+2581), which a piece is prefixed with as the
    prepend scheme says, and (with "split") starts a new piece."""
    replacement, scheme = metaspace_fields(node, where, key)
    split_on = _splitter(re.compile(re.escape(replacement)), "MergedWithNext", False,
                         f"{where} {key}") if field(node, "split", bool, True, where, key) \
        else None

    def metaspace(pieces, first):
        out = []
        for k, piece in enumerate(pieces):
            piece = piece.replace(" ", replacement)
            if (scheme == "always" or (scheme == "first" and first and k == 0)) \
                    and not piece.startswith(replacement):
                piece = replacement + piece
            out.append(piece)
        return split_on(out, first) if split_on else out
    return metaspace


def metaspace_fields(node, where, key):
    """(replacement, prepend scheme) of a Metaspace pre-tokenizer or decoder."""
    replacement = char_field(node, "replacement", "\u2581", where, key)
    scheme = field(node, "prepend_scheme", str, None, where, key)
    if scheme is None:      # the older form: add_prefix_space true means "always"
        scheme = "always" if field(node, "add_prefix_space", bool, True, where, key) \
            else "never"
    if scheme not in ("always", "first", "never"):
        raise TokenizerError(f"{where} {key}.prepend_scheme is {short_repr(scheme)}; expected "
                             f"always, first or never")
    return replacement, scheme


def _splitter(regex, behavior, invert, where):
    """A step that splits pieces on a regex the way the `tokenizers` library's Split does."""
    if behavior not in SPLIT_BEHAVIORS:
        raise TokenizerError(f"{where} has behavior {short_repr(behavior)}; expected one of "
                             f"{', '.join(SPLIT_BEHAVIORS)}")
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
        _join_runs(runs, behavior, out)

    def split(pieces, first):
        out = []
        for piece in pieces:
            split_one(piece, out)
        return out
    return split


def _join_runs(runs, behavior, out):
    """Append to `out` the pieces that a Split `behavior` makes of (is_match, text) runs."""
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


# ---------------------------------------------------------------------------------------------
# Post-processors: the ids around a single text.

def post_processor(node, where, key="post_processor"):
    """(prefix ids, suffix ids) that encode() puts around a single text."""
    prefix, suffix = _added_ids(node, where, key)
    if len(prefix) + len(suffix) > MAX_ADDED_IDS:
        raise TokenizerError(f"{where} {key} adds {len(prefix) + len(suffix)} ids to every "
                             f"text, more than the {MAX_ADDED_IDS} a tokenizer may here")
    return prefix, suffix


def _added_ids(node, where, key):
    if node is None:
        return [], []
    kind = type_of(node, where, key)
    if kind == "ByteLevel":
        return [], []       # it only adjusts offsets
    if kind == "Sequence":
        prefix, suffix = [], []
        for k, sub in enumerate(field(node, "processors", list, [], where, key)):
            p, s = _added_ids(sub, where, f"{key}.processors[{k}]")
            prefix, suffix = p + prefix, suffix + s
            if len(prefix) + len(suffix) > MAX_ADDED_IDS:
                break       # post_processor says so
        return prefix, suffix
    if kind == "TemplateProcessing":
        return _template_ids(node, where, key)
    if kind in ("RobertaProcessing", "BertProcessing"):
        ids = []
        for name in ("cls", "sep"):
            pair = node.get(name)
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], int) and not isinstance(pair[1], bool)):
                raise TokenizerError(f"{where} {key} needs \"cls\" and \"sep\" as [token, id]")
            ids.append(pair[1])
        return [ids[0]], [ids[1]]
    raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer does not "
                         f"support (it supports TemplateProcessing, ByteLevel, "
                         f"RobertaProcessing, BertProcessing and Sequence)")


def _template_ids(node, where, key):
    """(prefix ids, suffix ids) of a TemplateProcessing's "single" template."""
    specials = field(node, "special_tokens", dict, {}, where, key)
    prefix, suffix, seen_sequence = [], [], False
    for item in field(node, "single", list, [], where, key):
        if not isinstance(item, dict):
            item = {}       # reported below
        if "Sequence" in item:
            seen_sequence = True
        elif isinstance(item.get("SpecialToken"), dict):
            name = item["SpecialToken"].get("id")
            spec = specials.get(name) if isinstance(name, str) else None
            if not isinstance(spec, dict) or not isinstance(spec.get("ids"), list):
                raise TokenizerError(f"{where} {key}.single names the special token "
                                     f"{short_repr(name)}, which {key}.special_tokens lacks")
            (suffix if seen_sequence else prefix).extend(spec["ids"][:MAX_ADDED_IDS + 1])
            if len(prefix) + len(suffix) > MAX_ADDED_IDS:
                break       # post_processor says so
        else:
            raise TokenizerError(f"{where} {key}.single has an item that is neither "
                                 f"a SpecialToken nor a Sequence")
    return prefix, suffix
