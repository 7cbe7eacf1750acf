"""Generation in steps (webgpt/model/decode.py) and the Model around it (generator.py).

Each step of Model.stream_ids is driven alone here: KVCache's bookkeeping (what the cache
holds while passes run ahead of the tokens read back), Generation.submit / next_token / slide /
finish, the argument checks, the logits hook, and the Model's own parts (adopt over the same
weights, release). The end-to-end equalities (greedy tokens against transformers, cache ==
full logits) are tests/test_model.py's and tests/test_llama.py's.
"""

import asyncio

import pytest

import refmodels

import webgpt
from webgpt.model.decode import Generation, KVCache, Pending, check_request
from webgpt.model.plan import PIPELINE


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- KVCache

def test_kv_cache_bookkeeping():
    c = KVCache([1, 2, 3])
    assert c.holds([1, 2, 9], 2) and not c.holds([1, 9], 2)
    c.write(2, [7, 8])                  # a prompt window written from position 2
    assert c.ids == [1, 2, 7, 8]
    c.write_pending(0)                  # generated tokens 0 and 1 fed before being read
    c.write_pending(1)
    assert c.entries[-2:] == [Pending(0), Pending(1)]
    c.settle([50])                      # only token 0 was read back: the rest is unknown
    assert c.ids == [1, 2, 7, 8, 50]
    c.write_pending(1)
    c.settle([50, 60, 70])
    assert c.ids == [1, 2, 7, 8, 50, 60]
    c.write(0, [9])                     # a window slid back to position 0
    assert c.ids == [9]


# ---------------------------------------------------------------- Generation, step by step

@pytest.fixture(scope="module")
def model(tmp_path_factory, gpu_device):
    cfg = refmodels.CONFIGS["ctx40"]       # a short context, to slide the window
    folder = refmodels.write_folder(str(tmp_path_factory.mktemp("gen")), cfg,
                                    refmodels.make_weights(cfg, 5))
    m = run(webgpt.load(folder, device=gpu_device))
    yield m
    m.release()


PROMPT = [3, 14, 15, 92, 65]


def test_next_token_queues_ahead_and_reads_in_order(model):
    async def steps():
        want = await model.generate_ids(PROMPT, max_new_tokens=10, temperature=0)
        g = Generation(model, PROMPT, 10, 0, None, None, None)
        got = [(await g.next_token()).token]
        # The prompt's pass and PIPELINE - 1 more were queued before the first read.
        assert g.submitted == PIPELINE and len(g.inflight) == PIPELINE - 1
        assert g.stats["prefill_tokens"] == len(PROMPT) and g.stats["first_token_s"] > 0
        while len(got) < 10:
            got.append((await g.next_token()).token)
        assert g.submitted == 10 and not g.inflight
        g.finish()
        return want, got
    want, got = run(steps())
    assert got == want
    # The cache holds the prompt and every token fed to a pass: all but the last.
    assert model.cached_ids == PROMPT + got[:-1]


def test_finish_keeps_only_what_was_read_back(model):
    """Stopping after the first token: the passes queued behind it fed tokens the CPU never
    read, so the cache keeps the prompt and that first token only."""
    async def steps():
        g = Generation(model, PROMPT, 10, 0, None, None, None)
        first = (await g.next_token()).token
        assert g.submitted > 2
        g.finish()
        return first
    first = run(steps())
    assert model.cached_ids == PROMPT + [first]


def test_slide_runs_the_last_three_quarters_again(model):
    async def steps():
        g = Generation(model, PROMPT, 60, 0, None, None, None)
        for _ in range(3):
            await g.next_token()
        with pytest.warns(UserWarning, match="sliding the window to the last 30 tokens"):
            g.slide()
        assert g.pos == 0 and g.window == g.history[-30:] and g.stats["window_slides"] == 1
        g.finish()
    run(steps())


def test_a_long_generation_slides_and_goes_on(model):
    with pytest.warns(UserWarning, match="context of 40 tokens is full"):
        ids = run(model.generate_ids(PROMPT, max_new_tokens=50, temperature=0))
    assert len(ids) == 50 and model.stats["window_slides"] >= 1


def test_the_hook_sees_each_step_and_edits_it(model):
    seen = []

    def ban_top(logits, ids):
        best = max(range(len(logits)), key=logits.__getitem__)
        seen.append((list(ids), best))
        logits[best] = float("-inf")

    async def steps():
        g = Generation(model, PROMPT, 4, 0, None, None, None, logits_hook=ban_top)
        out = [(await g.next_token()).token for _ in range(4)]
        assert g.depth == 1
        g.finish()
        return out
    out = run(steps())
    assert [ids for ids, _ in seen] == [PROMPT + out[:k] for k in range(4)]
    assert all(token != best for token, (_, best) in zip(out, seen))


def test_sampled_steps_repeat_with_their_seed(model):
    async def draws():
        out = []
        for _ in range(2):
            g = Generation(model, PROMPT, 6, 0.9, 20, 0.95, seed=1234)
            out.append([(await g.next_token()).token for _ in range(6)])
            assert g.stats["seed"] == 1234
            g.finish()
        return out
    a, b = run(draws())
    assert a == b


@pytest.mark.parametrize("args, words", [
    (dict(ids=[]), "at least one prompt token"),
    (dict(ids=[1, 1000]), "token ids must be whole numbers in [0, 517)"),
    (dict(logits_hook=3), "logits_hook must be a function"),
    (dict(cached=2, ids=[99, 98, 97]), "the KV cache does not hold those 2 ids"),
    (dict(temperature=-1), "temperature must be 0"),
])
def test_check_request_says_what_is_wrong(model, args, words):
    kw = dict(ids=PROMPT, max_new_tokens=5, temperature=0, top_k=None, top_p=None, seed=None,
              logits_hook=None, cached=0)
    kw.update(args)
    model.cached_ids = PROMPT
    with pytest.raises(ValueError) as e:
        check_request(model, kw.pop("ids"), **kw)
    assert words in str(e.value)


# ---------------------------------------------------------------- the Model around it

def test_adopt_builds_a_new_plan_over_the_same_weights(model, gpu_device):
    async def go():
        before = await model.generate_ids(PROMPT, max_new_tokens=8, temperature=0)
        allocated = gpu_device.allocated
        new = type(model).adopt(model)
        assert new.weight_store is model.weight_store and new.plan is not None
        assert model.released and model.plan is None
        with pytest.raises(webgpt.gpu.GPUError, match="released"):
            await model.generate_ids(PROMPT, max_new_tokens=1, temperature=0)
        after = await new.generate_ids(PROMPT, max_new_tokens=8, temperature=0)
        assert gpu_device.allocated == allocated
        return before, after, new
    before, after, new = run(go())
    assert after == before
    assert new.stop_ids == model.stop_ids and new.tokenizer is model.tokenizer
    new.release()  # (the module's last test: the fixture's model is spent)
