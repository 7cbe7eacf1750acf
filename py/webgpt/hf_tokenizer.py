r"""Hugging Face `tokenizer.json` tokenizers (SmolLM2, Llama 3.x, Qwen2.5/3) in pure Python.

`tokenizer.json` is the single-file format of Hugging Face's `tokenizers` library: a pipeline of
  normalizer -> pre_tokenizer -> model -> post_processor (and a decoder for the way back),
with "added_tokens" (special tokens such as <|im_start|>, and others) matched in the text before
all of it. `tokenizer_config.json` (transformers' file beside it) names the bos/eos tokens. This
module reads both with the standard library only, so it runs in Pyodide (no `regex` wheel, no
`tokenizers`, no numpy), and encodes to the same ids as the `tokenizers` library.

Whether encode() adds BOS (or EOS) is the post_processor's decision, as in transformers v5's
AutoTokenizer: with a tokenizer.json present, transformers drops tokenizer_config.json's
`add_bos_token`/`add_eos_token`, so Llama 3.1's TemplateProcessing prepends <|begin_of_text|>,
while the first Llama 3 upload and Qwen (a ByteLevel post_processor) add nothing. Special tokens
written in the text (<|im_start|>) become their ids, as transformers encodes them by default.

Supported, which covers the byte-level BPE families and SentencePiece-style BPE:
  model            BPE: vocab, merges ("a b" strings or [a, b] pairs), ignore_merges,
                   byte_fallback, unk_token and fuse_unk; dropout must be null.
  normalizer       null, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence.
  pre_tokenizer    null, Split (Regex or String pattern, every behavior, invert), ByteLevel
                   (add_prefix_space, use_regex), Digits, Metaspace, Sequence.
  post_processor   null, TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing,
                   Sequence.
  decoder          ByteLevel; Metaspace; Replace, ByteFallback, Fuse, Strip and Sequence of them.
  added_tokens     longest match first, with lstrip, rstrip, single_word and normalized.
Anything else (a Unigram, WordPiece or WordLevel model, another pre-tokenizer, a regex feature
that Python's `re` cannot express the same way) raises TokenizerError naming the file and key.

Each part of the pipeline is a module of its own, which this class composes:
  webgpt.hf_added_tokens   added tokens, matched before the rest of the pipeline
  webgpt.hf_pipeline       normalizers, pre-tokenizers, post-processors
  webgpt.oniguruma         Split patterns (Oniguruma syntax, with \p{L} and the like) as Python re
  webgpt.hf_model          the BPE model, around webgpt.bpe's merge loop (shared with GPT-2's)
  webgpt.hf_decoder        decoders

decode() joins token bytes as the library's decoders do (transformers v5 ignores
`clean_up_tokenization_spaces` for BPE, so it decodes the same).

Where transformers v5 rebuilds a pipeline in a tokenizer class instead of reading tokenizer.json
(GPT2Tokenizer drops a Digits pre-tokenizer, LlamaTokenizer uses a Metaspace pre-tokenizer in
place of the legacy Prepend/Replace normalizer), this module follows tokenizer.json, as the
`tokenizers` library does; the ids differ from transformers' there (for example a leading space
in a SentencePiece tokenizer's text).
"""

import codecs
import operator

from .bpe import PieceCache, to_symbols
from .errors import TokenizerError
from .hf_added_tokens import AddedTokens
from .hf_decoder import Decoder
from .hf_model import BPEModel
from .hf_pipeline import normalizer, post_processor, pre_tokenizer
from .limits import no_cycle_collection, parse_json
from .tokenizer import StreamDecoder, _without_lone_surrogates

__all__ = ["HFTokenizer"]

# What transformers (v5) adds to a tokenizer.json: the bos/eos tokens a tokenizer class has
# when tokenizer_config.json does not name them.
_CLASS_DEFAULTS = {
    "GPT2Tokenizer": ("<|endoftext|>", "<|endoftext|>"),
    "LlamaTokenizer": ("<s>", "</s>"),
    "Qwen2Tokenizer": (None, "<|endoftext|>"),
}
# With no tokenizer_config.json, the eos token is the first of these in the vocabulary.
_EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<eos>")


