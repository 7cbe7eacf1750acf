"""Each WGSL kernel against a numpy reference, on shapes that are not multiples of the
workgroup sizes (64 for 1-D kernels, 16 x 16 tiles, 256 for argmax).

Tolerance: 1e-5 relative to the scale of the reference (f32 accumulation over at most a few
hundred terms), printed with the max error.
"""

import asyncio
import struct

import numpy as np
import pytest

import npref
from gpu_fixture import gpu_device  # noqa: F401
from webgpt.kernels import Kernels, shader_dir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
WG = 64


@pytest.fixture(scope="module")
def dev(gpu_device):
    return gpu_device


def run(coro):
    return asyncio.run(coro) if asyncio.iscoroutine(coro) else coro


def upload(dev, a):
    a = np.ascontiguousarray(a)
    buf = dev.buffer(a.nbytes)
    dev.write(buf, 0, a.tobytes())
    return buf


def params(dev, T, pos0=0, lm_row0=0, lm_rows=0):
    """The uniform buffer every pass shares: T, pos0, lm_row0, lm_rows."""
    buf = dev.buffer(16, "params", uniform=True)
    dev.write(buf, 0, np.array([T, pos0, lm_row0, lm_rows], np.uint32).tobytes())
    return buf


def read(dev, buf, n, dtype=np.float32):
    return np.frombuffer(asyncio.run(dev.read(buf, 0, n * np.dtype(dtype).itemsize)), dtype)


def dispatch(dev, pipe, bufs, *groups):
    enc = dev.encoder()
    enc.dispatch(pipe, dev.bind_group(pipe, bufs), *groups)
    enc.submit()


def check(name, got, want, tol=1e-5):
    err = float(np.abs(got - want).max())
    scale = max(1.0, float(np.abs(want).max()))
    print(f"{name}: max abs error {err:.3g} (scale {scale:.3g}, tolerance {tol * scale:.3g})")
    assert err <= tol * scale


