"""Constrained decoding: output that always parses, token by token.

    c = webgpt.constrain.json_schema(model, {"type": "object", ...})   # or regex(), grammar()
    text = await model.generate(prompt, constraint=c.fresh())          # any generate/stream call

At every step the model's `mask(ids)` hook asks which tokens may come next; the others get
probability 0 on the GPU (decode.Controls' constraint), greedy or sampled. The mask is made on
the CPU while the GPU runs that step's forward pass, so its cost is the constraint's overhead.

    rules.py        the grammar every constraint compiles to (Lit, Chars, Seq, Alt, Repeat,
                    Ref, Special)
    schema.py       JSON Schema -> grammar (the supported keywords are listed there)
    regexp.py       regular expressions -> grammar
    ebnf.py         GBNF (llama.cpp) and Lark-style EBNF grammars -> grammar
    automaton.py    a grammar run byte by byte: a pushdown automaton determinized as it goes
    vocab.py        the tokenizer's tokens as a trie, and the masks of automaton states

Why written here and not taken from a library: the fast ones (XGrammar, llguidance,
outlines-core) are Rust or C++ with no wheel for the page's Pyodide, and the pure-Python ones
bring what the page does not ship (lm-format-enforcer needs pydantic, transformers-cfg torch)
and work on decoded strings rather than the tokens' bytes. This package is the standard
library only; it keeps per model what the walk over the vocabulary needs (vocab.py) and per
schema the states and masks already computed (automaton.py), so a state seen before costs a
look-up. The tests compare its token sets and greedy output with lm-format-enforcer's.
"""

import collections
import json

from ..errors import ConstraintError
from . import ebnf, regexp, schema as _schema
from .automaton import DEAD, Automaton, Program
from .rules import Grammar
from .vocab import Vocabulary

__all__ = ["Constraint", "ConstraintError", "json_schema", "json_object", "regex", "grammar",
           "for_grammar"]

# Compiled automata per vocabulary, by the constraint's text: a request that repeats a schema
# finds its states and masks made.
MAX_CACHED = 32
_CACHE = collections.OrderedDict()


class Constraint:
    """The tokens allowed after each prefix of an output: `mask(ids)` for Controls.

    It follows one generation at a time: it remembers the state its output reached (the first
    call's ids are the prompt; each later call adds the tokens generated since). Ids that do
    not extend the last ones it saw are a new generation's prompt: it starts again, so one
    Constraint may serve generate() calls one after another. `fresh()` is another, for
    generations that run side by side (the API's n choices), sharing the compiled automaton
    and its masks. `stop_ids` (the model's end-of-turn tokens) are allowed only where the
    output is complete.
    """

    def __init__(self, automaton, vocab, stop_ids, tokenizer):
        self.automaton, self.vocab, self.tokenizer = automaton, vocab, tokenizer
        self.stop_ids = tuple(stop_ids)
        self.state = automaton.start
        self.seen = None       # ids consumed so far (the prompt's, then each token's)
        self.last = None       # the last of them
        self.stopped = False

    def fresh(self):
        return Constraint(self.automaton, self.vocab, self.stop_ids, self.tokenizer)

    @property
    def complete(self):
        """Whether the output so far is a whole one (may end here)."""
        return self.automaton.accepting(self.state)

    def feed(self, token):
        """Move past one generated token; ValueError if it is not allowed here."""
        a = self.automaton
        if token in self.stop_ids:
            if not a.accepting(self.state):
                raise ValueError(f"token {token} ends the output before it is complete")
            self.stopped = True
            return
        after = a.symbols(self.state).get(token)
        if after is None:
            after = DEAD if token in self.vocab.special_ids else a.advance(
                self.state, self.tokenizer.token_bytes(token))
        if after == DEAD:
            raise ValueError(f"token {token} ({self.tokenizer.token_bytes(token)!r}) cannot "
                             f"come here")
        self.state = after

    def resume(self, state, ids):
        """Go on from automaton `state`, reached at the end of `ids` (a tool call whose start
        came in free text)."""
        self.state, self.seen, self.last, self.stopped = state, len(ids), ids[-1], False

    def mask(self, ids):
        """The allowed next tokens after `ids` (prompt + generated so far), as mask bytes."""
        if self.seen is None or len(ids) < self.seen or ids[self.seen - 1] != self.last:
            self.state, self.seen, self.stopped = self.automaton.start, len(ids), False
        for token in ids[self.seen:]:
            self.feed(token)
        self.seen, self.last = len(ids), ids[-1]
        return self.allowed()

    def allowed(self):
        """The mask of the current state, stop tokens set where the output may end."""
        if self.stopped:
            return self._only_stops()
        bits = self.vocab.mask(self.automaton, self.state)
        stops = self.stop_ids
        if stops:
            end = self.automaton.accepting(self.state)
            bits = bytearray(bits)
            for t in stops:
                if end:
                    bits[t >> 3] |= 1 << (t & 7)
                else:
                    bits[t >> 3] &= ~(1 << (t & 7)) & 0xFF
        return bytes(bits)

    def _only_stops(self):
        bits = bytearray(self.vocab.nbytes)
        for t in self.stop_ids:
            bits[t >> 3] |= 1 << (t & 7)
        return bytes(bits)



