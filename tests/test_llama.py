"""Llama, Qwen2 and Qwen3 against Hugging Face transformers: logits, greedy tokens, both kernel
layouts, f32/f16/bf16 files, a quantized copy, the command line, and folder defects.

Each model is written by transformers itself (LlamaForCausalLM, Qwen2ForCausalLM,
Qwen3ForCausalLM from a fixed seed, save_pretrained) with a small byte-level BPE tokenizer.json
trained by the `tokenizers` library, so nothing here is our own reference. Shapes are chosen to
be awkward: grouped-query attention 3:1, 8:1 and 1:1, head_dim 32, 64 and 80 (and head_dim *
heads != hidden_size), hidden sizes that are not multiples of 64, tied and untied embeddings,
llama3 rope scaling, q/k/v biases (Qwen2), per-head q/k norms (Qwen3).

Tolerance: max |ours - HF| <= 1e-4 * max(1, max |HF|) on logits (f32 arithmetic on both sides;
for f16/bf16 files HF runs in f32 on the same rounded weights). Greedy tokens must be identical
for 32 steps; the prompt is picked (from a few fixed candidates) so that HF's top-1 logit leads
by at least 10x the tolerance at every step, and the test asserts that it does.
"""

import asyncio
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hfmodels

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import webgpt  # noqa: E402
from webgpt.errors import ModelFolderError  # noqa: E402

RTOL = 1e-4
STEPS = 32
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (transformers class, config keys, file dtype)
MODELS = {
    # GQA 3:1, head_dim 32 (3 * 32 = hidden), tied, llama3 rope scaling.
    "llama-gqa3": ("LlamaForCausalLM", dict(
        hidden_size=96, intermediate_size=160, num_hidden_layers=2, num_attention_heads=3,
        num_key_value_heads=1, head_dim=32, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 16}), "float32"),
    # GQA 8:1, head_dim 64 (8 * 64 != 200), untied, f16 file.
    "llama-gqa8-f16": ("LlamaForCausalLM", dict(
        hidden_size=200, intermediate_size=264, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=1, head_dim=64, tie_word_embeddings=False), "float16"),
    # MHA 1:1, head_dim 80, q/k/v biases, tied, bf16 file.
    "qwen2-bf16": ("Qwen2ForCausalLM", dict(
        hidden_size=160, intermediate_size=224, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=True), "bfloat16"),
    # GQA 2:1, head_dim 32 explicit (4 * 32 != 100), q/k norms, untied.
    "qwen3": ("Qwen3ForCausalLM", dict(
        hidden_size=100, intermediate_size=136, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, tie_word_embeddings=False), "float32"),
}


def hf_model(name, seed=0):
    cls, keys, _ = MODELS[name]
    return hfmodels.hf_model(cls, keys, seed)


def margin_ok(model, ids, tol):
    """HF's greedy continuation of `ids` and whether its top-1 leads by 10 tol at every step."""
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=STEPS, do_sample=False,
                             output_scores=True, return_dict_in_generate=True)
    lead = min(float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in out.scores)
    return out.sequences[0, len(ids):].tolist(), lead >= 10 * tol, lead


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """made(name) -> (folder, prompt ids, HF logits of the prompt, HF greedy ids)."""
    cache = {}

    def get(name):
        if name in cache:
            return cache[name]
        path = str(tmp_path_factory.mktemp(name))
        tok = hfmodels.write_tokenizer(path)
        model = hf_model(name)
        dtype = getattr(torch, MODELS[name][2])
        model.to(dtype).save_pretrained(path)
        # The saved (rounded) weights in f32 arithmetic, loaded as a user would: from_pretrained
        # also recomputes the rotary frequencies in f32 (a .to(f16) model holds them rounded).
        model = getattr(transformers, MODELS[name][0]).from_pretrained(
            path, dtype=torch.float32, attn_implementation="eager").eval()
        for text in ("ROMEO: what light", "the lazy dog said", "0123 fox", "yonder east"):
            ids = tok.encode(text).ids
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].numpy().astype(np.float64)
            tol = RTOL * max(1.0, float(np.abs(logits).max()))
            greedy, ok, lead = margin_ok(model, ids, tol)
            if ok:
                break
        assert ok, f"{name}: no candidate prompt has a clear greedy path (lead {lead:.3g})"
        cache[name] = (path, ids, logits, greedy)
        return cache[name]

    return get


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("layout", ["cpu", "gpu"])
@pytest.mark.parametrize("name", list(MODELS))
def test_matches_transformers(adapter, made, name, layout):
    path, ids, ref, greedy = made(name)

    async def go():
        model = await webgpt.load(path, layout=layout)
        try:
            logits = np.asarray(await model.logits(ids))
            tokens = await model.generate_ids(ids, max_new_tokens=STEPS, temperature=0,
                                              stop_at_eot=False)
            # Through the KV cache vs repeated full logits, for the first steps.
            seq = list(ids)
            for _ in range(4):
                seq.append(int(np.asarray(await model.logits(seq))[-1].argmax()))
            return logits, tokens, seq[len(ids):], model.config
        finally:
            model.release()

    logits, tokens, full, cfg = run(go())
    err = float(np.abs(logits.astype(np.float64) - ref).max())
    scale = float(np.abs(ref).max())
    tol = RTOL * max(1.0, scale)
    print(f"{name} ({layout}): max |ours - HF| = {err:.3g}, max |HF| = {scale:.3g}, "
          f"tolerance {tol:.3g}")
    assert err <= tol
    assert tokens == greedy, f"{name}: ours {tokens} vs HF {greedy}"
    assert full == greedy[:4]
    assert cfg.n_positions == 96  # the whole context kept (max_position_embeddings)


