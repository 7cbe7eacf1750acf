"""A model's vocabulary arranged for masks: which tokens may come next from an automaton state.

Made once per tokenizer (`Vocabulary.of(tokenizer)`, kept as long as the tokenizer lives) and
shared by every constraint on that model:

- a trie of the tokens' bytes, stored flat in preorder (each node's byte, depth and where its
  subtree ends: four arrays, a few MB for 150k tokens, where nested dicts would take 100+ MB).
  A mask walks it from a state: a byte that cannot come skips the node's whole subtree, so a
  state that allows a few characters (after `{`: only `"`, `}` or a blank) visits little more
  than the first level.
- for a state that loops on a class of characters (inside a string value every character but
  `"`, `\\` and controls leads back to it), the tokens made only of such characters are allowed
  without a walk: their set is computed once per class (a scan of the vocabulary, bytes.translate
  in C) as an int of bits, with a trie of the other tokens, the few that must be walked (those
  holding a quote, a backslash or part of a multi-byte character).

Special tokens (the tokenizer's special_ids, GPT-2's <|endoftext|>) are never in the trie, so
they never come inside a value; a grammar names one only as Special(text) (a tool call's
marker where it is a token). Masks are bytes, bit i of byte i // 8 for token i, ceil(V / 32) * 4
of them: what Controls(constraint=...) hands to the GPU.
"""

import array
import bisect
import re
import weakref

from .automaton import DEAD

# A loop class whose tokens number fewer than this is walked like any other: its own trie would
# cost memory for little saved.
MIN_SHORTCUT_TOKENS = 512

_BY_TOKENIZER = weakref.WeakKeyDictionary()


class Trie:
    """Token byte strings in preorder: node i has `byte[i]` at `depth[i]` (0: a first byte), its
    subtree ends before node `end[i]`, and `token[i]` is the token whose bytes end there (-1:
    none). Tokens with the same bytes as another are in `same` {token: [others]}."""

    def __init__(self, tokens):
        self.byte, self.depth = array.array("B"), array.array("H")
        self.end, self.token = array.array("i"), array.array("i")
        self.same = {}
        path, previous = [], b""
        for data, token in sorted(tokens):
            k = 0
            limit = min(len(data), len(previous), len(path))
            while k < limit and data[k] == previous[k]:
                k += 1
            while len(path) > k:
                self.end[path.pop()] = len(self.byte)
            for d in range(k, len(data)):
                path.append(len(self.byte))
                self.byte.append(data[d])
                self.depth.append(d)
                self.end.append(0)
                self.token.append(-1)
            last = path[-1]
            if self.token[last] < 0:
                self.token[last] = token
            else:
                self.same.setdefault(self.token[last], []).append(token)
            previous = data
        while path:
            self.end[path.pop()] = len(self.byte)
        self.max_depth = max(self.depth, default=0) + 2

    def walk(self, automaton, state, bits):
        """Set in `bits` (a bytearray mask) every token that may follow `state`."""
        byte, depth, end, token = self.byte, self.depth, self.end, self.token
        rows, row_of = automaton.rows, automaton.row
        at = [DEAD] * self.max_depth
        at[0] = state
        i, n = 0, len(byte)
        while i < n:
            d = depth[i]
            s = at[d]
            after = (rows[s] or row_of(s))[byte[i]]
            if after == DEAD:
                i = end[i]
                continue
            at[d + 1] = after
            t = token[i]
            if t >= 0:
                bits[t >> 3] |= 1 << (t & 7)
            i += 1
        for t, others in self.same.items():
            if bits[t >> 3] >> (t & 7) & 1:
                for o in others:
                    bits[o >> 3] |= 1 << (o & 7)


