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
"""

import operator
import re
import unicodedata
from itertools import groupby

from .bpe import to_symbols
from .errors import TokenizerError
from .oniguruma import compile_pattern
from .tokenizer import WHITE_SPACE

__all__ = ["GPT2_PATTERN", "normalizer", "pre_tokenizer", "post_processor", "type_of",
           "replace_pattern"]

# The Split that GPT-2's ByteLevel(use_regex=true) applies: GPT-2's own pattern.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

SPLIT_BEHAVIORS = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")


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


# ---------------------------------------------------------------------------------------------
# Normalizers: str -> str.

def normalizer(node, where, key="normalizer"):
    """A function that normalizes a str, or None for no normalizer."""
    if node is None:
        return None
    kind = type_of(node, where, key)
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
        literal, regex = replace_pattern(node, where, key)
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
        parts = [normalizer(sub, where, f"{key}.normalizers[{k}]")
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
        for k, sub in enumerate(node.get("pretokenizers") or []):
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
        digits = compile_pattern(r"\p{N}" if node.get("individual_digits") else r"\p{N}+",
                                 f"{where} {key}")
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
    return _splitter(regex, node.get("behavior"), bool(node.get("invert")), f"{where} {key}")


def _byte_level_steps(node, where, key):
    steps = []
    if node.get("add_prefix_space", False):
        def prefix_space(pieces, first):
            return [p if p.startswith(" ") else " " + p for p in pieces]
        steps.append(prefix_space)
    if node.get("use_regex", True):
        steps.append(_splitter(compile_pattern(GPT2_PATTERN, f"{where} {key}"), "Isolated",
                               False, f"{where} {key}"))
    return steps


def _byte_map_step(pieces, first):
    return [to_symbols(p) for p in pieces]


def _metaspace_step(node, where, key):
    """Spaces become the replacement character (U+2581), which a piece is prefixed with as the
    prepend scheme says, and (with "split") starts a new piece."""
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
    return metaspace


def _splitter(regex, behavior, invert, where):
    """A step that splits pieces on a regex the way the `tokenizers` library's Split does."""
    if behavior not in SPLIT_BEHAVIORS:
        raise TokenizerError(f"{where} has behavior {behavior!r}; expected one of "
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
    if node is None:
        return [], []
    kind = type_of(node, where, key)
    if kind == "ByteLevel":
        return [], []       # it only adjusts offsets
    if kind == "Sequence":
        prefix, suffix = [], []
        for k, sub in enumerate(node.get("processors") or []):
            p, s = post_processor(sub, where, f"{key}.processors[{k}]")
            prefix, suffix = p + prefix, suffix + s
        return prefix, suffix
    if kind == "TemplateProcessing":
        return _template_ids(node, where, key)
    if kind in ("RobertaProcessing", "BertProcessing"):
        try:
            return [int(node["cls"][1])], [int(node["sep"][1])]
        except (KeyError, IndexError, TypeError, ValueError):
            raise TokenizerError(f"{where} {key} needs \"cls\" and \"sep\" as [token, id]") \
                from None
    raise TokenizerError(f"{where} has {key} of type {kind!r}, which this tokenizer does not "
                         f"support (it supports TemplateProcessing, ByteLevel, "
                         f"RobertaProcessing, BertProcessing and Sequence)")


def _template_ids(node, where, key):
    """(prefix ids, suffix ids) of a TemplateProcessing's "single" template."""
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
