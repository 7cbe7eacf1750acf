"""GGUF files at real sizes, exact against transformers: for the lent GPU (issue 24's last check).

    python tests/scripts/check_gguf_large.py --shape Llama-3.2-1B --kind Q4_K_M
    python tests/scripts/check_gguf_large.py --shape Qwen2.5-1.5B --kind Q8_0 --device cuda

Makes a transformers model of the shape with random weights (seeded, initializer 0.02), writes it
as a GGUF file the way tests/test_gguf_model.py does (tests/ggufmodels.py: the `gguf` package's
writer, llama.cpp's names and Q/K interleaving, Llama 3's rope factors as rope_freqs.weight; Q8_0
quantized from the weights, the K types random blocks with sensible scales), then compares
webgpt's logits of a prompt and its greedy tokens with transformers' float32 forward over the
weights as gguf.quants.dequantize gives them (on CUDA with TF32 off where there is CUDA). Prints
max |ours - HF| and its ratio to the largest logit (the tests demand <= 1e-4), and how many of
the greedy tokens agree.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))                       # tests/ (ggufmodels, hfmodels)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "py"))

SHAPES = {
    "Llama-3.2-1B": ("LlamaForCausalLM", dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192})),
    "Qwen2.5-1.5B": ("Qwen2ForCausalLM", dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
        max_position_embeddings=4096, rope_theta=1000000.0)),
    # A smoke test of this script on a CPU adapter.
    "tiny": ("LlamaForCausalLM", dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, vocab_size=300, tie_word_embeddings=True,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64})),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=SHAPES, default="Llama-3.2-1B")
    p.add_argument("--kind", choices=["Q4_K_M", "Q8_0"], default="Q4_K_M")
    p.add_argument("--tokens", type=int, default=300, help="prompt length")
    p.add_argument("--greedy", type=int, default=32)
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--dir", default=None, help="where the .gguf goes (a temporary folder)")
    a = p.parse_args()

    import torch
    import transformers
    import gguf

    import ggufmodels
    import hfmodels
    import webgpt

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cls, keys = SHAPES[a.shape]
    keys = dict(keys)
    config_cls = getattr(transformers, cls.replace("ForCausalLM", "Config"))
    cfg = config_cls(initializer_range=0.02, eos_token_id=None, bos_token_id=None,
                     pad_token_id=None, attn_implementation="eager", **keys)
    torch.manual_seed(0)
    model = getattr(transformers, cls)(cfg).eval()
    folder = a.dir or tempfile.mkdtemp()
    hfmodels.write_tokenizer(folder)    # a small tokenizer: the ids below are what matter
    extra = {}
    if "rope_parameters" in keys and keys["rope_parameters"].get("rope_type") == "llama3":
        hd = keys["head_dim"]
        theta = keys["rope_parameters"]["rope_theta"]
        base = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
        extra["rope_freqs.weight"] = (base / model.model.rotary_emb.inv_freq.numpy()).astype(
            np.float32)
    policy = ggufmodels.q4_k_m if a.kind == "Q4_K_M" else \
        ggufmodels.uniform(gguf.GGMLQuantizationType.Q8_0)
    path = os.path.join(folder, f"{a.shape}-{a.kind}.gguf")
    t0 = time.time()
    deq = ggufmodels.write_gguf(path, model, folder, policy, extra_tensors=extra)
    print(f"wrote {path} ({os.path.getsize(path) / 2**20:.0f} MiB) in {time.time() - t0:.0f} s")
    ref = ggufmodels.reference(model, deq).to(a.device)
    del deq
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 300, a.tokens).tolist()   # ids of the small tokenizer's range
    with torch.no_grad():
        want = ref(torch.tensor([ids], device=a.device)).logits[0].float().cpu().numpy()
        greedy = ref.generate(torch.tensor([ids], device=a.device), max_new_tokens=a.greedy,
                              do_sample=False, pad_token_id=0)[0, len(ids):].tolist()

    async def ours():
        m = await webgpt.load(path)
        try:
            logits = np.asarray(await m.logits(ids))
            tokens = await m.generate_ids(ids, max_new_tokens=a.greedy, temperature=0,
                                          stop_at_eot=False)
            return logits, tokens, m.weights, m.device.describe()
        finally:
            m.release()

    got, tokens, fmt, adapter = asyncio.run(ours())
    err = float(np.abs(got.astype(np.float64) - want).max())
    scale = float(np.abs(want).max())
    same = next((k for k, (x, y) in enumerate(zip(tokens, greedy)) if x != y), len(greedy))
    print(f"{a.shape} {a.kind} ({fmt}) on {adapter}: max |ours - HF| = {err:.3g}, max |HF| = "
          f"{scale:.3g}, ratio {err / max(1.0, scale):.3g} (tests demand <= 1e-4); greedy "
          f"tokens identical for {same} of {len(greedy)}; top-1 equal at "
          f"{float(np.mean(got.argmax(-1) == want.argmax(-1))):.1%} of {len(ids)} positions")


def _cuda():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