def for_grammar(tokenizer, make_grammar, stop_ids=(), key=None):
    """A Constraint of the Grammar `make_grammar()` for `tokenizer`; `key` (hashable) caches
    its automaton, so a key seen before compiles nothing."""
    vocab = Vocabulary.of(tokenizer)
    cache_key = (id(vocab), key) if key is not None else None
    automaton = _CACHE.get(cache_key) if cache_key else None
    if automaton is None or automaton[0] is not vocab:
        automaton = (vocab, Automaton(Program(make_grammar(), vocab.special)))
        if cache_key:
            _CACHE[cache_key] = automaton
            while len(_CACHE) > MAX_CACHED:
                _CACHE.popitem(last=False)
    elif cache_key:
        _CACHE.move_to_end(cache_key)
    return Constraint(automaton[1], vocab, stop_ids, tokenizer)


def _tokenizer_and_stops(model_or_tokenizer, stop_ids):
    tokenizer = getattr(model_or_tokenizer, "tokenizer", model_or_tokenizer)
    if stop_ids is None:
        stopping = getattr(model_or_tokenizer, "stopping_ids", None)
        stop_ids = sorted(stopping()) if stopping else (
            [tokenizer.eot_id] if getattr(tokenizer, "eot_id", None) is not None else [])
    return tokenizer, stop_ids


def json_schema(model, schema, stop_ids=None):
    """A Constraint: one JSON value valid against `schema` (schema.py lists the
    keywords). `model`: a Model or a tokenizer; `stop_ids`: the ids that end the output
    (default: the model's end-of-turn ids)."""
    tokenizer, stop_ids = _tokenizer_and_stops(model, stop_ids)
    try:
        key = ("schema", json.dumps(schema, sort_keys=True))
    except (TypeError, ValueError):
        raise ConstraintError("the schema must be JSON (dicts, lists, strings, numbers, "
                              "booleans and null)") from None
    return for_grammar(tokenizer, lambda: _schema.schema_grammar(schema), stop_ids, key)


def json_object(model, stop_ids=None):
    """A Constraint: any JSON object."""
    tokenizer, stop_ids = _tokenizer_and_stops(model, stop_ids)
    return for_grammar(tokenizer, _schema.json_object_grammar, stop_ids, ("object",))


def regex(model, pattern, stop_ids=None):
    """A Constraint: text that matches `pattern` whole (regexp.py's subset of `re`)."""
    tokenizer, stop_ids = _tokenizer_and_stops(model, stop_ids)
    return for_grammar(tokenizer, lambda: Grammar({"root": regexp.parse(pattern)}, "root"),
                       stop_ids, ("regex", pattern))


def grammar(model, text, stop_ids=None):
    """A Constraint: text of the EBNF grammar `text` (GBNF `root ::= ...` or Lark-style
    `start: ...`; ebnf.py)."""
    tokenizer, stop_ids = _tokenizer_and_stops(model, stop_ids)
    return for_grammar(tokenizer, lambda: ebnf.parse(text), stop_ids, ("ebnf", text))
