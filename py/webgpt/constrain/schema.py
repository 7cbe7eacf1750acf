"""JSON Schema to Grammar: the output is one JSON value that validates against the schema.

Supported (everything else is refused with a sentence naming the keyword):
    type (one or a list), enum, const, anyOf, oneOf (as anyOf), allOf of one schema,
    $ref within the document ("#", "#/$defs/...", "#/definitions/...", recursion included),
    object: properties, required, additionalProperties (false, true or a schema: an object
        without properties is then a map of that schema; with properties, only the listed
        ones are generated, which an open schema accepts too),
    array: items, prefixItems, minItems, maxItems,
    string: minLength, maxLength, pattern (regexp.py's subset; not with the lengths), format
        (date, time, date-time, uuid, email, ipv4),
    integer: minimum, maximum, exclusiveMinimum, exclusiveMaximum (exactly),
    number: the same bounds when they are whole numbers (a fraction beside an exclusive
        bound is generated from the integers inside it: a subset of the valid numbers),
    and the annotations title, description, default, examples, $schema, $id, $comment,
    deprecated, readOnly, writeOnly.
Refused: not, if/then/else, patternProperties, propertyNames, dependent*, unevaluated*,
    contains, uniqueItems: true, multipleOf, min/maxProperties, fractional bounds.

What is generated, beyond validity: properties in the schema's order (required ones always,
optional ones or not); numbers of at most 16 digits before and 16 after the point and an
exponent of at most 2 digits (so a number ends); between JSON tokens a blank or a newline with
up to 16 spaces of indent after "{", "[" and "," and before "}" and "]", a space after ":",
no more (free whitespace lets a model spend its tokens on blanks); a tool call's arguments are
spaced exactly as json.dumps spaces them, as the chat templates render past calls (DUMPS).
"""

import json
import math

from ..errors import ConstraintError
from . import regexp
from .rules import (Alt, Chars, EMPTY, Grammar, Lit, Ref, Repeat, Seq, alt, chars, intersect,
                      lit, normalize, optional, seq)

MAX_INDENT = 16
MAX_INT_DIGITS = 16
MAX_FRACTION_DIGITS = 16
MAX_EXPONENT_DIGITS = 2

# Blanks where a pretty-printer puts them: after "{", "[" and ",", and before "}" and "]", a
# space or a newline with its indent; after ":" a space. Nowhere else.
WS = optional(alt(lit(" "), seq(lit("\n"), Repeat(lit(" "), 0, MAX_INDENT))))
PRETTY = (WS, seq(lit(","), WS), seq(lit(":"), optional(lit(" "))))
# As json.dumps writes (and chat templates' tojson renders a tool call's arguments): ", " and
# ": ", no other blank.
DUMPS = (EMPTY, lit(", "), lit(": "))
DIGIT = chars(("0", "9"))
NONZERO = chars(("1", "9"))
HEX = chars(("0", "9"), ("a", "f"), ("A", "F"))
# A character of a string as JSON writes it: itself, or an escape. Controls only escaped;
# \u escapes of a lone surrogate are left out (no valid text holds one).
PLAIN = normalize([(0x20, 0x21), (0x23, 0x5B), (0x5D, 0x10FFFF)])
NOT_SURROGATE_LEAD = chars(("0", "9"), ("a", "c"), ("A", "C"), "e", "f", "E", "F")
UNICODE_ESCAPE = seq(lit("u"), alt(seq(NOT_SURROGATE_LEAD, HEX, HEX, HEX),
                                   seq(chars("d", "D"), chars(("0", "7")), HEX, HEX)))
STRING_CHAR = alt(Chars(PLAIN), seq(lit("\\"), alt(chars('"', "\\", "/", "b", "f", "n", "r", "t"),
                                                   UNICODE_ESCAPE)))
SHORT_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r",
                 0x09: "\\t"}

ANNOTATIONS = frozenset(("title", "description", "default", "examples", "$schema", "$id",
                         "$comment", "deprecated", "readOnly", "writeOnly", "$defs",
                         "definitions"))
