"""webgpt.hf_tokenizer against the `tokenizers` library (ids, decoding) and transformers'
AutoTokenizer (whether BOS/EOS are added), on real tokenizer.json files of Llama 3.x, Qwen3 and a
SentencePiece-style BPE (tests/fixtures/tokenizers/SOURCES.md says where each comes from).

Ids must be equal token for token. Where this Python's unicodedata and the library's tables
disagree about NFC (a different Unicode version), a random string is left out, and counted.
"""

import hashlib
import json
import random
import tarfile
import unicodedata
from functools import lru_cache
from pathlib import Path

import pytest

tokenizers = pytest.importorskip(
    "tokenizers", reason="the `tokenizers` library is the reference for tokenizer.json")

from webgpt.hf_tokenizer import HFTokenizer  # noqa: E402
from webgpt.tokenizer import StreamDecoder, TokenizerError  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tokenizers"
DATA = Path(__file__).resolve().parents[1] / "py" / "webgpt" / "data"

# family -> (archive, folder); SOURCES.md has the packages and these sha256 values.
FAMILIES = {
    "llama3.1": ("llama3", "llama3_1"),
    "llama3.0": ("llama3", "llama3"),
    "qwen3": ("qwen3", "qwen3"),
    "mistral": ("mistral", "mistral"),
}
SHA256 = {
    "llama3_1/tokenizer.json": "e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7",
    "llama3_1/tokenizer_config.json":
        "da0e3a7cce6e4d787e85eb1c24d548420e0d7fe2c7a214e192795c46e40d75bb",
    "llama3/tokenizer.json": "c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78",
    "llama3/tokenizer_config.json":
        "c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf",
    "qwen3/tokenizer.json": "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
    "qwen3/tokenizer_config.json":
        "5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63",
    "mistral/tokenizer.json": "fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc",
    "mistral/tokenizer_config.json":
        "747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b",
}
COMPARED = ["llama3.1", "qwen3", "mistral"]     # llama3.0's tokenizer.json differs only in BOS


