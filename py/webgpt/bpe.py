"""Byte-level BPE, shared by webgpt.tokenizer (GPT-2's vocab.json and merges.txt) and
webgpt.hf_tokenizer (tokenizer.json): GPT-2's byte symbols, the merge loop, and the cache of
encoded pieces. Standard library only, so it runs in Pyodide.

Byte symbols: GPT-2 writes every byte as one printable character, so that a vocabulary and its
merges are plain text with no whitespace or control characters inside a token. Printable
Latin-1 bytes stand for themselves; the other 68 (controls, space, NBSP, soft hyphen) are moved,
in byte order, to U+0100..U+0143 (a space is 'Ġ', a newline 'Ċ').

Merges are ranked pairs of symbols, best first, kept as {"left right": rank}: the "left right"
form is the line of merges.txt (and the string of tokenizer.json) itself, and costs a third of
the time that (left, right) tuples would. Byte symbols never include a space, so the one space
separates the two sides unambiguously.
"""

from heapq import heapify, heappop, heappush

__all__ = ["BYTE_SYMBOLS", "to_symbols", "symbols_to_bytes", "merge", "PieceCache"]


def _byte_symbols():
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    symbols = {b: chr(b) for b in printable}
    moved = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + moved)
            moved += 1
    return [symbols[b] for b in range(256)]


BYTE_SYMBOLS = _byte_symbols()          # byte value -> its symbol

# str.translate tables, so that both ways run in C. Encoding goes text -> UTF-8 bytes -> (as
# Latin-1, one character per byte) -> symbols. Decoding goes back; the 68 Latin-1 characters
# that are not symbols become a character Latin-1 cannot encode, so that a token holding one
# fails as a whole (see symbols_to_bytes).
_LATIN1_TO_SYMBOL = {b: BYTE_SYMBOLS[b] for b in range(256)}
_SYMBOL_TO_LATIN1 = {ord(s): chr(b) for b, s in enumerate(BYTE_SYMBOLS)}
_SYMBOL_TO_LATIN1.update({c: "\uffff" for c in range(256) if c not in _SYMBOL_TO_LATIN1})


def to_symbols(text):
    """The UTF-8 bytes of `text`, each written as its byte symbol ("a b" -> "aĠb")."""
    return text.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_SYMBOL)


def symbols_to_bytes(token):
    """The bytes a token of byte symbols stands for. A token that is not all byte symbols (an
    added token such as '<|im start|>' in a vocabulary) is its own UTF-8 text, as the
    `tokenizers` library's ByteLevel decoder has it."""
    try:
        return token.translate(_SYMBOL_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:
        return token.encode("utf-8")


def merge(symbols, ranks, whole_rank=False):
    """The symbols (a list of strings, changed in place) merged by BPE: repeatedly the adjacent
    pair of lowest rank in `ranks` ({"left right": rank}) becomes one symbol, until no adjacent
    pair has a rank. Returns the merged list.

    Two rules for which pair goes first, which differ only for a merges list whose ranks are
    not in training order (where a merge can make a pair ranked before it):
      whole_rank=False: the lowest-ranked pair, the leftmost of equal ones, one at a time, as
          the `tokenizers` library merges (tokenizer.json);
      whole_rank=True: every occurrence of the lowest-ranked pair, left to right, before the
          pairs those merges make are looked at, as GPT-2's own encoder merges (merges.txt).

    A heap of (rank, left node) over a linked list makes this O(n log n) in the number of
    symbols, where rescanning after each merge would be quadratic (a long run of CJK letters or
    digits is one piece; a SentencePiece tokenizer makes a whole paragraph one piece). Entries
    go stale when a node merges; a popped entry counts only if its pair is still there.
    """
    n = len(symbols)
    if n < 2:
        return symbols
    next_node = list(range(1, n + 1))     # n stands for "none"
    prev_node = list(range(-1, n - 1))    # -1 stands for "none"
    heap = []
    for k in range(n - 1):
        rank = ranks.get(symbols[k] + " " + symbols[k + 1])
        if rank is not None:
            heap.append((rank, k))
    heapify(heap)

    while heap:
        rank, left = heappop(heap)
        batch = (left,)
        if whole_rank and heap and heap[0][0] == rank:
            # All entries of one rank are one pair; the heap gives them in node order, which
            # is left to right.
            batch = [left]
            while heap and heap[0][0] == rank:
                batch.append(heappop(heap)[1])
        merged = []
        for left in batch:
            right = next_node[left]
            # Stale if the left node is gone (merged into its left neighbour: None) or the pair
            # there is no longer this one.
            if right >= n or symbols[left] is None \
                    or ranks.get(symbols[left] + " " + symbols[right]) != rank:
                continue
            symbols[left] += symbols[right]
            symbols[right] = None
            after = next_node[left] = next_node[right]
            if after < n:
                prev_node[after] = left
            merged.append(left)
        # The pairs the merges made, with their new neighbours.
        for node in merged:
            before, after = prev_node[node], next_node[node]
            if before >= 0:
                new_rank = ranks.get(symbols[before] + " " + symbols[node])
                if new_rank is not None:
                    heappush(heap, (new_rank, before))
            if after < n:
                new_rank = ranks.get(symbols[node] + " " + symbols[after])
                if new_rank is not None:
                    heappush(heap, (new_rank, node))
    return [s for s in symbols if s is not None]


# Pieces whose ids are remembered. English text repeats a few tens of thousands of words, so
# this holds them all; the bound keeps memory flat on text that never repeats.
CACHE_LIMIT = 1 << 17
# Longer pieces (a run of CJK letters, a long number, a base64 blob) seldom repeat.
CACHE_MAX_PIECE = 64


class PieceCache(dict):
    """Pre-token -> its token ids (a tuple), so that a repeated word costs one dict lookup:
    look up with cache[piece] (None on a miss), store with remember().

    Two generations keep it bounded at O(1) a piece: the dict itself holds the pieces seen
    since it last filled up, `old` the generation before (a hit there is moved back in). When
    the dict reaches CACHE_LIMIT it becomes `old` and starts empty. Evicting the oldest entry
    one at a time instead (del cache[next(iter(cache))]) costs a scan over the slots already
    deleted at the front of the dict, which made 400k distinct words take 17 times as long as
    100k.
    """

    def __init__(self):
        super().__init__()
        self.old = {}

    def __missing__(self, piece):
        ids = self.old.get(piece)
        if ids is not None:
            self.remember(piece, ids)
        return ids

    def remember(self, piece, ids):
        """Keep `ids` for `piece` if it is short enough."""
        if len(piece) <= CACHE_MAX_PIECE:
            if len(self) >= CACHE_LIMIT:
                self.old = dict(self)
                self.clear()
            self[piece] = ids
