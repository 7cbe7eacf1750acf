r"""GPT-2's byte-level BPE tokenizer in pure Python (standard library only, so it runs in Pyodide).

Encoding has two stages, as in OpenAI's GPT-2 encoder:

1. Pre-tokenization splits the text with GPT-2's pattern
       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
   Python's `re` has no \p{..} classes and Pyodide has no `regex` wheel offline, so
   `pretokenize` is a hand-written scanner that takes the same decisions, alternative by
   alternative, from Unicode general categories (unicodedata) and the White_Space property.
2. Each piece's UTF-8 bytes are written as GPT-2's printable byte symbols (a space is 'Ġ') and
   merged by BPE, lowest merge rank first, as merges.txt orders them; the merged symbols are
   looked up in vocab.json.

encode() treats '<|endoftext|>' in the text as ordinary characters (tiktoken's
encode_ordinary): special tokens never come from user text.
"""

import codecs
import heapq
import operator
import unicodedata
from importlib import resources

from .errors import TokenizerError
from .limits import json_budget, parse_json

__all__ = ["Tokenizer", "StreamDecoder", "TokenizerError", "pretokenize", "EOT",
           "BYTE_SYMBOLS", "WHITE_SPACE"]

EOT = "<|endoftext|>"


# ---------------------------------------------------------------------------------------------
# Byte symbols: GPT-2 writes every byte as one printable character, so that vocab.json and
# merges.txt are plain text with no whitespace or control characters inside a token. Printable
# Latin-1 bytes stand for themselves; the other 68 (controls, space, NBSP, soft hyphen) are
# moved, in byte order, to U+0100..U+0143.

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

# str.translate tables. Encoding goes text -> UTF-8 bytes -> (as Latin-1, one char per byte)
# -> symbols, all in C. Decoding goes the other way; the 68 Latin-1 characters that are not
# symbols map to their own UTF-8 bytes, so a token string that is not byte-level text (an
# added token in some vocab.json) still decodes to what it says.
_LATIN1_TO_SYMBOL = {b: BYTE_SYMBOLS[b] for b in range(256)}
_SYMBOL_TO_LATIN1 = {ord(s): chr(b) for b, s in enumerate(BYTE_SYMBOLS)}
_SYMBOL_TO_LATIN1.update({c: chr(c).encode("utf-8").decode("latin-1")
                          for c in range(256) if c not in _SYMBOL_TO_LATIN1})


def _token_bytes(token):
    """The bytes a vocab.json token string stands for."""
    try:
        return token.translate(_SYMBOL_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:
        # Characters beyond U+0143 are not byte symbols: keep them as their UTF-8 bytes.
        return b"".join(_SYMBOL_TO_LATIN1[ord(c)].encode("latin-1") if ord(c) in _SYMBOL_TO_LATIN1
                        else c.encode("utf-8") for c in token)


# ---------------------------------------------------------------------------------------------
# Pre-tokenization.

_LETTER, _NUMBER, _SPACE, _OTHER = 1, 2, 3, 4

# \s as the `regex` module (which GPT-2 used) and Rust's regex (tiktoken) define it for str: the
# Unicode White_Space property, 25 characters, unchanged since Unicode 6.3. Python's re and
# str.isspace() also count U+001C..U+001F (information separators), and str.splitlines() splits
# on them; here they are punctuation-like "other" characters, as in GPT-2. U+200B (zero-width
# space), U+180E and U+FEFF are not whitespace either (categories Cf).
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200A + 1)))
    + "\u2028\u2029\u202f\u205f\u3000")

# Letters are general categories L* (Lu Ll Lt Lm Lo) and numbers N* (Nd Nl No), as \p{L} and
# \p{N} are. Combining marks (M*) are neither, so 'e' + U+0301 splits into two pieces, exactly
# as GPT-2 splits it. Categories come from this Python's unicodedata (Unicode 14 in Python 3.11,
# 16 in 3.14); characters assigned in a later Unicode than it knows are "other" here.
_CHAR_CLASS_CACHE_LIMIT = 1 << 16


class _CharClasses(dict):
    """char -> class, filled on first sight (most text uses few distinct characters)."""

    def __missing__(self, ch):
        if ch in WHITE_SPACE:
            kind = _SPACE
        else:
            major = unicodedata.category(ch)[0]
            kind = _LETTER if major == "L" else _NUMBER if major == "N" else _OTHER
        # Bounded, so that text spanning all of Unicode cannot grow it without end.
        if len(self) < _CHAR_CLASS_CACHE_LIMIT:
            self[ch] = kind
        return kind


