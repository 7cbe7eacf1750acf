"""Check a full-size Llama-family shape against transformers on a CUDA GPU: logits and greedy
tokens, f32 and f16 files.

    PYTHONPATH=py python tests/scripts/check_llama_large.py --shape Llama-3.2-1B --out /tmp/llama

transformers makes the model (random weights, seeded, its own initialisation) and saves it with
save_pretrained (f32, and an f16 copy); webgpt loads each folder on its own WebGPU adapter. The
reference is transformers' float32 forward on CUDA (TF32 off) of the same weights (for f16: the
f16-rounded weights in f32 arithmetic, as webgpt computes them). Needs torch with CUDA,
transformers and a WebGPU adapter; a script for a GPU machine, not a test (pytest does not
collect it). Prints one JSON line per dtype.
"""

import argparse
import asyncio
import json
import os
import sys
import time

import numpy as np

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
sys.path.insert(0, TESTS)

import webgpt  # noqa: E402
from webgpt.tools.bench import LLAMA_SHAPES  # noqa: E402


def hf_model(shape, dtype):
    import torch
    import transformers

    keys = dict(LLAMA_SHAPES[shape], max_position_embeddings=4096)
    kind = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3"}[keys.pop("model_type")]
    if "rope_scaling" in keys:
        keys["rope_parameters"] = dict(keys.pop("rope_scaling"), rope_theta=keys.pop("rope_theta"))
    cfg = getattr(transformers, kind + "Config")(**keys, attn_implementation="eager")
    torch.manual_seed(0)
    return getattr(transformers, kind + "ForCausalLM")(cfg).to(dtype).eval(), kind


async def ours(folder, ids, n):
    t = time.perf_counter()
    model = await webgpt.load(folder)
    load_s = time.perf_counter() - t
    try:
        logits = np.asarray(await model.logits(ids), dtype=np.float64)
        tokens = await model.generate_ids(ids, max_new_tokens=n, temperature=0, stop_at_eot=False)
        return logits, tokens, load_s, model.weight_bytes(), model.device.describe()
    finally:
        model.release()


def main():
    import torch
    import transformers

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="Llama-3.2-1B", choices=list(LLAMA_SHAPES))
    p.add_argument("--out", required=True)
    p.add_argument("--tokens", type=int, default=20)
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    V = LLAMA_SHAPES[a.shape]["vocab_size"]
    ids = [(i * 7919 + 13) % V for i in range(24)]
    model, kind = hf_model(a.shape, torch.float32)
    for dtype in ("float32", "float16"):
        folder = os.path.join(a.out, dtype)
        model.to(getattr(torch, dtype)).save_pretrained(folder)
        # A tokenizer is needed by the folder, not by this check (ids in, ids out): the
        # smallest valid tokenizer.json.
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                       "pre_tokenizer": None, "decoder": {"type": "ByteLevel"}}, f)
        ref_model = getattr(transformers, kind + "ForCausalLM").from_pretrained(
            folder, dtype=torch.float32, attn_implementation="eager").to("cuda").eval()
        with torch.no_grad():
            ref = ref_model(torch.tensor([ids], device="cuda")).logits[0].double().cpu().numpy()
            out = ref_model.generate(torch.tensor([ids], device="cuda"), max_new_tokens=a.tokens,
                                     min_new_tokens=a.tokens, do_sample=False, pad_token_id=0)
        greedy = out[0, len(ids):].tolist()
        del ref_model
        torch.cuda.empty_cache()
        logits, tokens, load_s, gpu_bytes, adapter = asyncio.run(ours(folder, ids, a.tokens))
        err = float(np.abs(logits - ref).max())
        scale = float(np.abs(ref).max())
        top1 = float((logits.argmax(1) == ref.argmax(1)).mean())
        same = next((i for i, (x, y) in enumerate(zip(tokens, greedy)) if x != y), len(greedy))
        print(json.dumps({"shape": a.shape, "file": dtype, "max_abs_err": err, "max_abs_logit": scale,
                          "err_over_scale": err / scale, "top1_agree": top1,
                          "greedy_same_prefix": same, "greedy_tokens": len(greedy),
                          "load_s": load_s, "gpu_MiB": gpu_bytes / 2**20, "adapter": adapter}),
              flush=True)


if __name__ == "__main__":
    main()
