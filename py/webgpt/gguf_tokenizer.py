"""The tokenizer a GGUF file carries in its metadata (tokenizer.ggml.*), as webgpt's
tokenizer.json tokenizer (webgpt.hf_tokenizer.HFTokenizer) running the same pipeline.

Two models, as llama.cpp has them (src/llama-vocab.cpp):

- "gpt2": byte-level BPE. tokens (id order), merges ("left right", best first), token_type,
  and the pre-tokenizer named by tokenizer.ggml.pre, which says how text is split before BPE:
  llama.cpp keeps one set of split patterns per name, given here as the tokenizer.json
  pre-tokenizer of the models that name comes from (llama-bpe: Llama 3's pattern, and whole
  vocabulary words are taken before merging, `ignore_merges`; qwen2: Qwen's; smollm: single
  digits, then GPT-2's; gpt-2: GPT-2's; default: llama.cpp's fallback patterns). A name not in
  PRE_TOKENIZERS is a sentence.
- "llama": SentencePiece BPE with scores. Spaces become U+2581 ("▁") and the text gets one in
  front (add_space_prefix, and again after each special token); a piece's characters are then
  merged, always the adjacent pair whose joined text is the vocabulary token of highest score
  (the leftmost of equal ones), as llama.cpp's llm_tokenizer_spm does; characters left that are
  not tokens become their UTF-8 bytes' <0xAB> tokens.

Control tokens (token_type 3) and user-defined ones (4) are matched in the text before the
rest, as added tokens are in tokenizer.json (special for control tokens: skipped by
decode(skip_special_tokens=True)). BOS is added where tokenizer.ggml.add_bos_token says (by
default: for "llama" and for llama-bpe, as llama.cpp). The chat template is
tokenizer.chat_template; the end-of-generation ids are eos, eot and eom and the control tokens
llama.cpp treats as ends of a turn.
"""

from .errors import TokenizerError

__all__ = ["gguf_tokenizer", "stop_ids", "PRE_TOKENIZERS"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"

# GPT-2's split pattern (and the ByteLevel pre-tokenizer's own, use_regex=True).
_GPT2 = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_BYTES = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
          "use_regex": False}


def _split(pattern):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
            "invert": False}


# Llama 3's and Qwen2's tokenizer.json patterns (llama.cpp runs the same with (?i:) spelled
# out as [sS] classes).
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
           r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT2_WORDS = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"

# tokenizer.ggml.pre -> (tokenizer.json pre_tokenizer, ignore_merges, BOS by default)
PRE_TOKENIZERS = {}
for _name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"):
    PRE_TOKENIZERS[_name] = ({"type": "Sequence", "pretokenizers": [_split(_LLAMA3), _BYTES]},
                             True, True)
for _name in ("qwen2", "deepseek-r1-qwen", "stablelm2"):
    PRE_TOKENIZERS[_name] = ({"type": "Sequence", "pretokenizers": [_split(_QWEN2), _BYTES]},
                             False, False)
for _name in ("smollm", "starcoder", "refact", "command-r", "codeshell"):
    PRE_TOKENIZERS[_name] = ({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, _GPT2]}, False, False)
for _name in ("gpt-2", "mpt", "olmo", "jais", "phi-2"):
    PRE_TOKENIZERS[_name] = (_GPT2, False, False)
PRE_TOKENIZERS["default"] = ({"type": "Sequence", "pretokenizers": [
    _split(r"[\p{P}\$\+<=>\^~\|]+"), _split(_GPT2_WORDS), _split(r"\p{N}+"),
    _split(r"[0-9][0-9][0-9]"), _BYTES]}, False, False)

# Tokens llama.cpp takes as the end of a turn by their text (llama-vocab.cpp's special_eog_ids),
# making them control tokens whatever the file's token_type says: so they are here too (a
# Qwen file's plain "</s>" token is then matched whole in text, as llama.cpp matches it, where
# the tokenizers library would split it).
EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
             "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
             "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
             "<turn|>", "<|tool_response>")


def _strings(md, key, where, need=True):
    v = md.get(key)
    if v is None and not need:
        return None
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise TokenizerError(f"{where}: metadata {key} must be an array of strings")
    return v


def _numbers(md, key, n, where, kind=(int, float)):
    v = md.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or len(v) < n or not all(
            isinstance(x, kind) and not isinstance(x, bool) for x in v[:n]):
        raise TokenizerError(f"{where}: metadata {key} must be an array of {n} numbers")
    return v


def _token_id(md, key, n, where):
    v = md.get(f"tokenizer.ggml.{key}")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n:
        if isinstance(v, int) and v in (-1, 0xFFFFFFFF):
            return None
        raise TokenizerError(f"{where}: tokenizer.ggml.{key} is {v!r}, not a token id of the "
                             f"{n}-token vocabulary")
    return v


def _flag(md, key, default):
    v = md.get(f"tokenizer.ggml.{key}", default)
    return bool(v)