@lru_cache(maxsize=None)
def _archive(name):
    with tarfile.open(FIXTURES / f"{name}.tar.xz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def files(family):
    """(tokenizer.json text, tokenizer_config.json text) of a family."""
    archive, folder = FAMILIES[family]
    members = _archive(archive)
    return (members[f"{folder}/tokenizer.json"].decode("utf-8"),
            members[f"{folder}/tokenizer_config.json"].decode("utf-8"))


@lru_cache(maxsize=None)
def ours(family):
    return HFTokenizer.from_texts(*files(family))


@lru_cache(maxsize=None)
def library(family):
    return tokenizers.Tokenizer.from_str(files(family)[0])


def lib_ids(family, text):
    return library(family).encode(text).ids


# ---------------------------------------------------------------------------------------------
# A varied corpus.

CODE = '''\
def softmax(x: list[float]) -> list[float]:
    """Numerically stable softmax."""
    m = max(x)
    e = [math.exp(v - m) for v in x]   # shift by the max
    return [v / sum(e) for v in e]

class Foo(Bar):
\tdef __init__(self, *args, **kw):
\t\tself.x = {'a': 1, "b": [2, 3.5e-7, 0x1F, 1_000_000]}
const f = async (url) => { const r = await fetch(url); return r.ok ? r.json() : null; };
'''

CORPUS = {
    "empty": "",
    "one space": " ",
    "hello": "Hello world",
    "english": "The quick brown fox jumps over the lazy dog. It's 5 o'clock; isn't it? (Yes.)",
    "contractions": "it's I'm you're we've they'll he'd can't don't won't y'all o'er",
    "contractions upper": "IT'S I'M YOU'RE WE'VE THEY'LL HE'D 'S 'LL 'Ve 'lL 'rE 'D 'M 'T",
    "contraction folds": "'ſ 'K \u212a'S ſ'S 'ﬆ 'ß 'İ",
    "curly": "it’s I’m “double” ‘single’",
    "digits": "0 1 12 123 1234 12345 123456 1234567 12345678901234567890",
    "numbers": "1,234,567.89 3.14159 -42 1e10 0x1F 2024-01-31 12:34:56 $1,000 50%",
    "unicode numbers": "٠١٢٣٤٥٦٧٨٩ ०१२३ ０１２３ ² ³ ½ Ⅻ ① 〇 𝟘𝟙𝟚",
    "latin": "Ça va? Ğüzel şehir. Ærøskøbing. Straße. Œuvre. naïve café résumé",
    "greek cyrillic": "Ελληνικά: Καλημέρα κόσμε. Русский: Съешь же ещё этих мягких булок.",
    "arabic hebrew": "مرحبا بالعالم. السَّلَامُ عَلَيْكُمْ שלום עולם! עִבְרִית",
    "indic": "नमस्ते दुनिया। হ্যালো ওয়ার্ল্ড தமிழ் తెలుగు ಕನ್ನಡ മലയാളം ਪੰਜਾਬੀ",
    "thai": "สวัสดีชาวโลก ສະບາຍດີ សួស្តីពិភពលោក",
    "cjk": "你好，世界！这是一个测试。日本語のテキスト、ひらがなとカタカナ。한국어 텍스트입니다.",
    "cjk long run": "我能吞下玻璃而不伤身体" * 20,
    "mixed scripts": "Hello世界123مرحبا!Привет😀end",
    "emoji": "😀😃😄😁 👍 ❤️ 🇺🇸🇯🇵 🏳️‍🌈 #️⃣ 1️⃣ ©️ ™",
    "emoji zwj": "👨‍👩‍👧‍👦 👩‍💻 🧑‍🚀 👁️‍🗨️ 🐻‍❄️ ❤️‍🔥 👩‍❤️‍💋‍👨 👋🏻👋🏿",
    "combining": "e\u0301 a\u0300\u0301\u0302 Z\u0335\u0341a\u0328\u0308l\u035dg\u0334o "
                 "\u0301alone",
    "nfd": unicodedata.normalize("NFD", "Ångström café naïve Ελληνικά"),
    "spaces": "a  b   c    d     e      f",
    "leading trailing": "   leading and trailing   ",
    "tabs": "\ta\t\tb\t\t\tc\t",
    "newlines": "a\nb\n\nc\n\n\nd\n",
    "crlf": "line1\r\nline2\r\n\r\nline3\r\n",
    "mixed whitespace": " \t \n \r\n\t\t  x \n\n  \t y\t \n",
    "only whitespace": " \n\t \r\n  \t",
    "trailing newlines": "end\n\n\n\n",
    "unicode spaces": "a\u00a0b\u2002c\u3000d\u1680e\u2028f\u2029g\u0085h\u202fi \u200bj\ufeffk",
    "punctuation": "!!! ??? ... --- *** ### @@@ ((( ))) {{{ }}} <<< >>> \\\\ /// ``` ''' ,,, ;;;",
    "punct newline": "x.\n\ny!\r\n\r\n  z?\n",
    "markdown": "# Title\n\n- item *one*\n- item **two**\n\n```python\nx = 1\n```\n> quote\n",
    "html": "<div class=\"a\"><p>Hello&nbsp;world &amp; &#x1F600;</p><br/></div>",
    "url": "https://example.com/path?q=1&r=two#frag user.name+tag@example.co.uk",
    "code": CODE,
    "json": json.dumps({"a": [1, 2.5, None, True], "s": "caf\u00e9 \"q\"", "e": "😀"}),
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 𠀀𠀁𠀂 𓀀𓀁 𐌰𐌱𐌲 𝄞 \U000e0041\U000e007f \U0010fffd",
    "controls": "".join(map(chr, range(0, 32))) + "\x7f" + "".join(map(chr, range(0x80, 0xa0))),
    "long word": "Pneumonoultramicroscopicsilicovolcanoconiosis " * 3,
    "long number": "3" + "1415926535" * 50,
    "long spaces": " " * 300 + "x" + " " * 299,
    "repeated": "a" * 500 + " " + "é" * 300,
    # Special tokens in text are tokens, as transformers encodes them; malformed ones are text.
    "chatml": "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
              "<|im_start|>assistant\n",
    "llama chat": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "specials in words": "a<|endoftext|>b <|im_end|>c<|eot_id|> d <|end_of_text|><s>x</s>",
    "special lookalikes": "<|im_start <|im_end||> <||> <|begin_of_text|<|eot_id|>> <s </s",
    "think": "<think>\nreasoning\n</think>\n\nanswer <tool_call>{\"a\":1}</tool_call>",
    "mistral specials": "<s>[INST] hi [/INST] ok</s><unk>",
}


def _assigned(cp):
    return unicodedata.category(chr(cp)) not in ("Cn", "Cs")


def _pool(*ranges):
    return [chr(c) for lo, hi in ranges for c in range(lo, hi + 1) if _assigned(c)]


POOLS = [
    _pool((0x20, 0x7E)) + list("\t\n\r  ''''sdmtlvreSDMTLVRE0123456789"),
    _pool((0x00, 0x1F), (0x7F, 0xA0)) + sorted("\x85\xa0\u1680\u2000\u2028\u2029\u3000"),
    _pool((0xA0, 0x24F), (0x370, 0x4FF), (0x1E00, 0x1EFF)),
    _pool((0x590, 0x6FF), (0x900, 0x9FF), (0xE00, 0xE7F)),
    _pool((0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF00, 0xFFEF)),
    _pool((0x300, 0x36F), (0x20D0, 0x20FF), (0x660, 0x669), (0x2150, 0x24FF)),
    _pool((0x1F300, 0x1FAFF), (0x10000, 0x1034F), (0x1D400, 0x1D7FF)) + ["\u200d", "\ufe0f"],
    ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>", "<s>", "</s>", "<|",
     "|>", "<think>", "'s", "'S", "'ll", "'LL", "\n\n", "   "],
]
ANY = [c for c in range(0x30000) if _assigned(c)]


