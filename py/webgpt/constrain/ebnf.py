"""EBNF grammars for what JSON cannot say, in either of the two notations people bring:

GBNF (llama.cpp's; the output is rule `root`):

    root   ::= answer ("," ws answer)*
    answer ::= "yes" | "no" | [0-9]+
    ws     ::= [ \\t]{0,2}        # comments run to the end of the line

Lark-style (the output is rule `start`):

    start: answer ("," answer)*
    answer: "yes" | "no" | /[0-9]+/ | [ "maybe" ]

Both have literals in double quotes (`\\n \\t \\" \\\\ \\xHH \\uHHHH` escapes), rule names, `( )`,
`|`, and the quantifiers `* + ?`; GBNF adds character classes `[a-z]` / `[^"]`, `.` and
`{m}`, `{m,}`, `{m,n}`; Lark adds `/regex/` (regexp.py's subset), `[ ]` for optional, `~ n` and
`~ n..m`, single-quoted literals and a `?` or `!` before a rule's name (which change nothing
here). The notation is GBNF where the text has `::=`. Rules may refer to each other, and to
themselves. Refused with a sentence: Lark's directives (%import, %ignore, %declare) and
case-insensitive literals.
"""

import re

from ..errors import ConstraintError
from . import regexp
from .rules import Chars, Grammar, Ref, Repeat, alt, lit, seq

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<defines>::=)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<regex>/(?:[^/\\\n]|\\.)+/[a-z]*)
  | (?P<range>\.\.)
  | (?P<count>\{\s*\d+\s*(?:,\s*\d*\s*)?\})
  | (?P<name>[?!]?[A-Za-z_][A-Za-z0-9_.-]*)
  | (?P<number>\d+)
  | (?P<directive>%\w+)
  | (?P<punct>[()|*+?:\[\]~.])
""", re.VERBOSE)


# GBNF character classes hold any character ("[^\"\\]"), so there they are read as one token;
# in Lark, '[' ... ']' is an optional part.
_TOKEN_GBNF = re.compile(r"(?P<cls>\[(?:[^\]\\]|\\.)*\])|" + _TOKEN.pattern, re.VERBOSE)


def parse(text):
    """The Grammar of an EBNF text (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise ConstraintError("a grammar must be a non-empty text")
    return _Parser(text).grammar()


class _Parser:
    def __init__(self, text):
        self.gbnf = "::=" in text
        self.tokens = []
        at, line = 0, 1
        pattern = _TOKEN_GBNF if self.gbnf else _TOKEN
        while at < len(text):
            m = pattern.match(text, at)
            if m is None:
                raise ConstraintError(f"grammar line {line}: cannot read {text[at:at + 20]!r}")
            kind = m.lastgroup
            if kind == "directive":
                raise ConstraintError(f"grammar line {line}: the directive {m.group()} is not "
                                      f"supported; write the rules it would bring in")
            if kind != "space":
                self.tokens.append((kind, m.group(), line))
            line += m.group().count("\n")
            at = m.end()
        self.at = 0

    def fail(self, what):
        line = self.tokens[min(self.at, len(self.tokens) - 1)][2] if self.tokens else 1
        raise ConstraintError(f"grammar line {line}: {what}")

    def peek(self, offset=0):
        i = self.at + offset
        return self.tokens[i] if i < len(self.tokens) else (None, None, None)

    def take(self):
        token = self.peek()
        self.at += 1
        return token

    def at_rule_start(self):
        kind, value, _ = self.peek()
        nxt = self.peek(1)
        return kind == "name" and (nxt[0] == "defines" if self.gbnf else nxt[1] == ":")

    def grammar(self):
        rules = {}
        while self.at < len(self.tokens):
            if not self.at_rule_start():
                self.fail(f"expected a rule ('name {'::=' if self.gbnf else ':'} ...'), not "
                          f"{self.peek()[1]!r}")
            name = self.take()[1].lstrip("?!")
            self.take()
            if name in rules:
                self.fail(f"the rule {name!r} is defined twice")
            rules[name] = self.alternation()
        start = "root" if self.gbnf else "start"
        if start not in rules:
            raise ConstraintError(f"the grammar has no rule {start!r}, where the output starts")
        return Grammar(rules, start)

    def alternation(self):
        branches = [self.sequence()]
        while self.peek()[1] == "|":
            self.take()
            branches.append(self.sequence())
        return alt(*branches)

    def sequence(self):
        items = []
        while True:
            kind, value, _ = self.peek()
            if kind is None or value in ("|", ")", "]") or self.at_rule_start():
                return seq(*items)
            items.append(self.quantified(self.atom()))

    def quantified(self, item):
        while True:
            kind, value, _ = self.peek()
            if value in ("*", "+", "?"):
                self.take()
                item = Repeat(item, 1 if value == "+" else 0, 1 if value == "?" else None)
            elif kind == "count" and self.gbnf:
                self.take()
                parts = value.strip("{} ").split(",")
                lo = int(parts[0])
                hi = lo if len(parts) == 1 else (int(parts[1]) if parts[1].strip() else None)
                if hi is not None and hi < lo:
                    self.fail(f"the count {value} is backwards")
                item = Repeat(item, lo, hi)
            elif value == "~" and not self.gbnf:
                self.take()
                lo = self._number()
                hi = lo
                if self.peek()[0] == "range":
                    self.take()
                    hi = self._number()
                item = Repeat(item, lo, hi)
            else:
                return item

    def _number(self):
        kind, value, _ = self.take()
        if kind != "number":
            self.fail(f"expected a number, not {value!r}")
        return int(value)

    def atom(self):
        kind, value, _ = self.take()
        if kind == "cls":
            return Chars(regexp.class_ranges(value[1:]))
        if kind == "string":
            if value.startswith("'") and self.gbnf:
                self.fail("GBNF literals are in double quotes")
            return lit(_unescape(value[1:-1], self))
        if kind == "name":
            return Ref(value.lstrip("?!"))
        if value == "(":
            expr = self.alternation()
            if self.take()[1] != ")":
                self.fail("a '(' is not closed")
            return expr
        if value == "[":
            expr = self.alternation()
            if self.take()[1] != "]":
                self.fail("a '[' is not closed")
            return Repeat(expr, 0, 1)
        if value == "." and self.gbnf:
            return regexp.parse(".")
        if kind == "regex" and not self.gbnf:
            body, flags = value[1:].rsplit("/", 1)
            if flags:
                self.fail(f"regex flags ({flags}) are not supported")
            return regexp.parse(body, "the grammar's regular expression")
        self.fail(f"unexpected {value!r}")


def _unescape(body, parser):
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        simple = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", "[": "[",
                  "]": "]", "/": "/"}
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2:i + 2 + size]
            try:
                out.append(chr(int(digits, 16)))
            except ValueError:
                parser.fail(f"\\{nxt} needs {size} hex digits")
            i += 2 + size
        else:
            parser.fail(f"the escape \\{nxt} is not supported")
    return "".join(out)
