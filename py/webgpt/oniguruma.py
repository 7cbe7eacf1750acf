r"""Oniguruma regular expressions, as tokenizer.json writes them, translated into Python's `re`.

The `tokenizers` library matches its Split patterns with Oniguruma (Ruby's syntax), whose
Unicode properties (\p{L}, \p{N}, \p{M}, ...) Python's `re` lacks, and Pyodide has no `regex`
wheel offline. So each pattern is translated once: every property becomes an explicit character
class built from `unicodedata`; \s becomes Unicode White_Space and \w Oniguruma's word class, so
both match what they match in Oniguruma rather than what Python's own \s and \w would; ^ and $
match at line boundaries, as in Ruby. The case-insensitive contractions (?i:'s|'t|...) of
Llama 3 and Qwen stay as they are: Python's `re` folds case the same way for them. A feature
that does not mean the same in both (class intersection &&, Ruby's (?m), nested classes) is
refused with a TokenizerError naming the pattern.

    regex = compile_pattern(r"\p{L}+|\p{N}", "tokenizer.json pre_tokenizer")   # an re.Pattern
"""

import re
import unicodedata
from itertools import groupby

from .errors import TokenizerError
from .tokenizer import WHITE_SPACE

__all__ = ["compile_pattern", "translate"]

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


def compile_pattern(pattern, where):
    """An Oniguruma pattern (as `tokenizers` writes it) compiled into Python's re, translated.
    `where` ("tokenizer.json pre_tokenizer") names it in errors."""
    compiled = _TRANSLATED.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(translate(pattern, where))
        except re.error as e:
            raise TokenizerError(f"{where} has the regex {pattern!r}, which this tokenizer "
                                 f"cannot use ({e})") from None
        _TRANSLATED[pattern] = compiled
    return compiled


def translate(pattern, where):
    """Oniguruma (Ruby syntax) -> Python re. Properties and \\s \\w \\d \\h become explicit
    classes; ^ and $ match at line boundaries as in Ruby; other features must mean the same in
    both or are refused."""
    return _Translation(pattern, where).run()


class _Translation:
    """One pattern, scanned left to right, written out in Python's syntax."""

    def __init__(self, pattern, where):
        self.pattern = pattern
        self.where = where
        self.out = []
        self.in_class = False       # inside [...]
        self.multiline = False      # the pattern has ^ or $, which match at line ends in Ruby

    def unsupported(self, what):
        return TokenizerError(f"{self.where} has the regex {self.pattern!r}, whose {what} this "
                              f"tokenizer does not support")

    def run(self):
        pattern, n = self.pattern, len(self.pattern)
        i = 0
        while i < n:
            c = pattern[i]
            if c == "\\":
                i = self._escape(i + 1)
            elif self.in_class:
                i = self._class_char(i)
            elif c == "[":
                i = self._open_class(i)
            elif c == "(" and pattern.startswith("(?", i):
                i = self._group(i)
            else:
                if c in "^$":
                    self.multiline = True
                self.out.append(c)
                i += 1
        if self.in_class:
            raise self.unsupported("unclosed character class")
        return ("(?m)" if self.multiline else "") + "".join(self.out)

    def _escape(self, i):
        """Write the escape whose letter is at i (after its backslash); return the index after
        it. \\p{..}, \\s, \\w, \\d and \\h become character classes (or, inside a class, their
        ranges)."""
        pattern = self.pattern
        if i >= len(pattern):
            raise self.unsupported("trailing backslash")
        e = pattern[i]
        i += 1
        if e in "pP":
            name, i = self._property_name(i)
            negate = e == "P"
            if name.startswith("^"):
                name, negate = name[1:], not negate
            ranges = _property(name, self.where)
        elif e.lower() in _CLASS_ESCAPES:
            ranges = _CLASS_ESCAPES[e.lower()](self.where)
            negate = e.isupper()
        else:
            return self._plain_escape(e, i)
        if self.in_class:
            self.out.append(_escape_ranges(_complement(ranges) if negate else ranges))
        else:
            self.out.append(("[^" if negate else "[") + _escape_ranges(ranges) + "]")
        return i

    def _property_name(self, i):
        """(name, index after it) of a property escape's name at i: {Name} or one letter."""
        pattern = self.pattern
        if i < len(pattern) and pattern[i] == "{":
            close = pattern.find("}", i)
            if close < 0:
                raise self.unsupported("unclosed \\p{")
            return pattern[i + 1:close], close + 1
        if i < len(pattern):
            return pattern[i], i + 1
        raise self.unsupported("bare \\p")

    def _plain_escape(self, e, i):
        """Write an escape that is not a class (\\x{..}, \\n, \\Z, ...); i is after it."""
        pattern = self.pattern
        if e == "x" and i < len(pattern) and pattern[i] == "{":
            close = pattern.find("}", i)
            try:
                code_point = int(pattern[i + 1:close], 16) if close > i else -1
            except ValueError:
                code_point = -1
            if not 0 <= code_point <= 0x10FFFF:
                raise self.unsupported("\\x{...} escape")
            self.out.append(f"\\U{code_point:08x}")
            return close + 1
        if e in ("x", "u"):
            self.out.append("\\" + e)
        elif e == "Z":
            # Oniguruma's \Z also matches before a final newline; Python's \Z only at the very
            # end. (?=\n?\Z) is Oniguruma's meaning.
            self.out.append(r"(?=\n?\Z)" if not self.in_class else "Z")
        elif e in _SAME_ESCAPES or not e.isascii():
            self.out.append("\\" + e)
        elif e == "z":
            self.out.append(r"\Z")      # the very end, which Python spells \Z
        else:
            raise self.unsupported(f"escape \\{e}")
        return i

    def _open_class(self, i):
        self.in_class = True
        self.out.append("[")
        i += 1
        # A ']' right after '[' or '[^' is a literal in both syntaxes.
        if self.pattern.startswith("^", i):
            self.out.append("^")
            i += 1
        if self.pattern.startswith("]", i):
            self.out.append(r"\]")
            i += 1
        return i

    def _class_char(self, i):
        c = self.pattern[i]
        if c == "[":
            raise self.unsupported("nested character class")
        if c == "&" and self.pattern.startswith("&&", i):
            raise self.unsupported("class intersection &&")
        if c == "]":
            self.in_class = False
        # The set operators & ~ | that Python warns about are escaped.
        self.out.append(c if c not in "&~|" else "\\" + c)
        return i + 1

    def _group(self, i):
        """Write the opening of a (? group at i: (?: (?= (?! (?<= (?<! (?> and scoped flags
        (?i: mean the same in Python 3.11+; named groups are spelt (?P<name> there."""
        pattern = self.pattern
        rest = pattern[i + 2:i + 4]
        if rest[:1] == "<" and rest[1:2] not in ("=", "!"):
            self.out.append("(?P<")
            return i + 3
        if rest[:1] not in (":", "=", "!", "<", ">", "i", "m", "x", "-"):
            raise self.unsupported(f"group {pattern[i:i + 4]!r}")
        if rest[:1] == "m" or pattern.startswith("(?-m", i):
            # Ruby's (?m) is Python's DOTALL, not MULTILINE.
            raise self.unsupported("(?m) flag")
        self.out.append("(")
        return i + 1
