"""The GPT-2 tokenizer against tiktoken, an implementation we did not write (Rust regex + BPE).

tiktoken.get_encoding("gpt2") would download OpenAI's encoder.json and vocab.bpe, and CI has no
network. So the reference is built here from our vendored copies, by tiktoken's own loader for
those files (data_gym_to_mergeable_bpe_ranks: its byte table, its check that the two files agree,
and the sha256 values tiktoken pins for OpenAI's originals) and GPT-2's pre-tokenizer pattern.
"""

import hashlib
import json
import os
import random
import sys
import unicodedata
from pathlib import Path
from unittest import mock

import pytest

tiktoken = pytest.importorskip(
    "tiktoken", reason="tiktoken is the reference these tests compare the tokenizer with")
import tiktoken.load  # noqa: E402

from webgpt.tokenizer import (  # noqa: E402
    BYTE_SYMBOLS, WHITE_SPACE, StreamDecoder, Tokenizer, TokenizerError, pretokenize)

DATA = Path(__file__).resolve().parents[1] / "py" / "webgpt" / "data"

# GPT-2's pre-tokenizer pattern, as OpenAI's encoder.py writes it.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# What tiktoken pins for https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/...
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


@pytest.fixture(scope="module")
def reference():
    # An empty cache dir turns off tiktoken's file cache, which would otherwise copy our files
    # into the temp directory.
    with mock.patch.dict(os.environ, {"TIKTOKEN_CACHE_DIR": ""}):
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(DATA / "merges.txt"),
            encoder_json_file=str(DATA / "vocab.json"),
            vocab_bpe_hash=VOCAB_BPE_SHA256,
            encoder_json_hash=ENCODER_JSON_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.gpt2()


# ---------------------------------------------------------------------------------------------
# A varied corpus.

PYTHON_CODE = '''\
def softmax(x: list[float]) -> list[float]:
    """Numerically stable softmax."""
    m = max(x)
    e = [math.exp(v - m) for v in x]   # shift by the max
    return [v / sum(e) for v in e]

class Foo(Bar):
\tdef __init__(self, *args, **kw):
\t\tsuper().__init__(*args, **kw)  # tabs, not spaces
\t\tself.x = {'a': 1, "b": [2, 3.5e-7, 0x1F, 1_000_000]}

if __name__ == "__main__":
    print(f"{softmax([1, 2, 3])!r:>10}")
'''

JS_CODE = '''\
const fetchJson = async (url) => {
  const res = await fetch(url, { headers: { "Accept": "application/json" } });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${res.statusText}`);
  return res.json();
};
// arrow fns, template literals, regex: /^\\s*(\\d+)\\s*$/g
let x = a?.b ?? c || d && !e; x >>>= 2; x === y !== z;
'''

JSON_TEXT = '''{
  "n_layer": 12, "n_head": 12, "n_embd": 768,
  "layer_norm_epsilon": 1e-05,
  "nested": {"list": [1, -2, 3.14, true, false, null], "empty": {}, "s": "caf\\u00e9 \\"q\\""},
  "emoji": "😀", "ws": "\\t\\n"
}
'''

