"""Check a full-size GPT-2 shape against transformers on a CUDA GPU: logits and greedy tokens,
for f32, f16 and the 8- and 4-bit quantized folders, through the command line too.

    PYTHONPATH=py python tests/scripts/check_large.py --shape 1.5B --out /tmp/large

transformers makes the model (random weights, seeded) and saves it with save_pretrained; webgpt
loads that folder (and f16 / quantized copies of it) on its own WebGPU adapter. The reference
is transformers' float32 forward on CUDA (TF32 off) of the same weights: for f16, the weights
rounded to f16 and computed in f32, as webgpt computes them; quantized folders are compared
with the unquantized f32 logits (what quantizing costs). Needs torch with CUDA, transformers
and a WebGPU adapter; a script for a GPU machine, not a test (pytest does not collect it).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

import numpy as np

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
sys.path.insert(0, TESTS)

import refmodels  # noqa: E402

import webgpt  # noqa: E402
from webgpt.tools.bench import SHAPES  # noqa: E402
from webgpt.tools.quantize import quantize_folder  # noqa: E402


def hf_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids], device=model.device)).logits[0].double().cpu().numpy()


def hf_greedy(model, ids, n):
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(ids):].tolist()


def write_tokenizer(folder, V):
    vocab, merges = refmodels.tokenizer_files(V)
    for name, text in (("vocab.json", vocab), ("merges.txt", merges)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(text)


async def ours(folder, ids, n):
    t = time.perf_counter()
    model = await webgpt.load(folder)
    load_s = time.perf_counter() - t
    logits = np.asarray(await model.logits(ids), np.float64)
    greedy = await model.generate_ids(ids, n, temperature=0, stop_at_eot=False)
    info = {"weights": model.weights, "load_s": load_s,
            "gpu_MiB": model.weight_bytes() / 2**20, "adapter": model.device.describe()}
    model.release()
    return logits, greedy, info


def report(label, got, want, greedy, want_greedy, info):
    err = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    agree = next((i for i, (a, b) in enumerate(zip(greedy, want_greedy)) if a != b), len(greedy))
    top1 = float(np.mean(got.argmax(-1) == want.argmax(-1)))
    line = (f"{label}: max |logit - HF| {err:.3g} ({err / scale:.2e} of max |logit| {scale:.3g}); "
            f"top-1 agrees at {top1:.1%} of positions; greedy equal for {agree}/{len(greedy)} "
            f"tokens; {info['weights']} {info['gpu_MiB']:.0f} MiB, load {info['load_s']:.1f} s")
    print(line, flush=True)
    return {"label": label, "max_abs_err": err, "scale": scale, "top1": top1,
            "greedy_equal": agree, **info}


def main(a):
    import torch
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    shape = dict(SHAPES[a.shape], **({"n_layer": a.layers} if a.layers else {}))
    cfg = transformers.GPT2Config(vocab_size=50257, n_positions=1024, **shape)
    with torch.device(a.device):
        hf = transformers.GPT2LMHeadModel(cfg).eval()
    base = os.path.join(a.out, a.shape)
    folders = {"f32": base + "-f32", "f16": base + "-f16", "q8": base + "-q8", "q4": base + "-q4"}
    t = time.perf_counter()
    hf.save_pretrained(folders["f32"])
    write_tokenizer(folders["f32"], cfg.vocab_size)
    print(f"saved {a.shape} f32 in {time.perf_counter() - t:.0f} s", flush=True)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, cfg.vocab_size, a.tokens).tolist()
    want32 = hf_logits(hf, ids)
    greedy32 = hf_greedy(hf, ids, a.new)
    results = []
    got, greedy, info = asyncio.run(ours(folders["f32"], ids, a.new))
    results.append(report(f"{a.shape} f32", got, want32, greedy, greedy32, info))

    hf.half()
    hf.save_pretrained(folders["f16"])
    write_tokenizer(folders["f16"], cfg.vocab_size)
    hf.float()  # the f16-rounded weights, computed in f32
    want16, greedy16 = hf_logits(hf, ids), hf_greedy(hf, ids, a.new)
    del hf
    torch.cuda.empty_cache()
    got, greedy, info = asyncio.run(ours(folders["f16"], ids, a.new))
    results.append(report(f"{a.shape} f16", got, want16, greedy, greedy16, info))

    for bits in (8, 4):
        if f"q{bits}" not in a.quantized:
            del folders[f"q{bits}"]
            continue
        t = time.perf_counter()
        quantize_folder(folders["f32"], folders[f"q{bits}"], bits=bits, force=True)
        print(f"quantized to {bits} bits in {time.perf_counter() - t:.0f} s", flush=True)
        got, greedy, info = asyncio.run(ours(folders[f"q{bits}"], ids, a.new))
        results.append(report(f"{a.shape} q{bits} vs unquantized f32", got, want32, greedy,
                              greedy32, info))

    # The command line runs every folder.
    for dtype, folder in folders.items():
        r = subprocess.run([sys.executable, "-m", "webgpt", "generate", "--model", folder,
                            "--prompt", "Hello", "-n", "20", "--temperature", "0", "--stats"],
                           capture_output=True, text=True, timeout=600)
        stats = r.stderr.strip().splitlines()[-1:] if r.stderr else []
        print(f"CLI {dtype}: exit {r.returncode}; {stats}", flush=True)
        results.append({"label": f"CLI {dtype}", "exit": r.returncode, "stderr": r.stderr[-2000:]})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="1.5B", choices=list(SHAPES))
    p.add_argument("--out", default="/tmp/webgpt-large", help="folder for the model folders")
    p.add_argument("--tokens", type=int, default=64, help="prompt length for the logits")
    p.add_argument("--new", type=int, default=20, help="greedy tokens compared")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--layers", type=int, help="fewer layers than the shape has (a quick try)")
    p.add_argument("--device", default="cuda", help="torch device of the reference")
    p.add_argument("--quantized", nargs="*", default=["q8", "q4"], choices=["q8", "q4"],
                   help="quantized copies checked beside f32 and f16 (`--quantized` alone: none)")
    main(p.parse_args())
