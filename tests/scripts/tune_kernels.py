"""Compare workgroup shapes of the decode kernels end to end on this machine's adapter: greedy
decode ms/token of GPT-2 shapes (random weights) with model.layouts' GPU layout and variants of
its gemv (TPR, RPW, U), gemv_ln (the products with the layer norm fused), lm_head settings,
attention splits and the final norm's fusion. To choose the GPU defaults.

    PYTHONPATH=py python tests/scripts/tune_kernels.py [--shapes 124M 1.5B] [--dtype F16]

Whole decode steps, not kernels alone: a kernel repeated on its own reads its weights from the
GPU's L2 cache, which a real step (hundreds of MB of weights) cannot. Each variant is loaded
and timed by webgpt.tools.bench.bench_model (steady state: the difference of two runs).
Not a test: pytest does not collect it (no test_ prefix).
"""

import argparse
import asyncio
import sys

from webgpt import gpu
from webgpt.tools.bench import SHAPES, bench_model
from webgpt.model import layouts

VARIANTS = {
    "default": {},
    "gemv U=2": dict(gemv=dict(TPR=32, RPW=8, U=2)),
    "gemv U=4": dict(gemv=dict(TPR=32, RPW=8, U=4)),
    "gemv TPR=16 U=4": dict(gemv=dict(TPR=16, RPW=16, U=4)),
    "gemv TPR=64 U=2": dict(gemv=dict(TPR=64, RPW=4, U=2)),
    "lm_head TPR=16 U=4": dict(lm_head=dict(TPR=16, RPW=16, U=4)),
    "lm_head TPR=8 U=2": dict(lm_head=dict(TPR=8, RPW=32, U=2)),
    "attention WG=128": dict(attention=128),
    "gemv_ln TPR=16 RPW=16 U=2": dict(gemv_ln=dict(TPR=16, RPW=16, U=2)),
    "gemv_ln TPR=8 RPW=32 U=2": dict(gemv_ln=dict(TPR=8, RPW=32, U=2)),
    "gemv_ln TPR=32 RPW=16 U=2": dict(gemv_ln=dict(TPR=32, RPW=16, U=2)),
    "gemv_ln TPR=16 RPW=32 U=2": dict(gemv_ln=dict(TPR=16, RPW=32, U=2)),
    "attention unsplit": dict(attention_splits=1),
    "attention splits<=8": dict(attention_splits=8),
    "attention splits<=32": dict(attention_splits=32),
    "ln_f apart from lm_head": dict(lm_head_ln=False),
    "attention chunks>=64": dict(attention_chunk=64),
    "attention chunks>=256": dict(attention_chunk=256),
}


async def main(a):
    dev = await gpu.request_device()
    print(f"adapter: {dev.describe()}")
    base = layouts(dev, "gpu")
    print(f"default GPU layout: {base}")
    for shape in a.shapes:
        for name, change in VARIANTS.items():
            if name not in a.variants:
                continue
            row = await bench_model(dev, shape, a.dtype, a.contexts, a.tokens, 64,
                                    lambda *_: None, layout=base.replace(**change))
            cells = ", ".join(f"@{c} {row[f'ms/token @{c}']:.3f}" for c in a.contexts)
            print(f"{shape} {a.dtype} {name}: ms/token {cells}", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=["124M", "1.5B"], choices=list(SHAPES))
    p.add_argument("--dtype", default="F16", choices=["F32", "F16", "Q8", "Q4"])
    p.add_argument("--contexts", nargs="+", type=int, default=[16, 1000])
    p.add_argument("--tokens", type=int, default=30, help="tokens timed per context")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    sys.exit(asyncio.run(main(p.parse_args())))