CORPUS = {
    "empty": "",
    "one space": " ",
    "hello": "Hello world",
    "english": ("The quick brown fox jumps over the lazy dog. It's 5 o'clock somewhere; "
                "isn't it? \"Quotes\" and (parentheses) -- dashes -- and ellipses..."),
    "endoftext is text": "a<|endoftext|>b <|endoftext|> <|endoftext|>\n<|endoftext|>",
    # Contractions: only lower-case ASCII ones are pieces of their own.
    "contractions": "it's I'm you're we've they'll he'd can't don't won't y'all o'er",
    "contractions upper": "IT'S I'M YOU'RE WE'VE THEY'LL HE'D CAN'T 'S 'T 'RE 'Ve 'lL",
    "contractions curly": "it’s I’m you’re we’ve they’ll he’d can’t ‘quoted’ “double”",
    "apostrophes": "'s 's's ''s '''s 'x 're'll 'l 'v 'r ' ' ''' 'sam 'tis 'd'd '",
    "apostrophe after punct": "!'s ?'re .'ll ('m) \"'d\" 's\n's\t's",
    "digits": "0 1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890",
    "numbers with separators": "1,234,567.89 1.234.567,89 1 234 567 1_000_000 3.14159 -42 +7 "
                               "1e10 6.022e23 0x1F 0b1010 2024-01-31 12:34:56 $1,000 50% 3/4",
    "unicode numbers": "٠١٢٣٤٥٦٧٨٩ ०१२३ ０１２３ ² ³ ½ ¾ Ⅻ ⅻ ① ⑩ 〇 ፩ 𝟘𝟙𝟚 𐄇",
    "latin": "Ça va? Ğüzel şehir. Ærøskøbing. Straße. Œuvre. naïve café résumé façade",
    "greek cyrillic": "Ελληνικά: Καλημέρα κόσμε. Русский: Съешь же ещё этих мягких булок.",
    "arabic hebrew": "مرحبا بالعالم. السَّلَامُ عَلَيْكُمْ שלום עולם! עִבְרִית",
    "indic": "नमस्ते दुनिया। হ্যালো ওয়ার্ল্ড தமிழ் తెలుగు ಕನ್ನಡ മലയാളം ਪੰਜਾਬੀ",
    "thai lao khmer": "สวัสดีชาวโลก ສະບາຍດີ សួស្តីពិភពលោក",
    "cjk": "你好，世界！这是一个测试。日本語のテキスト、ひらがなとカタカナ。한국어 텍스트입니다.",
    "cjk long run": "我能吞下玻璃而不伤身体" * 20,
    "mixed scripts": "Hello世界123مرحبا!Привет😀end",
    "emoji": "😀😃😄😁 👍 ❤️ 🇺🇸🇯🇵 🏳️‍🌈 #️⃣ 1️⃣ ©️ ™",
    "emoji zwj": "👨‍👩‍👧‍👦 👩‍💻 🧑‍🚀 👁️‍🗨️ 🐻‍❄️ 😶‍🌫️ ❤️‍🔥 👩‍❤️‍💋‍👨",
    "emoji skin tones": "👋🏻👋🏼👋🏽👋🏾👋🏿 🧑🏽‍🤝‍🧑🏿 👍🏾 text👍🏻text",
    "combining": "e\u0301 a\u0300\u0301\u0302 Z\u0335\u0341\u0327a\u0328\u0308l\u035dg\u0334o "
                 "\u0301alone n\u0303o\u0308 \u20dd\u20e3 q\u0307\u0323",
    "nfd vs nfc": unicodedata.normalize("NFD", "Ångström café naïve") + " "
                  + unicodedata.normalize("NFC", "Ångström café naïve"),
    "spaces": "a  b   c    d     e      f",
    "leading trailing": "   leading and trailing   ",
    "tabs": "\ta\t\tb\t\t\tc\t",
    "newlines": "a\nb\n\nc\n\n\nd\n",
    "crlf": "line1\r\nline2\r\n\r\nline3\r\n",
    "mixed whitespace": " \t \n \r\n\t\t  x \n\n  \t y\t \n",
    "only whitespace": " \n\t \r\n  \t",
    "trailing newlines": "end\n\n\n\n",
    "space before punct": "a , b . c ! d ? e ; f : g ... h --- i",
    "space before number": "x 1 y  2 z   3",
    "unicode spaces": "a\u00a0b\u2002c\u2003d\u2009e\u200af\u202fg\u205fh\u3000i\u1680j",
    "unicode spaces runs": "\u00a0\u00a0x \u3000\u3000y\u2028\u2029z \u0085\u0085w\u00a0 \u00a0v",
    "line separators": "one\u2028two\u2029three\u0085four\x0bfive\x0csix",
    "info separators": "a\x1cb\x1dc\x1ed\x1fe \x1c \x1d\x1d \x1fx",
    "not whitespace": "a\u200bb\u200cc\u200dd\ufeffe\u180ef\u2060g \u200b \ufeff",
    "control chars": ("".join(map(chr, range(0, 32))) + "\x7f"
                      + "".join(map(chr, range(0x80, 0xa0)))),
    "c1 with spaces": " \x80 \x81\x82 \x9f\xad \u00ad",
    "punctuation runs": "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} "
                        "<<< >>> ||| \\\\\\ /// ~~~ ``` ''' \"\"\" ,,, ;;; ::: === +++",
    "markdown": "# Title\n\n- item *one*\n- item **two**\n\n```python\nx = 1\n```\n> quote\n",
    "html": "<div class=\"a\"><p>Hello&nbsp;world &amp; &#x1F600;</p><br/></div>",
    "url email": "https://example.com/path?q=1&r=two#frag user.name+tag@example.co.uk",
    "python": PYTHON_CODE,
    "javascript": JS_CODE,
    "json": JSON_TEXT,
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 𝒮𝒸𝓇𝒾𝓅𝓉 𠀀𠀁𠀂 𓀀𓀁 𐌰𐌱𐌲 🜁🜂 𝄞 \U000e0041\U000e007f \U0010fffd",
    "private use": "\ue000\uf8ff \U000f0000 \U00100000",
    "specials": "\ufffd\ufffc\ufeff\uffff\ufffe",
    "long word": "Pneumonoultramicroscopicsilicovolcanoconiosis " * 3,
    "long number": "3" + "1415926535" * 50,
    "long punctuation": "=" * 500 + "\n" + "-" * 333,
    "long spaces": " " * 1000 + "x" + " " * 999,
    "repeated char": "a" * 1000 + " " + "é" * 500,
}


