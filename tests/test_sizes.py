"""Models larger than one storage binding, quantized models, and the memory a load takes.

- Split: a device opened with small binding and buffer limits (wgpu validates every binding
  and buffer against them), so the token table and the layers' matrices are split by rows into
  parts; logits must equal the Hugging Face fixtures within test_model's tolerance (1e-4 of
  the logit scale), in both kernel layouts (the CPU layout switches to rows for matrices that
  do not fit as [in, out]).
- Quantized: folders written by webgpt.tools.quantize (8 and 4 bits; blocks 32, 16 and 8) against
  the numpy forward pass on the dequantized weights, which the GPU must reproduce within the
  same 1e-4 (dequantization is exact in f32; only the order of sums differs). The error
  against the unquantized model is printed: that is what quantizing costs.
- Load memory: the Python heap's peak while loading a 214 MB folder (tracemalloc), natively.
  On lavapipe GPU buffers live in the process's memory too, so the resident size says nothing
  about the loader; the heap does: chunks stream from the file to the GPU one at a time.
"""

import asyncio
import tracemalloc

import numpy as np
import pytest

import npref
import refmodels
from conftest import missing
from test_model import check_close, folder  # noqa: F401  (folder: a fixture)

import webgpt
from webgpt.tools.quantize import quantize_folder

SPLIT_LIMIT = {"tiny": 128 << 10, "tiny_f16": 128 << 10, "ctx40": 96 << 10}


def device(limit=None):
    from webgpt import gpu

    want = {} if limit is None else {"max-storage-buffer-binding-size": limit,
                                     "max-buffer-size": limit}
    try:
        return asyncio.run(gpu.request_device(want))
    except (ImportError, gpu.GPUError) as e:
        missing(f"no WebGPU adapter through wgpu: {e}")


def load(path, layout, limit=None):
    return asyncio.run(webgpt.load(path, device=device(limit), layout=layout))


@pytest.mark.parametrize("layout", ["cpu", "gpu"])
@pytest.mark.parametrize("name", sorted(SPLIT_LIMIT))
def test_split_across_bindings_matches_hf(folder, name, layout):
    meta, ref = refmodels.load_fixture(name)
    limit = SPLIT_LIMIT[name]
    model = load(folder(name), layout, limit)
    try:
        assert model.device.max_binding == limit
        parts = {n: len(m.parts) for n, m in model.weight_store.mats.items()}
        print(f"{name} {layout}, {limit >> 10} KiB per binding: parts {parts}")
        assert parts["wte.weight"] > 1
        if not model.uses_f16:  # in f16 (GPU layout) c_fc is smaller than the MLP activations
            assert parts["h.0.mlp.c_fc.weight"] > 1
        assert model.layout["weights"] == "rows"
        for buf in model.buffers():
            assert buf.size <= limit
        got = np.asarray(asyncio.run(model.logits(ref["ids"].tolist())))
        check_close(f"{name} split ({layout})", got[ref["rows"]], ref["logits"])
        # Decoding through the split parts gives HF's greedy tokens.
        got = asyncio.run(model.generate_ids(ref["prompt"].tolist(), len(ref["greedy"]),
                                             temperature=0, stop_at_eot=False))
        assert got == ref["greedy"].tolist()
    finally:
        model.release()


QUANTIZED = [("tiny", 8, 32, "cpu"), ("tiny", 4, 32, "gpu"), ("tiny", 4, 16, "cpu"),
             ("ctx40", 8, 8, "gpu"), ("ctx40", 4, 32, "cpu"), ("gpt2_2l", 8, 32, "gpu"),
             ("gpt2_2l", 4, 32, "gpu")]


@pytest.mark.parametrize("name,bits,block,layout", QUANTIZED)
def test_quantized_logits_match_dequantized_reference(folder, tmp_path, name, bits, block, layout):
    meta, ref = refmodels.load_fixture(name)
    qdir = tmp_path / f"{name}-q{bits}"
    quantize_folder(folder(name), str(qdir), bits=bits, block=block)
    ids = ref["ids"].tolist()
    want = npref.forward_folder(str(qdir), ids)     # float64 on the dequantized weights
    model = load(str(qdir), layout)
    try:
        assert model.weights == f"q{bits}"
        got = np.asarray(asyncio.run(model.logits(ids)))
        check_close(f"{name} q{bits} block {block} ({layout}) vs numpy", got, want)
        # Greedy through the KV cache (one-token gemv) == argmax of full logits (the prompt's
        # kernels), step by step.
        prompt = ids[:4]
        steps = asyncio.run(model.generate_ids(prompt, 6, temperature=0, stop_at_eot=False))
        seq = list(prompt)
        for token in steps:
            full = np.asarray(asyncio.run(model.logits(seq)))[-1]
            assert token == int(np.argmax(full))
            seq.append(token)
    finally:
        model.release()
    f32 = ref["logits"]
    err = float(np.abs(np.asarray(got, np.float64)[ref["rows"]] - f32).max())
    scale = float(np.abs(f32).max())
    print(f"{name} q{bits} block {block}: max |logit - unquantized| = {err:.4g} "
          f"({err / scale:.2%} of the max |logit| {scale:.3g})")
    assert err <= {8: 0.05, 4: 0.5}[bits] * max(1.0, scale)


def test_quantized_model_is_smaller_and_split(folder, tmp_path):
    """q4 of the 124M-shaped fixture in parts of at most 16 MiB (its MLP activations need 12):
    the token table is 21 MiB at 4 bits with its scales (147 MiB in f32), so it is split;
    logits still match numpy."""
    _, ref = refmodels.load_fixture("gpt2_2l")
    qdir = tmp_path / "q4"
    quantize_folder(folder("gpt2_2l"), str(qdir), bits=4)
    ids = ref["ids"].tolist()[:8]
    model = load(str(qdir), "gpu", limit=16 << 20)
    try:
        assert len(model.weight_store.mats["wte.weight"].parts) == 2
        full_f32 = model.config.n_params * 4
        print(f"q4 weights on the GPU: {model.weight_bytes() / 2**20:.1f} MiB "
              f"(f32: {full_f32 / 2**20:.1f} MiB)")
        assert model.weight_bytes() < full_f32 / 6
        check_close("gpt2_2l q4 split", np.asarray(asyncio.run(model.logits(ids))),
                    npref.forward_folder(str(qdir), ids))
    finally:
        model.release()


def test_load_keeps_python_heap_small(folder):
    """Loading the 214 MB gpt2_2l folder: the Python heap's peak stays under 64 MiB."""
    path = folder("gpt2_2l")
    dev = device()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        model = asyncio.run(webgpt.load(path, device=dev, layout="gpu"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    weights = model.weight_bytes()
    model.release()
    print(f"load of {weights / 2**20:.0f} MiB of weights: Python heap peak {peak / 2**20:.1f} MiB")
    assert peak < 64 << 20
    assert peak < weights / 3