def cdiv(a, b):
    return -(-a // b)


def test_every_shader_compiles_alone(dev):
    import os
    k = Kernels(dev)
    names = sorted(f[:-5] for f in os.listdir(shader_dir()) if f.endswith(".wgsl"))
    assert {"attention", "embedding", "layernorm", "lm_head", "matmul", "matvec",
            "argmax", "convert", "copy"} <= set(names)
    consts = dict(C=36, N=44, K=37, V=101, ROWS=101, N_HEAD=3, N_CTX=40, PARTS=1, N4=10)
    for name in names:
        text = k.source(name)
        needed = {c: v for c, v in consts.items() if f"override {c}:" in text}
        k.get(name, **needed)
        code = "\n".join(line.split("//")[0] for line in text.splitlines())
        assert "pow(" not in code, f"{name}.wgsl uses pow(): undefined for negative bases in WGSL"


def weights(W, f16):
    """W as the GPU holds it (f32, or f16 packed two per word) and the values it stands for."""
    if f16:
        h = W.astype(np.float16)
        return h.tobytes(), h.astype(np.float64)
    return W.tobytes(), W.astype(np.float64)


def upload_bytes(dev, data):
    buf = dev.buffer(len(data))
    dev.write(buf, 0, data)
    return buf


# Epilogues: plain, GELU (the MLP's first layer), RESIDUAL (adds into x).
EPILOGUES = [dict(GELU=False, RESIDUAL=False), dict(GELU=True, RESIDUAL=False),
             dict(GELU=False, RESIDUAL=True)]


def unused(dev):
    """Stand-ins for matvec's ln_w, ln_b, k_cache, v_cache where a test does not use them."""
    r = dev.buffer(16)
    return [r, r, dev.buffer(16), dev.buffer(16)]


def epilogue(y, out0, GELU, RESIDUAL):
    y = npref.gelu(y) if GELU else y
    return y + out0 if RESIDUAL else y


@pytest.mark.parametrize("T,K,N", [(17, 37, 44), (2, 70, 4), (65, 16, 132), (130, 129, 68)])
@pytest.mark.parametrize("f16", [False, True])
@pytest.mark.parametrize("ep", range(3))
def test_matmul(dev, T, K, N, f16, ep):
    rng = np.random.default_rng(T * K + ep)
    x, W, b = (rng.standard_normal(s).astype(np.float32) for s in [(T, K), (K, N), (N,)])
    out0 = rng.standard_normal((T, N)).astype(np.float32)
    out = upload(dev, out0)
    data, Wv = weights(W, f16)
    pipe = Kernels(dev).get("matmul", K=K, N=N, F16=f16, **EPILOGUES[ep])
    dispatch(dev, pipe, [upload(dev, x), upload_bytes(dev, data), upload(dev, b), out,
                         dev.buffer(16), dev.buffer(16), params(dev, T)], cdiv(N, 64), cdiv(T, 64))
    want = epilogue(x.astype(np.float64) @ Wv + b, out0, **EPILOGUES[ep])
    check(f"matmul T={T} K={K} N={N} f16={f16} {EPILOGUES[ep]}", read(dev, out, T * N).reshape(T, N), want)


@pytest.mark.parametrize("T,K,N", [(1, 36, 44), (3, 96, 288), (1, 4, 4), (1, 768, 2304), (7, 52, 20)])
@pytest.mark.parametrize("f16", [False, True])
@pytest.mark.parametrize("ep", range(3))
@pytest.mark.parametrize("shape", [dict(TX=8, TY=32), dict(TX=64, TY=1), dict(TX=4, TY=3)])
def test_matvec(dev, T, K, N, f16, ep, shape):
    rng = np.random.default_rng(K + N + ep)
    x, W, b, out0 = (rng.standard_normal(s).astype(np.float32) for s in [(T, K), (K, N), (N,), (T, N)])
    out = upload(dev, out0)
    data, Wv = weights(W, f16)
    pipe = Kernels(dev).get("matvec", K=K, N=N, F16=f16, **EPILOGUES[ep], **shape)
    dispatch(dev, pipe, [upload(dev, x), upload_bytes(dev, data), upload(dev, b), out,
                         *unused(dev), params(dev, T)], cdiv(N // 4, shape["TX"]), T)
    want = epilogue(x.astype(np.float64) @ Wv + b, out0, **EPILOGUES[ep])
    check(f"matvec T={T} K={K} N={N} f16={f16} {shape}", read(dev, out, T * N).reshape(T, N), want)


@pytest.mark.parametrize("T,C", [(3, 50), (1, 768), (7, 130)])
def test_layernorm(dev, T, C):
    rng = np.random.default_rng(C)
    # A large common offset: a one-pass E[x^2] - E[x]^2 variance would lose precision here.
    x = (rng.standard_normal((T, C)) * 3 + 50).astype(np.float32)
    w, b = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    out = dev.buffer(T * C * 4)
    pipe = Kernels(dev).get("layernorm", C=C, EPS=1e-5, WG=WG)
    dispatch(dev, pipe, [upload(dev, x), upload(dev, w), upload(dev, b), out, params(dev, T)], T)
    check(f"layernorm T={T} C={C}", read(dev, out, T * C).reshape(T, C), npref.layernorm(x, w, b), 2e-5)


@pytest.mark.parametrize("T,C", [(1, 768), (3, 20), (1, 100)])
@pytest.mark.parametrize("shape", [dict(TX=8, TY=32), dict(TX=4, TY=3), dict(TX=64, TY=1)])
def test_matvec_fused_layernorm_and_kv(dev, T, C, shape):
    """c_attn as decoding runs it on a GPU: ln_1 inside the matvec, keys and values stored."""
    rng = np.random.default_rng(C + T)
    N, n_ctx, pos0 = 3 * C, 12, 5
    x = (rng.standard_normal((T, C)) * 2 + 3).astype(np.float32)
    lw, lb = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    W, b = rng.standard_normal((C, N)).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    out = dev.buffer(T * N * 4)
    kc, vc = upload(dev, np.zeros((n_ctx, C), np.float32)), upload(dev, np.zeros((n_ctx, C), np.float32))
    pipe = Kernels(dev).get("matvec", K=C, N=N, LN=True, EPS=1e-5, KV=True, **shape)
    dispatch(dev, pipe, [upload(dev, x), upload(dev, W), upload(dev, b), out, upload(dev, lw),
                         upload(dev, lb), kc, vc, params(dev, T, pos0)], cdiv(N // 4, shape["TX"]), T)
    want = npref.layernorm(x, lw, lb) @ W + b
    check(f"matvec LN+KV T={T} C={C} {shape}", read(dev, out, T * N).reshape(T, N), want)
    k_want, v_want = np.zeros((n_ctx, C)), np.zeros((n_ctx, C))
    k_want[pos0:pos0 + T], v_want[pos0:pos0 + T] = want[:, C:2 * C], want[:, 2 * C:]
    check("k_cache", read(dev, kc, n_ctx * C).reshape(n_ctx, C), k_want)
    check("v_cache", read(dev, vc, n_ctx * C).reshape(n_ctx, C), v_want)


@pytest.mark.parametrize("T,C", [(70, 24), (3, 100)])
def test_matmul_kv(dev, T, C):
    rng = np.random.default_rng(T * C)
    N, n_ctx, pos0 = 3 * C, T + 9, 4
    x, W, b = (rng.standard_normal(s).astype(np.float32) for s in [(T, C), (C, N), (N,)])
    out = dev.buffer(T * N * 4)
    kc, vc = upload(dev, np.zeros((n_ctx, C), np.float32)), upload(dev, np.zeros((n_ctx, C), np.float32))
    pipe = Kernels(dev).get("matmul", K=C, N=N, KV=True)
    dispatch(dev, pipe, [upload(dev, x), upload(dev, W), upload(dev, b), out, kc, vc,
                         params(dev, T, pos0)], cdiv(N, 64), cdiv(T, 64))
    want = x.astype(np.float64) @ W + b
    check(f"matmul KV T={T} C={C}", read(dev, out, T * N).reshape(T, N), want)
    k_want = np.zeros((n_ctx, C))
    k_want[pos0:pos0 + T] = want[:, C:2 * C]
    check("k_cache", read(dev, kc, n_ctx * C).reshape(n_ctx, C), k_want)
    v_want = np.zeros((n_ctx, C))
    v_want[pos0:pos0 + T] = want[:, 2 * C:]
    check("v_cache", read(dev, vc, n_ctx * C).reshape(n_ctx, C), v_want)


def test_gelu_epilogue_with_large_inputs(dev):
    # Identity weights and a zero bias: out = gelu(x), over inputs up to +-30 where a naive tanh
    # through exp overflows.
    N = 72
    x = np.linspace(-30, 30, N).astype(np.float32)  # N % 4 == 0: matvec reads x as vec4
    out = dev.buffer(N * 4)
    pipe = Kernels(dev).get("matvec", K=N, N=N, GELU=True, TX=8, TY=32)
    dispatch(dev, pipe, [upload(dev, x), upload(dev, np.eye(N, dtype=np.float32)),
                         upload(dev, np.zeros(N, np.float32)), out, *unused(dev), params(dev, 1)],
             cdiv(N // 4, 8), 1)
    got = read(dev, out, N)
    assert np.isfinite(got).all()
    check("gelu", got, npref.gelu(x))


@pytest.mark.parametrize("T,pos0,C,n_head,n_ctx", [(5, 7, 36, 3, 40), (1, 70, 64, 1, 100),
                                                   (19, 0, 96, 3, 64), (1, 300, 80, 1, 333)])
@pytest.mark.parametrize("wg", [64, 256])
def test_attention(dev, T, pos0, C, n_head, n_ctx, wg):
    rng = np.random.default_rng(T + pos0)
    qkv = rng.standard_normal((T, 3 * C)).astype(np.float32)
    k_all = rng.standard_normal((n_ctx, C)).astype(np.float32)  # rows past pos0 + T: never read
    v_all = rng.standard_normal((n_ctx, C)).astype(np.float32)
    k_all[pos0:pos0 + T], v_all[pos0:pos0 + T] = qkv[:, C:2 * C], qkv[:, 2 * C:]
    y = dev.buffer(T * C * 4)
    att = Kernels(dev).get("attention", C=C, N_HEAD=n_head, N_CTX=n_ctx, WG=wg)
    dispatch(dev, att, [upload(dev, qkv), upload(dev, k_all), upload(dev, v_all), y,
                        params(dev, T, pos0)], T, n_head)
    S = pos0 + T
    want = npref.attention(qkv[:, :C], k_all[:S], v_all[:S], n_head, pos0)
    check(f"attention T={T} pos0={pos0} C={C} heads={n_head}", read(dev, y, T * C).reshape(T, C), want)


@pytest.mark.parametrize("f16", [False, True])
@pytest.mark.parametrize("shape", [dict(TPR=32, RPW=8), dict(TPR=1, RPW=64)])
def test_embedding_and_lm_head_split_in_parts(dev, f16, shape):
    T, C, V, n_pos, pos0 = 6, 20, 77, 30, 4
    rng = np.random.default_rng(5)
    wte = rng.standard_normal((V, C)).astype(np.float32)
    wpe = rng.standard_normal((n_pos, C)).astype(np.float32)
    wte_data, wte_v = weights(wte, f16)
    wpe_data, wpe_v = weights(wpe, f16)
    ids = np.array([0, 76, 30, 31, 29, 60], np.uint32)
    k = Kernels(dev)
    x = dev.buffer(T * C * 4)
    p = params(dev, T, pos0, 1, T - 1)
    parts = [(0, 30), (30, 30), (60, 17)]  # a token table split in three row ranges
    size = 2 if f16 else 4
    bufs = [upload_bytes(dev, wte_data[row0 * C * size:(row0 + rows) * C * size]) for row0, rows in parts]
    logits = dev.buffer((T - 1) * V * 4)
    enc = dev.encoder()
    for (row0, rows), part in zip(parts, bufs):  # every part writes its tokens' rows of x
        pe = k.get("embedding", C=C, ROW0=row0, ROWS=rows, F16=f16, WG=WG)
        group = dev.bind_group(pe, [upload(dev, ids), part, upload_bytes(dev, wpe_data), x, p])
        enc.dispatch(pe, group, cdiv(C, WG), T)
    for (row0, rows), part in zip(parts, bufs):  # then every part writes its logit columns
        pl = k.get("lm_head", C=C, V=V, ROW0=row0, ROWS=rows, F16=f16, **shape)
        enc.dispatch(pl, dev.bind_group(pl, [x, part, logits, p]), cdiv(rows, shape["RPW"]), T - 1)
    enc.submit()
    xe = wte_v[ids] + wpe_v[pos0:pos0 + T]
    check("embedding", read(dev, x, T * C).reshape(T, C), xe)
    check("lm_head", read(dev, logits, (T - 1) * V).reshape(T - 1, V), xe[1:] @ wte_v.T)


@pytest.mark.parametrize("V", [1, 255, 2049, 50257])
def test_argmax_prefers_first_of_ties(dev, V):
    rng = np.random.default_rng(V)
    x = rng.standard_normal(V).astype(np.float32)
    if V > 10:
        x[[7, V - 3]] = x.max() + 1  # a tie: the first index wins, as torch.argmax
    parts = cdiv(V, 2048)
    bufs = [upload(dev, x), dev.buffer(parts * 4), dev.buffer(parts * 4), upload(dev, np.array([99, 5], np.uint32))]
    k = Kernels(dev)
    enc = dev.encoder()
    for final, groups in ((False, parts), (True, 1)):
        pipe = k.get("argmax", V=V, PARTS=parts, FINAL=final)
        enc.dispatch(pipe, dev.bind_group(pipe, bufs), groups)
    enc.submit()
    ids = read(dev, bufs[3], 2, np.uint32)
    assert int(ids[0]) == int(np.argmax(x)) and int(ids[1]) == 5


@pytest.mark.parametrize("dtype,n", [("F16", 7), ("BF16", 131), ("F16", 64 * 2 + 1)])
def test_convert_16_bit(dev, dtype, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 100).astype(np.float32)
    if dtype == "F16":
        raw = x.astype(np.float16)
        want = raw.astype(np.float32)
        data = raw.tobytes()
    else:
        bits = (x.view(np.uint32) >> 16).astype(np.uint16)  # bf16 by truncation
        want = (bits.astype(np.uint32) << 16).view(np.float32)
        data = bits.tobytes()
    src = dev.buffer(len(data))
    dev.write(src, 0, data)
    out = dev.buffer(n * 4)
    pipe = Kernels(dev).get("convert", N=n, BF16=dtype == "BF16", WG=WG)
    dispatch(dev, pipe, [src, out], cdiv(cdiv(n, 2), WG))
    assert np.array_equal(read(dev, out, n), want)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8),
                                                     (1.0, 10, 0.5)])
def test_sample_matches_reference_distribution(dev, temperature, top_k, top_p):
    """The GPU sampler draws from the distribution sampling.candidates (the CPU reference, with
    Hugging Face's order of temperature, top-k, top-p) describes: never a token outside it, and
    frequencies within 4.5 standard deviations (seeded: the same draws every run)."""
    from webgpt.sampling import candidates

    V, N = 37, 400
    rng = np.random.default_rng(11)
    logits = (rng.standard_normal(V) * 2).astype(np.float32)
    want = dict(candidates(logits.tolist(), temperature, top_k or None, top_p))
    bufs = [upload(dev, logits), dev.buffer(V * 4), dev.buffer(4), dev.buffer(32, uniform=True)]
    pipe = Kernels(dev).get("sample", V=V)
    group = dev.bind_group(pipe, bufs)
    counts = np.zeros(V)
    for step in range(N):
        dev.write(bufs[3], 0, struct.pack("<fIfII", temperature, top_k, top_p, 1234, step))
        enc = dev.encoder()
        enc.dispatch(pipe, group, 1)
        enc.submit()
        counts[int(read(dev, bufs[2], 1, np.uint32)[0])] += 1
    drawn = set(np.nonzero(counts)[0].tolist())
    assert drawn <= set(want), f"drew {sorted(drawn - set(want))}, outside the kept {sorted(want)}"
    for token in range(V):
        p = want.get(token, 0.0)
        bound = 4.5 * np.sqrt(p * (1 - p) / N) + 1.5 / N
        print(f"token {token}: p {p:.3f} freq {counts[token] / N:.3f}")
        assert abs(counts[token] / N - p) <= bound


def test_sample_seed_and_ties(dev):
    """Same seed and step: same token; top-k keeps every token tied at its threshold."""
    V = 300
    logits = np.full(V, -5.0, np.float32)
    logits[[3, 100, 299]] = 2.0   # three tied best
    bufs = [upload(dev, logits), dev.buffer(V * 4), dev.buffer(4), dev.buffer(32, uniform=True)]
    pipe = Kernels(dev).get("sample", V=V)
    group = dev.bind_group(pipe, bufs)

    def draw(seed, step, top_k):
        dev.write(bufs[3], 0, struct.pack("<fIfII", 1.0, top_k, 1.0, seed, step))
        enc = dev.encoder()
        enc.dispatch(pipe, group, 1)
        enc.submit()
        return int(read(dev, bufs[2], 1, np.uint32)[0])

    first = [draw(5, s, 1) for s in range(30)]
    assert first == [draw(5, s, 1) for s in range(30)]
    assert set(first) == {3, 100, 299}