def _assigned(code_point):
    # Unassigned code points (Cn) are left out: a Unicode newer than this Python's unicodedata
    # (tiktoken's Rust tables) may have assigned them as letters. Surrogates can't be UTF-8.
    return unicodedata.category(chr(code_point)) not in ("Cn", "Cs")


def _pool(*ranges):
    return [chr(c) for lo, hi in ranges for c in range(lo, hi + 1) if _assigned(c)]


POOLS = {
    "ascii": _pool((0x20, 0x7E)) + list("\t\n\r  '''sdmtlvre"),
    "controls": _pool((0x00, 0x1F), (0x7F, 0xA0)),
    "whitespace": sorted(WHITE_SPACE) + ["\x1c", "\x1d", "\x1e", "\x1f", "\u200b", "\ufeff"],
    "latin": _pool((0xA0, 0x24F), (0x1E00, 0x1EFF)),
    "greek cyrillic": _pool((0x370, 0x3FF), (0x400, 0x4FF)),
    "rtl": _pool((0x590, 0x5FF), (0x600, 0x6FF)),
    "indic": _pool((0x900, 0x97F), (0x980, 0x9FF), (0xE00, 0xE7F)),
    "cjk": _pool((0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF00, 0xFFEF)),
    "combining": _pool((0x300, 0x36F), (0x20D0, 0x20FF), (0xFE20, 0xFE2F)),
    "numbers": _pool((0x30, 0x39), (0x660, 0x669), (0x2150, 0x218B), (0x2460, 0x24FF)),
    "symbols": _pool((0x2000, 0x2BFF)),
    "emoji": _pool((0x1F300, 0x1FAFF), (0x1F1E6, 0x1F1FF), (0x1F3FB, 0x1F3FF))
             + ["\u200d", "\ufe0f", "\u20e3"],
    "astral": _pool((0x10000, 0x1FFFF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F)),
}
ALL_POOLS = [c for pool in POOLS.values() for c in pool]
ANY_CODE_POINT = [c for c in range(sys.maxunicode + 1) if _assigned(c)]


