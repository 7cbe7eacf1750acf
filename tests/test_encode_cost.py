"""What encoding costs: tokenization linear in the text, and a long chat's reply encoding about
what it keeps (issue 23, item 5).

An outside review measured 400k distinct words taking 17 to 27 times as long as 100k (the
piece cache evicted its oldest entry one at a time, a scan over the slots already freed), and a
400-turn chat encoding 251 times the text it kept (model/chat.py's fit() encoded the whole
conversation again for each dropped turn).
"""

import random
import time

import pytest

from webgpt import bpe
from webgpt.model.chat import fit
from webgpt.tokenizer import Tokenizer

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def distinct_words(n, seed):
    """n words that never repeat: seven random letters and the word's number."""
    r = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(r.choice(letters) for _ in range(7)) + f"{i:06d}" for i in range(n))


def test_the_piece_cache_stays_constant_time_per_piece():
    """Storing distinct pieces past the cache's bound: 4x the pieces within 8x the time (about
    5x here; the eviction of before took 260x)."""
    def store(n):
        cache = bpe.PieceCache()
        t0 = time.perf_counter()
        for i in range(n):
            piece = f"p{i}"
            if cache[piece] is None:
                cache.remember(piece, (i,))
        return time.perf_counter() - t0

    store(1000)     # warm up
    small, large = store(bpe.CACHE_LIMIT), store(4 * bpe.CACHE_LIMIT)
    print(f"{bpe.CACHE_LIMIT} pieces {small * 1e3:.0f} ms, 4x {large * 1e3:.0f} ms")
    assert large < 8 * small + 0.05, (small, large)


def test_the_cache_keeps_what_repeats():
    cache = bpe.PieceCache()
    for i in range(3 * bpe.CACHE_LIMIT):
        cache.remember(f"p{i}", (i,))
        if cache["the"] is None:        # a word seen all along stays
            cache.remember("the", (1,))
    assert cache["the"] == (1,)
    assert len(cache) + len(cache.old) <= 2 * bpe.CACHE_LIMIT
    assert cache["x" * (bpe.CACHE_MAX_PIECE + 1)] is None


def test_tokenization_is_linear_in_the_text():
    """GPT-2's tokenizer on 50k and 200k distinct words (100k and 400k pieces, past the
    cache's bound of 131k): the time within 1.5x of the text's ratio."""
    tok = Tokenizer.gpt2()
    times = {}
    for n in (50_000, 200_000):
        text = distinct_words(n, n)
        t0 = time.perf_counter()
        ids = tok.encode(text)
        times[n] = (time.perf_counter() - t0, len(text), len(ids))
    (t_small, c_small, _), (t_large, c_large, _) = times[50_000], times[200_000]
    ratio, text_ratio = t_large / t_small, c_large / c_small
    print(f"50k words {t_small:.2f} s, 200k words {t_large:.2f} s: {ratio:.1f}x the time for "
          f"{text_ratio:.1f}x the text")
    assert ratio < 1.5 * text_ratio, times


class CountingTokenizer:
    """GPT-2's tokenizer with a chat template, counting the characters it encodes."""

    def __init__(self):
        self.inner = Tokenizer.gpt2()
        self.inner.chat_template = CHATML
        self.encoded = 0

    def encode(self, text, add_special_tokens=True):
        self.encoded += len(text)
        return self.inner.encode(text, add_special_tokens)

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        text = self.inner.apply_chat_template(messages, add_generation_prompt, tokenize=False)
        return self.encode(text) if tokenize else text


def chat(turns, seed, system=True):
    r = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "far", "away"]
    messages = [{"role": "system", "content": "You are terse."}] if system else []
    for i in range(turns):
        for role in ("user", "assistant"):
            n = r.randint(3, 60)
            messages.append({"role": role, "content": " ".join(r.choice(words)
                                                               for _ in range(n))})
    messages.append({"role": "user", "content": "And now?"})
    return messages


def fit_by_dropping_one_turn_at_a_time(tokenizer, messages, n_ctx, max_new_tokens):
    """fit() as it was: render and encode, drop the oldest turn, again (the reference)."""
    room = min(max_new_tokens, n_ctx // 2)
    messages = list(messages)
    first = 1 if messages and messages[0].get("role") == "system" else 0
    dropped = 0
    while True:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        if len(ids) + room <= n_ctx or len(messages) - first <= 1:
            return ids, dropped
        del messages[first]
        dropped += 1
        while len(messages) - first > 1 and messages[first].get("role") != "user":
            del messages[first]
            dropped += 1


@pytest.mark.parametrize("turns,n_ctx,system", [(400, 2048, True), (30, 512, False),
                                                (3, 2048, True), (120, 1024, True)])
def test_a_long_chat_encodes_about_what_it_keeps(turns, n_ctx, system):
    messages = chat(turns, turns, system)
    tok = CountingTokenizer()
    ids, dropped = fit(tok, messages, n_ctx, 256)
    kept = tok.inner.apply_chat_template(messages[:int(system)] + messages[int(system) + dropped:],
                                         add_generation_prompt=True, tokenize=False)
    reference = CountingTokenizer()
    assert (ids, dropped) == fit_by_dropping_one_turn_at_a_time(reference, messages, n_ctx, 256)
    print(f"{turns} turns, context {n_ctx}: dropped {dropped} messages; encoded "
          f"{tok.encoded / len(kept):.1f}x the text kept (before: "
          f"{reference.encoded / len(kept):.1f}x)")
    assert tok.encoded <= 2.5 * len(kept) + 1000, (tok.encoded, len(kept))


def test_a_huge_last_message_is_refused_without_encoding_it_all():
    tok = CountingTokenizer()
    huge = "lorem ipsum dolor sit amet " * 400_000     # 10.8 MB
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="the last message alone is .* tokens or more; with 256 "
                                         "tokens for the reply that is more than the model's "
                                         "context of 2048"):
        fit(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"},
                  {"role": "user", "content": huge}], 2048, 256)
    seconds = time.perf_counter() - t0
    print(f"a {len(huge) / 1e6:.1f} MB message refused in {seconds:.2f} s, "
          f"{tok.encoded} characters encoded")
    assert tok.encoded <= 1 << 16 and seconds < 2


def test_fit_leaves_a_short_chat_whole():
    tok = CountingTokenizer()
    messages = chat(2, 5)
    ids, dropped = fit(tok, messages, 2048, 64)
    assert dropped == 0 and ids == tok.inner.apply_chat_template(messages,
                                                                 add_generation_prompt=True)
    with pytest.raises(ValueError, match="messages is empty"):
        fit(tok, [], 2048, 64)