class HFTokenizer:
    """A tokenizer.json BPE tokenizer, with the interface of webgpt.tokenizer.Tokenizer:

        tok = HFTokenizer.from_texts(tokenizer_json_text, tokenizer_config_text)
        ids = tok.encode("<|im_start|>user\nhi<|im_end|>")    # + BOS where the file adds one
        text = tok.decode(ids, skip_special_tokens=True)
        stream = tok.stream_decoder()                         # push(id) -> text so far

    Encoded pieces are cached (webgpt.bpe.PieceCache, as in webgpt.tokenizer), so repeated
    words cost a dict lookup.
    """

    def __init__(self, spec, config=None, json_name="tokenizer.json",
                 config_name="tokenizer_config.json"):
        """`spec`: tokenizer.json parsed; `config`: tokenizer_config.json parsed, or None."""
        where = json_name
        if not isinstance(spec, dict):
            raise TokenizerError(f"{where} must hold a JSON object")
        if config is not None and not isinstance(config, dict):
            raise TokenizerError(f"{config_name} must hold a JSON object")
        self.config = config or {}
        # The folder's chat template, which the folder reader sets where there is one.
        self.chat_template = None
        self._model = BPEModel(spec.get("model"), where)
        self._vocab = self._model.vocab
        self._normalize = normalizer(spec.get("normalizer"), where)
        self._added = AddedTokens(spec.get("added_tokens") or [], self._normalize, where)
        self._steps, self._maps_bytes = pre_tokenizer(spec.get("pre_tokenizer"), where)
        self._decoder = Decoder(spec.get("decoder"), where)

        # id -> token string; added tokens take the place of the vocabulary's entry.
        added = self._added.tokens
        size = max([max(self._vocab.values(), default=-1)] + [t.id for t in added]) + 1
        self._id_to_token = [None] * size
        for token, token_id in self._vocab.items():
            self._id_to_token[token_id] = token
        self._added_ids = {}
        for t in added:
            self._id_to_token[t.id] = t.content
            self._added_ids[t.content] = t.id
        self._special_ids = frozenset(t.id for t in added if t.special)
        self._bytes_cache = {}
        self._cache = PieceCache()

        self._prefix, self._suffix, self._bos, self._eos = self._special_tokens(
            spec.get("post_processor"), where, config_name)

    def _special_tokens(self, post_processor_node, where, config_name):
        """(prefix ids, suffix ids, bos token, eos token) as transformers.AutoTokenizer has
        them. transformers v5 drops tokenizer_config.json's add_bos_token and add_eos_token
        when there is a tokenizer.json (PreTrainedTokenizerBase._from_pretrained), so the
        file's post_processor alone decides what encode() adds; a null one adds nothing. The
        config names the bos and eos tokens (or the tokenizer class's defaults do)."""
        config = self.config
        cls = str(config.get("tokenizer_class", "")).removesuffix("Fast")
        default_bos, default_eos = _CLASS_DEFAULTS.get(cls, (None, None))
        bos = _config_token(config, "bos_token", default_bos, config_name)
        eos = _config_token(config, "eos_token", default_eos, config_name)
        if not config:
            eos = next((name for name in _EOS_NAMES if self.id_of(name) is not None), None)
        for key, name in (("bos_token", bos), ("eos_token", eos)):
            if name is not None and self.id_of(name) is None:
                raise TokenizerError(f"{config_name} has {key} {name!r}, which is not in "
                                     f"{where}")
        prefix, suffix = post_processor(post_processor_node, where)
        size = len(self._id_to_token)
        for token_id in prefix + suffix:
            if not isinstance(token_id, int) or isinstance(token_id, bool) \
                    or not 0 <= token_id < size or self._id_to_token[token_id] is None:
                raise TokenizerError(f"{where} post_processor adds the id {token_id!r}, which "
                                     f"is not in the vocabulary")
        return prefix, suffix, bos, eos

    @classmethod
    def from_texts(cls, tokenizer_json_text, tokenizer_config_text=None,
                   json_name="tokenizer.json", config_name="tokenizer_config.json"):
        """Build from the text of tokenizer.json and (optionally) tokenizer_config.json.

        `json_name` and `config_name` (paths or URLs) name the files in error messages.
        """
        # The garbage collector would walk the growing vocabulary again and again while the
        # JSON parser and the tables allocate (a third of the load time): it waits until the
        # end, as it would for any other burst of allocation that frees nothing.
        with no_cycle_collection():
            spec = _load_json(tokenizer_json_text, json_name)
            config = None if tokenizer_config_text is None else \
                _load_json(tokenizer_config_text, config_name)
            return cls(spec, config, json_name, config_name)

    # -- the vocabulary ------------------------------------------------------------------------

    @property
    def vocab_size(self):
        """Number of token ids: one more than the largest id, added tokens included."""
        return len(self._id_to_token)

    @property
    def bos_token(self):
        """The text of the beginning-of-sequence token (a chat template's bos_token), or None."""
        return self._bos

    @property
    def eos_token(self):
        """The text of the end-of-sequence token (a chat template's eos_token), or None."""
        return self._eos

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, **extra):
        """The ids (or with tokenize=False the text) of `messages` rendered by the chat
        template, as transformers' apply_chat_template gives them (webgpt.chat_template)."""
        from .chat_template import apply_chat_template
        return apply_chat_template(self, messages, add_generation_prompt, tokenize, **extra)

    @property
    def bos_id(self):
        """Id of the beginning-of-sequence token (tokenizer_config.json's bos_token), or None."""
        return None if self._bos is None else self.id_of(self._bos)

    @property
    def eos_id(self):
        """Id of the end-of-sequence token (tokenizer_config.json's eos_token), or None."""
        return None if self._eos is None else self.id_of(self._eos)

    @property
    def eot_id(self):
        """The id that ends generation: eos_id (as webgpt.tokenizer.Tokenizer's eot_id)."""
        return self.eos_id

    @property
    def special_ids(self):
        """Ids of the special added tokens (those decode(skip_special_tokens=True) drops)."""
        return self._special_ids

    def id_of(self, token_text):
        """Id of a token as tokenizer.json writes it (an added token's content such as
        '<|im_end|>', or a vocabulary entry such as 'Ġthe'), or None."""
        token_id = self._added_ids.get(token_text)
        return self._vocab.get(token_text) if token_id is None else token_id

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, text, add_special_tokens=True):
        """Token ids of text, special tokens written in it included (as transformers does),
        with the BOS/EOS the tokenizer adds when `add_special_tokens`."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, not {type(text).__name__}")
        text = _without_lone_surrogates(text)
        ids = list(self._prefix) if add_special_tokens else []
        for piece, token, first in self._added.split(text):
            if token is not None:
                ids.append(token.id)
            else:
                self._encode_text(piece, first, ids)
        if add_special_tokens:
            ids += self._suffix
        return ids

    def _encode_text(self, text, first, ids):
        """Append the ids of normalized text without added tokens."""
        pieces = [text]
        for step in self._steps:
            pieces = step(pieces, first)
        cache = self._cache
        for piece in pieces:
            piece_ids = cache[piece]
            if piece_ids is None:
                piece_ids = self._model.encode_word(to_symbols(piece) if self._maps_bytes
                                                    else piece)
                cache.remember(piece, piece_ids)
            ids.extend(piece_ids)

    # -- decoding ------------------------------------------------------------------------------

    def token_bytes(self, token_id):
        """The bytes of one token (part of a UTF-8 character, possibly); a special token is
        its text. webgpt.tokenizer.StreamDecoder decodes a stream of tokens with this."""
        i = token_id
        if type(i) is not int:
            try:
                # Any integer (numpy's too), but not a float, a string or a bool.
                i = -1 if isinstance(i, bool) else operator.index(i)
            except TypeError:
                i = -1
        data = self._bytes_cache.get(i)
        if data is not None:
            return data
        table = self._id_to_token
        if not 0 <= i < len(table) or table[i] is None:
            raise TokenizerError(
                f"token id {token_id!r} is not in the vocabulary (ids 0..{len(table) - 1})")
        data = self._decoder.token_bytes(table[i])
        self._bytes_cache[i] = data
        return data

    def decode(self, ids, skip_special_tokens=False):
        """Text of token ids, as the `tokenizers` library decodes them: bytes that are not
        valid UTF-8 become U+FFFD; with skip_special_tokens, special tokens are left out."""
        if skip_special_tokens:
            special = self._special_ids
            ids = [i for i in ids if i not in special]
        parts = [self.token_bytes(i) for i in ids]      # checks every id
        table = self._id_to_token
        return self._decoder.text([table[i] for i in ids], parts)

    def stream_decoder(self, skip_special_tokens=False):
        """A webgpt.tokenizer.StreamDecoder for this tokenizer (push(id) -> text so far)."""
        return StreamDecoder(_SkipSpecial(self) if skip_special_tokens else self)


class _SkipSpecial:
    """A tokenizer view whose special tokens have no bytes, for StreamDecoder."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def token_bytes(self, token_id):
        data = self._tokenizer.token_bytes(token_id)
        return b"" if token_id in self._tokenizer.special_ids else data


def _config_token(config, key, default, where):
    """The text of tokenizer_config.json's `key` token: a string, null, or an AddedToken
    object {"content": ...}; `default` where the key is absent."""
    if key not in config:
        return default
    value = config[key]
    if isinstance(value, dict):
        value = value.get("content")
    if value is not None and not isinstance(value, str):
        raise TokenizerError(f"{where} has {key} {value!r}; expected a string or null")
    return value


def _load_json(text, name):
    """The JSON of `name`, parsed within the memory budget webgpt.limits gives that file (a
    JSON bomb, or absurdly deep nesting, is a TokenizerError sentence, never gigabytes)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = codecs.decode(text, "utf-8-sig")
        except UnicodeDecodeError as e:
            raise TokenizerError(f"{name} is not UTF-8 text: {e}") from None
    return parse_json(text, name, TokenizerError)