def random_strings(seed, count, max_len):
    """Seeded random strings: from one pool, runs from several pools, or any code point."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        n = rng.randint(0, max_len)
        if k % 3 == 0:
            pool = rng.choice(POOLS)
            out.append("".join(rng.choice(pool) for _ in range(n)))
        elif k % 3 == 1:
            parts = []
            while sum(map(len, parts)) < n:
                pool = rng.choice(POOLS)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
            out.append("".join(parts))
        else:
            out.append("".join(chr(rng.choice(ANY)) for _ in range(n)))
    return out


RANDOM = random_strings(seed=2024, count=300, max_len=60)


@lru_cache(maxsize=None)
def _normalizer_type(family):
    return (json.loads(files(family)[0])["normalizer"] or {}).get("type")


def _nfc_agrees(family, text):
    """Whether this Python's NFC and the library's give the same text (their Unicode versions
    may differ for rare marks); true where the tokenizer does not normalize with NFC."""
    return _normalizer_type(family) != "NFC" or \
        library(family).normalizer.normalize_str(text) == unicodedata.normalize("NFC", text)


# ---------------------------------------------------------------------------------------------
# Same ids and text as the `tokenizers` library.

def test_fixture_files_unchanged():
    for name, digest in SHA256.items():
        archive = {"llama3_1": "llama3"}.get(name.split("/")[0], name.split("/")[0])
        assert hashlib.sha256(_archive(archive)[name]).hexdigest() == digest, name


@pytest.mark.parametrize("family", COMPARED)
def test_corpus_matches_library(family):
    tok, lib = ours(family), library(family)
    for name, text in CORPUS.items():
        ids = tok.encode(text)
        assert ids == lib.encode(text).ids, name
        assert tok.decode(ids) == lib.decode(ids, skip_special_tokens=False), name
        assert tok.decode(ids, skip_special_tokens=True) == \
            lib.decode(ids, skip_special_tokens=True), name
        assert tok.encode(text, add_special_tokens=False) == \
            lib.encode(text, add_special_tokens=False).ids, name


@pytest.mark.parametrize("family", COMPARED)
def test_random_strings_match_library(family):
    tok, lib = ours(family), library(family)
    left_out = 0
    for text in RANDOM:
        if not _nfc_agrees(family, text):
            left_out += 1
            continue
        ids = tok.encode(text)
        assert ids == lib.encode(text).ids, repr(text)
        assert tok.decode(ids) == lib.decode(ids, skip_special_tokens=False), repr(text)
    assert left_out <= len(RANDOM) // 50, f"{left_out} strings left out for NFC"


@pytest.mark.parametrize("family", COMPARED)
def test_long_text_matches_library(family):
    # About 400 kB of English and code, and long runs that are one pre-token each.
    import argparse
    import inspect
    import textwrap
    text = "".join(inspect.getsource(m) for m in (argparse, textwrap, inspect))
    rng = random.Random(7)
    runs = ["".join(rng.choice("0123456789") for _ in range(3000)),
            "".join(rng.choice(POOLS[4]) for _ in range(2000)),
            "".join(rng.choice("!@#$%^&*()_+-=[]{};:,./<>?|~`") for _ in range(3000)),
            "ab" * 2000, "😀" * 1000]
    if family == "mistral":
        # No pre-tokenizer: every paragraph is one piece, merged without a cache.
        text = text[:100_000]
    tok, lib = ours(family), library(family)
    assert tok.encode(text) == lib.encode(text).ids
    for run in runs:
        assert tok.encode(run) == lib.encode(run).ids


@pytest.mark.parametrize("family", ["llama3.1", "qwen3"])
def test_round_trip(family):
    # Byte-level BPE loses nothing but what the normalizer changes.
    tok = ours(family)
    nfc = family == "qwen3"
    for text in list(CORPUS.values()) + RANDOM:
        expected = unicodedata.normalize("NFC", text) if nfc else text
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == expected, repr(text)


def test_mistral_round_trip():
    # SentencePiece style: the space the normalizer prepends is stripped again by the decoder;
    # text with special tokens gets one after each of them, so it is left out here.
    tok = ours("mistral")
    for text in list(CORPUS.values()) + RANDOM:
        if "<s>" in text or "</s>" in text or "<unk>" in text:
            continue
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text, repr(text)


def test_known_ids():
    assert ours("qwen3").encode("<|im_start|>user\nhi<|im_end|>") == \
        [151644, 872, 198, 6023, 151645]
    llama = ours("llama3.1")
    assert llama.encode("Hello world") == [128000, 9906, 1917]
    assert llama.encode("<|begin_of_text|>Hi") == [128000, 128000, 13347]
    assert ours("llama3.0").encode("Hello world") == [9906, 1917]
    # Qwen splits numbers into single digits, Llama 3 into groups of up to three.
    assert ours("qwen3").encode("12345") == [16, 17, 18, 19, 20]
    assert llama.encode("12345", add_special_tokens=False) == [4513, 1774]


# ---------------------------------------------------------------------------------------------
# BOS/EOS as transformers.AutoTokenizer adds them.

@pytest.fixture(scope="module")
def auto_tokenizer(tmp_path_factory):
    transformers = pytest.importorskip(
        "transformers", reason="transformers decides when BOS is added; it is the reference")
    made = {}

    def load(family, config_changes=None):
        key = (family, json.dumps(config_changes, sort_keys=True))
        if key not in made:
            tokenizer_json, config_text = files(family)
            config = json.loads(config_text)
            config.update(config_changes or {})
            folder = tmp_path_factory.mktemp(family)
            (folder / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
            (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
            made[key] = (transformers.AutoTokenizer.from_pretrained(str(folder)),
                         HFTokenizer.from_texts(tokenizer_json, json.dumps(config)))
        return made[key]
    return load


# Texts on which every tokenizer class's pipeline agrees with its tokenizer.json (transformers
# v5 rebuilds LlamaTokenizer's pre-tokenizer, which differs on leading spaces).
BOS_TEXTS = ["Hello world", "I'M HERE 'S", "<|im_start|>user\nhi<|im_end|>", "12345 x",
             "<|begin_of_text|>Hi"]


# transformers v5 drops tokenizer_config.json's add_bos_token/add_eos_token when a tokenizer.json
# is there: the post_processor alone decides. The changed configs check that we do the same.
@pytest.mark.parametrize("family,config_changes", [
    ("llama3.1", None),
    ("llama3.0", None),
    ("qwen3", None),
    ("mistral", None),
    ("llama3.1", {"add_bos_token": False}),
    ("llama3.0", {"add_bos_token": True, "add_eos_token": True}),
    ("mistral", {"add_bos_token": False, "add_eos_token": True}),
])
def test_special_tokens_as_transformers(auto_tokenizer, family, config_changes):
    reference, tok = auto_tokenizer(family, config_changes)
    for text in BOS_TEXTS:
        assert tok.encode(text) == reference.encode(text), text
        assert tok.encode(text, add_special_tokens=False) == \
            reference.encode(text, add_special_tokens=False), text
    assert tok.bos_id == reference.bos_token_id
    assert tok.eos_id == reference.eos_token_id
    assert tok.vocab_size == len(reference)


# ---------------------------------------------------------------------------------------------
# Pipelines the fixtures do not have, built with the `tokenizers` library itself from GPT-2's
# vendored vocabulary.

def _gpt2_bpe():
    vocab = json.loads((DATA / "vocab.json").read_text(encoding="utf-8"))
    lines = (DATA / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    merges = [tuple(line.split(" ")) for line in lines if line]
    return tokenizers.Tokenizer(tokenizers.models.BPE(vocab, merges))


def _compare(lib, texts):
    tok = HFTokenizer.from_texts(lib.to_str())
    for text in texts:
        ids = tok.encode(text)
        assert ids == lib.encode(text).ids, repr(text)
        assert tok.decode(ids) == lib.decode(ids, skip_special_tokens=False), repr(text)
        assert tok.decode(ids, skip_special_tokens=True) == \
            lib.decode(ids, skip_special_tokens=True), repr(text)
    return tok


def test_smollm2_style_pipeline():
    # SmolLM2: Digits(individual_digits) then GPT-2's ByteLevel with its regex.
    pre = tokenizers.pre_tokenizers
    lib = _gpt2_bpe()
    lib.pre_tokenizer = pre.Sequence([pre.Digits(individual_digits=True),
                                      pre.ByteLevel(add_prefix_space=False, use_regex=True)])
    lib.decoder = tokenizers.decoders.ByteLevel()
    lib.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    _compare(lib, list(CORPUS.values()) + RANDOM[:100])


def test_prefix_space_and_contiguous_digits():
    pre = tokenizers.pre_tokenizers
    lib = _gpt2_bpe()
    lib.pre_tokenizer = pre.Sequence([pre.Digits(individual_digits=False),
                                      pre.ByteLevel(add_prefix_space=True, use_regex=True)])
    lib.decoder = tokenizers.decoders.ByteLevel()
    lib.add_special_tokens(["<|endoftext|>"])
    _compare(lib, list(CORPUS.values()) + RANDOM[:100])


@pytest.mark.parametrize("behavior", ["removed", "isolated", "merged_with_previous",
                                      "merged_with_next", "contiguous"])
@pytest.mark.parametrize("invert", [False, True])
def test_split_behaviors(behavior, invert):
    pre = tokenizers.pre_tokenizers
    lib = _gpt2_bpe()
    lib.pre_tokenizer = pre.Sequence([
        pre.Split(tokenizers.Regex(r"[\s\p{P}]+|\d"), behavior=behavior, invert=invert),
        pre.ByteLevel(add_prefix_space=False, use_regex=False)])
    lib.decoder = tokenizers.decoders.ByteLevel()
    _compare(lib, [CORPUS[k] for k in ("english", "numbers", "punct newline", "code", "cjk")])


def test_added_token_options():
    # lstrip/rstrip eat whitespace, single_word needs word boundaries, normalized tokens match
    # the normalized (here lower-cased) text and others the raw text.
    lib = _gpt2_bpe()
    lib.normalizer = tokenizers.normalizers.Lowercase()
    lib.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    lib.decoder = tokenizers.decoders.ByteLevel()
    AddedToken = tokenizers.AddedToken
    lib.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False),
                            AddedToken("<SEP>", rstrip=True),
                            AddedToken("<|endoftext|>")])
    lib.add_tokens([AddedToken("yesterday", normalized=True),
                    AddedToken("ony", single_word=True, normalized=False),
                    AddedToken("New York", normalized=False),
                    AddedToken("new", normalized=False)])
    texts = ["I saw a  <mask> there", "  <mask>", "a<SEP>   b<SEP>\tc <SEP>", "<SEP>",
             "YESTERDAY and Yesterday", "ony Anthony ony, tony (ony)", "New York new newer",
             "<mask><mask> <mask>\t<SEP><SEP> x", "NEW YORK <|endoftext|>New Yorker",
             "éony ony_ ony1 1ony"]
    tok = _compare(lib, texts + list(CORPUS.values()))
    assert tok.special_ids == {lib.token_to_id(t) for t in ("<mask>", "<SEP>", "<|endoftext|>")}


def test_metaspace_pipeline():
    # The newer SentencePiece layout: no normalizer, a Metaspace pre-tokenizer and decoder.
    spec = json.loads(files("mistral")[0])
    spec["normalizer"] = None
    for scheme, split in (("first", False), ("always", True), ("never", False)):
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                                 "prepend_scheme": scheme, "split": split}
        spec["decoder"] = {"type": "Metaspace", "replacement": "\u2581",
                           "prepend_scheme": scheme, "split": split}
        lib = tokenizers.Tokenizer.from_str(json.dumps(spec))
        _compare(lib, list(CORPUS.values()) + RANDOM[:60])


def test_regex_translation_matches_regex_module():
    # The translated patterns against the `regex` module, which reads \p{..} itself (its
    # Unicode version may be newer: only characters this Python knows are used).
    regex = pytest.importorskip("regex", reason="the regex module reads \\p{..} natively")
    from webgpt.hf_pipeline import GPT2_PATTERN
    from webgpt.oniguruma import compile_pattern as _compile
    patterns = [
        GPT2_PATTERN,
        json.loads(files("llama3.1")[0])["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"],
        json.loads(files("qwen3")[0])["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"],
        # o200k-style: letter subcategories, marks, negated classes, possessive quantifiers.
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n/]*|\s*[\r\n]+"
        r"|\s+(?!\S)|\s+",
        # Negated properties, also inside a negated class; \d; \pL.
        r"[^\P{N}5]+|\d|\P{L}{2}|\pL\p{Mn}*",
    ]
    def same_category(ch):
        return regex.fullmatch(r"\p{%s}" % unicodedata.category(ch), ch) is not None
    texts = [t for t in list(CORPUS.values()) + RANDOM if all(map(same_category, set(t)))]
    assert len(texts) > 250
    for pattern in patterns:
        ours_re, theirs = _compile(pattern, "test"), regex.compile(pattern)
        for text in texts:
            assert ours_re.findall(text) == theirs.findall(text), (pattern, text)
    assert _compile(r"\x{1F600}+|\s", "test").findall("😀😀a\u3000") == ["😀😀", "\u3000"]
    with pytest.raises(TokenizerError, match="class intersection"):
        _compile(r"[\p{L}&&[^a]]", "test")


# ---------------------------------------------------------------------------------------------
# The class's own API.

def test_api():
    llama, qwen = ours("llama3.1"), ours("qwen3")
    assert llama.vocab_size == 128256 and qwen.vocab_size == 151669
    assert llama.bos_id == 128000 and llama.eos_id == llama.eot_id == 128009
    assert qwen.bos_id is None and qwen.eot_id == 151645
    assert ours("llama3.0").eot_id == 128001
    assert llama.id_of("<|eot_id|>") == 128009 and llama.id_of("Ġthe") == 279
    assert llama.id_of("no such token") is None
    assert qwen.id_of("<think>") == 151667 and 151667 not in qwen.special_ids
    assert {151643, 151644, 151645} <= qwen.special_ids
    assert llama.token_bytes(9906) == b"Hello" and llama.token_bytes(128009) == b"<|eot_id|>"
    assert llama.decode([128000, 9906], skip_special_tokens=True) == "Hello"
    for bad in (128256, -1, 10**9, "1", 1.0, True):
        with pytest.raises(TokenizerError, match="not in the vocabulary"):
            llama.decode([9906, bad])
    with pytest.raises(TypeError):
        llama.encode(b"bytes")
    # Without tokenizer_config.json: the file's post_processor alone, eos found by name.
    bare = HFTokenizer.from_texts(files("llama3.1")[0])
    assert bare.encode("Hi") == [128000, 13347] and bare.eos_id == 128001


def test_surrogates_become_replacement_characters():
    tok = ours("llama3.1")
    assert tok.encode("\ud83d\ude00") == tok.encode("😀")
    assert tok.encode("a\ud800b") == tok.encode("a\ufffdb")


@pytest.mark.parametrize("family", COMPARED)
def test_stream_decoder(family):
    tok = ours(family)
    text = CORPUS["chatml"] + "Emoji 👨‍👩‍👧‍👦 and 你好世界 ’quotes’ 🇯🇵!" + CORPUS["llama chat"]
    ids = tok.encode(text, add_special_tokens=False)
    for skip in (False, True):
        stream = tok.stream_decoder(skip_special_tokens=skip)
        pieces = [stream.push(i) for i in ids]
        joined = "".join(pieces) + stream.flush()
        expected = tok.decode(ids, skip_special_tokens=skip)
        # SentencePiece decoding strips the space of the very first token; a stream keeps it.
        assert joined == expected or (joined[:1] == " " and joined[1:] == expected)
    # webgpt.tokenizer.StreamDecoder takes the class as it takes GPT-2's Tokenizer.
    stream, view = StreamDecoder(tok), tok.stream_decoder()
    assert "".join(map(stream.push, ids)) + stream.flush() == \
        "".join(map(view.push, ids)) + view.flush()


# ---------------------------------------------------------------------------------------------
# Files it cannot use fail with a sentence naming the file and key.

# A tokenizer.json small enough to build twenty broken variants of in no time.
TINY = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 4, "content": "<s>", "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                      "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None,
              "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
              "byte_fallback": False, "ignore_merges": False,
              "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3}, "merges": ["a b"]},
}


def test_tiny_tokenizer():
    tok = HFTokenizer.from_texts(json.dumps(TINY))
    assert tok.encode("ab a<s>") == [2, 3, 0, 4] == lib_tiny().encode("ab a<s>").ids
    assert tok.decode([2, 3, 0, 4], skip_special_tokens=True) == "ab a"


def lib_tiny():
    return tokenizers.Tokenizer.from_str(json.dumps(TINY))


def test_merges_one_at_a_time_like_the_library():
    # The library merges the lowest-ranked pair, one occurrence at a time: with a merges list
    # out of training order, (a, b) then (ab, a) makes 'aba' of 'abab' (GPT-2's own loop, in
    # webgpt.tokenizer, makes 'ab ab' of it: see test_tokenizer.py).
    spec = json.loads(json.dumps(TINY))
    spec["model"]["vocab"] = {"a": 0, "b": 1, "ab": 2, "aba": 3}
    spec["model"]["merges"] = ["ab a", "a b"]
    text = json.dumps(spec)
    for word in ("abab", "aba", "ababab", "abba"):
        assert HFTokenizer.from_texts(text).encode(word) == \
            tokenizers.Tokenizer.from_str(text).encode(word).ids, word


def test_byte_level_decodes_tokens_that_are_not_byte_symbols_like_the_library():
    # A token that is not all byte symbols (a control, a space or NBSP among them) is its own
    # UTF-8 text to the ByteLevel decoder, as a whole.
    spec = json.loads(json.dumps(TINY))
    tokens = ["\xa0", "a\xa0", "\u0120\xa0", "\u0120\x01", "x y", "\u0120", "\xad\u0120"]
    spec["model"]["vocab"] = {t: i for i, t in enumerate(tokens)}
    spec["model"]["merges"] = []
    spec["added_tokens"] = []
    text = json.dumps(spec)
    ours, lib = HFTokenizer.from_texts(text), tokenizers.Tokenizer.from_str(text)
    for i in range(len(tokens)):
        assert ours.decode([i]) == lib.decode([i]), tokens[i]
    everything = list(range(len(tokens)))
    assert ours.decode(everything) == lib.decode(everything)


def _spec(**changes):
    spec = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            spec[outer][inner] = value
        else:
            spec[key] = value
    return json.dumps(spec)


@pytest.mark.parametrize("text,match", [
    ("{", r"tok\.json is not valid JSON"),
    ("[]", r"tok\.json must hold a JSON object"),
    ("{}", r"tok\.json has no \"model\""),
    (_spec(**{"model.type": "Unigram"}), r"tok\.json has model\.type 'Unigram'"),
    (_spec(**{"model.type": "WordPiece"}), r"model\.type 'WordPiece'"),
    (_spec(**{"model.dropout": 0.1}), r"model\.dropout"),
    (_spec(**{"model.vocab": ["a"]}), r"model\.vocab must be an object"),
    (_spec(**{"model.vocab": {"a": -1}}), r"model\.vocab must map tokens to ids"),
    (_spec(**{"model.merges": ["a b c"]}), r"model\.merges has an entry"),
    (_spec(**{"model.merges": [["a"]]}), r"model\.merges must be"),
    (_spec(pre_tokenizer={"type": "Whitespace"}), r"tok\.json has pre_tokenizer of type "
                                                   r"'Whitespace'"),
    (_spec(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "Punctuation"}]}),
     r"pre_tokenizer\.pretokenizers\[0\] of type 'Punctuation'"),
    (_spec(pre_tokenizer={"type": "Split", "pattern": {"Regex": r"\p{Han}+"},
                          "behavior": "Isolated", "invert": False}),
     r"pre_tokenizer\.pattern uses the Unicode property \\p\{Han\}"),
    (_spec(pre_tokenizer={"type": "Split", "pattern": {"Regex": r"\bx"},
                          "behavior": "Isolated", "invert": False}), r"escape \\b"),
    (_spec(pre_tokenizer={"type": "Split", "pattern": {"Regex": "x"}, "behavior": "Odd",
                          "invert": False}), r"behavior 'Odd'"),
    (_spec(normalizer={"type": "Precompiled"}), r"normalizer of type 'Precompiled'"),
    (_spec(decoder=None), r"tok\.json has no decoder"),
    (_spec(decoder={"type": "WordPiece"}), r"decoder of type 'WordPiece'"),
    (_spec(post_processor={"type": "Nope"}), r"post_processor of type 'Nope'"),
    (_spec(added_tokens=[{"id": 5}]), r"added_tokens\[0\] needs"),
])
def test_unusable_files(text, match):
    with pytest.raises(TokenizerError, match=match):
        HFTokenizer.from_texts(text, json_name="tok.json")


def test_unusable_config():
    tokenizer_json = json.dumps(TINY)
    with pytest.raises(TokenizerError, match=r"cfg\.json is not valid JSON"):
        HFTokenizer.from_texts(tokenizer_json, "{", config_name="cfg.json")
    with pytest.raises(TokenizerError, match=r"cfg\.json has bos_token '<nope>', which is not"):
        HFTokenizer.from_texts(tokenizer_json, '{"bos_token": "<nope>"}', config_name="cfg.json")
    with pytest.raises(TokenizerError, match=r"cfg\.json has eos_token 5; expected a string"):
        HFTokenizer.from_texts(tokenizer_json, '{"eos_token": 5}', config_name="cfg.json")


def test_from_texts_takes_bytes():
    tokenizer_json, config = files("mistral")
    tok = HFTokenizer.from_texts(tokenizer_json.encode("utf-8"), config.encode("utf-8"))
    assert tok.encode("hi") == ours("mistral").encode("hi")
    with pytest.raises(TokenizerError, match="tokenizer.json is not UTF-8"):
        HFTokenizer.from_texts(b"\xff{}")


def test_json_bomb_is_a_sentence():
    """A tokenizer.json of tiny nested lists (cheap to write, gigabytes for json.loads) fails
    with one TokenizerError sentence before it is parsed (webgpt.limits' budget for the file)."""
    bomb = "[" + "[]," * (20 << 20) + "[]]"   # 60 MB of JSON: millions of empty lists
    with pytest.raises(TokenizerError, match="tokenizer.json would take about .* to parse"):
        HFTokenizer.from_texts(bomb)
    with pytest.raises(TokenizerError, match="nested too deeply"):
        HFTokenizer.from_texts("[" * 100000 + "]" * 100000)


# ---------------------------------------------------------------------------------------------
# Hostile tokenizer.json files (issue 23): what a pipeline computes is bounded, patterns that
# backtrack without bound are refused, and a value of the wrong JSON type anywhere is a
# sentence, never a TypeError.

# Every node type this tokenizer reads, once, in a file the mutations below start from.
EVERY_NODE = {
    "version": "1.0",
    "added_tokens": [
        {"id": 4, "content": "<s>", "special": True, "lstrip": False, "rstrip": False,
         "single_word": False, "normalized": False},
        {"id": 5, "content": "ab", "special": False, "lstrip": True, "rstrip": True,
         "single_word": True, "normalized": True}],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        {"type": "Replace", "pattern": {"Regex": "x+"}, "content": "x"},
        {"type": "Strip", "left": False, "right": True}]},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\p{L}+|\p{N}"}, "behavior": "Isolated",
         "invert": False},
        {"type": "Split", "pattern": {"String": "b"}, "behavior": "MergedWithNext",
         "invert": True},
        {"type": "Digits", "individual_digits": True},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
         "split": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": True}]},
    "post_processor": {"type": "Sequence", "processors": [
        {"type": "ByteLevel"},
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                  {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [4], "tokens": ["<s>"]}}},
        {"type": "RobertaProcessing", "cls": ["<s>", 4], "sep": ["<s>", 4]}]},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"}]},
    "model": {"type": "BPE", "dropout": None, "unk_token": "a", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
              "ignore_merges": False,
              "vocab": {"a": 0, "b": 1, "ab": 2, "\u2581": 3, "<0x41>": 6},
              "merges": ["a b"]},
}
WRONG_VALUES = [None, True, 0, -1, 2.5, 10 ** 30, "", "x", "\u2581\u2581", [], [1], ["a", 1],
                {}, {"a": 1}, {"String": 5}, {"Regex": []}]


