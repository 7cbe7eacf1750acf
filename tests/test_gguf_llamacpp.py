"""llama.cpp itself as the reference for GGUF files: its tokenizer and its greedy tokens on the
same files, through the npm package node-llama-cpp (pinned 3.21.1 in tests/llamacpp/
package.json, its prebuilt CPU build; tests/llamacpp/run.mjs drives it).

Tokenization: a vocab-only GGUF made from three real tokenizers (Llama 3.1's byte-level BPE
with pre-tokenizer "llama-bpe", Qwen3's with "qwen2", Mistral's SentencePiece as a "llama"
tokenizer with scores), on test_hf_tokenizer's corpus (code, numbers, whitespace runs, accents,
many scripts, emoji, special tokens) and 300 random strings: ours token for token equal to
llama.cpp's on every text, and to the `tokenizers` library on the same tokenizer.json except
where llama.cpp's own conventions differ from it (a GGUF keeps no normalizer, so Qwen's NFC is
not applied; llama.cpp makes "</s>" and its other end-of-turn texts control tokens), where we
follow llama.cpp.

Generation: llama.cpp's CPU path rounds activations to 8 bits for quantized products, so not
exact logits: the first 8 greedy tokens equal, and the top-1 token after each prompt position
equal at 95% of positions or more.
"""

import asyncio
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import ggufmodels
import hfmodels
from conftest import IN_CI, missing

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

import webgpt  # noqa: E402
from webgpt.gguf import read_gguf  # noqa: E402
from webgpt.gguf_tokenizer import EOG_TEXTS, gguf_tokenizer  # noqa: E402
from webgpt.sources import LocalSource  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llamacpp")
GREEDY = 8
AGREEMENT = 0.95


