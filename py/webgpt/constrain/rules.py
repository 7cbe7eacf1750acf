"""The grammar every constraint compiles to: JSON schemas (schema.py), regular
expressions (regexp.py) and EBNF grammars (ebnf.py) all become a Grammar of these few
expressions, which automaton.py runs byte by byte.

    Lit(data)              these bytes (UTF-8 text)
    Chars(ranges)          one character whose code point is in one of the (lo, hi) ranges
    Seq(items), Alt(items) one after another; one of them
    Repeat(item, lo, hi)   item lo to hi times (hi None: no limit)
    Ref(name)              the rule `name` (rules may refer to themselves: recursion)
    Special(text)          a special token of the vocabulary, by its text (a tool call's
                           <tool_call> where it is one token), else the text itself

Characters are code points; automaton.py turns a Chars into the UTF-8 byte sequences of its
ranges, so a character split across two tokens (multi-byte UTF-8) is matched byte by byte.
"""

import collections

from ..errors import ConstraintError

Lit = collections.namedtuple("Lit", "data")
Chars = collections.namedtuple("Chars", "ranges")
Seq = collections.namedtuple("Seq", "items")
Alt = collections.namedtuple("Alt", "items")
Repeat = collections.namedtuple("Repeat", "item lo hi")
Ref = collections.namedtuple("Ref", "name")
Special = collections.namedtuple("Special", "text")

MAX_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
EMPTY = Seq(())


class Grammar:
    """Rules {name: expression} and the rule the output is (`start`)."""

    def __init__(self, rules, start):
        self.rules, self.start = dict(rules), start
        missing = sorted({r.name for e in self.rules.values() for r in _refs(e)}
                         - set(self.rules))
        if start not in self.rules:
            missing.insert(0, start)
        if missing:
            raise ConstraintError(f"the grammar has no rule {missing[0]!r}")
        self._check_productive()

    def _check_productive(self):
        """Every rule must be able to end: a rule that can only recurse (a schema whose
        required property is itself, forever) matches nothing, so no output could be made."""
        done = set()
        changed = True
        while changed:
            changed = False
            for name, expr in self.rules.items():
                if name not in done and _ends(expr, done):
                    done.add(name)
                    changed = True
        if self.start not in done:
            raise ConstraintError("no output can satisfy this constraint: it can only recurse "
                                  "forever, or allows nothing")


def _refs(expr):
    if isinstance(expr, Ref):
        yield expr
    elif isinstance(expr, (Seq, Alt)):
        for item in expr.items:
            yield from _refs(item)
    elif isinstance(expr, Repeat):
        yield from _refs(expr.item)


def _ends(expr, done):
    """Whether `expr` matches some finite text, given the rules in `done` that do."""
    if isinstance(expr, (Lit, Special)):
        return True
    if isinstance(expr, Chars):
        return bool(expr.ranges)
    if isinstance(expr, Ref):
        return expr.name in done
    if isinstance(expr, Seq):
        return all(_ends(item, done) for item in expr.items)
    if isinstance(expr, Alt):
        return any(_ends(item, done) for item in expr.items)
    return expr.lo == 0 or _ends(expr.item, done)     # Repeat


# ---------------------------------------------------------------- helpers for the compilers

def lit(text):
    return Lit(text.encode("utf-8"))


def seq(*items):
    flat = []
    for item in items:
        if isinstance(item, Seq):
            flat.extend(item.items)
        elif item is not None:
            flat.append(item)
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))


def alt(*items):
    items = tuple(items)
    if not items:
        return Alt(())       # matches nothing
    return items[0] if len(items) == 1 else Alt(items)


def optional(item):
    return Repeat(item, 0, 1)


def chars(*ranges):
    """Chars of (lo, hi) code point ranges or single characters ("a", ("a", "z"))."""
    out = []
    for r in ranges:
        if isinstance(r, str):
            out.append((ord(r), ord(r)))
        else:
            lo, hi = r
            out.append((ord(lo) if isinstance(lo, str) else lo,
                        ord(hi) if isinstance(hi, str) else hi))
    return Chars(normalize(out))


def normalize(ranges):
    """Sorted, merged ranges, surrogates left out (they are not characters in UTF-8)."""
    out = []
    for lo, hi in sorted(ranges):
        for a, b in ((lo, min(hi, SURROGATES[0] - 1)), (max(lo, SURROGATES[1] + 1), hi)):
            if a > b:
                continue
            if out and a <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
    return tuple(out)


def negate(ranges):
    """The characters not in `ranges`."""
    out, at = [], 0
    for lo, hi in normalize(ranges):
        if lo > at:
            out.append((at, lo - 1))
        at = hi + 1
    if at <= MAX_CODE_POINT:
        out.append((at, MAX_CODE_POINT))
    return normalize(out)


def intersect(a, b):
    out = []
    for lo, hi in a:
        for lo2, hi2 in b:
            if max(lo, lo2) <= min(hi, hi2):
                out.append((max(lo, lo2), min(hi, hi2)))
    return normalize(out)


ANY_CHAR = Chars(normalize([(0, MAX_CODE_POINT)]))