class Vocabulary:
    """A tokenizer's tokens for masks (see the module docstring)."""

    def __init__(self, tokenizer):
        self.V = tokenizer.vocab_size
        self.nbytes = (self.V + 31) // 32 * 4
        special = set(getattr(tokenizer, "special_ids", None) or ())
        if getattr(tokenizer, "eot_id", None) is not None:
            special.add(tokenizer.eot_id)
        self.special = {}            # special token's text -> id
        self.tokens = []             # (bytes, id) of every other token
        for i in range(self.V):
            try:
                data = tokenizer.token_bytes(i)
            except ValueError:       # an id the vocabulary leaves unused
                continue
            if i in special:
                self.special.setdefault(data.decode("utf-8", "replace"), i)
            elif data:
                self.tokens.append((data, i))
        self.special_ids = frozenset(special)
        self.trie = Trie(self.tokens)
        # Every id's bytes end to end, in id order (a special or unused id as one \xff byte,
        # never valid UTF-8), where a class's tokens are found by a regular expression (in C)
        # rather than by a loop over the vocabulary: see _loop.
        by_id = [b"\xff"] * self.V
        self._valid = bytearray(self.V)        # 1: the token is whole UTF-8 characters
        self._is_token = bytearray(self.V)     # 1: a token of the trie (not special, not unused)
        for data, i in self.tokens:
            by_id[i] = data
            self._valid[i] = _is_utf8(data)
            self._is_token[i] = 1
        self._by_id = by_id
        self._blob = b"".join(by_id)
        self._starts = array.array("q", [0])    # where each id's bytes start, then the end
        for data in by_id:
            self._starts.append(self._starts[-1] + len(data))
        self._loops = {}
        self._masks = weakref.WeakKeyDictionary()     # automaton -> {state: mask}

    @classmethod
    def of(cls, tokenizer):
        """The Vocabulary of `tokenizer`, made on first use and kept while it lives."""
        vocab = _BY_TOKENIZER.get(tokenizer)
        if vocab is None:
            vocab = _BY_TOKENIZER[tokenizer] = cls(tokenizer)
        return vocab

    def mask(self, automaton, state):
        """The tokens that may follow `state`, as mask bytes (stop tokens not set)."""
        masks = self._masks.get(automaton)
        if masks is None:
            masks = self._masks[automaton] = {}
        known = masks.get(state)
        if known is None:
            known = masks[state] = self._mask(automaton, state)
        return known

    def _mask(self, automaton, state):
        bits = bytearray(self.nbytes)
        plain, trie = self._loop(automaton.loop(state))
        (trie or self.trie).walk(automaton, state, bits)
        for token, after in automaton.symbols(state).items():
            if after != DEAD:
                bits[token >> 3] |= 1 << (token & 7)
        if plain:
            return (int.from_bytes(bits, "little") | plain).to_bytes(self.nbytes, "little")
        return bytes(bits)

    def _loop(self, key):
        """(bits of the tokens made only of the loop's characters, a Trie of the others), or
        (0, None) where too few tokens loop for a trie of their own to pay."""
        ascii_bits, non_ascii = key
        if not ascii_bits and not non_ascii:
            return 0, None
        known = self._loops.get(key)
        if known is None:
            flags = self._made_of(ascii_bits, non_ascii)
            count = flags.count(1)
            if count < MIN_SHORTCUT_TOKENS:
                known = (0, None)
            else:
                others = [(self._by_id[i], i) for i in
                          (m.start() for m in re.finditer(b"\x00", flags)) if self._is_token[i]]
                known = (_packed(flags), Trie(others))
            self._loops[key] = known
        return known

    def _made_of(self, ascii_bits, non_ascii):
        """Per id, 1 where the token is made only of the ASCII bytes `ascii_bits` and (with
        `non_ascii`) whole non-ASCII characters: the runs of such bytes in the joined bytes,
        each token wholly inside one."""
        allowed = [b for b in range(128) if ascii_bits >> b & 1]
        if non_ascii:
            allowed += range(128, 256)
        run = re.compile(b"[" + b"".join(re.escape(bytes([b])) for b in allowed) + b"]+")
        flags = bytearray(self.V)
        starts = self._starts
        for m in run.finditer(self._blob):
            first = bisect.bisect_left(starts, m.start())
            end = bisect.bisect_right(starts, m.end()) - 1     # tokens ending by m.end()
            if end > first:
                flags[first:end] = b"\x01" * (end - first)
        if non_ascii:       # whole characters only: a token that splits one is walked
            both = int.from_bytes(flags, "little") & int.from_bytes(self._valid, "little")
            flags = bytearray(both.to_bytes(self.V, "little"))
        return flags


def _packed(flags):
    """The mask bits (an int, bit i for id i) of per-id 0/1 flags."""
    bits = 0
    for k in range(8):
        bits |= int.from_bytes(flags[k::8], "little") << k
    return bits


def _is_utf8(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
