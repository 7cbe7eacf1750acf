"""Regular expressions (the subset Python's `re` and JSON Schema's `pattern` share) as Grammar
expressions: literals, `.`, classes `[a-z0-9_]` / `[^"]`, `\\d \\w \\s` and their negations,
escapes (`\\n`, `\\x41`, `\\u00e9`, `\\.`), groups `( )`, `(?: )`, `(?P<name> )`, alternation `|`,
the quantifiers `* + ? {m} {m,} {m,n}` (a lazy `?` after one changes nothing here: the
constraint is the set of texts, not how a matcher walks them), and `^` / `$` at the ends.
Refused with a sentence: look-around, back-references, word boundaries, inline flags.

The expression matches the whole text (as re.fullmatch); `.` is any character but a newline.
"""

from ..errors import ConstraintError
from .rules import Chars, MAX_CODE_POINT, Repeat, alt, negate, normalize, seq

DIGIT = ((0x30, 0x39),)
WORD = normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
SPACE = normalize([(0x09, 0x0D), (0x20, 0x20)])
CLASSES = {"d": DIGIT, "w": WORD, "s": SPACE}
SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0", "a": "\a"}
DOT = normalize([(0, 9), (11, MAX_CODE_POINT)])
MAX_REPEAT = 10000


def parse(pattern, where="the regular expression"):
    """The Grammar expression of `pattern` (a str), matched whole."""
    if not isinstance(pattern, str):
        raise ConstraintError(f"{where} must be a string, not {type(pattern).__name__}")
    return _Parser(pattern, where).parse()


def class_ranges(body, where="a character class"):
    """The ranges of a character class written after its '[' (GBNF's classes are re's)."""
    return _Parser(body, where).char_class()


class _Parser:
    def __init__(self, text, where):
        self.text, self.at, self.where = text, 0, where

    def fail(self, what):
        raise ConstraintError(f"{self.where} {self.text!r}: {what} (at character {self.at})")

    def peek(self):
        return self.text[self.at] if self.at < len(self.text) else None

    def take(self):
        ch = self.peek()
        self.at += 1
        return ch

    def parse(self):
        if self.peek() == "^":
            self.at += 1
        expr = self.alternation()
        if self.at < len(self.text):
            self.fail("an unmatched ')'")
        return expr

    def alternation(self):
        branches = [self.sequence()]
        while self.peek() == "|":
            self.at += 1
            branches.append(self.sequence())
        return alt(*branches)

    def sequence(self):
        items = []
        while self.peek() not in (None, "|", ")"):
            if self.peek() == "$" and self.at == len(self.text) - 1:
                self.at += 1
                break
            atom = self.atom()
            items.append(self.quantified(atom))
        return seq(*items)

    def quantified(self, atom):
        while True:
            ch = self.peek()
            if ch == "*":
                lo, hi = 0, None
            elif ch == "+":
                lo, hi = 1, None
            elif ch == "?":
                lo, hi = 0, 1
            elif ch == "{" and self._counted():
                lo, hi = self._counts()
            else:
                return atom
            if ch != "{":
                self.at += 1
            if self.peek() == "?":
                self.at += 1
            elif self.peek() == "+":
                self.fail("possessive quantifiers are not supported")
            atom = Repeat(atom, lo, hi)

    def _counted(self):
        end = self.text.find("}", self.at)
        body = self.text[self.at + 1:end] if end > 0 else ""
        parts = body.split(",")
        return (end > 0 and len(parts) <= 2 and parts[0].isdigit()
                and (len(parts) == 1 or parts[1] == "" or parts[1].isdigit()))

    def _counts(self):
        end = self.text.index("}", self.at)
        parts = self.text[self.at + 1:end].split(",")
        self.at = end + 1
        lo = int(parts[0])
        hi = lo if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
        if hi is not None and hi < lo:
            self.fail(f"the count {{{lo},{hi}}} is backwards")
        if max(lo, hi or 0) > MAX_REPEAT:
            self.fail(f"counts over {MAX_REPEAT} are not supported")
        return lo, hi

    def atom(self):
        ch = self.take()
        if ch == "(":
            if self.peek() == "?":
                self.at += 1
                kind = self.take()
                if kind == "P" and self.peek() == "<" or kind == "<" and self.peek() not in "=!":
                    self.at = self.text.index(">", self.at) + 1
                elif kind != ":":
                    self.fail("look-around and inline flags are not supported")
            expr = self.alternation()
            if self.take() != ")":
                self.fail("a '(' is not closed")
            return expr
        if ch == "[":
            return Chars(self.char_class())
        if ch == ".":
            return Chars(DOT)
        if ch == "\\":
            return Chars(self.escape(in_class=False))
        if ch in "*+?{" and not (ch == "{" and not self._counted_at(self.at - 1)):
            self.fail(f"nothing to repeat before {ch!r}")
        if ch in "^$":
            self.fail(f"{ch!r} is supported only at the ends")
        return Chars(((ord(ch), ord(ch)),))

    def _counted_at(self, at):
        saved, self.at = self.at, at
        try:
            return self._counted()
        finally:
            self.at = saved

    def escape(self, in_class):
        """The ranges of the escape after a backslash."""
        ch = self.take()
        if ch is None:
            self.fail("a trailing backslash")
        if ch.lower() in CLASSES:
            ranges = CLASSES[ch.lower()]
            return negate(ranges) if ch.isupper() else ranges
        if ch in SIMPLE_ESCAPES:
            return ((ord(SIMPLE_ESCAPES[ch]),) * 2,)
        if ch in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[ch]
            digits = self.text[self.at:self.at + size]
            if len(digits) != size or any(c not in "0123456789abcdefABCDEF" for c in digits):
                self.fail(f"\\{ch} needs {size} hex digits")
            self.at += size
            return ((int(digits, 16),) * 2,)
        if ch == "b" and in_class:
            return ((8, 8),)
        if ch.isalnum():
            self.fail(f"the escape \\{ch} is not supported (word boundaries, back-references)")
        return ((ord(ch), ord(ch)),)

    def char_class(self):
        negated = self.peek() == "^"
        if negated:
            self.at += 1
        ranges, first = [], True
        while True:
            ch = self.take()
            if ch is None:
                self.fail("a '[' is not closed")
            if ch == "]" and not first:
                break
            first = False
            if ch == "\\":
                got = self.escape(in_class=True)
            else:
                got = ((ord(ch), ord(ch)),)
            if (len(got) == 1 and got[0][0] == got[0][1] and self.peek() == "-"
                    and self.at + 1 < len(self.text) and self.text[self.at + 1] != "]"):
                self.at += 1
                end = self.take()
                hi = self.escape(in_class=True) if end == "\\" else ((ord(end),) * 2,)
                if len(hi) != 1 or hi[0][0] != hi[0][1] or hi[0][0] < got[0][0]:
                    self.fail("a bad range in a character class")
                got = ((got[0][0], hi[0][0]),)
            ranges.extend(got)
        return negate(ranges) if negated else normalize(ranges)
