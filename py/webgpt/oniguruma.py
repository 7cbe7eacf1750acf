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

Python's `re` backtracks, and a pattern built for it, such as (a+)+$, takes time exponential in
the text: 41 characters never end. The `tokenizers` library stops such a match with Oniguruma's
retry limit; `re` has none, and no time budget can be put around it (Pyodide has no timers
inside a synchronous call, and a match runs on in C). So the patterns whose backtracking can
explode are refused when the tokenizer loads (`check_backtracking`), in one sentence: a repeat
of something that itself repeats or can match nothing, a repeat over alternatives that can
start with the same character, a backreference, and three or more repeats in a row that can
take the same characters (a match that fails after them retries every split of a run between
them: the cube of its length). What passes costs at most the square of the longest run of
characters that two adjacent repeats share; every published pattern we know of passes
(GPT-2's, Llama 3's, Qwen's, GPT-4o's, Mistral's Tekken, DeepSeek's; tests/test_hf_tokenizer.py).
"""

import re
import unicodedata
from itertools import groupby
from re import _constants as sre
from re import _parser as sre_parse     # the parser re.compile itself uses

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
        check_backtracking(compiled.pattern, pattern, where)
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


# ---------------------------------------------------------------------------------------------
# Patterns whose backtracking can explode, found in the parsed pattern.

_ANY = [(0, 0x10FFFF)]
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)
# A repeat up to this many times counts as unbounded in a row of repeats ({1,3} does not).
_LONG_REPEAT = 16


def check_backtracking(python_pattern, pattern, where):
    """Raise TokenizerError when a translated pattern can backtrack without bound (see the
    module's docstring); `pattern` is the file's own, for the message."""
    problem = _Backtracking().sequence(sre_parse.parse(python_pattern), 0)
    if problem:
        raise TokenizerError(f"{where} has the regex {pattern!r}, which {problem}: matching it "
                             f"can backtrack for hours on a short text, so this tokenizer "
                             f"refuses it")


class _Backtracking:
    """Walks a parsed pattern; each method returns a problem (a phrase) or None."""

    def sequence(self, items, flags):
        """A sequence of items: each checked, then its rows of repeats."""
        for op, av in items:
            problem = self.item(op, av, flags)
            if problem:
                return problem
        row, longest, last = 0, 0, None
        for op, av in self.flat(items, flags):
            if op in _ZERO_WIDTH:
                continue
            chars, empty = self.chars([(op, av)], flags)
            if op in _REPEATS and av[0] != av[1] and av[1] > _LONG_REPEAT:
                row = row + 1 if last is not None and _overlap(last, chars) else 1
                last = chars
                longest = max(longest, row)
            elif not empty and (last is None or not _overlap(last, chars)):
                row, last = 0, None     # something the repeats before cannot take
        if longest >= 3:
            return f"has {longest} repeats in a row that can take the same characters"
        return None

    def item(self, op, av, flags):
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            return "has a backreference"
        if op == sre.SUBPATTERN:
            return self.sequence(av[3], (flags | av[1]) & ~av[2])
        if op == sre.ATOMIC_GROUP:
            return self.sequence(av, flags)
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            return self.sequence(av[1], flags)
        if op == sre.BRANCH:
            for branch in av[1]:
                problem = self.sequence(branch, flags)
                if problem:
                    return problem
            return None
        if op in _REPEATS:
            low, high, body = av
            if high > 1:
                if self.chars(body, flags)[1]:
                    return "repeats something that can match nothing"
                if self.has_variable_repeat(body):
                    return "repeats something that itself repeats (a nested quantifier)"
                if self.has_ambiguous_branch(body, flags):
                    return "repeats alternatives that can start with the same character"
            return self.sequence(body, flags)
        return None

    def flat(self, items, flags):
        """The items of a sequence with plain groups (no repeat on them) opened up."""
        for op, av in items:
            if op == sre.SUBPATTERN:
                yield from self.flat(av[3], (flags | av[1]) & ~av[2])
            else:
                yield op, av

    def has_variable_repeat(self, items):
        for op, av in items:
            if op in _REPEATS and av[0] != av[1]:
                return True
            if any(self.has_variable_repeat(sub) for sub in _children(op, av)):
                return True
        return False

    def has_ambiguous_branch(self, items, flags):
        for op, av in items:
            if op == sre.BRANCH:
                firsts = [self.first(branch, flags) for branch in av[1]]
                for i, (a, a_empty) in enumerate(firsts):
                    for b, b_empty in firsts[i + 1:]:
                        if a_empty or b_empty or _overlap(a, b):
                            return True
            if any(self.has_ambiguous_branch(sub, flags) for sub in _children(op, av)):
                return True
        return False

    def chars(self, items, flags):
        """(ranges of every character the items can take, whether they can match nothing)."""
        ranges, empty = [], True
        for op, av in items:
            sub, sub_empty = self.item_chars(op, av, flags)
            ranges += sub
            empty = empty and sub_empty
        return _merged(ranges), empty

    def first(self, items, flags):
        """(ranges of the characters a match of the items can start with, whether they can
        match nothing)."""
        ranges = []
        for op, av in items:
            if op in _ZERO_WIDTH:
                continue
            if op == sre.SUBPATTERN:
                sub, empty = self.first(av[3], (flags | av[1]) & ~av[2])
            elif op in _REPEATS:
                sub, empty = self.first(av[2], flags)
                empty = empty or av[0] == 0
            elif op == sre.BRANCH:
                parts = [self.first(branch, flags) for branch in av[1]]
                sub = [r for part, _ in parts for r in part]
                empty = any(e for _, e in parts)
            else:
                sub, empty = self.item_chars(op, av, flags)
            ranges += sub
            if not empty:
                return _merged(ranges), False
        return _merged(ranges), True

    def item_chars(self, op, av, flags):
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.IN):
            ranges = _class_ranges([(op, av)] if op != sre.IN else av)
            if flags & sre.SRE_FLAG_IGNORECASE:
                ranges = _merged(ranges + _case_variants(ranges))
            return ranges, False
        if op == sre.ANY:
            return _ANY, False
        if op in _ZERO_WIDTH:
            return [], True
        if op == sre.SUBPATTERN:
            return self.chars(av[3], (flags | av[1]) & ~av[2])
        if op == sre.ATOMIC_GROUP:
            return self.chars(av, flags)
        if op in _REPEATS:
            ranges, empty = self.chars(av[2], flags)
            return ranges, empty or av[0] == 0
        if op == sre.BRANCH:
            parts = [self.chars(branch, flags) for branch in av[1]]
            return [r for part, _ in parts for r in part], any(e for _, e in parts)
        return _ANY, True       # anything else: assume the worst


def _children(op, av):
    """The sub-sequences of an item."""
    if op == sre.SUBPATTERN:
        return [av[3]]
    if op in _REPEATS:
        return [av[2]]
    if op == sre.BRANCH:
        return av[1]
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [av[1]]
    if op == sre.ATOMIC_GROUP:
        return [av]
    return []


def _class_ranges(items):
    """Code point ranges of a character class's items (a LITERAL alone is a class of one)."""
    ranges, negate = [], False
    for op, av in items:
        if op == sre.NEGATE:
            negate = True
        elif op == sre.LITERAL:
            ranges.append((av, av))
        elif op == sre.NOT_LITERAL:
            ranges += _complement([(av, av)])
        elif op == sre.RANGE:
            ranges.append(av)
        else:       # a category (\d inside a class): the translation writes none; any
            ranges += _ANY
    ranges = _merged(ranges)
    return _complement(ranges) if negate else ranges


def _case_variants(ranges):
    """The other cases of the letters in `ranges` (for (?i:...)); only small ranges are
    looked at one by one, a large one already holds most letters of both cases."""
    out = []
    for a, b in ranges:
        if b - a > 256:
            continue
        for cp in range(a, b + 1):
            for other in {chr(cp).lower(), chr(cp).upper()}:
                if len(other) == 1:
                    out.append((ord(other), ord(other)))
    return out


def _overlap(a, b):
    """Whether two merged range lists share a code point."""
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False