_CHAR_CLASSES = _CharClasses()


def pretokenize(text):
    r"""Split text into GPT-2's pre-tokens (the pieces BPE works on); they join back to text.

    Each step takes the first alternative of the pattern that matches at position i:
      1. 's 't 're 've 'm 'll 'd   (ASCII apostrophe, lower case only, as GPT-2 has them)
      2-4. an optional single space (U+0020 only) and then a maximal run of letters, or of
           numbers, or of "other" characters (neither whitespace, letter nor number)
      5. \s+(?!\S): a run of whitespace, less its last character when a non-whitespace
         character follows, so that the last space can start the next word (" word")
      6. \s+: otherwise (a single whitespace character before non-whitespace) just that
    """
    char_class = _CHAR_CLASSES
    pieces = []
    append = pieces.append
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch == "'" and i + 1 < n:
            if text[i + 1] in "stmd":
                append(text[i:i + 2])
                i += 2
                continue
            if text[i + 1:i + 3] in ("re", "ve", "ll"):
                append(text[i:i + 3])
                i += 3
                continue

        kind = char_class[ch]
        j = i + 1
        if ch == " " and j < n:
            # " ?" in alternatives 2-4: a space joins the run of letters, numbers or others
            # after it. Before whitespace it is part of the whitespace run instead.
            following = char_class[text[j]]
            if following != _SPACE:
                kind = following
                j += 1

        if kind == _SPACE:
            while j < n and char_class[text[j]] == _SPACE:
                j += 1
            # (?!\S) backtracks one character when non-whitespace follows, unless the run is a
            # single character (then alternative 6 takes it whole).
            if j < n and j - i > 1:
                j -= 1
        else:
            while j < n and char_class[text[j]] == kind:
                j += 1
        append(text[i:j])
        i = j
    return pieces


