"""The logits processors and log-probs of an API request, on the GPU, against references we did
not write: transformers' own processors and warpers (RepetitionPenaltyLogitsProcessor,
SequenceBiasLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
MinPLogitsWarper), torch's log_softmax and topk, and OpenAI's documented formula for the
frequency and presence penalties (mu[j] - c[j] * frequency - (c[j] > 0) * presence).

Kernel by kernel on fixed logits (penalize.wgsl, logprobs.wgsl, sample.wgsl's min-p), then
through a model: greedy decoding with the penalties equals a reference that applies them to
each step's full-forward logits, and the log-probs read back with each token equal the
log-softmax of those logits.
"""

import asyncio
import struct

import numpy as np
import pytest
import torch

import refmodels

import webgpt
from webgpt.kernels import Kernels
from webgpt.sampling import candidates
from transformers.generation import logits_process as lp


def run(coro):
    return asyncio.run(coro)


def upload(dev, array):
    buf = dev.buffer(array.nbytes)
    dev.write(buf, 0, array.tobytes())
    return buf


def read(dev, buf, n, dtype=np.float32):
    return np.frombuffer(run(dev.read(buf, 0, n * 4)), dtype, n).copy()


def dispatch(dev, name, constants, buffers, groups):
    kernels = Kernels(dev)
    pipe = kernels.get(name, **constants)
    enc = dev.encoder()
    enc.dispatch(pipe, kernels.bind(name, pipe, **buffers), groups)
    enc.submit()


# ---------------------------------------------------------------- the CPU reference

@pytest.mark.parametrize("temperature, top_k, top_p, min_p", [
    (1.0, None, None, 0.05), (0.7, 10, None, 0.2), (1.3, None, 0.9, 0.1), (0.8, 20, 0.7, 0.3)])
def test_candidates_are_transformers_warpers(temperature, top_k, top_p, min_p):
    """sampling.candidates (the reference the GPU sampler is tested against) keeps the tokens
    transformers' warpers keep, with their probabilities."""
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal(300) * 3).astype(np.float32)
    scores = torch.tensor(logits)[None]
    for warper in (lp.TemperatureLogitsWarper(temperature),
                   lp.TopKLogitsWarper(top_k) if top_k else None,
                   lp.TopPLogitsWarper(top_p) if top_p else None, lp.MinPLogitsWarper(min_p)):
        if warper is not None:
            scores = warper(None, scores)
    want = torch.softmax(scores, -1)[0].numpy()
    got = dict(candidates(logits.tolist(), temperature, top_k, top_p, min_p))
    assert set(got) == set(np.nonzero(want)[0].tolist())
    for i, p in got.items():
        assert abs(p - want[i]) < 1e-6


# ---------------------------------------------------------------- kernels on fixed logits