KEYWORDS = frozenset(("type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties",
                      "required", "additionalProperties", "items", "prefixItems", "minItems",
                      "maxItems", "minLength", "maxLength", "pattern", "format", "minimum",
                      "maximum", "exclusiveMinimum", "exclusiveMaximum")) | ANNOTATIONS
TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")

FORMATS = {
    "date": r"\d{4}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)"
            r"|02-(0[1-9]|1\d|2[0-8]))",
    "time": r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)",
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "email": r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,4}",
    "ipv4": r"((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)",
}
FORMATS["date-time"] = FORMATS["date"] + "T" + FORMATS["time"]


def schema_grammar(schema):
    """The Grammar of the JSON texts that validate against `schema` (a dict or a bool)."""
    rules = {}
    rules["root"] = schema_rules(schema, rules, "s_")
    return Grammar(rules, "root")


def schema_rules(schema, rules, prefix, blanks=PRETTY):
    """The expression of a JSON value valid against `schema`, its rules added to `rules` under
    names starting with `prefix` (several schemas in one grammar: a tool call's). `blanks`:
    PRETTY, or DUMPS for the exact spacing of json.dumps."""
    return _Compiler(schema, rules, prefix, blanks).value(schema, "the schema")


def json_object_grammar():
    """Any JSON object (response_format {"type": "json_object"})."""
    return schema_grammar({"type": "object", "additionalProperties": True})


def literal_choice(texts):
    """One of `texts` (str), with common prefixes shared: a huge enum's first state waits on
    a few first bytes, not on every value."""
    datas = sorted({t.encode("utf-8") for t in texts})
    return _trie(datas, 0)


def _trie(datas, depth):
    ends = any(len(d) == depth for d in datas)
    groups = {}
    for d in datas:
        if len(d) > depth:
            groups.setdefault(d[depth], []).append(d)
    branches = []
    for first, group in sorted(groups.items()):
        common = depth + 1      # the bytes every text of the group shares
        while all(len(d) > common for d in group) and len({d[common] for d in group}) == 1:
            common += 1
        branches.append(seq(Lit(group[0][depth:common]), _trie(group, common)))
    if ends:
        branches.append(EMPTY)
    return alt(*branches) if len(branches) != 1 else branches[0]


def _json_text(expr):
    """A regular expression over a string's characters as the characters JSON writes: '"',
    '\\' and controls become their escapes."""
    if isinstance(expr, Chars):
        plain = intersect(expr.ranges, PLAIN)
        out = [Chars(plain)] if plain else []
        for lo, hi in expr.ranges:
            for c in range(lo, min(hi, 0x7F) + 1):
                if c in SHORT_ESCAPES or c < 0x20:
                    out.append(lit(SHORT_ESCAPES.get(c, f"\\u{c:04x}")))
        return alt(*out)
    if isinstance(expr, Seq):
        return Seq(tuple(_json_text(e) for e in expr.items))
    if isinstance(expr, Alt):
        return Alt(tuple(_json_text(e) for e in expr.items))
    if isinstance(expr, Repeat):
        return Repeat(_json_text(expr.item), expr.lo, expr.hi)
    return expr


def _digits_range(x, y):
    """Digit strings of one length from x to y (strings, x <= y)."""
    if not x:
        return EMPTY
    if x == "0" * len(x) and y == "9" * len(y):
        return Repeat(DIGIT, len(x), len(x))
    if x[0] == y[0]:
        return seq(lit(x[0]), _digits_range(x[1:], y[1:]))
    n = len(x) - 1
    parts = [seq(lit(x[0]), _digits_range(x[1:], "9" * n))]
    if int(y[0]) - int(x[0]) > 1:
        parts.append(seq(chars((chr(ord(x[0]) + 1), chr(ord(y[0]) - 1))), Repeat(DIGIT, n, n)))
    parts.append(seq(lit(y[0]), _digits_range("0" * n, y[1:])))
    return alt(*parts)


def natural_range(lo, hi):
    """Decimal numerals without leading zeros of the integers lo..hi (0 <= lo; hi None: up
    to MAX_INT_DIGITS digits)."""
    top = 10 ** MAX_INT_DIGITS - 1 if hi is None else hi
    parts = []
    for length in range(len(str(lo)), len(str(top)) + 1):
        a = max(lo, 10 ** (length - 1) if length > 1 else 0)
        b = min(top, 10 ** length - 1)
        if a <= b:
            parts.append(_digits_range(str(a), str(b)))
    return alt(*parts)