def _places(node, path=()):
    """The path of every value inside a JSON value (dict keys and list indexes)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        yield path + (key,)
        yield from _places(value, path + (key,))


def _with(spec, path, value):
    spec = json.loads(json.dumps(spec))
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


def test_wrong_json_types_anywhere_are_sentences():
    """Each value of the file replaced by each JSON type in turn (the vocabulary's entries
    aside): loading, encoding and decoding either work or raise TokenizerError."""
    HFTokenizer.from_texts(json.dumps(EVERY_NODE)).encode("Ab x1 <s>")
    tried = refused = 0
    for path in _places(EVERY_NODE):
        if path[:2] == ("model", "vocab") and len(path) > 2:
            continue
        for value in WRONG_VALUES:
            tried += 1
            try:
                tok = HFTokenizer.from_texts(json.dumps(_with(EVERY_NODE, path, value)))
                ids = tok.encode("Ab xx 12 <s> ab\u00e9 ")
                tok.decode(ids)
                tok.decode(ids, skip_special_tokens=True)
                stream = tok.stream_decoder()
                "".join(map(stream.push, ids))
            except TokenizerError as e:
                refused += 1
                assert "\n" not in str(e) and len(str(e)) < 400, str(e)
            except Exception as e:      # noqa: BLE001  (what this test is looking for)
                pytest.fail(f"{'.'.join(map(str, path))} = {value!r}: {type(e).__name__}: {e}")
    print(f"{tried} files with one value changed, {refused} refused in a sentence")


def _normalizer_bomb(steps):
    """tokenizer.json whose normalizer is `steps` Replace normalizers that each double an 'a',
    with an added token normalized at load (the outside review's bomb: 6 KiB)."""
    spec = json.loads(json.dumps(TINY))
    spec["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": "a"}, "content": "aa"}] * steps}
    spec["added_tokens"] = [{"id": 4, "content": "<s>" + "a" * 64, "special": False,
                             "lstrip": False, "rstrip": False, "single_word": False,
                             "normalized": True}]
    return json.dumps(spec)


