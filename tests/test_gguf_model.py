"""GGUF models on the GPU, exact against transformers' float32 forward over the weights as
`gguf.quants.dequantize` gives them: every block type the kernels decode (F32, F16, BF16, Q8_0,
Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: a Llama and a GPT-2 whose matrices take
them in turn), a Q4_K_M-style mix for each of llama, qwen2, qwen3 and gpt2, rows that are not a multiple of 256 (the legacy types a mix falls back
to), split files, Llama 3's rope factors (rope_freqs.weight), and the loader's sentences.

The files are written by the `gguf` package from transformers-made models (tests/ggufmodels.py:
llama.cpp's names and metadata, Llama's q/k rows interleaved as llama.cpp's converter does, the
K types as random blocks with sensible scales). Tolerance as tests/test_llama.py: max |ours -
HF| <= 1e-4 * max(1, max |HF|) on the prompt's logits, and 32 greedy tokens identical (the
prompt is picked so that HF's top-1 leads by 10x the tolerance at every step).
"""

import asyncio
import os

import numpy as np
import pytest

import ggufmodels
import hfmodels

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import webgpt  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402

RTOL = 1e-4
STEPS = 32

LLAMA = ("LlamaForCausalLM", dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                                  tie_word_embeddings=False))
SHAPES = {
    "llama": LLAMA,
    "llama-tied": ("LlamaForCausalLM", dict(LLAMA[1], tie_word_embeddings=True)),
    "qwen2": ("Qwen2ForCausalLM", dict(hidden_size=256, intermediate_size=512,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen3": ("Qwen3ForCausalLM", dict(hidden_size=256, intermediate_size=512,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=1, head_dim=64,
                                       tie_word_embeddings=False)),
    "gpt2": ("GPT2LMHeadModel", dict(n_embd=256, n_layer=2, n_head=4, n_positions=96)),
    # Rows of 160 and 224 values: a mix falls back to Q8_0 / Q5_0 (tests/ggufmodels.q4_k_m).
    "llama-160": ("LlamaForCausalLM", dict(hidden_size=160, intermediate_size=224,
                                           num_hidden_layers=2, num_attention_heads=5,
                                           num_key_value_heads=1, head_dim=32,
                                           tie_word_embeddings=True)),
}
# The types the kernels decode. A model of each family whose matrices take them in turn (so
# each type is some product's weights, a token table, an LM head, or one member of a fused
# product beside others), then a Q4_K_M-style mix for each family.
TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1,
         Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]
CASES = [("every", "llama"), ("every", "gpt2")] + \
        [("mix", f) for f in ("llama", "qwen2", "qwen3", "gpt2", "llama-160")]


def hf(shape, seed=0):
    cls, keys = SHAPES[shape]
    if cls == "GPT2LMHeadModel":
        cfg = transformers.GPT2Config(vocab_size=300, initializer_range=0.2, bos_token_id=None,
                                      eos_token_id=None, **keys)
        torch.manual_seed(seed)
        return transformers.GPT2LMHeadModel(cfg).eval()
    return hfmodels.hf_model(cls, keys, seed)


def policy(kind):
    return ggufmodels.q4_k_m if kind == "mix" else ggufmodels.cycle(TYPES)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """made(kind, shape) -> (path, prompt ids, HF logits, HF greedy ids)."""
    cache = {}

    def get(kind, shape, **kw):
        key = (kind, shape, tuple(sorted(kw.items())))
        if key in cache:
            return cache[key]
        d = str(tmp_path_factory.mktemp(f"{kind}-{shape}"))
        tok = hfmodels.write_tokenizer(d)
        model = hf(shape)
        path = os.path.join(d, "model.gguf")
        deq = ggufmodels.write_gguf(path, model, d, policy(kind), **kw)
        ref = ggufmodels.reference(model, deq)
        for text in ("ROMEO: what light", "the lazy dog said", "0123 fox", "yonder east",
                     "It is the", "brown fox jumps"):
            ids = tok.encode(text).ids
            with torch.no_grad():
                logits = ref(torch.tensor([ids])).logits[0].numpy().astype(np.float64)
                out = ref.generate(torch.tensor([ids]), max_new_tokens=STEPS, do_sample=False,
                                   output_scores=True, return_dict_in_generate=True,
                                   pad_token_id=0)
            tol = RTOL * max(1.0, float(np.abs(logits).max()))
            lead = min(float(s[0].topk(2).values[0] - s[0].topk(2).values[1])
                       for s in out.scores)
            if lead >= 10 * tol:
                break
        assert lead >= 10 * tol, f"{kind} {shape}: no prompt has a clear greedy path"
        first = path
        if kw.get("split_max_tensors"):
            first = os.path.join(d, sorted(n for n in os.listdir(d) if n.endswith(".gguf"))[0])
        cache[key] = (first, ids, logits, out.sequences[0, len(ids):].tolist())
        return cache[key]

    return get


def run(coro):
    return asyncio.run(coro)


