"""Fuzzing (hypothesis) of what reads untrusted bytes and text: the safetensors header parser,
config.json, the tokenizer files, the tokenizer itself, and sampling parameters from a URL.

The property everywhere: nothing fails with anything but our own clear error (ModelFolderError,
TokenizerError, ValueError) naming the file or parameter, and what is accepted is consistent
(headers: every tensor inside the file, sized by its shape, no overlaps; tokenizer:
decode(encode(s)) == s, ids in range, equal to tiktoken, streamed decoding equal to decode).

Bounded and reproducible for CI: 300 examples per test, derandomized (the same examples on
every run), no example database written, no deadline (CI machines vary).
"""

import asyncio
import json
import math
import os
import struct
from unittest import mock

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis drives these tests")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import refmodels  # noqa: E402

from webgpt.config import GPT2Config  # noqa: E402
from webgpt.safetensors import DTYPE_SIZES, parse_header, read_header  # noqa: E402
from webgpt.sampling import candidates, check_params, params_from_strings  # noqa: E402
from webgpt.sources import ModelFolderError  # noqa: E402
from webgpt.tokenizer import StreamDecoder, Tokenizer, TokenizerError  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck), print_blob=False)
NAME = "fuzz/model.safetensors"

# JSON values of every kind, nested a little, for fields that should hold something else.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


def json_bytes(value):
    return json.dumps(value, allow_nan=True).encode()


# --- safetensors headers --------------------------------------------------------------------


def check_accepted(infos, header_len, file_size):
    """What parse_header accepted is a consistent layout of the file."""
    data_start = 8 + header_len
    spans = []
    for key, info in infos.items():
        assert info.dtype in DTYPE_SIZES
        assert data_start <= info.start <= info.end <= file_size, (key, info, file_size)
        assert info.end - info.start == math.prod(info.shape) * DTYPE_SIZES[info.dtype]
        if info.end > info.start:
            spans.append((info.start, info.end))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, spans


def parse(header, file_size):
    try:
        infos = parse_header(header, file_size, NAME)
    except ModelFolderError as e:
        assert NAME in str(e) and "\n" not in str(e) and len(str(e)) < 1000, str(e)
        return None
    check_accepted(infos, len(header), file_size)
    return infos


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 2**66))
def test_header_arbitrary_bytes(header, extra):
    parse(header, 8 + len(header) + extra)
    parse(header, max(0, len(header) - extra % 64))


@FUZZ
@given(JSON, st.integers(0, 4096))
def test_header_arbitrary_json(value, data_size):
    header = json_bytes(value)
    parse(header, 8 + len(header) + data_size)
    if isinstance(value, dict):
        # As a tensor entry too, under a plausible name.
        header = json_bytes({"wte.weight": value})
        parse(header, 8 + len(header) + data_size)


TENSOR = st.tuples(st.sampled_from(sorted(DTYPE_SIZES)),
                   st.lists(st.integers(0, 5), min_size=0, max_size=3))