def random_strings(seed, count, max_len):
    """Seeded random strings: some from one pool, some mixing pools, some from any code point."""
    rng = random.Random(seed)
    pools = list(POOLS.values())
    out = []
    for k in range(count):
        n = rng.randint(0, max_len)
        mode = k % 4
        if mode == 0:
            pool = rng.choice(pools)
            out.append("".join(rng.choice(pool) for _ in range(n)))
        elif mode == 1:
            # Runs from different pools, as real mixed text has.
            parts = []
            while sum(map(len, parts)) < n:
                pool = rng.choice(pools)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
            out.append("".join(parts))
        elif mode == 2:
            out.append("".join(rng.choice(ALL_POOLS) for _ in range(n)))
        else:
            out.append("".join(chr(rng.choice(ANY_CODE_POINT)) for _ in range(n)))
    return out


RANDOM = random_strings(seed=1234, count=400, max_len=60)
RANDOM_LONG = random_strings(seed=99, count=8, max_len=20000)


# ---------------------------------------------------------------------------------------------
# Same ids as tiktoken.

@pytest.mark.parametrize("name", CORPUS)
def test_matches_tiktoken(tok, reference, name):
    text = CORPUS[name]
    assert tok.encode(text) == reference.encode_ordinary(text)


@pytest.mark.parametrize("name", CORPUS)
def test_decode_roundtrip(tok, name):
    text = CORPUS[name]
    assert tok.decode(tok.encode(text)) == text


def test_random_strings_match_tiktoken(tok, reference):
    for text in RANDOM:
        ids = tok.encode(text)
        assert ids == reference.encode_ordinary(text), repr(text)
        assert tok.decode(ids) == text


def test_long_random_strings_match_tiktoken(tok, reference):
    for text in RANDOM_LONG:
        ids = tok.encode(text)
        assert ids == reference.encode_ordinary(text)
        assert tok.decode(ids) == text


def test_long_runs_match_tiktoken(tok, reference):
    # One pre-token of thousands of bytes: the heap BPE must give what the plain loop gives.
    rng = random.Random(7)
    cases = [
        "".join(rng.choice("0123456789") for _ in range(5000)),
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5000)),
        "".join(rng.choice(POOLS["cjk"]) for _ in range(3000)),
        "".join(rng.choice("!@#$%^&*()_+-=[]{};:,./<>?|~`") for _ in range(5000)),
        "ab" * 3000, "aaab" * 1000, "\u00e9" * 3000, "😀" * 2000,
    ]
    for text in cases:
        assert tok.encode(text) == reference.encode_ordinary(text)


def test_python_sources_match_tiktoken(tok, reference):
    # About a megabyte of real English and code: the standard library's own sources.
    import argparse
    import collections
    import dataclasses
    import email.message
    import inspect
    import pathlib
    import typing
    modules = [argparse, collections, dataclasses, email.message, json, pathlib, typing, inspect]
    text = "".join(inspect.getsource(m) for m in modules)
    assert len(text) > 300_000
    assert tok.encode(text) == reference.encode_ordinary(text)


def test_surrogates_like_tiktoken(tok, reference):
    # Strings from JavaScript may hold UTF-16 surrogates: a valid pair is the character it
    # encodes, a lone one becomes U+FFFD, as tiktoken does.
    for text in ["\ud83d\ude00", "a\ud800b", "\udfff", "x \udc80\udc81 y", "\ud83d"]:
        assert tok.encode(text) == reference.encode_ordinary(text)
    assert tok.decode(tok.encode("\ud83d\ude00")) == "😀"


# ---------------------------------------------------------------------------------------------
# The pre-tokenizer against the `regex` module (which GPT-2 itself used), where installed.

def test_pretokenize_matches_regex_module():
    regex = pytest.importorskip("regex", reason="the regex module is the pattern's own engine")
    pattern = regex.compile(GPT2_PATTERN)
    for text in list(CORPUS.values()) + RANDOM + RANDOM_LONG[:2]:
        assert pretokenize(text) == pattern.findall(text), repr(text[:200])