def _without_lone_surrogates(text):
    """Text that UTF-8 can encode. A Python str that came from JavaScript (Pyodide) or from
    'surrogateescape' may hold UTF-16 surrogates; like tiktoken, join valid pairs into the
    character they encode and replace lone ones with U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ---------------------------------------------------------------------------------------------
# The tokenizer.

# Pre-tokens whose BPE result is remembered. English text repeats a few tens of thousands of
# words, so this holds them all; the bound keeps memory flat on text that never repeats.
_BPE_CACHE_LIMIT = 1 << 17
# Longer pieces (a run of CJK letters, a long number, a base64 blob) seldom repeat.
_BPE_CACHE_MAX_PIECE = 64


# Token ids are below this (GPT-2 has 50257; the largest vocabularies about 2**18): a larger id
# in vocab.json is corruption, and would make the id -> bytes table absurdly large.
MAX_TOKEN_ID = 1 << 24
# Lines of merges.txt (GPT-2 has 50000 merges; the largest BPE vocabularies a few hundred
# thousand): more is a corrupt or hostile file, refused before it is split into lines.
MAX_MERGES = 1 << 19


class Tokenizer:
    """GPT-2 byte-level BPE from vocab.json (token string -> id) and merges.txt (ranked pairs)."""

    def __init__(self, vocab, merges, vocab_name="vocab.json"):
        if not isinstance(vocab, dict):
            raise TypeError(
                f"vocab must be a dict of token string -> id, not {type(vocab).__name__}")
        for token, token_id in vocab.items():
            if not isinstance(token, str) or not isinstance(token_id, int) \
                    or isinstance(token_id, bool) or not 0 <= token_id < MAX_TOKEN_ID:
                raise TokenizerError(f"{vocab_name} must map token strings to ids from 0 to "
                                     f"{MAX_TOKEN_ID - 1}; it maps {token[:40]!r} to "
                                     f"{str(token_id)[:40]}")
        self._vocab = dict(vocab)
        # Later duplicates win, as in OpenAI's encoder and Hugging Face's slow tokenizer.
        self._merge_ranks = {(left, right): rank for rank, (left, right) in enumerate(merges)}

        # id -> bytes, for decoding; None where vocab.json skips an id.
        self._id_to_bytes = [None] * (max(self._vocab.values(), default=-1) + 1)
        for token, token_id in self._vocab.items():
            self._id_to_bytes[token_id] = _token_bytes(token)

        self._cache = {}

    @classmethod
    def from_texts(cls, vocab_json_text, merges_text, vocab_name="vocab.json",
                   merges_name="merges.txt"):
        """Build from the text of vocab.json and of merges.txt (Hugging Face's GPT-2 files).

        `vocab_name` and `merges_name` (paths or URLs) name the files in error messages.
        """
        # Bounded: a vocab.json of tiny nested lists is one sentence, not gigabytes of lists.
        vocab = parse_json(vocab_json_text, vocab_name, TokenizerError,
                           budget=json_budget("vocab.json"))
        if not isinstance(vocab, dict):
            raise TokenizerError(f"{vocab_name} must hold a JSON object of token string -> id")
        return cls(vocab, _parse_merges(merges_text, merges_name), vocab_name)

    @classmethod
    def gpt2(cls):
        """GPT-2's own vocabulary, vendored in webgpt/data (see data/SOURCES.md)."""
        # importlib.resources finds the files in a source tree, an installed wheel and
        # Pyodide's file system alike.
        data = resources.files(__package__) / "data"
        return cls.from_texts((data / "vocab.json").read_text(encoding="utf-8"),
                              (data / "merges.txt").read_text(encoding="utf-8"))

    @property
    def vocab_size(self):
        """Number of token ids: one more than the largest id in vocab.json."""
        return len(self._id_to_bytes)

    @property
    def eot_id(self):
        """Id of '<|endoftext|>', or None where the vocabulary has no such token."""
        return self._vocab.get(EOT)

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, text):
        """Token ids of text. Raises TokenizerError naming a character the vocabulary lacks."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, not {type(text).__name__}")
        text = _without_lone_surrogates(text)
        cache = self._cache
        ids = []
        position = 0
        for piece in pretokenize(text):
            piece_ids = cache.get(piece)
            if piece_ids is None:
                piece_ids = self._encode_piece(piece, position)
                if len(piece) <= _BPE_CACHE_MAX_PIECE:
                    if len(cache) >= _BPE_CACHE_LIMIT:
                        # Dicts keep insertion order: drop the oldest entry.
                        del cache[next(iter(cache))]
                    cache[piece] = piece_ids
            ids.extend(piece_ids)
            position += len(piece)
        return ids

    def _encode_piece(self, piece, position):
        """Ids of one pre-token that starts at `position` in the text."""
        byte_symbols = piece.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_SYMBOL)
        symbols = self._bpe(list(byte_symbols))
        vocab = self._vocab
        ids = []
        for k, symbol in enumerate(symbols):
            token_id = vocab.get(symbol)
            if token_id is None:
                start = sum(map(len, symbols[:k]))        # symbols are one char per byte
                raise self._cannot_encode(piece, position, start, start + len(symbol))
            ids.append(token_id)
        return tuple(ids)

    def _bpe(self, symbols):
        """Merge adjacent symbols by rank, as GPT-2's encoder does: take the lowest-ranked pair
        present, merge all its occurrences left to right, repeat until no pair has a rank.

        A heap of (rank, left node) over a linked list makes this O(n log n) in the piece's
        length, where rescanning the list after each merge would be quadratic (a long run of
        CJK letters or digits is one piece). Entries go stale when a node merges; they are
        checked when popped. All entries of one rank are one pair, and popping them together
        in node order and only then adding the pairs they create gives the same merges as
        GPT-2's loop, even for a merges list whose ranks are not in training order.
        """
        n = len(symbols)
        if n < 2:
            return symbols
        ranks = self._merge_ranks
        next_node = list(range(1, n + 1))     # n stands for "none"
        prev_node = list(range(-1, n - 1))    # -1 stands for "none"
        heap = []
        for k in range(n - 1):
            rank = ranks.get((symbols[k], symbols[k + 1]))
            if rank is not None:
                heap.append((rank, k))
        heapq.heapify(heap)

        while heap:
            rank, left = heapq.heappop(heap)
            # The heap gives this rank's entries in node order, which is left to right.
            batch = [left]
            while heap and heap[0][0] == rank:
                batch.append(heapq.heappop(heap)[1])
            merged = []
            for left in batch:
                right = next_node[left]
                # Stale if the left node is gone (merged into its left neighbour: None) or
                # the pair there is no longer this one.
                if right >= n or symbols[left] is None \
                        or ranks.get((symbols[left], symbols[right])) != rank:
                    continue
                symbols[left] += symbols[right]
                symbols[right] = None
                after = next_node[right]
                next_node[left] = after
                if after < n:
                    prev_node[after] = left
                merged.append(left)
            for node in merged:
                before, after = prev_node[node], next_node[node]
                if before >= 0:
                    new_rank = ranks.get((symbols[before], symbols[node]))
                    if new_rank is not None:
                        heapq.heappush(heap, (new_rank, before))
                if after < n:
                    new_rank = ranks.get((symbols[node], symbols[after]))
                    if new_rank is not None:
                        heapq.heappush(heap, (new_rank, node))

        return [s for s in symbols if s is not None]

    def _cannot_encode(self, piece, position, byte_start, byte_end):
        """The error for bytes [byte_start, byte_end) of piece that have no token."""
        # Find the characters whose UTF-8 bytes overlap the missing token's bytes.
        first = last = None
        offset = 0
        for k, ch in enumerate(piece):
            size = len(ch.encode("utf-8"))
            if offset < byte_end and offset + size > byte_start:
                first = k if first is None else first
                last = k
            offset += size
        chars = piece[first:last + 1]
        at = position + first
        code_points = " ".join(f"U+{ord(c):04X}" for c in chars)
        missing = piece.encode("utf-8")[byte_start:byte_end].hex(" ")
        what = "the character" if len(chars) == 1 else "the characters"
        where = f"position {at}" if len(chars) == 1 else f"positions {at}-{at + len(chars) - 1}"
        return TokenizerError(
            f"the tokenizer cannot encode {what} {chars!r} ({code_points}) at {where}: "
            f"its vocabulary has no token for the UTF-8 bytes {missing}; remove or replace "
            f"{'it' if len(chars) == 1 else 'them'}",
            position=at, chars=chars)

    # -- decoding ------------------------------------------------------------------------------

    def token_bytes(self, token_id):
        """The bytes of one token (part of a UTF-8 character, possibly)."""
        table = self._id_to_bytes
        try:
            # Any integer (numpy's too), but not a float, a string or a bool.
            i = -1 if isinstance(token_id, bool) else operator.index(token_id)
        except TypeError:
            i = -1
        if not 0 <= i < len(table) or table[i] is None:
            raise TokenizerError(
                f"token id {token_id!r} is not in the vocabulary (ids 0..{len(table) - 1})")
        return table[i]

    chat_template = None  # GPT-2 has none
    bos_token = eos_token = EOT

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, **extra):
        """Raises ChatTemplateError: GPT-2 BPE folders carry no chat template."""
        from .chat_template import apply_chat_template
        return apply_chat_template(self, messages, add_generation_prompt, tokenize, **extra)

    def stream_decoder(self, skip_special_tokens=False):
        """A StreamDecoder for this tokenizer (GPT-2's only special token is <|endoftext|>)."""
        return StreamDecoder(self)

    def decode(self, ids):
        """Text of token ids; bytes that are not valid UTF-8 become U+FFFD."""
        token_bytes = self.token_bytes
        # Join all bytes before decoding: a character may be split across tokens.
        raw = b"".join([token_bytes(token_id) for token_id in ids])
        return raw.decode("utf-8", errors="replace")


def _parse_merges(merges_text, merges_name="merges.txt"):
    """Ranked (left, right) pairs from merges.txt: an optional '#version' first line, then one
    'left right' pair per line, best first."""
    merges = []
    # Each line becomes a few small objects (about 300 bytes): count them before splitting.
    count = merges_text.count("\n") + 1
    if count > MAX_MERGES:
        raise TokenizerError(
            f"{merges_name} has {count} lines; a BPE vocabulary has at most {MAX_MERGES} merges "
            f"here (GPT-2's has 50000): it is not a model's merges.txt")
    lines = merges_text.split("\n")     # not splitlines(): it also splits on \x1c, \x85, \u2028
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line or (number == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2 or not pair[0] or not pair[1]:
            raise TokenizerError(
                f"{merges_name} line {number} is {line[:80]!r}; each line must be two tokens "
                f"separated by one space")
        merges.append((pair[0], pair[1]))
    return merges


class StreamDecoder:
    """Decodes tokens one at a time, for text that appears as it is generated.

    push() returns the text completed so far and holds back the bytes of a UTF-8 character
    that a later token will finish (GPT-2 often splits an emoji or a CJK character across
    tokens); flush() returns what is left, with U+FFFD for bytes that never formed a character.
    Joined, the pieces equal tokenizer.decode(all ids).
    """

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id):
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self):
        rest = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return rest