def test_cli_generates_hf_greedy_text(adapter, made):
    path, ids, _, greedy = made("qwen3")
    tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    prompt = tok.decode(ids)
    assert tok.encode(prompt).ids == ids
    r = subprocess.run([sys.executable, "-m", "webgpt", "generate", "--model", path, "--prompt",
                        prompt, "-n", "12", "--temperature", "0"], capture_output=True,
                       text=True, cwd=os.path.join(REPO, "py"), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n") == tok.decode(greedy[:12])


def test_quantized_copy_matches_hf_on_the_dequantized_weights(adapter, made, tmp_path):
    """`quantize` works for these folders: 8 and 4 bits, checked against transformers running
    the dequantized weights (so the only difference left is arithmetic)."""
    from webgpt.tools.quantize import QuantizeError, load_weights, quantize_folder

    # Rows of 200 values cannot be read in 16-byte groups of 8-bit values: refused, in words.
    with pytest.raises(QuantizeError, match="multiple of 16"):
        quantize_folder(made("llama-gqa8-f16")[0], str(tmp_path / "no"), 8, 8)
    name = "qwen2-bf16"  # tied, q/k/v biases, bf16 file; rows of 160, 224 and 160 values
    path, ids, _, _ = made(name)
    for bits in (8, 4):
        dst = str(tmp_path / f"q{bits}")
        quantize_folder(path, dst, bits, 8)
        cfg, weights = load_weights(dst)
        model = getattr(transformers, MODELS[name][0]).from_pretrained(
            path, dtype=torch.float32, attn_implementation="eager").eval()
        state = {("lm_head.weight" if k == "lm_head.weight" else "model." + k):
                 torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                 for k, v in weights.items()}
        state["lm_head.weight"] = state["model.embed_tokens.weight"]  # tied
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            ref = model(torch.tensor([ids])).logits[0].numpy().astype(np.float64)

        async def go():
            m = await webgpt.load(dst)
            try:
                return np.asarray(await m.logits(ids)), m.weights
            finally:
                m.release()

        logits, fmt = run(go())
        err = float(np.abs(logits - ref).max())
        tol = RTOL * max(1.0, float(np.abs(ref).max()))
        print(f"q{bits}: max |ours - HF(dequantized)| = {err:.3g}, tolerance {tol:.3g}")
        assert fmt == f"q{bits}" and err <= tol


def edit_config(path, dst, **changes):
    import shutil
    shutil.copytree(path, dst)
    with open(os.path.join(dst, "config.json")) as f:
        cfg = json.load(f)
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f)
    return dst


@pytest.mark.parametrize("changes,words", [
    (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}),
     ["config.json", "rope_parameters", "yarn"]),
    (dict(num_key_value_heads=3), ["config.json", "num_key_value_heads", "divide"]),
    (dict(layer_types=["sliding_attention"] * 3), ["config.json", "layer_types",
                                                   "use_sliding_window"]),
    (dict(num_experts=8), ["config.json", "num_experts"]),
    (dict(hidden_act="gelu"), ["config.json", "hidden_act"]),
    (dict(head_dim=16), ["model.safetensors", "self_attn", "has shape", "expected"]),
    (dict(hidden_size=None), ["config.json", "hidden_size"]),
])
def test_folder_defects_name_file_and_key(made, tmp_path, changes, words):
    path, _, _, _ = made("qwen3")
    dst = edit_config(path, str(tmp_path / "bad"), **changes)
    with pytest.raises(ModelFolderError) as e:
        run(webgpt.load(dst))
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"
    assert "\n" not in msg


def test_missing_tokenizer_json_is_named(made, tmp_path):
    import shutil
    path, _, _, _ = made("qwen3")
    dst = str(tmp_path / "notok")
    shutil.copytree(path, dst)
    os.remove(os.path.join(dst, "tokenizer.json"))
    with pytest.raises(ModelFolderError, match="tokenizer.json is missing"):
        run(webgpt.load(dst))
