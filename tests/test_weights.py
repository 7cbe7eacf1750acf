"""The weights on the GPU (webgpt/model/weights.py): matrices as row parts, the transposes and
widenings done on the GPU at load, the memory plan, grouping, release.

Each uploaded buffer is read back and compared with the file's tensor as numpy reads it, so a
wrong transpose, a half widened to the wrong float or a part's rows off by one shows here,
apart from the model's logits.
"""

import asyncio
import math
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

import hfmodels
import refmodels

from webgpt.folder import open_folder
from webgpt.model import Matrix, layouts
from webgpt.model.weights import SCALE_ALIGN, Weights

LLAMA_KEYS = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
                  attention_bias=True, max_position_embeddings=64)


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- Matrix: parts' sizes

@pytest.mark.parametrize("fmt, row", [("f32", 4 * 96), ("f16", 2 * 96), ("q8", 96), ("q4", 48)])
def test_parts_fit_the_limit(fmt, row):
    block = 32 if fmt in ("q8", "q4") else 0
    m = Matrix("w", K=96, N=1000, fmt=fmt, block=block)
    assert m.row_bytes() == row
    for limit in (5000, 64 * 1024, 1 << 30):
        rows = m.rows_per_part(limit)
        values, soff, total = m.part_bytes(rows)
        per_row = row + (2 * 96 // block if block else 0)
        # Fits, and wastes at most the scales' alignment and padding.
        assert total <= limit and rows >= min(m.N, (limit - SCALE_ALIGN - 16) // per_row)
        if block:  # scales after the values, at an offset a binding may start at
            assert soff % SCALE_ALIGN == 0 and soff >= values
            assert total - soff >= rows * (96 // block) * 2
    assert m.constants((None, 10, 5, 64)) == dict(ROWS=5, ROW0=10, FMT={"f32": 0, "f16": 1,
                                                  "q8": 2, "q4": 3}[fmt], BLOCK=block or 32,
                                                  SOFF=64)


# ---------------------------------------------------------------- uploads, read back

def _f32(raw, count):
    return np.frombuffer(raw, np.float32, count)


def _f16(raw, count):
    return np.frombuffer(raw, np.float16, count).astype(np.float32)


async def _upload(folder, device, kind):
    spec = await open_folder(folder)
    from webgpt.arch import arch_for
    from webgpt.kernels import Kernels
    from webgpt.model.layout import resolve

    arch = arch_for(spec.config)
    layout = resolve(layouts(device, kind), device, arch.dims, False)
    store = Weights(spec, device, Kernels(device), layout, arch)
    await store.upload()
    return spec, store


async def _matrix(device, m):
    """A Matrix's rows as one (N, K) float32 array, part by part."""
    rows = []
    for part in m.parts:
        buf, row0, n, _ = part
        raw = await device.read(buf, part.offset, n * m.row_bytes())
        rows.append((_f16 if m.fmt == "f16" else _f32)(raw, n * m.K).reshape(n, m.K))
    return np.concatenate(rows)


@pytest.mark.parametrize("dtype, kind", [("float32", "cpu"), ("float32", "gpu"),
                                         ("float16", "gpu"), ("float16", "cpu")])
def test_gpt2_weights_read_back_as_the_file_has_them(tmp_path, gpu_device, dtype, kind):
    cfg = refmodels.CONFIGS["tiny"]
    weights = refmodels.make_weights(cfg, 3)
    folder = refmodels.write_folder(str(tmp_path / "m"), cfg, weights, dtype=dtype)
    file = load_file(f"{folder}/model.safetensors")

    async def check():
        before = gpu_device.allocated
        spec, store = await _upload(folder, gpu_device, kind)
        assert store.bytes() == store.planned_bytes() == gpu_device.allocated - before
        f16 = dtype == "float16" and kind == "gpu"
        assert store.format == ("f16" if f16 else "f32")
        for name, ref in spec.tensors.items():
            want = file["transformer." + name].astype(np.float32)
            m = store.matrix(name)
            if m is not None:   # rows: one per output; a Conv1D [in, out] is transposed
                got = await _matrix(gpu_device, m)
                want = want if store.arch.matrix_storage(name) == "rows" else want.T
            else:
                raw = await gpu_device.read(store.params[name], 0, store.params[name].size)
                half = name in store.f16_params
                got = (_f16 if half else _f32)(raw, want.size).reshape(want.shape)
                # The position table stays halves where the layout keeps halves (a CPU
                # adapter's widens them); vectors are always f32.
                assert half == (f16 and name == "wpe.weight")
            np.testing.assert_array_equal(got, want, err_msg=name)
        store.release()
        assert gpu_device.allocated == before
    run(check())


def test_grouped_tensors_run_as_one_product(tmp_path, gpu_device):
    """q, k, v (and their biases) and gate, up: one matrix, one buffer (one dispatch), rows
    stacked in order, each member a view of its rows there; the biases copied into one
    buffer; the members' own buffers freed."""
    folder = hfmodels.write_folder(str(tmp_path / "q"), "Qwen2ForCausalLM", LLAMA_KEYS)
    file = load_file(f"{folder}/model.safetensors")

    async def check():
        before = gpu_device.allocated
        spec, store = await _upload(folder, gpu_device, "gpu")
        A = "layers.0.self_attn."
        qkv = store.mats[A + "qkv_proj.weight"]
        members = [store.matrix(A + p + "_proj.weight") for p in "qkv"]
        assert len(qkv.parts) == 1
        assert {p[0] for m in members for p in m.parts} == {qkv.parts[0][0]}
        assert qkv.N == sum(m.N for m in members) == (4 + 2 + 2) * 16
        want = np.concatenate([file[f"model.{A}{p}_proj.weight"] for p in "qkv"])
        np.testing.assert_array_equal(await _matrix(gpu_device, qkv), want)
        for p, m in zip("qkv", members):
            np.testing.assert_array_equal(await _matrix(gpu_device, m),
                                          file[f"model.{A}{p}_proj.weight"])
        assert store.bytes() == gpu_device.allocated - before
        bias = store.params[A + "qkv_proj.bias"]
        raw = await gpu_device.read(bias, 0, bias.size)
        want = np.concatenate([file[f"model.{A}{p}_proj.bias"] for p in "qkv"])
        np.testing.assert_array_equal(_f32(raw, want.size), want)
        assert [n for n, _ in store.vector_groups[A + "qkv_proj.bias"]] == \
            [A + p + "_proj.bias" for p in "qkv"]
        gate_up = store.mats["layers.0.mlp.gate_up_proj.weight"]
        assert gate_up.N == 2 * 96 and math.prod((gate_up.N, gate_up.K)) == 2 * 96 * 64
        store.release()
    run(check())


def test_a_small_binding_splits_matrices_into_parts(tmp_path, gpu_device, monkeypatch):
    """With a binding limit below the token table's size, the table is several parts; read
    back, the parts are its rows in order."""
    cfg = refmodels.CONFIGS["tiny"]
    folder = refmodels.write_folder(str(tmp_path / "m"), cfg, refmodels.make_weights(cfg, 4))
    file = load_file(f"{folder}/model.safetensors")
    # 300 rows of the 1000-row table (96 f32 values a row) fit one binding.
    monkeypatch.setattr(type(gpu_device), "max_binding", property(lambda self: 96 * 4 * 300))

    async def check():
        _, store = await _upload(folder, gpu_device, "gpu")
        wte = store.mats["wte.weight"]
        assert [(r0, n) for _, r0, n, _ in wte.parts] == [(0, 300), (300, 300), (600, 300),
                                                         (900, 100)]
        np.testing.assert_array_equal(await _matrix(gpu_device, wte), file["transformer.wte.weight"])
        store.release()
    run(check())


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_non_finite_value_in_a_joined_matrix_names_its_member(tmp_path, gpu_device, dtype):
    """q, k, v copied into one buffer are checked as one; the message names the member and its
    row and column."""
    import torch
    import webgpt
    from webgpt.folder import ModelFolderError

    model = hfmodels.hf_model("Qwen2ForCausalLM", LLAMA_KEYS, 0).to(getattr(torch, dtype))
    with torch.no_grad():
        model.model.layers[0].self_attn.k_proj.weight[5, 7] = float("inf")
    path = str(tmp_path / "inf")
    os.makedirs(path)
    hfmodels.write_tokenizer(path)
    model.save_pretrained(path)
    with pytest.raises(ModelFolderError) as info:
        run(webgpt.load(path, device=gpu_device, layout="gpu"))
    message = str(info.value)
    assert "'layers.0.self_attn.k_proj.weight'" in message, message
    assert "row 5, column 7" in message, message