def test_a_normalizer_that_grows_the_text_is_stopped_before_it_does():
    import tracemalloc
    tracemalloc.start()
    with pytest.raises(TokenizerError, match=r"tokenizer\.json normalizer\.normalizers\[\d+\] "
                                             r"makes a text \d+ characters long, more than the "
                                             r"\d+ it may \(at most 4 times"):
        HFTokenizer.from_texts(_normalizer_bomb(30))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20, peak
    # Loaded without the added token, the bomb goes off on the first text: the same sentence.
    spec = json.loads(_normalizer_bomb(30))
    spec["added_tokens"] = []
    tok = HFTokenizer.from_texts(json.dumps(spec))
    with pytest.raises(TokenizerError, match="makes a text"):
        tok.encode("a" * 100)
    # Growth within the bound is the library's: 'a' doubled twice.
    tok = HFTokenizer.from_texts(_normalizer_bomb(2))
    assert tok.encode("a b") == \
        tokenizers.Tokenizer.from_str(_normalizer_bomb(2)).encode("a b").ids


def test_a_regex_replace_and_the_decoder_are_bounded_too():
    spec = json.loads(json.dumps(TINY))
    spec["normalizer"] = {"type": "Replace", "pattern": {"Regex": "a"}, "content": "a" * 1000}
    tok = HFTokenizer.from_texts(json.dumps(spec))
    with pytest.raises(TokenizerError, match=r"normalizer makes a text"):
        tok.encode("a" * 50)
    spec = json.loads(json.dumps(TINY))
    spec["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "a"}, "content": "aa"}] * 40}
    tok = HFTokenizer.from_texts(json.dumps(spec))
    with pytest.raises(TokenizerError, match=r"decoder makes a text"):
        tok.decode([0])


# Pre-tokenizer patterns of published tokenizers (tokenizer.json's Split, as each ships it).
PUBLISHED_PATTERNS = {
    "GPT-2 (ByteLevel's own)": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "Llama 3, GLM-4": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "Qwen2, Qwen3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "GPT-4o (o200k)": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "Mistral Tekken": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "DeepSeek V3 (its three)": r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "DeepSeek V3 (CJK)": r"[一-龥\u3040-ゟ゠-ヿ]+",
    "DeepSeek V3 (digits)": r"\p{N}{1,3}",
    "DeepSeek Coder (trailing space)": r"\s+$",
}

BACKTRACKING_PATTERNS = {
    r"(a+)+$": "repeats something that itself repeats",
    r"(a|a)*$": "repeats alternatives that can start with the same character",
    r"(?:a|ab)*c": "repeats alternatives that can start with the same character",
    r"(\s*)*x": "repeats something that can match nothing",
    r"(a{1,3})+$": "repeats something that itself repeats",
    r"(x+x+)+y": "repeats something that itself repeats",
    r"(a)\1": "has a backreference",
    r"\s*\s*\s*x": "has 3 repeats in a row that can take the same characters",
    r"\p{L}*[a-z]*\p{L}+Q": "has 3 repeats in a row",
    r"(?i:A)+(?i:a)*(?i:a)*b": "has 3 repeats in a row",
}


@pytest.mark.parametrize("name", list(PUBLISHED_PATTERNS))
def test_published_patterns_load(name):
    spec = json.loads(json.dumps(TINY))
    spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": PUBLISHED_PATTERNS[name]},
                             "behavior": "Isolated", "invert": False}
    text = json.dumps(spec)
    sample = "Hello, world! 12345 don't  \n\n tabs\there 你好吗 ÀÉÎ "
    assert HFTokenizer.from_texts(text).encode(sample) == \
        tokenizers.Tokenizer.from_str(text).encode(sample).ids


@pytest.mark.parametrize("pattern", list(BACKTRACKING_PATTERNS))
def test_patterns_that_backtrack_without_bound_are_refused_at_load(pattern):
    """(a+)+$ on 41 characters never ended (Python's re has no retry limit); such patterns
    are refused when the tokenizer loads, naming the pattern and what is wrong with it."""
    for node in ({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
                  "invert": False},
                 {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {
                     "type": "Split", "pattern": {"Regex": pattern}, "behavior": "Removed",
                     "invert": True}]}):
        spec = json.loads(json.dumps(TINY))
        spec["pre_tokenizer"] = node
        with pytest.raises(TokenizerError) as info:
            HFTokenizer.from_texts(json.dumps(spec))
        message = str(info.value)
        assert repr(pattern) in message and BACKTRACKING_PATTERNS[pattern] in message, message
    spec = json.loads(json.dumps(TINY))
    spec["normalizer"] = {"type": "Replace", "pattern": {"Regex": pattern}, "content": ""}
    with pytest.raises(TokenizerError, match="backtrack"):
        HFTokenizer.from_texts(json.dumps(spec))