@pytest.fixture(scope="module")
def llamacpp():
    """call(request) -> llama.cpp's answer (tests/llamacpp/run.mjs); installs node-llama-cpp
    (npm ci, without the optional GPU builds) on first use."""
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (llama.cpp runs through the npm package node-llama-cpp)")
    if not os.path.isdir(os.path.join(HERE, "node_modules", "node-llama-cpp")):
        r = subprocess.run(["npm", "ci", "--omit=optional", "--ignore-scripts", "--no-audit",
                            "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=600)
        if r.returncode:
            missing(f"npm ci in tests/llamacpp failed: {r.stderr[-500:]}")

    def call(request):
        r = subprocess.run([node, "run.mjs"], input=json.dumps(request), cwd=HERE,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout)
    return call


# ---------------------------------------------------------------------------------------------
# Tokenization

FAMILIES = {"llama3.1": "llama-bpe", "qwen3": "qwen2", "mistral": None}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_tokenizer_equals_llamacpp_and_the_library(llamacpp, tmp_path, family):
    import test_hf_tokenizer as th

    tj, tc = th.files(family)
    path = ggufmodels.tokenizer_gguf(str(tmp_path / "vocab.gguf"), tj, tc, FAMILIES[family])
    header = asyncio.run(read_gguf(LocalSource(str(tmp_path)), "vocab.gguf"))
    ours = gguf_tokenizer(header.metadata, path)
    texts = list(th.CORPUS.values()) + th.RANDOM
    cpp = llamacpp({"model": path, "texts": texts})["tokens"]
    lib = th.library(family)
    normalizes = json.loads(tj).get("normalizer") is not None and family != "mistral"
    specials = {t["content"] for t in json.loads(tj).get("added_tokens", []) if t.get("special")}
    compared = 0
    for text, theirs in zip(texts, cpp):
        # llama.cpp's tokenize() adds no BOS; the library's encode() adds what the file's
        # post-processor adds, as ours does by default.
        assert ours.encode(text, add_special_tokens=False) == theirs, repr(text)
        if normalizes and __import__("unicodedata").normalize("NFC", text) != text:
            continue
        if any(t in text for t in EOG_TEXTS if t not in specials and ours.id_of(t) is not None):
            continue
        assert ours.encode(text) == lib.encode(text).ids, repr(text)
        compared += 1
    print(f"{family}: {len(texts)} texts equal to llama.cpp's, {compared} to the library's")
    assert compared >= 0.8 * len(texts)


# ---------------------------------------------------------------------------------------------
# Generation

MODELS = {
    "llama Q8_0": ("LlamaForCausalLM", dict(hidden_size=256, intermediate_size=512,
                                            num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, head_dim=64,
                                            tie_word_embeddings=False), "Q8_0"),
    "llama Q4_K_M": ("LlamaForCausalLM", dict(hidden_size=256, intermediate_size=512,
                                              num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=2, head_dim=64,
                                              tie_word_embeddings=True), "mix"),
    "qwen2 Q4_0": ("Qwen2ForCausalLM", dict(hidden_size=256, intermediate_size=512,
                                            num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, tie_word_embeddings=True),
                   "Q4_0"),
    "qwen3 Q4_K_M": ("Qwen3ForCausalLM", dict(hidden_size=256, intermediate_size=512,
                                              num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=1, head_dim=64,
                                              tie_word_embeddings=False), "mix"),
}
PROMPT = ("ROMEO: But soft, what light through yonder window breaks? It is the east. "
          "The quick brown fox jumps over the lazy dog; 0123456789 times, said she.")


@pytest.mark.parametrize("name", list(MODELS))
def test_generation_agrees_with_llamacpp(gpu_device, llamacpp, tmp_path, name):
    cls, keys, kind = MODELS[name]
    d = str(tmp_path)
    tok = hfmodels.write_tokenizer(d)
    model = hfmodels.hf_model(cls, keys)
    with torch.no_grad():   # weights of a trained model's spread (hf_model's are 0.2)
        for p in model.parameters():
            p.mul_(0.4)
    policy = ggufmodels.q4_k_m if kind == "mix" else \
        ggufmodels.uniform(getattr(gguf.GGMLQuantizationType, kind))
    path = os.path.join(d, "model.gguf")
    ggufmodels.write_gguf(path, model, d, policy)
    ids = tok.encode(PROMPT).ids[:60]

    async def go():
        m = await webgpt.load(path, device=gpu_device)
        try:
            top1 = np.asarray(await m.logits(ids)).argmax(-1).tolist()
            # The greedy comparison starts from a prompt after which our greedy path leads by
            # 1% of the logits' scale at each step (llama.cpp's 8-bit activations move logits
            # by less): a near tie could go either way for any rounding.
            for k in (12, 20, 28, 36, 44, 52):
                seq, lead = list(ids[:k]), float("inf")
                for _ in range(GREEDY):
                    last = np.asarray(await m.logits(seq))[-1]
                    two = np.sort(last)[-2:]
                    lead = min(lead, float(two[1] - two[0]) / float(np.abs(last).max()))
                    seq.append(int(last.argmax()))
                if lead >= 0.01:
                    break
            greedy = await m.generate_ids(ids[:k], max_new_tokens=GREEDY, temperature=0,
                                          stop_at_eot=False)
            assert greedy == seq[k:]
            return top1, ids[:k], greedy, lead
        finally:
            m.release()

    top1, prompt, greedy, lead = asyncio.run(go())
    assert lead >= 0.01, f"{name}: no prompt with a clear greedy path"
    theirs = llamacpp({"model": path, "prompt": ids, "n": GREEDY, "greedy_prompt": prompt})
    agree = float(np.mean(np.array(top1) == np.array(theirs["top1"])))
    print(f"{name}: top-1 equal at {agree:.1%} of {len(ids)} positions ({len(set(top1))} "
          f"different tokens); greedy after {len(prompt)} tokens ours {greedy}, llama.cpp "
          f"{theirs['greedy']}")
    assert len(set(top1)) >= 10    # a model that says something
    assert greedy == theirs["greedy"]
    assert agree >= AGREEMENT


def test_ci_installs_node_llama_cpp():
    """Under CI the lock file is what npm ci installs: it must be there."""
    assert os.path.exists(os.path.join(HERE, "package-lock.json"))
    if IN_CI:
        assert shutil.which("node") is not None
