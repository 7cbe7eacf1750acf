"""tokenizer.json's added tokens (special tokens such as <|im_start|>, and others), found in the
text before the rest of the pipeline sees it, as the `tokenizers` library finds them.

Each token matches the raw text or, with "normalized", the normalized text; "lstrip" and
"rstrip" take the whitespace beside it into the match, and "single_word" matches only where no
word character touches it. Of the tokens that start at one position the longest wins.
"""

import re
import unicodedata

from .errors import TokenizerError
from .hf_pipeline import field
from .tokenizer import MAX_TOKEN_ID, WHITE_SPACE

__all__ = ["AddedToken", "AddedTokens"]


class AddedToken:
    """One entry of tokenizer.json's "added_tokens"."""

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
        key = f"added_tokens[{k}]"
        self.special = field(entry, "special", bool, False, where, key)
        self.lstrip = field(entry, "lstrip", bool, False, where, key)
        self.rstrip = field(entry, "rstrip", bool, False, where, key)
        self.single_word = field(entry, "single_word", bool, False, where, key)
        # The library's default: special tokens match the raw text, others the normalized one.
        self.normalized = field(entry, "normalized", bool, not self.special, where, key)

    def normalized_copy(self, normalize):
        """This token with its content normalized: a normalized added token matches its own
        normalized form in normalized text."""
        if normalize is None:
            return self
        copy = AddedToken.__new__(AddedToken)
        for name in AddedToken.__slots__:
            setattr(copy, name, getattr(self, name))
        copy.content = normalize(self.content)
        return copy


class AddedTokens:
    """The added tokens of a tokenizer.json, and how they split a text for encoding.

    `entries` is the file's "added_tokens" list; `normalize` the tokenizer's normalizer (a
    str -> str function, or None); `where` names the file in errors.
    """

    def __init__(self, entries, normalize, where):
        if not isinstance(entries, list):
            raise TokenizerError(f"{where} added_tokens must be a list")
        self.tokens = [AddedToken(entry, where, k) for k, entry in enumerate(entries)]
        self._normalize = normalize
        self._raw = _Matcher([t for t in self.tokens if not t.normalized])
        self._normalized = _Matcher(
            [t.normalized_copy(normalize) for t in self.tokens if t.normalized])

    def split(self, text):
        """(piece, token, first) covering the text: an added token's match with its AddedToken,
        or normalized text without added tokens with None; `first` says that the piece comes
        from the start of the text (Metaspace's "first" scheme prefixes only there)."""
        normalize = self._normalize
        at = 0
        for part, token in self._raw.split(text):
            first = at == 0
            at += len(part)
            if token is not None:
                yield part, token, first
                continue
            if normalize is not None:
                part = normalize(part)
            for sub, sub_token in self._normalized.split(part):
                if sub_token is not None or sub:
                    yield sub, sub_token, first
                first = False


class _Matcher:
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
        """[(text, None) or (token text, AddedToken)] covering text, as the library's
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


def _is_word_char(ch):
    """Rust regex's \\w, which the library's single_word test uses: Alphabetic (letters, Nl
    and the circled letters among Other_Alphabetic; the rest of it are marks) + Mark +
    Decimal_Number + Connector_Punctuation + Join_Control."""
    if ch in "\u200c\u200d":
        return True
    category = unicodedata.category(ch)
    return category[0] in "LM" or category in ("Nd", "Pc", "Nl") or "\u24b6" <= ch <= "\u24e9"
