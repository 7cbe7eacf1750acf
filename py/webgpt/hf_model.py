"""tokenizer.json's "model": a BPE vocabulary and its merges, as the `tokenizers` library's BPE
model encodes a piece, with its ignore_merges, byte_fallback, unk_token and fuse_unk. The merge
loop itself is webgpt.bpe's, shared with GPT-2's tokenizer. Dropout (random merges, for
training), continuing_subword_prefix and end_of_word_suffix are not supported, nor are the
other models (Unigram, WordPiece, WordLevel): each is a TokenizerError naming the file and key.
"""

from itertools import chain, repeat

from .bpe import merge
from .errors import TokenizerError, short_repr
from .hf_pipeline import field
from .tokenizer import MAX_TOKEN_ID

__all__ = ["BPEModel"]


class BPEModel:
    """The model of a tokenizer.json (`model`, parsed): `vocab` (token -> id) and `merge_ranks`
    ("left right" -> rank)."""

    def __init__(self, model, where):
        if not isinstance(model, dict):
            raise TokenizerError(f"{where} has no \"model\" object")
        _check_supported(model, where)
        vocab = model.get("vocab")
        if not isinstance(vocab, dict):
            raise TokenizerError(f"{where} model.vocab must be an object of token -> id")
        ids = list(vocab.values())
        # Checked in C: every id an int (not a bool) in range.
        if not all(map(int.__instancecheck__, ids)) or any(map(bool.__instancecheck__, ids)) \
                or (ids and not 0 <= min(ids) <= max(ids) < MAX_TOKEN_ID):
            raise TokenizerError(f"{where} model.vocab must map tokens to ids from 0 to "
                                 f"{MAX_TOKEN_ID - 1}")
        self.vocab = vocab
        self.merge_ranks = _parse_merges(model.get("merges", []), where)
        self._ignore_merges = field(model, "ignore_merges", bool, False, where, "model")
        self._byte_fallback = field(model, "byte_fallback", bool, False, where, "model")
        self._fuse_unk = field(model, "fuse_unk", bool, False, where, "model")
        unk = field(model, "unk_token", str, None, where, "model")
        self._unk = unk if unk in vocab else None

    def encode_word(self, word):
        """The ids (a tuple) of one pre-token, written as byte symbols where the pre-tokenizer
        ends with ByteLevel's byte mapping."""
        vocab = self.vocab
        if self._ignore_merges:
            token_id = vocab.get(word)
            if token_id is not None:
                return (token_id,)
        # The library's rule: the lowest-ranked pair, one at a time.
        symbols = merge(self._initial_symbols(word), self.merge_ranks)
        try:
            return tuple([vocab[s] for s in symbols])
        except KeyError as e:
            raise TokenizerError(f"a merge of the tokenizer makes {e.args[0]!r}, which is not "
                                 f"in its vocabulary (model.merges and model.vocab disagree)") \
                from None

    def _initial_symbols(self, word):
        """The characters of word, each a vocabulary entry: a character the vocabulary lacks
        becomes its <0xAB> byte tokens (byte_fallback), or the unk token (consecutive ones
        fused with fuse_unk), or is dropped, as the library drops it without an unk token."""
        vocab = self.vocab
        if all(map(vocab.__contains__, word)):
            return list(word)
        symbols = []
        last_unk = False
        for ch in word:
            if ch in vocab:
                symbols.append(ch)
                last_unk = False
                continue
            if self._byte_fallback:
                byte_tokens = [f"<0x{b:02X}>" for b in ch.encode("utf-8")]
                if all(map(vocab.__contains__, byte_tokens)):
                    symbols += byte_tokens
                    last_unk = False
                    continue
            if self._unk is not None and not (self._fuse_unk and last_unk):
                symbols.append(self._unk)
                last_unk = True
        return symbols


def _check_supported(model, where):
    """Refuse a model this tokenizer cannot run, naming the key."""
    model_type = model.get("type", "BPE" if "merges" in model else None)
    if model_type != "BPE":
        raise TokenizerError(f"{where} has model.type {short_repr(model_type)}; this tokenizer "
                             f"supports only BPE models (Unigram, WordPiece and WordLevel "
                             f"are not supported)")
    if model.get("dropout") not in (None, 0, 0.0):
        raise TokenizerError(f"{where} has model.dropout {short_repr(model.get('dropout'))}; BPE "
                             f"dropout (random merges) is for training and not supported")
    for affix in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(affix):
            raise TokenizerError(f"{where} has model.{affix} {short_repr(model[affix])}, which this "
                                 f"tokenizer does not support")


def _parse_merges(merges, where):
    """{"left right": rank} (webgpt.bpe.merge's form). Later duplicates win, as in the
    library's map.

    Merges written as "left right" strings need no work at all, and 280,000 tuples would cost
    3x the time (and the garbage collector's attention) at every load. Byte-level and
    SentencePiece tokens never hold a space, so the space separates the two sides
    unambiguously; that is checked.
    """
    if not isinstance(merges, list):
        raise TokenizerError(f"{where} model.merges must be a list")
    if not merges:
        return {}
    if all(map(str.__instancecheck__, merges)):
        keys = merges
    elif all(map(list.__instancecheck__, merges)) and set(map(len, merges)) == {2} \
            and all(map(str.__instancecheck__, chain.from_iterable(merges))):
        keys = list(map(" ".join, merges))
    else:
        raise TokenizerError(f"{where} model.merges must be all \"left right\" strings or "
                             f"all [left, right] pairs of strings")
    # One space each (an entry " a" cannot match anything, as a symbol is never empty).
    if sum(map(str.count, keys, repeat(" ", len(keys)))) != len(keys):
        raise TokenizerError(f"{where} model.merges has an entry that is not two tokens "
                             f"without spaces (\"left right\"), which this tokenizer "
                             f"does not support")
    return dict(zip(keys, range(len(keys))))
