r"""GPT-2's byte-level BPE tokenizer in pure Python (standard library only, so it runs in Pyodide).

Encoding has two stages, as in OpenAI's GPT-2 encoder:

1. Pre-tokenization splits the text with GPT-2's pattern
       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
   Python's `re` has no \p{..} classes and Pyodide has no `regex` wheel offline, so
   `pretokenize` is a hand-written scanner that takes the same decisions, alternative by
   alternative, from Unicode general categories (unicodedata) and the White_Space property.
2. Each piece's UTF-8 bytes are written as GPT-2's printable byte symbols (a space is 'Ġ') and
   merged by BPE, lowest merge rank first, as merges.txt orders them; the merged symbols are
   looked up in vocab.json. The byte symbols and the merge loop are webgpt.bpe's, which the
   tokenizer.json tokenizer (webgpt.hf_tokenizer) shares.

encode() treats '<|endoftext|>' in the text as ordinary characters (tiktoken's
encode_ordinary): special tokens never come from user text. A chat (apply_chat_template) is
encoded as transformers encodes it, with the id of each '<|endoftext|>' in the rendered text.
"""

import codecs
import operator
import unicodedata
from importlib import resources

from .bpe import BYTE_SYMBOLS, PieceCache, merge, symbols_to_bytes, to_symbols
from .errors import TokenizerError
from .limits import json_budget, parse_json

__all__ = ["Tokenizer", "StreamDecoder", "TokenizerError", "pretokenize", "EOT",
           "BYTE_SYMBOLS", "WHITE_SPACE"]

EOT = "<|endoftext|>"


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
        # {"left right": rank} (webgpt.bpe.merge's form). Later duplicates win, as in OpenAI's
        # encoder and Hugging Face's slow tokenizer.
        self._merge_ranks = {f"{left} {right}": rank for rank, (left, right) in enumerate(merges)}

        # id -> bytes, for decoding; None where vocab.json skips an id.
        self._id_to_bytes = [None] * (max(self._vocab.values(), default=-1) + 1)
        for token, token_id in self._vocab.items():
            self._id_to_bytes[token_id] = symbols_to_bytes(token)

        self._cache = PieceCache()
        # The folder's chat template (chat_template.jinja or tokenizer_config.json's), which
        # the folder reader sets where there is one; GPT-2's own files have none.
        self.chat_template = None

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

    def encode(self, text, add_special_tokens=True):
        """Token ids of text. Raises TokenizerError naming a character the vocabulary lacks.

        GPT-2 adds no special tokens around a text (it has no post-processor), so
        `add_special_tokens` changes nothing; it is taken as HFTokenizer.encode takes it.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, not {type(text).__name__}")
        text = _without_lone_surrogates(text)
        cache = self._cache
        ids = []
        position = 0
        for piece in pretokenize(text):
            piece_ids = cache[piece]
            if piece_ids is None:
                piece_ids = self._encode_piece(piece, position)
                cache.remember(piece, piece_ids)
            ids.extend(piece_ids)
            position += len(piece)
        return ids

    def _encode_piece(self, piece, position):
        """Ids of one pre-token that starts at `position` in the text."""
        # GPT-2's encoder merges every occurrence of the best pair at once (whole_rank).
        symbols = merge(list(to_symbols(piece)), self._merge_ranks, whole_rank=True)
        vocab = self._vocab
        ids = []
        for k, symbol in enumerate(symbols):
            token_id = vocab.get(symbol)
            if token_id is None:
                start = sum(map(len, symbols[:k]))        # symbols are one char per byte
                raise self._cannot_encode(piece, position, start, start + len(symbol))
            ids.append(token_id)
        return tuple(ids)

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

    bos_token = eos_token = EOT

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, **extra):
        """The ids (or with tokenize=False the text) of `messages` rendered by the folder's
        chat template, as transformers gives them (webgpt.chat_template); ChatTemplateError
        where the folder has none, as GPT-2's own has not.

        Unlike encode(), a chat's ids have the id of '<|endoftext|>' wherever the rendered text
        holds it (the template writes it as eos_token), as transformers encodes a chat.
        """
        from .chat_template import apply_chat_template
        text = apply_chat_template(self, messages, add_generation_prompt, False, **extra)
        if not tokenize:
            return text
        eot_id = self.eot_id
        if eot_id is None:
            return self.encode(text)
        ids = []
        for k, part in enumerate(text.split(EOT)):
            if k:
                ids.append(eot_id)
            ids += self.encode(part)
        return ids

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
