"""Prompts in chunks (webgpt/model/plan.py: prompt_chunk, Plan.queue; generator.py: logits,
fit_context): activation memory sized for a fixed number of prompt tokens per forward pass, not
for the whole context, the chunks run one after another through the same KV cache.

- The same answers: a prompt longer than the chunk gives the logits of one pass (within 1e-6 of
  the logit scale: each row is computed by the same kernels in the same order) and transformers'
  logits within familycheck's 1e-4, and the same greedy tokens, in both kernel layouts. The
  model is a Qwen2 with q/k/v biases, grouped-query attention and a sliding window of 5 keys on
  its second layer, so a chunk after the first attends to keys earlier chunks wrote (pos0 > 0
  with T > 1) inside and across the window; GPT-2 (a learned position table read at pos0 + t)
  slides its window when the context fills, re-running 3/4 of it in chunks.
- Memory: on a device whose storage bindings are smaller than the full context's MLP rows
  (wgpu validates every binding against the limit) the model loads, every buffer fits, the
  activations hold one chunk, planned_bytes is what the plan made, and logits still match
  transformers. Where one layer's KV cache does not fit a binding, the context kept is
  shortened with a UserWarning rather than refused.
- The rule, without a GPU: Qwen2.5-0.5B's shape at its 4096-token context, whose MLP rows
  (152 MiB) exceed a 128 MiB binding, resolves and plans chunks of 1216 / 1024 tokens.
"""

import asyncio
import json
import warnings

import numpy as np
import pytest

import hfmodels
import refmodels
from conftest import missing

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import familycheck  # noqa: E402
import webgpt  # noqa: E402
from webgpt.model import Model, Plan, layouts  # noqa: E402
from webgpt.model.layout import resolve  # noqa: E402
from webgpt.model.plan import prompt_chunk  # noqa: E402

QWEN2_WINDOW = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True,
                    sliding_window=5, max_window_layers=1, tie_word_embeddings=True,
                    max_position_embeddings=96)
LLAMA = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
             max_position_embeddings=128)
CHUNK = 7  # tokens per prompt pass in the equality tests: prompts of 14-30 tokens, 3-5 passes


def run(coro):
    return asyncio.run(coro)


def device(limit=None):
    """A native device; with `limit`, storage bindings and buffers of at most that many bytes."""
    from webgpt import gpu

    want = {} if limit is None else {"max-storage-buffer-binding-size": limit,
                                     "max-buffer-size": limit}
    try:
        return run(gpu.request_device(want))
    except (ImportError, gpu.GPUError) as e:
        missing(f"no WebGPU adapter through wgpu: {e}")


async def load(path, dev, layout, chunk=None):
    spec = await webgpt.open_folder(path)
    model = Model(spec, dev, layout=layouts(dev, layout), prefill_chunk=chunk)
    await model.upload()
    return model


def count_passes(model):
    """[T of each pass Plan.queue runs], filled as the model runs."""
    plan, seen = model.plan, []
    queue_pass = plan._queue_pass

    def counted(ids, pos0, rows, choose, slot):
        seen.append((1 if ids is None else len(ids), pos0, rows))
        return queue_pass(ids, pos0, rows, choose, slot)

    plan._queue_pass = counted
    return seen


def check_planned(model):
    """planned_bytes (before any upload) is what the plan made, but the 16-byte stand-ins."""
    weights, total = model.planned_bytes()
    made = sum(b.size for b in model.plan.buffers()) - 16 * len(model.plan._standins)
    assert made == total - weights


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return familycheck.make(tmp_path_factory.mktemp("qwen2-window"), "Qwen2ForCausalLM",
                            QWEN2_WINDOW)


@pytest.mark.parametrize("layout", ["cpu", "gpu"])
def test_a_chunked_prompt_gives_the_one_pass_answers(qwen, layout):
    dev = device()

    async def go():
        whole, chunked = await load(qwen.path, dev, layout), await load(qwen.path, dev, layout,
                                                                          CHUNK)
        try:
            assert whole.plan.chunk == whole.n_ctx == 96 and chunked.plan.chunk == CHUNK
            one = np.asarray(await whole.logits(qwen.ids))
            got = np.asarray(await chunked.logits(qwen.ids))
            passes = count_passes(chunked)
            tokens = await chunked.generate_ids(qwen.ids, max_new_tokens=familycheck.STEPS,
                                                temperature=0, stop_at_eot=False)
            return one, got, passes, tokens, chunked
        finally:
            whole.release()
            chunked.release()

    one, got, passes, tokens, chunked = run(go())
    T = len(qwen.ids)
    err_one = float(np.abs(got - one).max())
    err_hf = float(np.abs(got.astype(np.float64) - qwen.logits).max())
    print(f"{layout}: prompt of {T} tokens in passes of {CHUNK}: max |chunked - one pass| = "
          f"{err_one:.3g}, max |chunked - HF| = {err_hf:.3g} (tolerance {qwen.tol:.3g})")
    assert err_one <= 1e-6 * max(1.0, float(np.abs(one).max()))
    assert err_hf <= qwen.tol
    assert tokens == qwen.greedy
    # The prompt ran in passes of CHUNK tokens at advancing positions, the LM head in the
    # last only; then one pass a token.
    starts = range(0, T, CHUNK)
    assert passes[:len(starts)] == [(min(CHUNK, T - s), s, int(s + CHUNK >= T)) for s in starts]
    assert passes[len(starts):] == [(1, T + k, 1) for k in range(familycheck.STEPS - 1)]