def gguf_tokenizer(md, where):
    """The HFTokenizer of a GGUF file's metadata `md`, with its chat template; `where` names the
    file in messages."""
    from .hf_tokenizer import HFTokenizer
    from .limits import no_cycle_collection

    model = md.get("tokenizer.ggml.model")
    if model not in ("gpt2", "llama"):
        raise TokenizerError(f"{where}: tokenizer.ggml.model is {model!r}; webgpt reads 'gpt2' "
                             f"(byte-level BPE) and 'llama' (SentencePiece) tokenizers")
    with no_cycle_collection():
        tokens = _strings(md, "tokenizer.ggml.tokens", where)
        n = len(tokens)
        types = list(_numbers(md, "tokenizer.ggml.token_type", n, where, int) or [NORMAL] * n)
        bos = _token_id(md, "bos_token_id", n, where)
        eos = _token_id(md, "eos_token_id", n, where)
        for i in _eog_by_text(tokens):
            types[i] = CONTROL
        added = [{"id": i, "content": tokens[i], "special": types[i] == CONTROL,
                  "normalized": False}
                 for i in range(n) if types[i] in (CONTROL, USER_DEFINED) and tokens[i]]
        vocab = {t: i for i, t in enumerate(tokens)}
        if model == "gpt2":
            pre = md.get("tokenizer.ggml.pre", "default")
            if pre not in PRE_TOKENIZERS:
                raise TokenizerError(
                    f"{where}: tokenizer.ggml.pre is {pre!r}, a pre-tokenizer webgpt does not "
                    f"know (it knows {', '.join(sorted(PRE_TOKENIZERS))})")
            pre_tokenizer, ignore_merges, bos_default = PRE_TOKENIZERS[pre]
            merges = _strings(md, "tokenizer.ggml.merges", where, need=False) or []
            spec = {"model": {"type": "BPE", "vocab": vocab, "merges": merges,
                              "ignore_merges": ignore_merges},
                    "normalizer": None, "pre_tokenizer": pre_tokenizer,
                    "decoder": {"type": "ByteLevel"}}
        else:
            bos_default = True
            scores = _numbers(md, "tokenizer.ggml.scores", n, where) or [0.0] * n
            prefix = _flag(md, "add_space_prefix", True)
            steps = ([{"type": "Prepend", "prepend": SPACE}] if prefix else []) + \
                [{"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]
            decoders = [{"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                        {"type": "ByteFallback"}, {"type": "Fuse"}]
            if prefix:
                decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
            spec = {"model": {"type": "BPE", "vocab": vocab, "merges": []},
                    "normalizer": {"type": "Sequence", "normalizers": steps},
                    "pre_tokenizer": None,
                    "decoder": {"type": "Sequence", "decoders": decoders}}
        spec["added_tokens"] = added
        prefix_ids, suffix_ids = [], []
        if _flag(md, "add_bos_token", bos_default) and bos is not None:
            prefix_ids.append(bos)
        if _flag(md, "add_eos_token", False) and eos is not None:
            suffix_ids.append(eos)
        single = ([{"SpecialToken": {"id": tokens[i]}} for i in prefix_ids]
                  + [{"Sequence": {"id": "A"}}]
                  + [{"SpecialToken": {"id": tokens[i]}} for i in suffix_ids])
        spec["post_processor"] = {"type": "TemplateProcessing", "single": single,
                                  "special_tokens": {tokens[i]: {"id": tokens[i], "ids": [i]}
                                                     for i in prefix_ids + suffix_ids}}
        config = {"bos_token": None if bos is None else tokens[bos],
                  "eos_token": None if eos is None else tokens[eos]}
        tok = HFTokenizer(spec, config, where, where)
        if model == "llama":
            tok._model = SPMModel(vocab, scores, tokens, types)
    template = md.get("tokenizer.chat_template")
    if template is not None and not isinstance(template, str):
        raise TokenizerError(f"{where}: metadata tokenizer.chat_template must be a string")
    tok.chat_template = template
    return tok


def _eog_by_text(tokens):
    """Ids of the tokens whose text is in EOG_TEXTS (the last of equal texts, as llama.cpp's
    token_to_id keeps it)."""
    found = {}
    wanted = set(EOG_TEXTS)
    for i, t in enumerate(tokens):
        if t in wanted:
            found[t] = i
    return found.values()


def stop_ids(md, tokenizer, where):
    """The ids that end generation: eos, eot, eom, and the tokens of EOG_TEXTS, as llama.cpp's
    special_eog_ids."""
    tokens = md.get("tokenizer.ggml.tokens") or []
    n = len(tokens)
    out = set(_eog_by_text(tokens))
    for key in ("eos_token_id", "eot_token_id", "eom_token_id"):
        i = _token_id(md, key, n, where)
        if i is not None:
            out.add(i)
    return frozenset(out)


class _Scores:
    """The pair ranks SPM merging uses, in webgpt.bpe.merge's form: "left right" -> minus the
    score of the token left + right (lowest rank first, so highest score first; merge breaks
    ties to the left, as llama.cpp does)."""

    def __init__(self, vocab, scores):
        self.vocab, self.scores = vocab, scores

    def get(self, pair):
        left, _, right = pair.partition(" ")
        i = self.vocab.get(left + right)
        return None if i is None else -self.scores[i]


class SPMModel:
    """llama.cpp's SentencePiece BPE over a vocabulary with scores: encode_word(text) -> ids."""

    def __init__(self, vocab, scores, tokens, types):
        self.vocab = vocab
        self._ranks = _Scores(vocab, scores)
        self._bytes = {}
        for i, t in enumerate(tokens):
            if types[i] == BYTE and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                try:
                    self._bytes[int(t[3:5], 16)] = i
                except ValueError:
                    pass
        self._unk = next((i for i, ty in enumerate(types) if ty == UNKNOWN), None)

    def encode_word(self, word):
        from .bpe import merge

        symbols = merge(list(word), self._ranks)
        out = []
        for s in symbols:
            i = self.vocab.get(s)
            if i is not None:
                out.append(i)
                continue
            for b in s.encode("utf-8"):  # not a token: its bytes (or unk without byte tokens)
                j = self._bytes.get(b, self._unk)
                if j is not None:
                    out.append(j)
        return tuple(out)
