"""Chat against transformers: the template's ids, greedy replies, the KV cache across turns,
running out of context, stop strings, no template, and the command line (--message and the
REPL through stdin).

The model is Qwen2-shaped, random (transformers, fixed seed), with a small byte-level BPE
tokenizer.json that has ChatML's special tokens, and the real Qwen2.5-Instruct chat template
(tests/fixtures/chat_templates, SOURCES.md). transformers' own tokenizer object, built from the
same tokenizer.json and template, gives the reference ids; its model.generate the reference
replies.
"""

import asyncio
import json
import os
import subprocess
import sys
import warnings

import pytest

import hfmodels

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import webgpt  # noqa: E402
from webgpt.chat_template import ChatTemplateError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What light through yonder window breaks?"}]


def hf_tokenizer(path):
    from transformers import PreTrainedTokenizerFast

    with open(os.path.join(path, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(path, "tokenizer.json"),
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=cfg["chat_template"])


def hf_reply(model, tok, messages, ends, n):
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             eos_token_id=ends, pad_token_id=ends[1])
    new = out[0, len(ids):].tolist()
    while new and new[-1] in ends:
        new.pop()
    return tok.decode(new, skip_special_tokens=True), ids


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("chat"))
    model, ends = hfmodels.write_chat_folder(path, seed=3)
    return path, model, hf_tokenizer(path), ends


def test_template_ids_equal_transformers(folder):
    path, _, tok, _ = folder

    mine = asyncio.run(webgpt.open_folder(path)).tokenizer
    turns = MESSAGES + [{"role": "assistant", "content": "The east."},
                        {"role": "user", "content": "<b>And Juliet</b> is the sun? 🌞"}]
    for messages in (MESSAGES[1:], MESSAGES, turns):
        for gen in (False, True):
            want = tok.apply_chat_template(messages, add_generation_prompt=gen, return_dict=False)
            assert mine.apply_chat_template(messages, add_generation_prompt=gen) == want
            text = tok.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
            assert mine.apply_chat_template(messages, add_generation_prompt=gen,
                                            tokenize=False) == text


def test_greedy_reply_equals_transformers_and_turns_reuse_the_cache(adapter, folder):
    path, hf, tok, ends = folder
    n = 24
    want1, _ = hf_reply(hf, tok, MESSAGES, ends, n)

    async def run():
        model = await webgpt.load(path)
        try:
            first = await model.chat(MESSAGES, max_new_tokens=n, temperature=0)
            full1 = model.stats["prefill_tokens"]
            turn2 = MESSAGES + [{"role": "assistant", "content": first},
                                {"role": "user", "content": "Speak again."}]
            second = await model.chat(turn2, max_new_tokens=n, temperature=0)
            prefill2 = model.stats["prefill_tokens"]
            all2 = len(model.tokenizer.apply_chat_template(turn2, add_generation_prompt=True))
            model.cached_ids = []  # forget the cache: the same turn computed afresh
            again = await model.chat(turn2, max_new_tokens=n, temperature=0)
            return first, full1, second, prefill2, all2, again, model.stats["prefill_tokens"]
        finally:
            model.release()

    first, full1, second, prefill2, all2, again, fresh = asyncio.run(run())
    assert first == want1
    want2, ids2 = hf_reply(hf, tok, MESSAGES + [{"role": "assistant", "content": first},
                                                {"role": "user", "content": "Speak again."}],
                           ends, n)
    assert second == want2 == again
    assert fresh == all2 == len(ids2)
    print(f"turn 1 prefilled {full1} tokens; turn 2 {prefill2} of {all2}")
    # The first turn's prompt is not run again: only the reply (where its text re-tokenizes
    # differently from the generated ids: a random model writes broken UTF-8) and the new turn.
    assert prefill2 <= all2 - full1


def test_context_overflow_drops_old_turns_and_goes_on(adapter, folder):
    path = folder[0]
    long = "the quick brown fox jumps over the lazy dog " * 3

    async def run():
        model = await webgpt.load(path)
        try:
            messages = [{"role": "system", "content": "You are terse."}]
            for i in range(8):
                messages.append({"role": "user", "content": f"{i}: {long}"})
                messages.append({"role": "assistant", "content": long})
            messages.append({"role": "user", "content": "And now?"})
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                reply = await model.chat(messages, max_new_tokens=16, temperature=0)
            return reply, [str(w.message) for w in caught], model.stats
        finally:
            model.release()

    reply, notes, stats = asyncio.run(run())
    assert any("dropped the" in n and "oldest messages" in n for n in notes), notes
    assert isinstance(reply, str) and stats["prefill_tokens"] > 0


def test_stop_strings_end_the_reply(adapter, folder):
    path = folder[0]

    async def run():
        model = await webgpt.load(path)
        try:
            plain = await model.chat(MESSAGES, max_new_tokens=24, temperature=0)
            cut = plain[3:6]
            stopped = await model.chat(MESSAGES, max_new_tokens=24, temperature=0, stop=[cut])
            return plain, cut, stopped
        finally:
            model.release()

    plain, cut, stopped = asyncio.run(run())
    assert cut and stopped == plain[:plain.find(cut)] and cut not in stopped


def test_model_without_template_says_so(adapter):
    async def run():
        model = await webgpt.load(os.path.join(REPO, "weights", "shakespeare-char"))
        try:
            await model.chat([{"role": "user", "content": "hi"}])
        finally:
            model.release()

    with pytest.raises(ChatTemplateError, match="no chat template"):
        asyncio.run(run())
    r = subprocess.run([sys.executable, "-m", "webgpt", "chat", "--model",
                        os.path.join(REPO, "weights", "shakespeare-char"), "--message", "hi"],
                       capture_output=True, text=True, cwd=os.path.join(REPO, "py"), timeout=300)
    assert r.returncode == 1 and "no chat template" in r.stderr
    # One line of ours (the Vulkan loader may add its own XDG_RUNTIME_DIR notes).
    assert len([x for x in r.stderr.splitlines() if x and "XDG_RUNTIME_DIR" not in x]) == 1


def test_cli_message_and_repl(adapter, folder):
    path, hf, tok, ends = folder
    cmd = [sys.executable, "-m", "webgpt", "chat", "--model", path, "--system", "You are terse.",
           "-n", "16", "--temperature", "0"]
    want, _ = hf_reply(hf, tok, MESSAGES, ends, 16)
    r = subprocess.run(cmd + ["--message", MESSAGES[1]["content"]], capture_output=True,
                       cwd=os.path.join(REPO, "py"), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode("utf-8") == want + "\n"
    # The REPL from stdin: two turns, /reset, the first question again, /exit.
    script = "\n".join([MESSAGES[1]["content"], "Speak again.", "/reset",
                        MESSAGES[1]["content"], "/exit", "never read"]) + "\n"
    r = subprocess.run(cmd, input=script.encode(), capture_output=True,
                       cwd=os.path.join(REPO, "py"), timeout=300)
    assert r.returncode == 0, r.stderr
    replies = r.stdout.decode("utf-8").split("\n")
    assert replies[0] == want and replies[2] == want and "new conversation" in r.stderr.decode()
    second, _ = hf_reply(hf, tok, MESSAGES + [{"role": "assistant", "content": want},
                                              {"role": "user", "content": "Speak again."}],
                         ends, 16)
    assert replies[1] == second
