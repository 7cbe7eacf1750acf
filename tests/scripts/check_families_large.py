"""Check a full-size Gemma, Phi or SmolLM3 shape (or any of bench's LLAMA_SHAPES) against
transformers on a CUDA GPU: logits and greedy tokens, for each file dtype asked.

    PYTHONPATH=py python tests/scripts/check_families_large.py --shape Gemma-3-1B --out /tmp/g3

transformers makes the model (random weights from a seed, its own initialisation, then every
norm weight drawn at random too, so Gemma's 1 + w is not 1) and saves it with save_pretrained
in each dtype; webgpt loads each folder on its own WebGPU adapter (the GPU layout: fused norms,
split attention). The reference is transformers' float32 eager forward on CUDA (TF32 off) of the
saved weights (for f16 / bf16 files: the rounded weights in f32 arithmetic, as webgpt computes
them). The prompt is --prompt-tokens ids (default 600: longer than Gemma 3's 512-token sliding
window, so its sliding layers mask at full size). Needs torch with CUDA, transformers and a
WebGPU adapter; a script for a GPU machine, not a test (pytest does not collect it). Prints one
JSON line per dtype: the largest logit error over the largest logit, top-1 agreement of the
prompt's rows, and how many greedy tokens agree before the first difference.
"""

import argparse
import asyncio
import json
import os
import time

import numpy as np

import webgpt
from webgpt.tools.bench import HF_CLASSES, LLAMA_SHAPES


def hf_model(shape, seed=0):
    """transformers' model of `shape` in float32, eager attention, seeded, norms random."""
    import torch
    import transformers

    keys = dict(LLAMA_SHAPES[shape], max_position_embeddings=4096)
    config_class, model_class = HF_CLASSES[keys.pop("model_type")]
    cfg = getattr(transformers, config_class)(**keys, attn_implementation="eager")
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(cfg).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    gemma = model_class.startswith("Gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (0 if gemma else 1))
    return model, model_class


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
    p.add_argument("--shape", default="Gemma-3-1B", choices=list(LLAMA_SHAPES))
    p.add_argument("--out", required=True)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--prompt-tokens", type=int, default=600)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                   choices=["float32", "float16", "bfloat16"])
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    V = LLAMA_SHAPES[a.shape]["vocab_size"]
    ids = [(i * 7919 + 13) % V for i in range(a.prompt_tokens)]
    model, model_class = hf_model(a.shape)
    for dtype in a.dtypes:
        folder = os.path.join(a.out, dtype)
        model.to(getattr(torch, dtype)).save_pretrained(folder)
        # A tokenizer is needed by the folder, not by this check (ids in, ids out): the
        # smallest valid tokenizer.json.
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                       "pre_tokenizer": None, "decoder": {"type": "ByteLevel"}}, f)
        ref_model = getattr(transformers, model_class).from_pretrained(
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
        print(json.dumps({"shape": a.shape, "file": dtype, "prompt_tokens": len(ids),
                          "max_abs_err": err, "max_abs_logit": scale,
                          "err_over_scale": err / scale, "top1_agree": top1,
                          "greedy_same_prefix": same, "greedy_tokens": len(greedy),
                          "load_s": load_s, "gpu_MiB": gpu_bytes / 2**20, "adapter": adapter}),
              flush=True)


if __name__ == "__main__":
    main()
