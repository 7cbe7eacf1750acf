"""The plan (webgpt/model/plan.py): each pass kind's launch list, as built from an
architecture's forward pass for a layout, on the native adapter (lavapipe on CI).

What a plan must be: every pass kind there, every launch naming a shader file that exists and a
grid the encoder can resolve; the number of dispatches a decoded token costs, which the GPU
layout lowers by fusing each norm into the product after it (a regression here is a speed
regression); the memory it said it would take before it was made; the rule that a split
attention's partial results are read by the product right after it.
"""

import asyncio
import os

import pytest

import hfmodels
import refmodels

import webgpt
from webgpt.model import Plan, layouts
from webgpt.model.plan import Forward, resolve_grid

SHADERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shaders")
KINDS = ("prompt", "decode", "lm_head", "argmax", "sample")
LLAMA_KEYS = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
                  max_position_embeddings=128)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("plan")
    cfg = refmodels.CONFIGS["tiny"]
    return {"gpt2": refmodels.write_folder(str(base / "gpt2"), cfg, refmodels.make_weights(cfg, 1)),
            "llama": hfmodels.write_folder(str(base / "llama"), "LlamaForCausalLM", LLAMA_KEYS)}


@pytest.fixture(scope="module")
def models(folders, gpu_device):
    """{(kind, layout): a loaded model}, both layouts on one device."""
    async def load():
        return {(kind, lay): await webgpt.load(path, device=gpu_device, layout=lay)
                for kind, path in folders.items() for lay in ("cpu", "gpu")}
    out = asyncio.run(load())
    yield out
    for m in out.values():
        m.release()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("lay", ["cpu", "gpu"])
def test_every_pass_kind_has_launches_with_real_shaders(models, kind, lay):
    plan = models[kind, lay].plan
    assert set(plan.passes) == set(KINDS)
    for pass_kind, launches in plan.passes.items():
        assert launches, pass_kind
        for launch in launches:
            assert os.path.isfile(os.path.join(SHADERS, launch.shader)), launch
            grid = [resolve_grid(v, 7, 3) for v in launch.grid]
            assert all(isinstance(g, int) and g >= 1 for g in grid), launch
    described = plan.describe()
    assert [name for name, _, _ in described["decode"]] == [l.name for l in plan.passes["decode"]]


@pytest.mark.parametrize("kind, lay, per_layer, extra", [
    # GPT-2, a CPU adapter: ln_1, c_attn, attention, c_proj, ln_2, c_fc, c_proj; then the
    # embedding, ln_f and the LM head.
    ("gpt2", "cpu", 7, 3),
    # On a GPU each norm runs inside the product after it, ln_f inside the LM head.
    ("gpt2", "gpu", 5, 2),
    # Llama: q, k, v are copied into one buffer at load, and so are gate and up (weights.py
    # joins them): one dispatch each group, as GPT-2's c_attn; the rotary embedding (and the
    # store of k and v) runs inside the q|k|v product (gemv.wgsl's ROPE).
    ("llama", "cpu", 7, 3),
    ("llama", "gpu", 5, 2),
])
def test_dispatches_a_decoded_token_costs(models, kind, lay, per_layer, extra):
    model = models[kind, lay]
    n = model.dims.n_layer
    assert len(model.plan.passes["decode"]) == per_layer * n + extra
    assert len(model.plan.passes["argmax"]) == 2 and len(model.plan.passes["sample"]) == 1


def test_the_gpu_prompt_cuts_the_long_products(models):
    """A prompt's MLP down product (K = 4C, N = C) is cut in ranges whose parts a reduce adds."""
    names = [l.name for l in models["gpt2", "gpu"].plan.passes["prompt"]]
    assert "h.0.mlp.c_proj (sum of 3 parts)" in names
    shaders = [l.shader for l in models["gpt2", "gpu"].plan.passes["prompt"]]
    assert "matmul.wgsl" in shaders and "gemv.wgsl" not in shaders[:-1]  # the LM head is gemv


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("lay", ["cpu", "gpu"])
def test_planned_bytes_are_what_the_plan_made(models, kind, lay):
    """The memory plan said before any upload is the plan's buffers, but for the 16-byte
    stand-ins of unused bindings."""
    model = models[kind, lay]
    plan = model.plan
    made = sum(b.size for b in plan.buffers())
    standins = 16 * len(plan._standins)
    assert made - standins == Plan.planned_bytes(model.arch, model.layout)


def test_split_attention_partials_must_be_read_by_the_next_product(models):
    plan = models["gpt2", "gpu"].plan
    f = Forward(plan, "decode")
    f._split = ("att", 4)
    with pytest.raises(ValueError, match="must be read by the product that follows it"):
        f.layer_norm("h.0.ln_2", x="x", out="ln")
    f._split = ("att", 4)
    with pytest.raises(ValueError, match="partial results in 'att'"):
        f.linear("h.0.mlp.c_fc", x="ln", out="fc", K=96, N=384)


def test_layouts_run_the_same_model(models, gpu_device):
    """The two layouts' plans give the same greedy tokens (their kernels differ)."""
    async def run():
        out = []
        for lay in ("cpu", "gpu"):
            m = models["llama", lay]
            out.append(await m.generate_ids([5, 17, 42], max_new_tokens=12, temperature=0))
        return out
    cpu, gpu = asyncio.run(run())
    assert cpu == gpu
    assert layouts(gpu_device).kind in ("cpu", "gpu")


def test_row_pairs_keep_enough_workgroups():
    """Two rows a slot (gemv PAIRS) for quantized rows only where the halved slots still fill
    FEW_WORKGROUPS workgroups; odd rows round up; a shape without PAIRS is left alone."""
    from webgpt.model.layout import FEW_WORKGROUPS
    from webgpt.model.plan import row_pairs
    shape = {"TPR": 64, "RPW": 4, "U": 2, "PAIRS": True}
    rows = 2 * 4 * FEW_WORKGROUPS + 1
    q4_0 = 18
    assert row_pairs(shape, rows, q4_0) == (shape, 4 * FEW_WORKGROUPS + 1)
    few, slots = row_pairs(shape, 4 * FEW_WORKGROUPS, q4_0)
    assert few["PAIRS"] is False and slots == 4 * FEW_WORKGROUPS
    f16, slots = row_pairs(shape, rows, 1)           # f16 rows: bound by their own bytes
    assert f16["PAIRS"] is False and slots == rows
    plain = {"TPR": 64, "RPW": 4}
    assert row_pairs(plain, 10 ** 6, q4_0) == (plain, 10 ** 6)