def test_pretokenize_whitespace_edges():
    # \s is Unicode White_Space: U+0085, U+00A0, U+2028 and U+3000 are whitespace ...
    assert pretokenize("a\u2028\u2028b") == ["a", "\u2028", "\u2028", "b"]
    assert pretokenize("a \u00a0b") == ["a", " ", "\u00a0", "b"]
    assert pretokenize("a\x85") == ["a", "\x85"]
    assert pretokenize("a \u3000 b") == ["a", " \u3000", " b"]
    # ... but the information separators U+001C..U+001F, which str.isspace() counts, are not;
    # nor are U+200B and U+FEFF (format characters).
    assert pretokenize("a\x1c\x1fb c") == ["a", "\x1c\x1f", "b", " c"]
    assert pretokenize(" \x1e") == [" \x1e"]
    assert pretokenize("a\u200b\ufeffb") == ["a", "\u200b\ufeff", "b"]
    # The last space of a run goes with the next word; a lone newline stands alone.
    assert pretokenize("a   b") == ["a", "  ", " b"]
    assert pretokenize("a \n b") == ["a", " \n", " b"]
    assert pretokenize("a\nb") == ["a", "\n", "b"]
    assert pretokenize("a\n\nb") == ["a", "\n", "\n", "b"]
    assert pretokenize("a \t\n") == ["a", " \t\n"]
    assert pretokenize("x's 'S ’s") == ["x", "'s", " '", "S", " ’", "s"]


def test_pretokens_join_back():
    for text in list(CORPUS.values()) + RANDOM:
        assert "".join(pretokenize(text)) == text


# ---------------------------------------------------------------------------------------------
# The tokenizer's own API.

def test_gpt2_vocabulary(tok):
    assert tok.vocab_size == 50257
    assert tok.eot_id == 50256
    assert tok.decode([tok.eot_id]) == "<|endoftext|>"
    # encode never produces the special token from text.
    assert tok.eot_id not in tok.encode("<|endoftext|>")
    assert tok.encode("Hello world") == [15496, 995]


