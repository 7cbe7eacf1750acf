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


def check_kv(dev, kc, vc, want, pos0):
    """The caches (n_ctx, C) hold the key and value columns of want (T, 3C) at rows pos0.. and
    zeros elsewhere."""
    T, C = want.shape[0], want.shape[1] // 3
    n_ctx = kc.size // (4 * C)
    for name, buf, cols in (("k_cache", kc, want[:, C:2 * C]), ("v_cache", vc, want[:, 2 * C:])):
        expect = np.zeros((n_ctx, C))
        expect[pos0:pos0 + T] = cols
        check(name, read(dev, buf, n_ctx * C).reshape(n_ctx, C), expect)


def cdiv(a, b):
    return -(-a // b)


def test_every_shader_compiles_alone(dev):
    import os
    k = Kernels(dev)
    names = sorted(f[:-5] for f in os.listdir(shader_dir()) if f.endswith(".wgsl"))
    assert {"attention", "embedding", "layernorm", "gemv", "matmul", "matvec", "transpose",
            "argmax", "convert", "copy"} <= set(names)
    consts = dict(C=36, N=44, K=36, V=101, ROWS=101, OUT_N=101, N_HEAD=3, N_CTX=40, PARTS=1,
                  N4=10, K0=0, KR=36, N0=0, NR=44)
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


FMT = {"f32": 0, "f16": 1, "q8": 2, "q4": 3}


def rows_data(Wt, fmt, block=32):
    # block: values per scale (q8, q4); 32 by default, 8 and 16 where a test asks
    """A part of a row-major matrix (rows, K) as gemv/matmul bind it: (bytes, scales word
    offset, the values it stands for). q8/q4: webgpt.tools.quantize's format, scales after the values
    at a 256-byte boundary (as the loader places them)."""
    if fmt in ("f32", "f16"):
        data, Wv = weights(Wt, fmt == "f16")
        return data, 0, Wv
    from webgpt.tools.quantize import dequantize, quantize
    bits = int(fmt[1])
    q, scales = quantize(Wt, bits, block)
    values = q.tobytes()
    soff = -(-len(values) // 256) * 256
    data = values + bytes(soff - len(values)) + scales.tobytes()
    data += bytes(-len(data) % 16)
    return data, soff // 4, dequantize(q, scales, bits, block).astype(np.float64)


def split_rows(N):
    """Two parts when there are enough rows (a matrix split across bindings), else one."""
    if N < 8:
        return [(0, N)]
    first = N // 3 + 1
    return [(0, first), (first, N - first)]


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


@pytest.mark.parametrize("T,K,N,fmt,block", [(17, 36, 44, "f32", 0), (2, 72, 4, "f32", 0),
                                             (65, 16, 132, "f16", 0), (130, 128, 68, "f16", 0),
                                             (70, 64, 100, "q8", 32), (3, 96, 36, "q4", 32),
                                             (9, 40, 20, "q8", 8), (5, 48, 12, "q4", 16)])
@pytest.mark.parametrize("ep", range(3))
def test_matmul(dev, T, K, N, fmt, block, ep):
    """The prompt's product with weights as rows in every format, split into two parts."""
    rng = np.random.default_rng(T * K + ep)
    x, Wt, b = (rng.standard_normal(s).astype(np.float32) for s in [(T, K), (N, K), (N,)])
    out0 = rng.standard_normal((T, N)).astype(np.float32)
    out = upload(dev, out0)
    k = Kernels(dev)
    enc = dev.encoder()
    want_w = np.zeros((N, K))
    xb, bb = upload(dev, x), upload(dev, b)
    for row0, rows in split_rows(N):
        data, soff, Wv = rows_data(Wt[row0:row0 + rows], fmt, block or 32)
        want_w[row0:row0 + rows] = Wv
        pipe = k.get("matmul", K=K, ROWS=rows, ROW0=row0, OUT_N=N, FMT=FMT[fmt], SOFF=soff,
                     BLOCK=block or 32, **EPILOGUES[ep])
        enc.dispatch(pipe, dev.bind_group(pipe, [xb, upload_bytes(dev, data), bb, out,
                                                 dev.buffer(16), dev.buffer(16), params(dev, T)]),
                     cdiv(rows, 64), cdiv(T, 64))
    enc.submit()
    want = epilogue(x.astype(np.float64) @ want_w.T + b, out0, **EPILOGUES[ep])
    check(f"matmul T={T} K={K} N={N} {fmt} {EPILOGUES[ep]}", read(dev, out, T * N).reshape(T, N), want)


@pytest.mark.parametrize("T,K,N,fmt,block", [(1, 32, 44, "f32", 0), (3, 96, 288, "f16", 0),
                                             (1, 768, 2304, "f16", 0), (2, 64, 20, "q8", 32),
                                             (1, 768, 100, "q8", 32), (1, 96, 37, "q4", 32),
                                             (4, 3072, 40, "q4", 32), (1, 8, 4, "f16", 0),
                                             (2, 48, 30, "q8", 8), (1, 96, 21, "q4", 16),
                                             (1, 64, 9, "q4", 8)])
@pytest.mark.parametrize("ep", range(3))
@pytest.mark.parametrize("shape", [dict(TPR=32, RPW=8), dict(TPR=1, RPW=64), dict(TPR=4, RPW=2),
                                   dict(TPR=16, RPW=4, U=4), dict(TPR=2, RPW=8, U=2),
                                   dict(TPR=8, RPW=4, U=2, PAIRS=True),
                                   dict(TPR=1, RPW=64, PAIRS=True)])
def test_gemv(dev, T, K, N, fmt, block, ep, shape):
    """One token's (and the CPU's prompt's) product with weights as rows, split into parts."""
    rng = np.random.default_rng(K + N + ep)
    x, Wt, b, out0 = (rng.standard_normal(s).astype(np.float32) for s in [(T, K), (N, K), (N,), (T, N)])
    out = upload(dev, out0)
    k = Kernels(dev)
    enc = dev.encoder()
    want_w = np.zeros((N, K))
    xb, bb, p = upload(dev, x), upload(dev, b), params(dev, T)
    for row0, rows in split_rows(N):
        data, soff, Wv = rows_data(Wt[row0:row0 + rows], fmt, block or 32)
        want_w[row0:row0 + rows] = Wv
        pipe = k.get("gemv", K=K, ROWS=rows, ROW0=row0, OUT_N=N, FMT=FMT[fmt], SOFF=soff,
                     BLOCK=block or 32, **EPILOGUES[ep], **shape)
        enc.dispatch(pipe, dev.bind_group(pipe, [xb, upload_bytes(dev, data), bb, out,
                                                 *unused(dev), p]), cdiv(rows, shape["RPW"]), T)
    enc.submit()
    want = epilogue(x.astype(np.float64) @ want_w.T + b, out0, **EPILOGUES[ep])
    check(f"gemv T={T} K={K} N={N} {fmt} {shape}", read(dev, out, T * N).reshape(T, N), want)


@pytest.mark.parametrize("K,N,src,f16", [(36, 44, "F32", False), (70, 9, "F16", False),
                                         (64, 40, "F16", True), (12, 300, "BF16", False)])
def test_transpose_in_chunks_and_parts(dev, K, N, src, f16):
    """A Conv1D weight (K, N) to rows (N, K), streamed in chunks of source rows into parts."""
    rng = np.random.default_rng(K * N)
    W = rng.standard_normal((K, N)).astype(np.float32)
    if src == "F16":
        raw = W.astype(np.float16)
        want, data = raw, raw.tobytes()
    elif src == "BF16":
        bits = (W.view(np.uint32) >> 16).astype(np.uint16)
        want, data = (bits.astype(np.uint32) << 16).view(np.float32), bits.tobytes()
    else:
        want, data = W, W.tobytes()
    isz = 4 if src == "F32" else 2
    parts = split_rows(N)
    outs = [dev.buffer(rows * K * (2 if f16 else 4)) for _, rows in parts]
    k = Kernels(dev)
    chunk = 6  # source rows per chunk (even, as f16 output needs)
    for k0 in range(0, K, chunk):
        kr = min(chunk, K - k0)
        staging = upload_bytes(dev, data[k0 * N * isz:(k0 + kr) * N * isz])
        enc = dev.encoder()
        for (row0, rows), buf in zip(parts, outs):
            pipe = k.get("transpose", K=K, N=N, K0=k0, KR=kr, N0=row0, NR=rows,
                         SRC={"F32": 0, "F16": 1, "BF16": 2}[src], DST_F16=f16, WG=WG)
            words = rows * kr // (2 if f16 else 1)
            enc.dispatch(pipe, dev.bind_group(pipe, [staging, buf]), cdiv(words, WG))
        enc.submit()
    for (row0, rows), buf in zip(parts, outs):
        got = read(dev, buf, rows * K, np.float16 if f16 else np.float32).reshape(rows, K)
        assert np.array_equal(got, want.T[row0:row0 + rows].astype(got.dtype))


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
    check_kv(dev, kc, vc, want, pos0)


@pytest.mark.parametrize("T,C,fmt", [(1, 768, "f16"), (3, 32, "q8"), (1, 96, "q4"), (2, 36, "f32")])
@pytest.mark.parametrize("shape", [dict(TPR=32, RPW=8), dict(TPR=8, RPW=4)])
def test_gemv_fused_layernorm_and_kv(dev, T, C, fmt, shape):
    """c_attn as a GPU decodes it: ln_1 staged in workgroup memory, keys and values stored."""
    rng = np.random.default_rng(C + T)
    N, n_ctx, pos0 = 3 * C, 12, 5
    x = (rng.standard_normal((T, C)) * 2 + 3).astype(np.float32)
    lw, lb = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    Wt, b = rng.standard_normal((N, C)).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    out = dev.buffer(T * N * 4)
    kc, vc = upload(dev, np.zeros((n_ctx, C), np.float32)), upload(dev, np.zeros((n_ctx, C), np.float32))
    data, soff, Wv = rows_data(Wt, fmt)
    pipe = Kernels(dev).get("gemv", K=C, ROWS=N, OUT_N=N, FMT=FMT[fmt], SOFF=soff, LN=True,
                            LN_MAX=C, EPS=1e-5, KV=True, **shape)
    dispatch(dev, pipe, [upload(dev, x), upload_bytes(dev, data), upload(dev, b), out, upload(dev, lw),
                         upload(dev, lb), kc, vc, params(dev, T, pos0)], cdiv(N, shape["RPW"]), T)
    want = npref.layernorm(x, lw, lb) @ Wv.T + b
    check(f"gemv LN+KV T={T} C={C} {fmt} {shape}", read(dev, out, T * N).reshape(T, N), want)
    check_kv(dev, kc, vc, want, pos0)


@pytest.mark.parametrize("T,C", [(70, 24), (3, 100)])
def test_matmul_kv(dev, T, C):
    rng = np.random.default_rng(T * C)
    N, n_ctx, pos0 = 3 * C, T + 9, 4
    x, Wt, b = (rng.standard_normal(s).astype(np.float32) for s in [(T, C), (N, C), (N,)])
    out = dev.buffer(T * N * 4)
    kc, vc = upload(dev, np.zeros((n_ctx, C), np.float32)), upload(dev, np.zeros((n_ctx, C), np.float32))
    pipe = Kernels(dev).get("matmul", K=C, ROWS=N, OUT_N=N, KV=True)
    dispatch(dev, pipe, [upload(dev, x), upload(dev, Wt), upload(dev, b), out, kc, vc,
                         params(dev, T, pos0)], cdiv(N, 64), cdiv(T, 64))
    want = x.astype(np.float64) @ Wt.T + b
    check(f"matmul KV T={T} C={C}", read(dev, out, T * N).reshape(T, N), want)
    check_kv(dev, kc, vc, want, pos0)


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


@pytest.mark.parametrize("fmt", ["f32", "f16", "q8", "q4"])
@pytest.mark.parametrize("shape", [dict(TPR=32, RPW=8), dict(TPR=1, RPW=64)])
def test_embedding_and_lm_head_split_in_parts(dev, fmt, shape):
    T, C, V, n_pos, pos0 = 6, 32, 77, 30, 4
    rng = np.random.default_rng(5)
    wte = rng.standard_normal((V, C)).astype(np.float32)
    wpe = rng.standard_normal((n_pos, C)).astype(np.float32)
    wpe_f16 = fmt != "f32"
    wpe_data, wpe_v = weights(wpe, wpe_f16)
    ids = np.array([0, 76, 30, 31, 29, 60], np.uint32)
    k = Kernels(dev)
    x = dev.buffer(T * C * 4)
    p = params(dev, T, pos0, 1, T - 1)
    parts = [(0, 30), (30, 30), (60, 17)]  # a token table split in three row ranges
    wte_v = np.zeros((V, C))
    bufs = []
    for row0, rows in parts:
        data, soff, Wv = rows_data(wte[row0:row0 + rows], fmt)
        wte_v[row0:row0 + rows] = Wv
        bufs.append((upload_bytes(dev, data), soff))
    logits = dev.buffer((T - 1) * V * 4)
    r, r2 = dev.buffer(16), dev.buffer(16)
    enc = dev.encoder()
    for (row0, rows), (part, soff) in zip(parts, bufs):  # every part writes its tokens' rows of x
        pe = k.get("embedding", C=C, ROW0=row0, ROWS=rows, FMT=FMT[fmt], SOFF=soff,
                   WPE_F16=wpe_f16, WG=WG)
        group = dev.bind_group(pe, [upload(dev, ids), part, upload_bytes(dev, wpe_data), x, p])
        enc.dispatch(pe, group, cdiv(C, WG), T)
    for (row0, rows), (part, soff) in zip(parts, bufs):  # then every part writes its logit columns
        pl = k.get("gemv", K=C, ROWS=rows, ROW0=row0, OUT_N=V, FMT=FMT[fmt], SOFF=soff, LM=True,
                   **shape)
        enc.dispatch(pl, dev.bind_group(pl, [x, part, r, logits, r, r, r2, dev.buffer(16), p]),
                     cdiv(rows, shape["RPW"]), T - 1)
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


GGML_GEMV_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


@pytest.mark.parametrize("qtype", GGML_GEMV_TYPES)
def test_gemv_ggml_blocks(dev, qtype):
    """One token's product with rows of a ggml block type, as a GGUF file stores them, on the
    lane shapes the layouts use (the K types have their own group decoders where TPR > 1):
    against the blocks as gguf.quants decodes them. Two parts, the second starting mid-matrix;
    Q6_K's 210-byte blocks start at both word alignments."""
    import gguf
    import ggufmodels
    from webgpt.ggml import kernel_format
    qt = gguf.GGMLQuantizationType[qtype]
    T, K, N = 2, 768, 13
    rng = np.random.default_rng(K + N + len(qtype))
    x = rng.standard_normal((T, K)).astype(np.float32)
    raw, deq = ggufmodels.encode_matrix(rng.standard_normal((N, K)).astype(np.float32) * 0.05,
                                        qt, rng)
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(N, -1)
    want = x.astype(np.float64) @ deq.astype(np.float64).T
    k = Kernels(dev)
    for shape in (dict(TPR=64, RPW=4, U=2), dict(TPR=16, RPW=16, U=4, PAIRS=True),
                  dict(TPR=4, RPW=2), dict(TPR=1, RPW=64)):
        out = dev.buffer(T * N * 4)
        xb, p = upload(dev, x), params(dev, T)
        enc = dev.encoder()
        for row0, rows in split_rows(N):
            data = raw[row0:row0 + rows].tobytes()
            pipe = k.get("gemv", K=K, ROWS=rows, ROW0=row0, OUT_N=N, FMT=kernel_format(qtype),
                         BIAS=False, **shape)
            enc.dispatch(pipe, dev.bind_group(pipe, [xb, upload_bytes(dev, data + bytes(-len(data) % 16)),
                                                     dev.buffer(16), out, *unused(dev), p]),
                         cdiv(rows, shape["RPW"]), T)
        enc.submit()
        check(f"gemv {qtype} {shape}", read(dev, out, T * N).reshape(T, N), want)