def integer_range(lo, hi):
    """Integers lo..hi as JSON writes them (None: unbounded on that side)."""
    parts = []
    if lo is None or lo < 0:            # the negatives: "-" and a magnitude >= 1
        parts.append(seq(lit("-"), natural_range(max(1, -hi) if hi is not None and hi < 0
                                                 else 1, None if lo is None else -lo)))
    if hi is None or hi >= 0:
        parts.append(natural_range(max(lo or 0, 0), hi))
    return alt(*parts)


def _bound(schema, name, where):
    v = schema.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConstraintError(f"{where}: {name} must be a number, not {v!r}")
    return v


class _Compiler:
    def __init__(self, root, rules, prefix, blanks):
        self.root, self.rules, self.prefix = root, rules, prefix
        self.ws, self.comma, self.colon = blanks   # inside brackets, after ",", after ":"
        self.by_pointer = {}

    def rule(self, name, make):
        """Ref to rule `name`, made by make() on first use (recursion sees the Ref)."""
        name = self.prefix + name
        if name not in self.rules:
            self.rules[name] = EMPTY
            self.rules[name] = make()
        return Ref(name)

    def any_value(self):
        return self.rule("value", lambda: alt(
            self.rule("object", lambda: self.object({"additionalProperties": True}, "a value")),
            self.rule("array", lambda: self.array({}, "a value")),
            self.string({}, "a value"), self.number({}, "a value", integer=False),
            lit("true"), lit("false"), lit("null")))

    def value(self, schema, where):
        if schema is True or schema == {}:
            return self.any_value()
        if schema is False:
            return alt()
        if not isinstance(schema, dict):
            raise ConstraintError(f"{where} must be a JSON schema (an object), not {schema!r}")
        unknown = sorted(set(schema) - KEYWORDS)
        if unknown:
            raise ConstraintError(f"{where}: the keyword {unknown[0]!r} is not supported")
        if "$ref" in schema:
            return self.ref(schema, where)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.any_of(schema, key, where)
        if "allOf" in schema:
            parts = schema["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise ConstraintError(f"{where}: allOf is supported with one schema only")
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.value({**rest, **parts[0]} if isinstance(parts[0], dict) else parts[0],
                              where)
        if "const" in schema:
            return self.literals([schema["const"]], where)
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise ConstraintError(f"{where}: enum must be a non-empty list")
            return self.literals(values, where)
        types = schema.get("type")
        if types is None:
            types = [t for t, keys in (("object", ("properties", "required",
                                                   "additionalProperties")),
                                       ("array", ("items", "prefixItems", "minItems",
                                                  "maxItems")),
                                       ("string", ("minLength", "maxLength", "pattern",
                                                   "format")))
                     if any(k in schema for k in keys)]
            if not types:
                return self.any_value()
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not types or any(t not in TYPES for t in types):
            raise ConstraintError(f"{where}: type must be one of {', '.join(TYPES)} (or a list "
                                  f"of them), not {schema.get('type')!r}")
        return alt(*(self.typed(t, schema, where) for t in dict.fromkeys(types)))

    def typed(self, kind, schema, where):
        if kind == "object":
            return self.object(schema, where)
        if kind == "array":
            return self.array(schema, where)
        if kind == "string":
            return self.string(schema, where)
        if kind in ("integer", "number"):
            return self.number(schema, where, integer=kind == "integer")
        if kind == "boolean":
            return alt(lit("true"), lit("false"))
        return lit("null")

    def literals(self, values, where):
        texts = []
        for v in values:
            try:
                texts.append(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
            except (TypeError, ValueError):
                raise ConstraintError(f"{where}: {v!r} is not a JSON value") from None
        return literal_choice(texts)

    def ref(self, schema, where):
        pointer = schema["$ref"]
        if not isinstance(pointer, str) or not pointer.startswith("#"):
            raise ConstraintError(f"{where}: $ref {pointer!r} is not supported (only references "
                                  f"within the schema, starting with '#')")
        target = self.root
        for part in [p for p in pointer[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise ConstraintError(f"{where}: $ref {pointer!r} points to nothing")
        name = self.by_pointer.setdefault(pointer, f"ref{len(self.by_pointer)}")
        return self.rule(name, lambda: self.value(target, pointer))

    def any_of(self, schema, key, where):
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            raise ConstraintError(f"{where}: {key} must be a non-empty list of schemas")
        rest = {k: v for k, v in schema.items() if k != key and k not in ANNOTATIONS}
        if rest:
            raise ConstraintError(f"{where}: {key} beside other keywords ({', '.join(rest)}) "
                                  f"is not supported; put them in each branch")
        return alt(*(self.value(b, f"{where} {key}[{i}]") for i, b in enumerate(branches)))

    def object(self, schema, where):
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", False if properties else True)
        if not isinstance(properties, dict) or not isinstance(required, list):
            raise ConstraintError(f"{where}: properties must be an object and required a list")
        for name in required:
            if name not in properties:
                raise ConstraintError(f"{where}: required names {name!r}, which properties does "
                                      f"not define")
        if not properties and extra is not False:
            pair = seq(self.string({}, where), self.colon,
                       self.value(extra, f"{where} additionalProperties"))
            members = optional(seq(pair, Repeat(seq(self.comma, pair), 0, None)))
            return seq(lit("{"), self.ws, members, self.ws, lit("}"))
        entries = [(json.dumps(k, ensure_ascii=False), self.value(v, f"{where}.{k}"), k in required)
                   for k, v in properties.items()]
        base = f"object{len(self.rules)}"   # a name no other object of this schema has

        def rest(i, first):
            """The members from property i on; `first`: none written before them."""
            if i == len(entries):
                return EMPTY
            key, value, needed = entries[i]
            member = seq(None if first else self.comma, Lit(key.encode("utf-8")), self.colon,
                         value)
            with_it = seq(member, rest_ref(i + 1, False))
            return with_it if needed else alt(with_it, rest_ref(i + 1, first))

        def rest_ref(i, first):
            if all(needed for _, _, needed in entries[i:]):
                return rest(i, first)       # nothing optional: a plain sequence
            return self.rule(f"{base}_{i}_{int(first)}", lambda: rest(i, first))

        return seq(lit("{"), self.ws, rest_ref(0, True), self.ws, lit("}"))

    def array(self, schema, where):
        lo = schema.get("minItems", 0)
        hi = schema.get("maxItems")
        for name, v in (("minItems", lo), ("maxItems", hi)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConstraintError(f"{where}: {name} must be a whole number >= 0")
        if hi is not None and hi < lo:
            raise ConstraintError(f"{where}: minItems {lo} is more than maxItems {hi}: no array "
                                  f"can have both")
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", True)
        if not isinstance(prefix, list):
            raise ConstraintError(f"{where}: prefixItems must be a list of schemas")
        if hi is not None:
            prefix = prefix[:hi]
        values = [self.value(s, f"{where}[{i}]") for i, s in enumerate(prefix)]
        if items is False and lo > len(prefix):
            raise ConstraintError(f"{where}: minItems {lo} is more than the {len(prefix)} items "
                                  f"allowed")
        item = None if items is False else self.value(items, f"{where} items")
        parts = []
        for i, v in enumerate(values):
            parts.append(seq(self.comma if i else None, v))
        more_lo = max(0, lo - len(values))
        more_hi = None if hi is None else hi - len(values)
        body = seq(*parts)
        if item is not None and more_hi != 0:
            if values:
                body = seq(body, Repeat(seq(self.comma, item), more_lo, more_hi))
            else:
                tail = Repeat(seq(self.comma, item), max(0, more_lo - 1),
                              None if more_hi is None else more_hi - 1)
                body = seq(item, tail) if more_lo else optional(seq(item, tail))
        return seq(lit("["), self.ws, body, self.ws, lit("]"))

    def string(self, schema, where):
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength")
        for name, v in (("minLength", lo), ("maxLength", hi)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConstraintError(f"{where}: {name} must be a whole number >= 0")
        if hi is not None and hi < lo:
            raise ConstraintError(f"{where}: minLength {lo} is more than maxLength {hi}: no "
                                  f"string can have both")
        pattern, fmt = schema.get("pattern"), schema.get("format")
        if pattern is not None or fmt is not None:
            if "minLength" in schema or "maxLength" in schema:
                raise ConstraintError(f"{where}: pattern or format with minLength/maxLength is "
                                      f"not supported")
            if pattern is not None and fmt is not None:
                raise ConstraintError(f"{where}: pattern with format is not supported")
            if fmt is not None and fmt not in FORMATS:
                raise ConstraintError(f"{where}: the format {fmt!r} is not supported (supported: "
                                      f"{', '.join(sorted(FORMATS))})")
            body = _json_text(regexp.parse(FORMATS[fmt] if fmt else _searched(pattern),
                                          f"{where}: pattern"))
        else:
            body = Repeat(STRING_CHAR, lo, hi)
        return seq(lit('"'), body, lit('"'))

    def number(self, schema, where, integer):
        lo, hi = (_bound(schema, k, where) for k in ("minimum", "maximum"))
        xlo, xhi = (_bound(schema, k, where) for k in ("exclusiveMinimum", "exclusiveMaximum"))
        if xlo is not None and (lo is None or xlo >= lo):
            lo, lo_open = xlo, True
        else:
            lo_open = False
        if xhi is not None and (hi is None or xhi <= hi):
            hi, hi_open = xhi, True
        else:
            hi_open = False
        if integer:
            ilo = None if lo is None else math.floor(lo) + 1 if lo_open and lo == math.floor(lo) \
                else math.ceil(lo)
            ihi = None if hi is None else math.ceil(hi) - 1 if hi_open and hi == math.ceil(hi) \
                else math.floor(hi)
            if ilo is not None and ihi is not None and ilo > ihi:
                raise ConstraintError(f"{where}: no integer lies within its bounds")
            return integer_range(ilo, ihi)
        fraction = seq(lit("."), Repeat(DIGIT, 1, MAX_FRACTION_DIGITS))
        if lo is None and hi is None:
            exponent = seq(chars("e", "E"), optional(chars("+", "-")),
                           Repeat(DIGIT, 1, MAX_EXPONENT_DIGITS))
            return seq(integer_range(None, None), optional(fraction), optional(exponent))
        for v in (lo, hi):
            if v is not None and v != math.floor(v):
                raise ConstraintError(f"{where}: bounds of a number must be whole numbers here "
                                      f"(not {v!r})")
        lo = None if lo is None else int(lo)
        hi = None if hi is None else int(hi)
        whole_lo = None if lo is None else lo + lo_open
        whole_hi = None if hi is None else hi - hi_open
        if whole_lo is not None and whole_hi is not None and whole_lo > whole_hi:
            raise ConstraintError(f"{where}: no number of the supported forms lies within its "
                                  f"bounds")
        parts = [integer_range(whole_lo, whole_hi)]
        # i.ddd lies in [i, i + 1): inside when i >= lo (+1 if open) and i + 1 <= hi.
        plo, phi = max(0, whole_lo or 0), None if hi is None else hi - 1
        if phi is None or plo <= phi:
            parts.append(seq(natural_range(plo, phi), fraction))
        # -m.ddd lies in (-(m + 1), -m]: inside when m <= -lo - 1 and -m <= hi (< if open).
        if lo is None or lo < 0:
            nlo = max(0, -hi + hi_open) if hi is not None else 0
            nhi = None if lo is None else -lo - 1
            if nhi is None or nlo <= nhi:
                parts.append(seq(lit("-"), natural_range(nlo, nhi), fraction))
        return alt(*parts)


def _searched(pattern):
    """A JSON Schema pattern is searched for, not matched whole: unanchored ends match
    anything."""
    if not isinstance(pattern, str):
        raise ConstraintError(f"pattern must be a string, not {pattern!r}")
    start = "" if pattern.startswith("^") else "(?:.|\n)*"
    end = "" if pattern.endswith("$") and not pattern.endswith("\\$") else "(?:.|\n)*"
    return f"{start}(?:{pattern.lstrip('^')[:-1] if end == '' else pattern.lstrip('^')}){end}"