def test_vendored_files_unchanged():
    assert hashlib.sha256((DATA / "merges.txt").read_bytes()).hexdigest() == VOCAB_BPE_SHA256
    assert hashlib.sha256((DATA / "vocab.json").read_bytes()).hexdigest() == ENCODER_JSON_SHA256
    assert (DATA / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")


def test_byte_symbols_are_gpt2s():
    # Every byte has its own printable symbol; the space is 'Ġ' and the newline 'Ċ'.
    assert len(set(BYTE_SYMBOLS)) == 256
    assert BYTE_SYMBOLS[ord(" ")] == "Ġ" and BYTE_SYMBOLS[ord("\n")] == "Ċ"
    assert all(s.isprintable() and not s.isspace() for s in BYTE_SYMBOLS)


def test_decode_invalid_utf8_replaced(tok, reference):
    # Token 447 is the bytes e2 80 (the start of '’'): alone it is not UTF-8.
    assert reference.decode_bytes([447]) == b"\xe2\x80"
    assert tok.decode([447]) == reference.decode([447]) == "\ufffd"
    assert tok.decode([447, 247]) == "’"


def test_decode_unknown_id(tok):
    for bad in (50257, -1, 10**9):
        with pytest.raises(TokenizerError, match=str(bad)):
            tok.decode([1, bad])


def test_stream_decoder_holds_back_split_characters(tok):
    text = "Emoji 👨‍👩‍👧‍👦 and 你好世界 and ’quotes’ 🇯🇵!"
    ids = tok.encode(text)
    # The text must really split characters across tokens for this test to mean anything.
    assert any(_is_partial_utf8(tok.token_bytes(i)) for i in ids)
    stream = StreamDecoder(tok)
    pieces = [stream.push(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + stream.flush() == text
    assert "".join(pieces) == text  # all characters were complete by the last token


def test_stream_decoder_partial_and_flush(tok):
    # '😀' is f0 9f 98 80, two tokens in GPT-2: f0 9f 98 | 80.
    first, second = tok.encode("😀")
    stream = StreamDecoder(tok)
    assert stream.push(first) == ""
    assert stream.push(second) == "😀"
    # A character that never completes comes out as U+FFFD on flush.
    assert stream.push(first) == ""
    assert stream.flush() == "\ufffd"
    # The stream is usable again after flush.
    assert stream.push(tok.encode("ok")[0]) == "ok"
    assert stream.flush() == ""


def test_stream_decoder_equals_decode_on_random_ids(tok):
    rng = random.Random(5)
    for _ in range(200):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randint(0, 12))]
        stream = StreamDecoder(tok)
        assert "".join(stream.push(i) for i in ids) + stream.flush() == tok.decode(ids)


def _is_partial_utf8(b):
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


# ---------------------------------------------------------------------------------------------
# A reduced, character-level vocabulary (a toy model's vocab.json of ~100 byte symbols).

def char_level_tokenizer():
    chars = "\n" + "".join(map(chr, range(0x20, 0x7F)))
    vocab = {BYTE_SYMBOLS[ord(c)]: i for i, c in enumerate(chars)}
    return Tokenizer.from_texts(json.dumps(vocab), "#version: 0.2\n")


def test_char_level_vocab_encodes_known_chars():
    t = char_level_tokenizer()
    assert t.vocab_size == 96
    assert t.eot_id is None
    ids = t.encode("To be, or not to be:\nthat is the question.")
    assert len(ids) == len("To be, or not to be:\nthat is the question.")
    assert t.decode(ids) == "To be, or not to be:\nthat is the question."


def test_char_level_vocab_names_missing_char():
    t = char_level_tokenizer()
    with pytest.raises(TokenizerError) as info:
        t.encode("Café au lait")
    message = str(info.value)
    assert "'é'" in message and "U+00E9" in message and "position 3" in message
    assert info.value.position == 3 and info.value.chars == "é"
    # A tab is a control character the toy vocabulary lacks; an emoji is four missing bytes.
    with pytest.raises(TokenizerError, match=r"'\\t' \(U\+0009\) at position 1"):
        t.encode("a\tb")
    with pytest.raises(TokenizerError, match="position 6") as info:
        t.encode("hello 😀")
    assert info.value.chars == "😀"


def test_merges_file_errors():
    with pytest.raises(TokenizerError, match="merges.txt line 3"):
        Tokenizer.from_texts('{"a": 0}', "#version: 0.2\na b\nabc\n")
    with pytest.raises(TokenizerError, match="vocab.json is not valid JSON"):
        Tokenizer.from_texts('{"a": 0', "")
    with pytest.raises(TokenizerError, match="vocab.json"):
        Tokenizer.from_texts('["a"]', "")
    # Windows line ends and a missing '#version' line are accepted.
    t = Tokenizer.from_texts('{"a": 0, "b": 1, "ab": 2}', "a b\r\n")
    assert t.encode("ab") == [2]


def test_bpe_merges_all_occurrences_of_the_best_pair_first():
    # GPT-2's loop merges every occurrence of the lowest-ranked pair before looking at the
    # pairs that creates, even when a merges list ranks such a pair lower (no trained list
    # does). 'abab': (a, b) merges twice -> ab ab, and (ab, a) never gets a chance; merging
    # one occurrence at a time would give aba b.
    vocab = {s: i for i, s in enumerate(["a", "b", "ab", "aba"])}
    t = Tokenizer(vocab, [("ab", "a"), ("a", "b")])
    assert [t.decode([i]) for i in t.encode("abab")] == ["ab", "ab"]
    assert [t.decode([i]) for i in t.encode("aba")] == ["aba"]
