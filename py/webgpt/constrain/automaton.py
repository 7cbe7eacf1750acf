"""A Grammar (rules.py) run over bytes: a pushdown automaton, determinized as it is used.

Why bytes: a model's tokens are byte strings (byte-level BPE pieces span several JSON
characters, and split a multi-byte UTF-8 character in two), so the automaton must stop and go
on at any byte. Why determinized lazily: the states an output visits are few (a schema's
positions, not the product of all its alternatives), so each is made the first time it is
reached, and its 256 byte transitions and its token mask (vocab.py) are computed once and then
read from a table: a string value's thousandth character costs a dictionary look-up.

The program. Each grammar expression is compiled, in continuation-passing style, into nodes:
BYTES (one byte of a set, then `next`), SYMBOL (one special token), SPLIT (alternatives), CALL
and RET (a rule, with its return node pushed: recursion), REPEAT and LOOP (an item lo..hi
times, its count on the stack) and ACCEPT. A configuration is (node, stack); a state is the
set of configurations waiting on a byte or a symbol, after every empty move (the closure),
plus whether the output may end there. Stacks are nested tuples (frame, parent, depth),
shared between configurations. A count with no upper bound is kept only up to its lower bound,
so a repetition's states recur (the same mask for a list's tenth item as for its third). The
stack is at most MAX_DEPTH frames deep: deeper nesting is never generated.
"""

from .rules import (Alt, Chars, Lit, Ref, Repeat, Seq, Special, SURROGATES, MAX_CODE_POINT)

MAX_DEPTH = 96      # stack frames: nesting deeper than this is cut (never generated)
DEAD = 0            # the state no output continues from

BYTES, SYMBOL, SPLIT, CALL, RET, REPEAT, LOOP, JUMP, ACCEPT = range(9)


def utf8_sequences(lo, hi):
    """The UTF-8 encodings of code points lo..hi as sequences of (first byte, last byte)
    ranges, one per byte (the algorithm of Rust's regex-syntax utf8 module)."""
    out = []
    todo = [(lo, hi)]
    while todo:
        lo, hi = todo.pop()
        if lo > hi:
            continue
        for edge in (0x7F, 0x7FF, 0xFFFF):       # one encoding length per piece
            if lo <= edge < hi:
                todo += [(edge + 1, hi), (lo, edge)]
                break
        else:
            if hi <= 0x7F:
                out.append([(lo, hi)])
                continue
            for i in (1, 2, 3):
                m = (1 << (6 * i)) - 1
                if lo & ~m != hi & ~m:
                    if lo & m:
                        todo += [((lo | m) + 1, hi), (lo, lo | m)]
                        break
                    if hi & m != m:
                        todo += [(hi & ~m, hi), (lo, (hi & ~m) - 1)]
                        break
            else:
                out.append(list(zip(chr(lo).encode("utf-8"), chr(hi).encode("utf-8"))))
    return out


NON_ASCII = [s for lo, hi in ((0x80, SURROGATES[0] - 1), (SURROGATES[1] + 1, MAX_CODE_POINT))
             for s in utf8_sequences(lo, hi)]


def _byteset(lo, hi):
    return ((1 << (hi + 1)) - 1) ^ ((1 << lo) - 1)


class Program:
    """A Grammar compiled into nodes (see the module docstring). `special` maps a special
    token's text to its id, for Special expressions (None: spell them out as text)."""

    def __init__(self, grammar, special=None):
        self.kind, self.arg, self.next = [], [], []
        self.special = special or {}
        self.accept = self._node(ACCEPT)
        self.entry = {}
        for name in grammar.rules:          # every rule once; a Ref calls it
            self.entry[name] = self._node(JUMP)
        ret = self._node(RET)
        for name, expr in grammar.rules.items():
            self.next[self.entry[name]] = self._emit(expr, ret)
        self.start = self._node(CALL, self.entry[grammar.start], self.accept)

    def _node(self, kind, arg=None, nxt=None):
        self.kind.append(kind)
        self.arg.append(arg)
        self.next.append(nxt)
        return len(self.kind) - 1

    def _emit(self, expr, nxt):
        """The entry node of `expr` followed by node `nxt`."""
        if isinstance(expr, Lit):
            for b in reversed(expr.data):
                nxt = self._node(BYTES, 1 << b, nxt)
            return nxt
        if isinstance(expr, Seq):
            for item in reversed(expr.items):
                nxt = self._emit(item, nxt)
            return nxt
        if isinstance(expr, Alt):
            return self._node(SPLIT, tuple(self._emit(item, nxt) for item in expr.items))
        if isinstance(expr, Chars):
            return self._chars(expr.ranges, nxt)
        if isinstance(expr, Repeat):
            if expr.hi is not None and expr.hi <= 1:
                body = self._emit(expr.item, nxt) if expr.hi else nxt
                return body if expr.lo else self._node(SPLIT, (body, nxt))
            node = self._node(REPEAT, None, nxt)
            self.arg[node] = (self._emit(expr.item, self._node(LOOP, node)), expr.lo, expr.hi)
            return node
        if isinstance(expr, Ref):
            return self._node(CALL, self.entry[expr.name], nxt)
        if isinstance(expr, Special):
            token = self.special.get(expr.text)
            if token is None:
                return self._emit(Lit(expr.text.encode("utf-8")), nxt)
            return self._node(SYMBOL, token, nxt)
        raise TypeError(f"not a grammar expression: {expr!r}")

    def _chars(self, ranges, nxt):
        ascii_set, tails = 0, {}
        for lo, hi in ranges:
            for s in utf8_sequences(lo, hi):
                if len(s) == 1:
                    ascii_set |= _byteset(*s[0])
                else:
                    tails.setdefault(tuple(s[1:]), []).append(s[0])
        entries = [self._node(BYTES, ascii_set, nxt)] if ascii_set else []
        for tail, firsts in tails.items():      # sequences sharing their continuation bytes
            node = nxt
            for r in reversed(tail):
                node = self._node(BYTES, _byteset(*r), node)
            lead = 0
            for r in firsts:
                lead |= _byteset(*r)
            entries.append(self._node(BYTES, lead, node))
        if not entries:
            return self._node(SPLIT, ())
        return entries[0] if len(entries) == 1 else self._node(SPLIT, tuple(entries))