def test_the_window_slides_through_chunks(tmp_path_factory):
    """GPT-2 with a context of 40: generating past it slides the window (30 tokens again from
    position 0, in passes of 7); the tokens are those of the model that runs prompts whole."""
    cfg = refmodels.CONFIGS["ctx40"]
    folder = refmodels.write_folder(str(tmp_path_factory.mktemp("ctx40")), cfg,
                                    refmodels.make_weights(cfg, 5))
    dev = device()
    prompt = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43, 383, 279, 50, 28, 84]

    async def go():
        whole, chunked = await load(folder, dev, "cpu"), await load(folder, dev, "cpu", CHUNK)
        try:
            out = []
            for m in (whole, chunked):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    out.append(await m.generate_ids(prompt, max_new_tokens=40, temperature=0,
                                                    stop_at_eot=False))
                assert m.stats["window_slides"] == 2  # at 40 tokens, then at 30 + 10
                assert any("sliding the window" in str(w.message) for w in caught)
            return out
        finally:
            whole.release()
            chunked.release()

    one, got = run(go())
    assert got == one and len(got) == 40


def hf_logits(keys, ids, seed=0):
    model = hfmodels.hf_model("LlamaForCausalLM", keys, seed)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy().astype(np.float64)


def check_logits(model, keys, ids):
    got = np.asarray(run(model.logits(ids))).astype(np.float64)
    want = hf_logits(keys, ids)
    err, tol = float(np.abs(got - want).max()), 1e-4 * max(1.0, float(np.abs(want).max()))
    print(f"{len(ids)} tokens in passes of {model.plan.chunk}: max |ours - HF| = {err:.3g} "
          f"(tolerance {tol:.3g})")
    assert err <= tol


@pytest.mark.parametrize("layout", ["cpu", "gpu"])
def test_activations_sized_per_chunk_load_where_the_context_would_not(tmp_path, layout):
    """An 80 KiB binding: the 128-token context's widest rows (q | k | v, 128 x 256 f32 =
    128 KiB) do not fit one; 80 tokens' do, cut to 64 (matmul's tile of rows); the KV cache
    (32 KiB a layer) fits whole."""
    limit = 80 << 10
    path = hfmodels.write_folder(str(tmp_path / "llama"), "LlamaForCausalLM", LLAMA)
    model = run(load(path, device(limit), layout))
    try:
        d, plan = model.dims, model.plan
        assert d.n_ctx == 128 and d.n_ctx * d.widest * 4 > limit
        assert plan.chunk == model.prefill_chunk == 64
        assert plan.activations["fc"] == 64 * 192 * 4
        assert plan.activations["k_cache.0"] == 128 * d.kv_cols * 4  # the whole context
        assert plan.buf["ids"].size == 64 * 4
        for buf in model.buffers():
            assert buf.size <= limit
        check_planned(model)
        ids = [int(i) for i in np.random.default_rng(1).integers(0, 300, 100)]
        check_logits(model, LLAMA, ids)
    finally:
        model.release()


def test_a_kv_cache_too_big_for_a_binding_shortens_the_context(tmp_path):
    """A 16 KiB binding holds 64 positions of one layer's keys (2 heads x 32 f32): the model
    keeps a context of 64 rather than 128, says so, and runs."""
    path = hfmodels.write_folder(str(tmp_path / "llama"), "LlamaForCausalLM", LLAMA)
    with pytest.warns(UserWarning, match=r"one layer's KV cache fits 64 positions .* keeps a "
                                         r"context of 64 tokens rather than 128"):
        model = run(load(path, device(16 << 10), "cpu"))
    try:
        assert model.n_ctx == 64 and model.plan.activations["k_cache.1"] == 16 << 10
        assert model.plan.chunk == (16 << 10) // (256 * 4)  # q | k | v rows' bound: 16
        check_planned(model)
        ids = [int(i) for i in np.random.default_rng(2).integers(0, 300, 50)]
        check_logits(model, LLAMA, ids)
    finally:
        model.release()


class StandIn:
    """The part of webgpt.gpu.Device the layout and the chunk rule read: a 128 MiB binding."""

    def __init__(self, is_cpu):
        self.is_cpu, self.max_binding = is_cpu, 128 << 20
        self.limits = {"max-compute-workgroup-storage-size": 32768}

    def describe(self):
        return "a stand-in adapter"


@pytest.mark.parametrize("kind, chunk", [("cpu", 1216), ("gpu", 1024)])
def test_qwen2_5_0_5b_plans_chunks_on_a_128_mib_binding(kind, chunk):
    """Its 4096-token context's MLP rows are 152 MiB; a chunk's fit, the prompt activations
    within PROMPT_BYTES, and the plan shrinks by 149 MiB (cpu) / 191 MiB (gpu: split-K)."""
    from webgpt.arch import arch_for
    from webgpt.config import parse_config

    cfg = dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
               num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
               max_position_embeddings=32768, tie_word_embeddings=True)
    dev = StandIn(kind == "cpu")
    base = layouts(dev)
    arch = arch_for(parse_config(json.dumps(cfg)))
    arch = arch.with_context(arch.context(dev, base))
    d = arch.dims
    assert d.n_ctx == 4096 and d.n_ctx * d.widest * 4 > dev.max_binding
    layout = resolve(base, dev, d, False)   # refused before chunks: "need 152.0 MiB"
    assert prompt_chunk(arch, layout, dev.max_binding) == chunk
    assert chunk * d.widest * 4 <= dev.max_binding
    before = Plan.planned_bytes(arch, layout, d.n_ctx)
    after = Plan.planned_bytes(arch, layout, None, dev.max_binding)
    print(f"Qwen2.5-0.5B, {kind} layout, context 4096: plan {before / 2**20:.1f} MiB in one "
          f"pass, {after / 2**20:.1f} MiB in chunks of {chunk}")
    assert before - after > 140 << 20