def test_penalties_are_transformers_and_openai(gpu_device):
    dev, V = gpu_device, 1000
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal(V) * 4).astype(np.float32)
    prompt = rng.integers(0, V, 40)
    generated = rng.integers(0, V, 60)
    bias = {7: 5.0, 123: -100.0, 999: 2.5}
    r, f, p = 1.3, 0.4, -0.6
    counts = np.zeros(V, np.uint32)
    np.add.at(counts, generated, 1)
    counts[np.unique(prompt)] |= 0x80000000
    bias_row = np.zeros(V, np.float32)
    for k, v in bias.items():
        bias_row[k] = v
    out = dev.buffer(V * 4)
    pen = dev.buffer(16, uniform=True)
    dev.write(pen, 0, struct.pack("<3f", r, f, p))
    dispatch(dev, "penalize", dict(V=V, BIAS=True),
             dict(logits=upload(dev, logits), bias=upload(dev, bias_row),
                  counts=upload(dev, counts), mask=dev.buffer(-(-V // 32) * 4), out=out,
                  pen=pen), -(-V // 256))
    got = read(dev, out, V)

    scores = torch.tensor(logits)[None]
    scores = lp.SequenceBiasLogitsProcessor({(k,): v for k, v in bias.items()})(
        torch.tensor([[0]]), scores)
    seen = torch.tensor(np.concatenate([prompt, generated]))[None]
    scores = lp.RepetitionPenaltyLogitsProcessor(r)(seen, scores)[0].numpy()
    c = np.bincount(generated, minlength=V).astype(np.float32)
    want = scores - c * f - (c > 0) * p
    # Within float32's rounding: the penalties reach the GPU as f32 values.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("V, k", [(1000, 0), (1000, 1), (517, 5), (50257, 20), (4097, 7)])
def test_logprobs_are_the_raw_log_softmax_and_its_top(gpu_device, V, k):
    dev = gpu_device
    rng = np.random.default_rng(V + k)
    logits = (rng.standard_normal(V) * 5).astype(np.float32)
    logits[[11, 12]] = logits.max() + 1   # a tie at the top: the smaller index first
    parts = -(-V // 2048)
    bufs = dict(logits=upload(dev, logits), part_v=dev.buffer(parts * 20 * 4),
                part_i=dev.buffer(parts * 20 * 4), part_m=dev.buffer(parts * 4),
                part_s=dev.buffer(parts * 4), rec=dev.buffer(4 * 44))
    for final, groups in ((False, parts), (True, 1)):
        dispatch(dev, "logprobs", dict(V=V, PARTS=parts, K=k, FINAL=final), bufs, groups)
    rec = run(dev.read(bufs["rec"], 0, 4 * 44))
    lse = struct.unpack_from("<f", rec, 8)[0]
    want = torch.log_softmax(torch.tensor(logits, dtype=torch.float64), -1).numpy()
    assert abs((logits[0] - lse) - want[0]) < 1e-5
    top = struct.unpack_from("<" + "If" * k, rec, 16)
    ids = [top[2 * j] for j in range(k)]
    order = sorted(range(V), key=lambda i: (-logits[i], i))[:k]
    assert ids == order
    for j in range(k):
        assert abs(top[2 * j + 1] - want[ids[j]]) < 1e-5


@pytest.mark.parametrize("temperature, top_k, top_p, min_p", [
    (1.0, 0, 1.0, 0.1), (0.7, 0, 1.0, 0.3), (1.3, 8, 0.9, 0.05)])
def test_min_p_draws_from_the_reference(gpu_device, temperature, top_k, top_p, min_p):
    """Draws of sample.wgsl with min_p: never outside the kept set, each token's frequency
    within 4.5 standard deviations of its probability (+1.5/N for the discreteness): a
    false-failure rate below 1e-4 over the 37 tokens of each case (seeded: the same draws
    every run)."""
    dev, V, N = gpu_device, 37, 400
    rng = np.random.default_rng(17)
    logits = (rng.standard_normal(V) * 2).astype(np.float32)
    want = dict(candidates(logits.tolist(), temperature, top_k or None, top_p, min_p))
    kernels = Kernels(dev)
    pipe = kernels.get("sample", V=V)
    bufs = dict(logits=upload(dev, logits), probs=dev.buffer(V * 4), ids=dev.buffer(4),
                s=dev.buffer(32, uniform=True))
    group = kernels.bind("sample", pipe, **bufs)
    counts = np.zeros(V)
    for step in range(N):
        dev.write(bufs["s"], 0, struct.pack("<fIfIIf", temperature, top_k, top_p, 99, step,
                                            min_p))
        enc = dev.encoder()
        enc.dispatch(pipe, group, 1)
        enc.submit()
        counts[int(read(dev, bufs["ids"], 1, np.uint32)[0])] += 1
    assert set(np.nonzero(counts)[0].tolist()) <= set(want)
    for token in range(V):
        p = want.get(token, 0.0)
        assert abs(counts[token] / N - p) <= 4.5 * np.sqrt(p * (1 - p) / N) + 1.5 / N


# ---------------------------------------------------------------- through a model

@pytest.fixture(scope="module")
def model(tmp_path_factory, gpu_device):
    cfg = refmodels.CONFIGS["tiny"]
    folder = refmodels.write_folder(str(tmp_path_factory.mktemp("controls")), cfg,
                                    refmodels.make_weights(cfg, 8))
    m = run(webgpt.load(folder, device=gpu_device))
    yield m
    m.release()


PROMPT = [5, 99, 312, 7, 7, 401]


def test_greedy_with_penalties_equals_the_reference(model):
    """Each step: the full forward's last row, then transformers' processors and OpenAI's
    penalties over what came before, then argmax; the GPU's greedy run gives the same tokens."""
    r, f, p, bias = 1.4, 0.5, 0.3, {12: 3.0, 40: -50.0}
    n = 16

    async def both():
        got = await model.generate_ids(PROMPT, n, temperature=0, repetition_penalty=r,
                                       frequency_penalty=f, presence_penalty=p,
                                       logit_bias={str(k): v for k, v in bias.items()})
        plain = await model.generate_ids(PROMPT, n, temperature=0)
        ids, want, margins = list(PROMPT), [], []
        for _ in range(n):
            row = torch.tensor(np.asarray(await model.logits(ids))[-1:])
            row = lp.SequenceBiasLogitsProcessor({(k,): v for k, v in bias.items()})(
                torch.tensor([ids]), row)
            row = lp.RepetitionPenaltyLogitsProcessor(r)(torch.tensor([ids]), row)[0].numpy()
            c = np.bincount(ids[len(PROMPT):], minlength=len(row)).astype(np.float32)
            row = row - c * f - (c > 0) * p
            top2 = np.sort(row)[-2:]
            margins.append(top2[1] - top2[0])
            ids.append(int(row.argmax()))
            want.append(ids[-1])
        return got, want, plain, margins
    got, want, plain, margins = run(both())
    assert min(margins) > 1e-3, "a near tie: the test would be luck"
    assert got == want
    assert got != plain   # the processors changed something


def test_logprobs_come_with_each_token(model):
    async def both():
        steps = [s async for s in model.stream_steps(PROMPT, 6, temperature=0, logprobs=5)]
        ids = list(PROMPT)
        rows = []
        for s in steps:
            rows.append(torch.log_softmax(torch.tensor(
                np.asarray(await model.logits(ids))[-1], dtype=torch.float64), -1).numpy())
            ids.append(s.token)
        return steps, rows
    steps, rows = run(both())
    for s, row in zip(steps, rows):
        assert s.token == int(row.argmax()) and abs(s.logprob - row[s.token]) < 1e-4
        assert [i for i, _ in s.top] == np.argsort(-row, kind="stable")[:5].tolist()
        assert all(abs(v - row[i]) < 1e-4 for i, v in s.top)
        assert s.top[0] == (s.token, pytest.approx(s.logprob, abs=1e-6))


def test_sampled_with_controls_repeats_with_its_seed_and_stays_in_min_p(model):
    async def draws():
        kw = dict(temperature=1.0, seed=4, min_p=0.2, repetition_penalty=1.2, logprobs=3)
        a = [s async for s in model.stream_steps(PROMPT, 8, **kw)]
        b = [s async for s in model.stream_steps(PROMPT, 8, **kw)]
        return a, b
    a, b = run(draws())
    assert [s.token for s in a] == [s.token for s in b]
    for s in a:   # min_p: the drawn token is at least 0.2 times as likely as the best
        assert s.logprob >= s.top[0][1] + np.log(0.2) - 0.5   # (the penalty moves logits a bit)


@pytest.mark.parametrize("kw, words", [
    (dict(min_p=2), "min_p must be a number from 0 to 1"),
    (dict(repetition_penalty=0), "repetition_penalty must be a number above 0"),
    (dict(frequency_penalty=3), "frequency_penalty must be a number from -2 to 2"),
    (dict(logit_bias={1000: 1}), "logit_bias names token 1000"),
    (dict(logit_bias={"5": 101}), "logit_bias[5] must be a number from -100 to 100"),
    (dict(logprobs=21), "top_logprobs must be a whole number from 0 to 20"),
])
def test_bad_controls_are_sentences(model, kw, words):
    with pytest.raises(ValueError) as e:
        run(model.generate_ids(PROMPT, 2, temperature=0, **kw))
    assert words in str(e.value)


class Allowed:
    """A constraint that allows the tokens `allow(ids)` returns (a set), as mask bits."""

    def __init__(self, V, allow):
        self.V, self.allow, self.calls = V, allow, 0

    def mask(self, ids):
        self.calls += 1
        bits = bytearray(-(-self.V // 32) * 4)
        for t in self.allow(ids):
            bits[t // 8] |= 1 << (t % 8)
        return bytes(bits)


def test_a_constraint_masks_every_step(model):
    """Greedy under a constraint is the argmax over the allowed tokens of each step's full
    forward; sampled, every token drawn is allowed."""
    V = model.V

    def allow(ids):   # a set that changes with the step
        return {t for t in range(V) if (t + len(ids)) % 7 == 0}

    async def both():
        c = Allowed(V, allow)
        got = await model.generate_ids(PROMPT, 10, temperature=0, constraint=c)
        ids, want = list(PROMPT), []
        for _ in range(10):
            row = np.asarray(await model.logits(ids))[-1]
            ok = sorted(allow(ids))
            ids.append(ok[int(np.argmax(row[ok]))])
            want.append(ids[-1])
        drawn = [s.token async for s in model.stream_steps(
            PROMPT, 12, temperature=1.5, seed=2, constraint=Allowed(V, allow))]
        return got, want, c.calls, drawn
    got, want, calls, drawn = run(both())
    assert got == want and calls == 10
    for k, t in enumerate(drawn):
        assert (t + len(PROMPT) + k) % 7 == 0
