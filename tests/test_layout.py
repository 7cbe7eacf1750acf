"""The layout (webgpt/model/layout.py): the adapter's base layout, and `resolve`, which fits it
to one model or says in a sentence why the model cannot run on that adapter.

No GPU needed: `resolve` reads only the device's limits, so a stand-in device with chosen
limits exercises every branch (a binding too small for the activations, workgroup memory too
small for the attention scores or a fused norm's row, matrices too big for one binding as
columns).
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "py"))

from webgpt.arch import arch_for  # noqa: E402
from webgpt.config import parse_config  # noqa: E402
from webgpt.model.layout import Layout, layouts, resolve  # noqa: E402

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_head": 3, "n_embd": 96, "vocab_size": 1000,
        "n_positions": 64}
LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 32, "vocab_size": 300, "max_position_embeddings": 8192}


class Device:
    """The part of webgpt.gpu.Device a layout reads."""

    def __init__(self, is_cpu=False, max_binding=128 << 20, wg_bytes=32768):
        self.is_cpu, self.max_binding = is_cpu, max_binding
        self.limits = {"max-compute-workgroup-storage-size": wg_bytes}

    def describe(self):
        return "a stand-in adapter"


def dims(d, n_ctx=None):
    return arch_for(parse_config(json.dumps(d)), n_ctx).dims


def test_the_adapter_kind_picks_the_base_layout():
    cpu, gpu = layouts(Device(is_cpu=True)), layouts(Device())
    assert (cpu.kind, cpu.weights, cpu.prefill, cpu.fuse_ln) == ("cpu", "cols", "matvec", False)
    assert (gpu.kind, gpu.weights, gpu.prefill, gpu.fuse_ln) == ("gpu", "rows", "matmul", True)
    assert layouts(Device(is_cpu=True), "gpu") == gpu and layouts(Device(), "cpu") == cpu


def test_a_layout_is_a_frozen_value_that_reads_like_a_dict():
    gpu = layouts(Device())
    with pytest.raises(Exception):
        gpu.kind = "cpu"
    with pytest.raises(TypeError):
        gpu.gemv["RPW"] = 1        # the shapes are read-only mappings too
    assert Layout.of(gpu.as_dict()) == gpu and Layout.of(gpu) is gpu
    assert gpu["prefill"] == gpu.get("prefill") == "matmul" and "gemv" in gpu.keys()
    # A tuning variant: a partial dict takes the defaults of what it leaves out.
    v = Layout.of({"weights": "rows", "prefill": "matmul", "fuse_ln": True, "f16": True,
                   "attention": 64, "matvec": {"TX": 8, "TY": 32}, "gemv": {"TPR": 32, "RPW": 8},
                   "lm_head": {"TPR": 16, "RPW": 16}})
    assert v.kind == "gpu" and v.gemv_ln == v.gemv and v.attention_decode == 64
    assert gpu.replace(split_k=1).split_k == 1 and gpu.split_k == 3


def test_resolve_keeps_what_fits():
    base = layouts(Device())
    got = resolve(base, Device(), dims(GPT2), quantized=False)
    assert got == base
    cpu = layouts(Device(is_cpu=True))
    assert resolve(cpu, Device(is_cpu=True), dims(GPT2), False).weights == "cols"


def test_quantized_or_oversized_matrices_take_rows():
    cpu = layouts(Device(is_cpu=True))
    assert resolve(cpu, Device(is_cpu=True), dims(GPT2), quantized=True).weights == "rows"
    # The MLP's [C, 4C] matrix as f32 is 4 * 96 * 384 bytes: a binding of less needs rows.
    d = dims(GPT2)
    small = Device(is_cpu=True, max_binding=d.biggest_matrix - 4)
    assert resolve(cpu, small, d, False).weights == "rows"


def test_a_fused_norm_needs_its_row_in_workgroup_memory():
    base = layouts(Device()).replace(attention=64)
    d = dims(GPT2)
    tight = Device(wg_bytes=d.C * 4 + 4095)
    # Attention's scores still fit (64 positions + 5 x 64 floats), the norm's row does not.
    assert (d.n_ctx + base.attention * 5) * 4 <= tight.limits["max-compute-workgroup-storage-size"]
    assert resolve(base, tight, d, False).fuse_ln is False
    assert resolve(base, Device(wg_bytes=d.C * 4 + 4096), d, False).fuse_ln is True


def test_what_cannot_be_split_is_a_sentence():
    base = layouts(Device())
    d = dims(GPT2)
    with pytest.raises(MemoryError, match=r"one token's row of the MLP activations .* needs "
                                          r"1\.5 KiB in one storage binding, but this adapter "
                                          r"\(a stand-in adapter\)"):
        resolve(base, Device(max_binding=d.widest * 4 - 4), d, False)
    with pytest.raises(MemoryError, match=r"one row of logits"):
        resolve(base, Device(max_binding=d.V * 4 - 4), dims(dict(GPT2, n_positions=1)), False)
    with pytest.raises(MemoryError, match=r"attention keeps 64 scores in workgroup memory.*"
                                          r"n_positions must be at most"):
        resolve(base, Device(wg_bytes=2048), d, False)
    with pytest.raises(ValueError, match="multiples of 4"):
        resolve(base, Device(), dims(dict(GPT2, n_embd=90)), False)


def test_a_llama_context_fits_the_adapter():
    """The context kept is max_position_embeddings, cut to what attention's workgroup memory
    holds and to 4096; the dims and the checks then use it."""
    arch = arch_for(parse_config(json.dumps(LLAMA)))
    base = layouts(Device())
    assert arch.context(Device(wg_bytes=65536), base) == 4096
    small = Device(wg_bytes=16384)
    n_ctx = arch.context(small, base)
    assert n_ctx == 16384 // 4 - base.attention * 5
    fitted = arch.with_context(n_ctx)
    assert resolve(base, small, fitted.dims, False).kind == "gpu"  # fits: no exception