class Automaton:
    """The program's states, made as they are reached (see the module docstring). State ids
    are ints; DEAD (0) is the state no output continues from."""

    def __init__(self, program):
        self.p = program
        self.configs = [()]            # state id -> configurations waiting on input
        self.accepts = [False]
        self.ids = {((), False): DEAD}
        self.rows = [[DEAD] * 256]     # state id -> its 256 byte transitions (None: not yet)
        self.symbol_rows = [{}]
        self.loops = [None]
        self.start = self._state([(program.start, None)])

    def _state(self, seeds):
        """The id of the state of the closure of configurations `seeds`."""
        p = self.p
        kind, arg, nxt = p.kind, p.arg, p.next
        waiting, accept, seen = [], False, set()
        todo = list(seeds)
        while todo:
            config = todo.pop()
            if config in seen:
                continue
            seen.add(config)
            node, stack = config
            k = kind[node]
            if k == BYTES or k == SYMBOL:
                waiting.append(config)
            elif k == SPLIT:
                todo += [(n, stack) for n in arg[node]]
            elif k == JUMP:
                todo.append((nxt[node], stack))
            elif k == CALL:
                depth = stack[2] if stack else 0
                if depth < MAX_DEPTH:
                    todo.append((arg[node], (nxt[node], stack, depth + 1)))
            elif k == RET:
                todo.append((stack[0], stack[1]))
            elif k == REPEAT:
                body, lo, hi = arg[node]
                depth = stack[2] if stack else 0
                if lo == 0:
                    todo.append((nxt[node], stack))
                if hi != 0 and depth < MAX_DEPTH:
                    todo.append((body, ((node, 0), stack, depth + 1)))
            elif k == LOOP:
                (rep, count), parent = stack[0], stack[1]
                body, lo, hi = arg[rep]
                count = count + 1 if hi is not None else min(count + 1, lo)
                if count >= lo:
                    todo.append((nxt[rep], parent))
                if hi is None or count < hi:
                    todo.append((body, ((rep, count), parent, stack[2])))
            elif k == ACCEPT:
                accept = True
        key = (frozenset(waiting), accept)
        state = self.ids.get(key)
        if state is None:
            state = self.ids[key] = len(self.configs)
            self.configs.append(tuple(waiting))
            self.accepts.append(accept)
            self.rows.append(None)
            self.symbol_rows.append(None)
            self.loops.append(False)
        return state

    def row(self, state):
        """The state after each byte 0..255 from `state` (DEAD where none may come)."""
        row = self.rows[state]
        if row is None:
            p = self.p
            by_byte = [[] for _ in range(256)]
            symbols = {}
            for config in self.configs[state]:
                node = config[0]
                if p.kind[node] == SYMBOL:
                    symbols.setdefault(p.arg[node], []).append((p.next[node], config[1]))
                    continue
                bits, b = p.arg[node], 0
                while bits:
                    if bits & 1:
                        by_byte[b].append(config)
                    bits >>= 1
                    b += 1
            made = {(): DEAD}
            row = []
            for configs in by_byte:
                key = tuple(configs)
                if key not in made:
                    made[key] = self._state([(p.next[n], s) for n, s in configs])
                row.append(made[key])
            self.rows[state] = row
            self.symbol_rows[state] = {t: self._state(seeds) for t, seeds in symbols.items()}
        return row

    def symbols(self, state):
        """{special token id: state after it} from `state`."""
        if self.symbol_rows[state] is None:
            self.row(state)
        return self.symbol_rows[state]

    def accepting(self, state):
        return self.accepts[state]

    def advance(self, state, data):
        """The state after the bytes `data` (DEAD if they cannot come here)."""
        rows = self.rows
        for b in data:
            row = rows[state] or self.row(state)
            state = row[b]
            if state == DEAD:
                return DEAD
        return state

    def loop(self, state):
        """(ASCII bytes, all non-ASCII characters) that lead from `state` back to itself:
        tokens made only of those characters may follow it and leave it as it was (a string
        value's body, a run of digits). (0, False) where none do."""
        known = self.loops[state]
        if known is False:
            row = self.row(state)
            ascii_bits = 0
            for b in range(128):
                if row[b] == state:
                    ascii_bits |= 1 << b
            known = self.loops[state] = (ascii_bits, self._loops_non_ascii(state))
        return known

    def _loops_non_ascii(self, state):
        """Whether every non-ASCII character's bytes lead from `state` back to it."""
        for sequence in NON_ASCII:
            at = {state}
            for lo, hi in sequence:
                after = set()
                for s in at:
                    row = self.row(s)
                    after.update(row[lo:hi + 1])
                if DEAD in after:
                    return False
                at = after
            if at != {state}:
                return False
        return True