def check(path, ids, ref, greedy, layout, label, device=None):
    async def go():
        model = await webgpt.load(path, layout=layout, device=device)
        try:
            logits = np.asarray(await model.logits(ids))
            tokens = await model.generate_ids(ids, max_new_tokens=STEPS, temperature=0,
                                              stop_at_eot=False)
            return logits, tokens, model.weights
        finally:
            model.release()

    logits, tokens, fmt = run(go())
    err = float(np.abs(logits.astype(np.float64) - ref).max())
    scale = float(np.abs(ref).max())
    tol = RTOL * max(1.0, scale)
    print(f"{label} ({layout}, {fmt}): max |ours - HF| = {err:.3g}, max |HF| = {scale:.3g}, "
          f"tolerance {tol:.3g}")
    assert err <= tol, label
    assert tokens == greedy, f"{label}: ours {tokens} vs HF {greedy}"
    return fmt


@pytest.mark.parametrize("kind,shape", CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_matches_transformers_on_dequantized_weights(gpu_device, made, kind, shape):
    path, ids, ref, greedy = made(kind, shape)
    # The CPU layout's products are gemv (one invocation per row); the GPU layout's prompt
    # products are matmul's tiles and its decode products gemv's barrier trees (each layout's
    # pipelines take seconds to compile on lavapipe: the GPU one runs where it adds coverage).
    both = (kind, shape) in (("every", "llama"), ("mix", "llama"))
    for layout in ("cpu", "gpu") if both else ("cpu",):
        fmt = check(path, ids, ref, greedy, layout, f"{kind} {shape}", gpu_device)
    if (kind, shape) == ("every", "llama"):
        assert set(fmt.split("+")) == {t.name for t in TYPES}


def test_split_files_load_as_one(gpu_device, made):
    path, ids, ref, greedy = made("mix", "qwen3", split_max_tensors=7)
    assert path.endswith("-00001-of-00004.gguf")
    check(path, ids, ref, greedy, None, "mix qwen3 in 4 files", gpu_device)


def test_llama3_rope_factors(gpu_device, tmp_path):
    """A Llama 3.x file carries llama3's rope scaling as rope_freqs.weight (one factor per
    frequency), which transformers computes from rope_parameters."""
    cls, keys = LLAMA
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16}
    model = hfmodels.hf_model(cls, dict(keys, rope_parameters=rope))
    d = str(tmp_path)
    tok = hfmodels.write_tokenizer(d)
    base = 1.0 / (500000.0 ** (np.arange(0, 64, 2, dtype=np.float32) / 64))
    scaled = model.model.rotary_emb.inv_freq.numpy()
    factors = (base / scaled).astype(np.float32)
    path = os.path.join(d, "m.gguf")
    deq = ggufmodels.write_gguf(path, model, d, ggufmodels.q4_k_m,
                                extra_tensors={"rope_freqs.weight": factors})
    ref = ggufmodels.reference(model, deq)
    ids = tok.encode("ROMEO: what light through yonder").ids
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0].numpy().astype(np.float64)

    async def go():
        m = await webgpt.load(path, device=gpu_device)
        try:
            assert m.config.rope_scaling["rope_type"] == "factors"
            return np.asarray(await m.logits(ids))
        finally:
            m.release()

    got = run(go())
    err = float(np.abs(got - want).max())
    assert err <= RTOL * max(1.0, float(np.abs(want).max())), err


def test_cli_runs_a_gguf_file(adapter, made):
    import subprocess
    import sys

    path, ids, _, greedy = made("mix", "qwen3")
    spec = run(webgpt.open_folder(path))
    prompt = spec.tokenizer.decode(ids)
    assert spec.tokenizer.encode(prompt) == ids
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "webgpt", "generate", "--model", path, "--prompt",
                        prompt, "-n", "8", "--temperature", "0"], capture_output=True, text=True,
                       cwd=os.path.join(repo, "py"), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n") == spec.tokenizer.decode(greedy[:8])


def test_neighbours_of_one_type_share_a_buffer(gpu_device, made):
    """A Q4_K_M-style file's q and k (one type) are copied into one buffer, its v (another)
    keeps its own: the q|k|v product is two dispatches, each with the rotary embedding."""
    path = made("mix", "llama")[0]

    async def go():
        model = await webgpt.load(path, layout="gpu", device=gpu_device)
        try:
            store = model.weight_store
            qkv = store.mats["layers.0.self_attn.qkv_proj.weight"]
            q, k, v = (store.matrix(f"layers.0.self_attn.{p}_proj.weight") for p in "qkv")
            assert q.fmt == k.fmt != v.fmt
            assert [p.fmt for p in qkv.parts] == [q.fmt, v.fmt]
            assert q.parts[0][0] is k.parts[0][0] is qkv.parts[0][0]
            assert [p[1] for p in qkv.parts] == [0, q.N + k.N]
            names = [l.name for l in model.plan.passes["decode"] if "layers.0." in l.name]
            assert names[:2] == ["layers.0.input_layernorm + layers.0.self_attn.qkv_proj + rope"] * 2
            assert not any(n.endswith("self_attn.rope") for n in names)
        finally:
            model.release()

    run(go())