def valid_header(tensors):
    """(header dict, data size) with the tensors laid out back to back."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for k, (dtype, shape) in enumerate(tensors):
        n = math.prod(shape) * DTYPE_SIZES[dtype]
        header[f"h.{k}.w"] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    return header, offset


@FUZZ
@given(st.lists(TENSOR, min_size=1, max_size=6), st.data())
def test_header_structured_mutations(tensors, data):
    """Valid headers parse to what they say; one mutation (a field replaced by any JSON value,
    offsets moved, a key dropped, the file cut or padded) gives our error or a consistent
    layout, never a crash."""
    header, size = valid_header(tensors)
    raw = json_bytes(header)
    infos = parse(raw, 8 + len(raw) + size)
    assert infos is not None and len(infos) == len(tensors)

    key = data.draw(st.sampled_from([k for k in header if k != "__metadata__"]))
    how = data.draw(st.sampled_from(["replace", "shift", "drop", "swap", "size", "metadata",
                                     "duplicate"]))
    if how == "replace":
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        header[key][field] = data.draw(JSON | st.lists(st.integers(-3, 2**65), max_size=3))
    elif how == "shift":
        i = data.draw(st.integers(0, 1))
        header[key]["data_offsets"][i] += data.draw(st.integers(-40, 40))
    elif how == "drop":
        del header[key][data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
    elif how == "swap":
        header[key]["data_offsets"].reverse()
    elif how == "size":
        size += data.draw(st.integers(-size - 8, 64))
    elif how == "metadata":
        header["__metadata__"] = data.draw(JSON)
    raw = json_bytes(header)
    if how == "duplicate":
        text = raw.decode()
        entry = json.dumps({key: header[key]})[1:-1]
        raw = (text[:-1] + ", " + entry + "}").encode()
    parse(raw, 8 + len(raw) + size)


class MemorySource:
    """A model folder of one in-memory file, for read_header."""

    def __init__(self, data):
        self.data = data

    def where(self, name):
        return "fuzz/" + name

    async def size(self, name):
        return len(self.data)

    async def read(self, name, start, end):
        if end > len(self.data):
            raise ModelFolderError(f"fuzz/{name} is truncated")
        return self.data[start:end]


@FUZZ
@given(st.binary(max_size=64), st.binary(max_size=200), st.booleans())
def test_read_header_arbitrary_files(prefix, rest, true_length):
    data = prefix + rest
    if true_length:     # a length that matches the rest, so the JSON parser sees it
        data = struct.pack("<Q", len(rest)) + rest
    try:
        infos = asyncio.run(read_header(MemorySource(data), "model.safetensors"))
    except ModelFolderError as e:
        assert NAME in str(e), str(e)
        return
    check_accepted(infos, struct.unpack("<Q", data[:8])[0], len(data))


# --- config.json ----------------------------------------------------------------------------

KEYS = ["n_layer", "n_head", "n_embd", "vocab_size", "n_positions", "n_ctx", "model_type",
        "layer_norm_epsilon", "activation_function", "n_inner", "scale_attn_weights",
        "scale_attn_by_inverse_layer_idx"]


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), JSON | st.integers(-5, 2**70)), st.booleans())
def test_config_arbitrary_values(changes, start_valid):
    d = dict(refmodels.config_dict(refmodels.CONFIGS["tiny"])) if start_valid else {}
    d.update(changes)
    try:
        cfg = GPT2Config.from_json(json.dumps(d), "fuzz/config.json")
    except ModelFolderError as e:
        assert "fuzz/config.json" in str(e) and len(str(e)) < 500, str(e)
        return
    assert cfg.n_embd % cfg.n_head == 0 and cfg.n_layer > 0 and 0 < cfg.layer_norm_epsilon < 1


@FUZZ
@given(st.text(max_size=200))
def test_config_arbitrary_text(text):
    with pytest.raises(ModelFolderError, match="fuzz/config.json"):
        GPT2Config.from_json(text, "fuzz/config.json")


# --- tokenizer files ------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.text(max_size=100), JSON.map(json.dumps),
                 st.dictionaries(st.text(max_size=4), JSON, max_size=6).map(json.dumps)),
       st.text(max_size=100))
def test_tokenizer_files_arbitrary(vocab_text, merges_text):
    try:
        tok = Tokenizer.from_texts(vocab_text, merges_text, "fuzz/vocab.json", "fuzz/merges.txt")
    except TokenizerError as e:
        assert "fuzz/vocab.json" in str(e) or "fuzz/merges.txt" in str(e), str(e)
        return
    # A tokenizer it accepted encodes or refuses text with our error, and decodes its ids.
    for text in ("ab c", "\u00e9\U0001F600 x", ""):
        try:
            ids = tok.encode(text)
        except TokenizerError:
            continue
        assert tok.decode(ids) == text


# --- the tokenizer --------------------------------------------------------------------------

GPT2 = Tokenizer.gpt2()
# The fixtures' "mini" vocabulary: the bytes '!'..'m' only, so most text cannot be encoded.
MINI = Tokenizer.from_texts(*refmodels.tokenizer_files(77))

# Any text, surrogates included (a Python str from JavaScript may hold half of a UTF-16 pair),
# mixed with pieces that stress the pre-tokenizer and the byte-level BPE.
PIECES = ["\ud83d", "\ude00", "\ud83d\ude00", "\udfff", "'s", "'ll", " ", "  ", "\n", "\r\n",
          "\t", "\u00a0", "\u3000", "😀", "é", "e\u0301", "日本語", "<|endoftext|>", "123",
          "Hello", " world", "\x00", "\x1c", "\u200b"]
TEXT = st.lists(st.characters(exclude_categories=()) | st.sampled_from(PIECES),
                max_size=40).map("".join)


def without_lone_surrogates(text):
    """What the tokenizer promises for text with UTF-16 surrogates, written out: a high
    surrogate followed by a low one is the character they encode; any other is U+FFFD."""
    out, i = [], 0
    while i < len(text):
        c = ord(text[i])
        if 0xD800 <= c < 0xDC00 and i + 1 < len(text) and 0xDC00 <= ord(text[i + 1]) < 0xE000:
            out.append(chr(0x10000 + ((c - 0xD800) << 10) + (ord(text[i + 1]) - 0xDC00)))
            i += 2
            continue
        out.append("\ufffd" if 0xD800 <= c < 0xE000 else text[i])
        i += 1
    return "".join(out)


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    """tiktoken's GPT-2 encoding from our vendored files (as tests/test_tokenizer.py builds
    it), or None where tiktoken is not installed."""
    try:
        import tiktoken
        import tiktoken.load
    except ImportError:
        return None
    from test_tokenizer import (ENCODER_JSON_SHA256, GPT2_PATTERN, VOCAB_BPE_SHA256,
                                DATA)
    with mock.patch.dict(os.environ, {"TIKTOKEN_CACHE_DIR": ""}):
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(DATA / "merges.txt"), encoder_json_file=str(DATA / "vocab.json"),
            vocab_bpe_hash=VOCAB_BPE_SHA256, encoder_json_hash=ENCODER_JSON_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


def test_round_trip_any_text(tiktoken_gpt2):
    @FUZZ
    @given(TEXT)
    def check(text):
        ids = GPT2.encode(text)
        assert all(type(i) is int and 0 <= i < GPT2.vocab_size for i in ids)
        assert GPT2.decode(ids) == without_lone_surrogates(text)
        if tiktoken_gpt2 is not None:
            assert ids == tiktoken_gpt2.encode_ordinary(text)
        stream = StreamDecoder(GPT2)
        assert "".join(stream.push(i) for i in ids) + stream.flush() == GPT2.decode(ids)

    check()


@FUZZ
@given(st.lists(st.integers(0, 50256), max_size=30))
def test_stream_decoding_of_any_ids(ids):
    """Any ids (bytes that split UTF-8 characters, or are not UTF-8 at all): streamed pieces
    join to decode(ids), which is valid text."""
    stream = StreamDecoder(GPT2)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) + stream.flush() == GPT2.decode(ids)
    GPT2.decode(ids).encode("utf-8")


@FUZZ
@given(TEXT)
def test_small_vocabulary_refuses_with_our_error(text):
    try:
        ids = MINI.encode(text)
    except TokenizerError as e:
        clean = without_lone_surrogates(text)
        assert clean[e.position:e.position + len(e.chars)] == e.chars, (e.position, e.chars)
        assert f"position {e.position}" in str(e) and "remove or replace" in str(e)
        return
    assert all(0 <= i < 77 for i in ids) and MINI.decode(ids) == without_lone_surrogates(text)


@FUZZ
@given(st.lists(JSON | st.integers(-2, 60000), max_size=5))
def test_decode_refuses_bad_ids(ids):
    try:
        GPT2.decode(ids)
    except TokenizerError as e:
        assert "not in the vocabulary" in str(e)


# --- sampling parameters from a URL ---------------------------------------------------------

PARAM = st.sampled_from(["max_new_tokens", "temperature", "top_k", "top_p", "seed", "model"])


@FUZZ
@given(st.dictionaries(PARAM, st.text(max_size=12) | st.from_regex(r"-?[0-9]{1,12}(\.[0-9]*)?(e-?[0-9]{1,3})?", fullmatch=True)))
def test_params_from_arbitrary_strings(values):
    try:
        p = params_from_strings(values)
    except ValueError as e:
        assert any(name in str(e) for name in values) and len(str(e)) < 200, str(e)
        return
    check_params(**p)


@FUZZ
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1,
                max_size=20),
       st.floats(1e-6, 1e6), st.integers(0, 30), st.floats(1e-6, 1.0))
def test_candidates_of_any_logits(logits, temperature, top_k, top_p):
    try:
        cands = candidates(logits, temperature, top_k or None, top_p)
    except ValueError as e:
        assert "NaN or infinite" in str(e)
        assert not all(math.isfinite(x) for x in logits)
        return
    assert cands and all(0 <= i < len(logits) for i, _ in cands)
    assert abs(sum(p for _, p in cands) - 1) < 1e-9
