"""The kernels Llama-, Qwen2- and Qwen3-shaped models add, each alone against numpy (float64
references written from transformers' math, not from our WGSL): RMSNorm (alone and fused into
the products), SwiGLU emitted by the gate_up product (SWIGLU_OUT) or read on load by the down
projection (SWIGLU_IN), products without bias, rotary embedding with the KV-cache store
(rope.wgsl, Qwen3's per-head norm), grouped-query attention, embeddings without positions, an
untied LM head with the final norm fused.

Awkward shapes: head sizes 32/64/80/128, GQA 1:1, 3:1 and 8:1, T not a multiple of the
workgroup, positions near a large n_ctx, widths not multiples of 64, f16/q8/q4 weights; the
CPU-adapter and GPU shapes of each kernel that has both.

Tolerance: 1e-5 relative to the scale of the reference (2e-5 for the standalone norm), as
test_kernels.py; silu value by value within WGSL's accuracy of exp; the max error is printed.
Stand-ins for bindings a variant must not read are filled with 1000s, so a stray read shows.
Bind groups are built by the names the shaders give their bindings, as the model binds them.
"""

import asyncio
import re

import numpy as np
import pytest

from webgpt.kernels import Kernels

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FMT = {"f32": 0, "f16": 1, "q8": 2, "q4": 3}


@pytest.fixture(scope="module")
def dev(gpu_device):
    return gpu_device


@pytest.fixture(scope="module")
def kern(dev):
    return Kernels(dev)


# ------------------------------------------------------------------ helpers

def upload(dev, a):
    a = np.ascontiguousarray(a)
    buf = dev.buffer(a.nbytes)
    dev.write(buf, 0, a.tobytes())
    return buf


def upload_bytes(dev, data):
    buf = dev.buffer(len(data))
    dev.write(buf, 0, data)
    return buf


def standin(dev):
    """A small buffer for a binding the variant must not read: 1000s, so a read would show."""
    return upload(dev, np.full(4, 1000.0, np.float32))


def params(dev, T, pos0=0, lm_row0=0, lm_rows=0):
    """The uniform every pass shares: T, pos0, lm_row0, lm_rows (u32 each)."""
    buf = dev.buffer(16, "params", uniform=True)
    dev.write(buf, 0, np.array([T, pos0, lm_row0, lm_rows], np.uint32).tobytes())
    return buf


def read(dev, buf, shape):
    n = int(np.prod(shape))
    return np.frombuffer(asyncio.run(dev.read(buf, 0, n * 4)), np.float32).reshape(shape)


BINDING = re.compile(r"@group\(0\)\s*@binding\((\d+)\)\s*var(?:<[^>]*>)?\s+(\w+)")


def bind(kern, name, pipe, bufs):
    """A bind group by the names of the shader's bindings (bufs: {name: buffer}), every one
    given: the names this file documents are the ones the model binds."""
    text = "\n".join(line.split("//")[0] for line in kern.source(name).splitlines())
    declared = {n: int(i) for i, n in BINDING.findall(text)}
    assert set(declared) == set(bufs), (name, sorted(declared), sorted(bufs))
    assert sorted(declared.values()) == list(range(len(declared)))
    return kern.device.bind_group(pipe, [bufs[n] for n in sorted(bufs, key=declared.get)])


def dispatch(kern, name, pipe, bufs, *groups):
    enc = kern.device.encoder()
    enc.dispatch(pipe, bind(kern, name, pipe, bufs), *groups)
    enc.submit()


def check(name, got, want, tol=1e-5):
    err = float(np.abs(got - want).max())
    scale = max(1.0, float(np.abs(want).max()))
    print(f"{name}: max abs error {err:.3g} (scale {scale:.3g}, tolerance {tol * scale:.3g})")
    assert err <= tol * scale


def cdiv(a, b):
    return -(-a // b)


def rows_data(Wt, fmt, block=32):
    """A row-major matrix part (rows, K) as gemv/matmul bind it: (bytes, scales word offset,
    the float64 values it stands for); q8/q4 in webgpt.tools.quantize's format, the scales
    after the values at a 256-byte boundary, as the loader places them."""
    if fmt == "f32":
        return Wt.tobytes(), 0, Wt.astype(np.float64)
    if fmt == "f16":
        h = Wt.astype(np.float16)
        return h.tobytes(), 0, h.astype(np.float64)
    from webgpt.tools.quantize import dequantize, quantize
    bits = int(fmt[1])
    q, scales = quantize(Wt, bits, block)
    values = q.tobytes()
    soff = cdiv(len(values), 256) * 256
    data = values + bytes(soff - len(values)) + scales.tobytes()
    data += bytes(-len(data) % 16)
    return data, soff // 4, dequantize(q, scales, bits, block).astype(np.float64)


def split_rows(N):
    """Two parts when there are enough rows (a matrix split across bindings), else one."""
    if N < 8:
        return [(0, N)]
    first = N // 3 + 1
    return [(0, first), (first, N - first)]


# ------------------------------------------------------------------ numpy references

def rmsnorm(x, w, eps):
    """transformers' LlamaRMSNorm (Qwen2/Qwen3 alike), in float64."""
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def silu(g):
    g = g.astype(np.float64)
    with np.errstate(over="ignore"):
        return g / (1 + np.exp(-g))


def swiglu(h):
    """The down projection's input from a gate_up row [gate; up]: silu(gate) * up."""
    K = h.shape[-1] // 2
    return silu(h[..., :K]) * h[..., K:].astype(np.float64)


def rope_table(n_ctx, hd, theta):
    """(n_ctx, hd): cos then sin of pos * inv_freq, in float32 as transformers computes them."""
    inv = (1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.int64).astype(np.float32) / hd)))
    inv = inv.astype(np.float32)
    freqs = np.arange(n_ctx, dtype=np.float32)[:, None] * inv[None, :]
    return np.concatenate([np.cos(freqs), np.sin(freqs)], 1).astype(np.float32)


def rotate(u, cs):
    """transformers' apply_rotary_pos_emb on heads u (..., hd) with table rows cs (..., hd)."""
    h = u.shape[-1] // 2
    cos = np.concatenate([cs[..., :h], cs[..., :h]], -1).astype(np.float64)
    sin = np.concatenate([cs[..., h:], cs[..., h:]], -1).astype(np.float64)
    rot = np.concatenate([-u[..., h:], u[..., :h]], -1)
    return u * cos + rot * sin


def gqa_attention(q, k, v, n_head, n_kv, pos0):
    """q (T, n_head * hd) at positions pos0..; k, v (S, n_kv * hd). Causal, float64."""
    T = q.shape[0]
    hd = q.shape[1] // n_head
    S = k.shape[0]
    y = np.zeros((T, n_head * hd))
    for h in range(n_head):
        g = h // (n_head // n_kv)
        qh = q[:, h * hd:(h + 1) * hd].astype(np.float64)
        kh = k[:, g * hd:(g + 1) * hd].astype(np.float64)
        vh = v[:, g * hd:(g + 1) * hd].astype(np.float64)
        s = qh @ kh.T / np.sqrt(hd)
        s[np.arange(S)[None, :] > (pos0 + np.arange(T))[:, None]] = -np.inf
        s = np.exp(s - s.max(-1, keepdims=True))
        y[:, h * hd:(h + 1) * hd] = (s / s.sum(-1, keepdims=True)) @ vh
    return y


def gates(rng, T, K):
    """A gate_up row block (T, 2K) whose gates include large negative values, where a naive
    exp(-g) overflows (silu is then about 0), and some large positive ones (silu(g) = g)."""
    h = rng.standard_normal((T, 2 * K)).astype(np.float32) * 2
    h[:, :K].flat[::7] = -1000.0
    h[:, :K].flat[5::13] = -88.5
    h[:, :K].flat[3::17] = 20.0
    return h


# ------------------------------------------------------------------ tests

def test_new_shaders_compile_alone(kern):
    """rope.wgsl compiles with only the constants test_kernels gives every shader."""
    text = kern.source("rope")
    assert "pow(" not in "\n".join(line.split("//")[0] for line in text.splitlines())
    kern.get("rope", C=36, N_HEAD=3)


@pytest.mark.parametrize("T,C,eps", [(3, 100, 1e-5), (1, 960, 1e-6), (70, 200, 1e-6)])
def test_rmsnorm(dev, kern, T, C, eps):
    """layernorm.wgsl with RMS: the prompt's and the CPU adapters' RMSNorm; b is not read."""
    rng = np.random.default_rng(C + T)
    x = (rng.standard_normal((T, C)) * 3 + 5).astype(np.float32)
    w = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    out = dev.buffer(T * C * 4)
    pipe = kern.get("layernorm", C=C, EPS=eps, RMS=True, WG=64)
    dispatch(kern, "layernorm", pipe, dict(x=upload(dev, x), w=upload(dev, w), b=standin(dev),
                                           out=out, p=params(dev, T)), T)
    check(f"rmsnorm T={T} C={C}", read(dev, out, (T, C)), rmsnorm(x, w, eps), 2e-5)


@pytest.mark.parametrize("T,K,N,fmt,bias", [(1, 96, 100, "f32", True), (3, 160, 72, "f16", False),
                                            (1, 224, 40, "q8", True), (2, 96, 52, "q4", False),
                                            (1, 960, 36, "f16", False)])
@pytest.mark.parametrize("shape", [dict(TPR=16, RPW=16, U=2), dict(TPR=4, RPW=2)])
def test_gemv_fused_rmsnorm(dev, kern, T, K, N, fmt, bias, shape):
    """q/k/v and gate_up as a GPU decodes them: RMSNorm of x staged in workgroup memory, with a
    bias (Qwen2's q/k/v) or without one (Llama), split into row parts."""
    rng = np.random.default_rng(K + N + T)
    eps = 1e-6
    x = (rng.standard_normal((T, K)) * 2 + 1).astype(np.float32)
    lw = (1 + 0.1 * rng.standard_normal(K)).astype(np.float32)
    Wt = rng.standard_normal((N, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    out = dev.buffer(T * N * 4)
    xb, lwb, p = upload(dev, x), upload(dev, lw), params(dev, T)
    bb = upload(dev, b) if bias else standin(dev)
    want_w = np.zeros((N, K))
    enc = dev.encoder()
    for row0, rows in split_rows(N):
        data, soff, Wv = rows_data(Wt[row0:row0 + rows], fmt)
        want_w[row0:row0 + rows] = Wv
        pipe = kern.get("gemv", K=K, ROWS=rows, ROW0=row0, OUT_N=N, FMT=FMT[fmt], SOFF=soff,
                        LN=True, RMS=True, LN_MAX=K, EPS=eps, BIAS=bias, **shape)
        group = bind(kern, "gemv", pipe, dict(x=xb, Wt=upload_bytes(dev, data), bias=bb, out=out,
                                              ln_w=lwb, ln_b=standin(dev), k_cache=dev.buffer(16),
                                              v_cache=dev.buffer(16), p=p))
        enc.dispatch(pipe, group, cdiv(rows, shape["RPW"]), T)
    enc.submit()
    want = rmsnorm(x, lw, eps) @ want_w.T + (b if bias else 0)
    check(f"gemv RMS T={T} K={K} N={N} {fmt} bias={bias} {shape}", read(dev, out, (T, N)), want)


@pytest.mark.parametrize("T,K,N,f16,bias", [(1, 100, 44, False, False), (3, 20, 72, True, True),
                                            (1, 960, 128, True, False)])
@pytest.mark.parametrize("shape", [dict(TX=8, TY=32), dict(TX=64, TY=1), dict(TX=4, TY=3)])
def test_matvec_fused_rmsnorm(dev, kern, T, K, N, f16, bias, shape):
    """The same with W [in, out] (matvec.wgsl), on the CPU adapters' and the GPU's shapes."""
    rng = np.random.default_rng(K * N + T)
    eps = 1e-5
    x = (rng.standard_normal((T, K)) * 2 + 1).astype(np.float32)
    lw = (1 + 0.1 * rng.standard_normal(K)).astype(np.float32)
    W, b = rng.standard_normal((K, N)).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    Wd = W.astype(np.float16) if f16 else W
    out = dev.buffer(T * N * 4)
    pipe = kern.get("matvec", K=K, N=N, F16=f16, LN=True, RMS=True, EPS=eps, BIAS=bias, **shape)
    dispatch(kern, "matvec", pipe, dict(
        x=upload(dev, x), W=upload_bytes(dev, Wd.tobytes()),
        bias=upload(dev, b) if bias else standin(dev), out=out, ln_w=upload(dev, lw),
        ln_b=standin(dev), k_cache=dev.buffer(16), v_cache=dev.buffer(16), p=params(dev, T)),
        cdiv(N // 4, shape["TX"]), T)
    want = rmsnorm(x, lw, eps) @ Wd.astype(np.float64) + (b if bias else 0)
    check(f"matvec RMS T={T} K={K} N={N} f16={f16} {shape}", read(dev, out, (T, N)), want)


@pytest.mark.parametrize("T,K,N,fmt,block", [(2, 160, 36, "f16", 32), (1, 224, 44, "q8", 32),
                                             (1, 64, 24, "q4", 16)])
@pytest.mark.parametrize("shape", [dict(TPR=32, RPW=8, U=2), dict(TPR=1, RPW=64)])
def test_gemv_swiglu_in(dev, kern, T, K, N, fmt, block, shape):
    """The down projection as a token decodes it: x' = silu(gate) * up read on load, no bias,
    added into the residual stream, split into row parts."""
    rng = np.random.default_rng(K + N + T + block)
    h = gates(rng, T, K)
    Wt = rng.standard_normal((N, K)).astype(np.float32)
    out0 = rng.standard_normal((T, N)).astype(np.float32)
    out = upload(dev, out0)
    hb, p = upload(dev, h), params(dev, T)
    want_w = np.zeros((N, K))
    enc = dev.encoder()
    for row0, rows in split_rows(N):
        data, soff, Wv = rows_data(Wt[row0:row0 + rows], fmt, block)
        want_w[row0:row0 + rows] = Wv
        pipe = kern.get("gemv", K=K, ROWS=rows, ROW0=row0, OUT_N=N, FMT=FMT[fmt], SOFF=soff,
                        BLOCK=block, SWIGLU_IN=True, BIAS=False, RESIDUAL=True, **shape)
        group = bind(kern, "gemv", pipe, dict(x=hb, Wt=upload_bytes(dev, data), bias=standin(dev),
                                              out=out, ln_w=standin(dev), ln_b=standin(dev),
                                              k_cache=dev.buffer(16), v_cache=dev.buffer(16), p=p))
        enc.dispatch(pipe, group, cdiv(rows, shape["RPW"]), T)
    enc.submit()
    got = read(dev, out, (T, N))
    assert np.isfinite(got).all()
    want = out0 + swiglu(h) @ want_w.T
    check(f"gemv SWIGLU_IN T={T} K={K} N={N} {fmt} {shape}", got, want)


@pytest.mark.parametrize("T,K,N,fmt", [(70, 96, 100, "f32"), (65, 64, 68, "q8"), (130, 96, 20, "q4")])
def test_matmul_swiglu_in(dev, kern, T, K, N, fmt):
    """The prompt's down projection (matmul's 64 x 64 tiles), residual, no bias."""
    rng = np.random.default_rng(K + N + T)
    h = gates(rng, T, K)
    Wt = rng.standard_normal((N, K)).astype(np.float32)
    out0 = rng.standard_normal((T, N)).astype(np.float32)
    out = upload(dev, out0)
    hb, p = upload(dev, h), params(dev, T)
    want_w = np.zeros((N, K))
    enc = dev.encoder()
    for row0, rows in split_rows(N):
        data, soff, Wv = rows_data(Wt[row0:row0 + rows], fmt)
        want_w[row0:row0 + rows] = Wv
        pipe = kern.get("matmul", K=K, ROWS=rows, ROW0=row0, OUT_N=N, FMT=FMT[fmt], SOFF=soff,
                        SWIGLU_IN=True, BIAS=False, RESIDUAL=True)
        group = bind(kern, "matmul", pipe, dict(x=hb, Wt=upload_bytes(dev, data), bias=standin(dev),
                                                out=out, k_cache=dev.buffer(16),
                                                v_cache=dev.buffer(16), p=p))
        enc.dispatch(pipe, group, cdiv(rows, 64), cdiv(T, 64))
    enc.submit()
    got = read(dev, out, (T, N))
    assert np.isfinite(got).all()
    check(f"matmul SWIGLU_IN T={T} K={K} N={N} {fmt}", got, out0 + swiglu(h) @ want_w.T)


@pytest.mark.parametrize("T,K,N,fmt,bias", [(70, 100, 72, "f32", False), (5, 96, 44, "q4", True)])
def test_matmul_without_bias_or_with(dev, kern, T, K, N, fmt, bias):
    """q/k/v and gate_up for the prompt: plain product, bias (Qwen2) or none (Llama)."""
    rng = np.random.default_rng(K * N + T)
    x, Wt, b = (rng.standard_normal(s).astype(np.float32) for s in [(T, K), (N, K), (N,)])
    data, soff, Wv = rows_data(Wt, fmt)
    out = dev.buffer(T * N * 4)
    pipe = kern.get("matmul", K=K, ROWS=N, OUT_N=N, FMT=FMT[fmt], SOFF=soff, BIAS=bias)
    dispatch(kern, "matmul", pipe, dict(x=upload(dev, x), Wt=upload_bytes(dev, data),
                                        bias=upload(dev, b) if bias else standin(dev), out=out,
                                        k_cache=dev.buffer(16), v_cache=dev.buffer(16),
                                        p=params(dev, T)), cdiv(N, 64), cdiv(T, 64))
    want = x.astype(np.float64) @ Wv.T + (b if bias else 0)
    check(f"matmul T={T} K={K} N={N} {fmt} bias={bias}", read(dev, out, (T, N)), want)


@pytest.mark.parametrize("T,K,N,f16", [(1, 100, 44, False), (3, 96, 72, True), (7, 20, 36, True)])
@pytest.mark.parametrize("shape", [dict(TX=8, TY=32), dict(TX=64, TY=1), dict(TX=4, TY=3)])
def test_matvec_swiglu_in(dev, kern, T, K, N, f16, shape):
    rng = np.random.default_rng(K * N + T)
    h = gates(rng, T, K)
    W = rng.standard_normal((K, N)).astype(np.float32)
    Wd = W.astype(np.float16) if f16 else W
    out0 = rng.standard_normal((T, N)).astype(np.float32)
    out = upload(dev, out0)
    pipe = kern.get("matvec", K=K, N=N, F16=f16, SWIGLU_IN=True, BIAS=False, RESIDUAL=True, **shape)
    dispatch(kern, "matvec", pipe, dict(
        x=upload(dev, h), W=upload_bytes(dev, Wd.tobytes()), bias=standin(dev), out=out,
        ln_w=standin(dev), ln_b=standin(dev), k_cache=dev.buffer(16), v_cache=dev.buffer(16),
        p=params(dev, T)), cdiv(N // 4, shape["TX"]), T)
    got = read(dev, out, (T, N))
    assert np.isfinite(got).all()
    check(f"matvec SWIGLU_IN T={T} K={K} N={N} f16={f16} {shape}", got,
          out0 + swiglu(h) @ Wd.astype(np.float64))


@pytest.mark.parametrize("T,K,I,fmt,bias,rms", [(1, 96, 50, "f32", False, True),
                                                (2, 160, 36, "f16", True, False),
                                                (1, 224, 44, "q8", False, True),
                                                (3, 96, 20, "q4", True, True),
                                                (1, 960, 70, "f16", False, False),
                                                (1, 64, 30, "q4", False, False)])
@pytest.mark.parametrize("shape", [dict(TPR=16, RPW=16, U=2), dict(TPR=1, RPW=64),
                                   dict(TPR=4, RPW=2)])
def test_gemv_swiglu_out(dev, kern, T, K, I, fmt, bias, rms, shape):
    """gate_up as a token decodes it, emitting silu(gate) * up (SWIGLU_OUT), optionally after
    the fused RMSNorm: each part is [gate_proj[a:b]; up_proj[a:b]], the bias [gate; up]."""
    rng = np.random.default_rng(K + I + T)
    eps = 1e-6
    x = (rng.standard_normal((T, K)) * 2 + 1).astype(np.float32)
    lw = (1 + 0.1 * rng.standard_normal(K)).astype(np.float32)
    Wg, Wu = (rng.standard_normal((I, K)).astype(np.float32) for _ in range(2))
    b = rng.standard_normal(2 * I).astype(np.float32)
    out = dev.buffer(T * I * 4)
    xb, p, bb = upload(dev, x), params(dev, T), upload(dev, b) if bias else standin(dev)
    want_g, want_u = np.zeros((I, K)), np.zeros((I, K))
    enc = dev.encoder()
    for a, n in split_rows(I):
        data, soff, Wv = rows_data(np.concatenate([Wg[a:a + n], Wu[a:a + n]]), fmt)
        want_g[a:a + n], want_u[a:a + n] = Wv[:n], Wv[n:]
        pipe = kern.get("gemv", K=K, ROWS=2 * n, ROW0=a, OUT_N=I, FMT=FMT[fmt], SOFF=soff,
                        LN=rms, RMS=rms, LN_MAX=K if rms else 1, EPS=eps, SWIGLU_OUT=True,
                        BIAS=bias, **shape)
        group = bind(kern, "gemv", pipe, dict(x=xb, Wt=upload_bytes(dev, data), bias=bb, out=out,
                                              ln_w=upload(dev, lw) if rms else standin(dev),
                                              ln_b=standin(dev), k_cache=dev.buffer(16),
                                              v_cache=dev.buffer(16), p=p))
        enc.dispatch(pipe, group, cdiv(n, shape["RPW"]), T)
    enc.submit()
    xn = rmsnorm(x, lw, eps) if rms else x.astype(np.float64)
    bg, bu = (b[:I], b[I:]) if bias else (0, 0)
    want = silu(xn @ want_g.T + bg) * (xn @ want_u.T + bu)
    check(f"gemv SWIGLU_OUT T={T} K={K} I={I} {fmt} bias={bias} rms={rms} {shape}",
          read(dev, out, (T, I)), want)


@pytest.mark.parametrize("T,K,I,fmt,bias", [(70, 96, 100, "f32", True), (3, 160, 36, "f16", False),
                                            (65, 64, 68, "q8", False), (130, 96, 20, "q4", True)])
def test_matmul_swiglu_out(dev, kern, T, K, I, fmt, bias):
    """The prompt's gate_up (matmul's tiles of 32 gate/up pairs), emitting silu(gate) * up."""
    rng = np.random.default_rng(K + I + T)
    x = rng.standard_normal((T, K)).astype(np.float32)
    Wg, Wu = (rng.standard_normal((I, K)).astype(np.float32) for _ in range(2))
    b = rng.standard_normal(2 * I).astype(np.float32)
    out = dev.buffer(T * I * 4)
    xb, p, bb = upload(dev, x), params(dev, T), upload(dev, b) if bias else standin(dev)
    want_g, want_u = np.zeros((I, K)), np.zeros((I, K))
    enc = dev.encoder()
    for a, n in split_rows(I):
        data, soff, Wv = rows_data(np.concatenate([Wg[a:a + n], Wu[a:a + n]]), fmt)
        want_g[a:a + n], want_u[a:a + n] = Wv[:n], Wv[n:]
        pipe = kern.get("matmul", K=K, ROWS=2 * n, ROW0=a, OUT_N=I, FMT=FMT[fmt], SOFF=soff,
                        SWIGLU_OUT=True, BIAS=bias)
        group = bind(kern, "matmul", pipe, dict(x=xb, Wt=upload_bytes(dev, data), bias=bb,
                                                out=out, k_cache=dev.buffer(16),
                                                v_cache=dev.buffer(16), p=p))
        enc.dispatch(pipe, group, cdiv(n, 32), cdiv(T, 64))
    enc.submit()
    xd = x.astype(np.float64)
    bg, bu = (b[:I], b[I:]) if bias else (0, 0)
    want = silu(xd @ want_g.T + bg) * (xd @ want_u.T + bu)
    check(f"matmul SWIGLU_OUT T={T} K={K} I={I} {fmt} bias={bias}", read(dev, out, (T, I)), want)


@pytest.mark.parametrize("T,K,I,f16,bias,rms", [(1, 100, 44, False, False, True),
                                                (3, 96, 72, True, True, False),
                                                (7, 20, 36, True, False, True)])
@pytest.mark.parametrize("shape", [dict(TX=8, TY=32), dict(TX=64, TY=1), dict(TX=4, TY=3)])
def test_matvec_swiglu_out(dev, kern, T, K, I, f16, bias, rms, shape):
    """gate_up with W [in, out] (K, 2I), the gate columns then the up columns."""
    rng = np.random.default_rng(K * I + T)
    eps = 1e-5
    x = (rng.standard_normal((T, K)) * 2 + 1).astype(np.float32)
    lw = (1 + 0.1 * rng.standard_normal(K)).astype(np.float32)
    W = rng.standard_normal((K, 2 * I)).astype(np.float32)
    Wd = W.astype(np.float16) if f16 else W
    b = rng.standard_normal(2 * I).astype(np.float32)
    out = dev.buffer(T * I * 4)
    pipe = kern.get("matvec", K=K, N=I, F16=f16, LN=rms, RMS=rms, EPS=eps, SWIGLU_OUT=True,
                    BIAS=bias, **shape)
    dispatch(kern, "matvec", pipe, dict(
        x=upload(dev, x), W=upload_bytes(dev, Wd.tobytes()),
        bias=upload(dev, b) if bias else standin(dev), out=out,
        ln_w=upload(dev, lw) if rms else standin(dev), ln_b=standin(dev), k_cache=dev.buffer(16),
        v_cache=dev.buffer(16), p=params(dev, T)), cdiv(I // 4, shape["TX"]), T)
    xn = rmsnorm(x, lw, eps) if rms else x.astype(np.float64)
    h = xn @ Wd.astype(np.float64) + (b if bias else 0)
    check(f"matvec SWIGLU_OUT T={T} K={K} I={I} f16={f16} bias={bias} rms={rms} {shape}",
          read(dev, out, (T, I)), silu(h[:, :I]) * h[:, I:])


ROPE_CASES = [  # T, pos0, n_head, n_kv, hd, n_ctx
    (5, 7, 4, 4, 32, 40),          # 1:1
    (3, 0, 6, 2, 64, 16),          # 3:1
    (1, 4094, 8, 1, 80, 4096),     # 8:1, the last position of a large context
    (70, 30, 3, 1, 128, 128),      # a prompt longer than a workgroup
]


@pytest.mark.parametrize("T,pos0,n_head,n_kv,hd,n_ctx", ROPE_CASES)
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("lanes", [1, 16])
def test_rope_and_kv_store(dev, kern, T, pos0, n_head, n_kv, hd, n_ctx, norm, lanes):
    """q rotated in place, rotated k and plain v stored at rows pos0.. of the caches; with
    NORM (Qwen3) each q and k head RMS-normalised first. Other rows and columns untouched."""
    rng = np.random.default_rng(T + pos0 + hd + lanes)
    eps = 1e-6
    C, KC = n_head * hd, n_kv * hd
    qkv = (rng.standard_normal((T, C + 2 * KC)) * 3).astype(np.float32)
    table = rope_table(n_ctx, hd, 500000.0)
    qn = (1 + 0.2 * rng.standard_normal(hd)).astype(np.float32)
    kn = (1 + 0.2 * rng.standard_normal(hd)).astype(np.float32)
    kc0 = rng.standard_normal((n_ctx, KC)).astype(np.float32)
    vc0 = rng.standard_normal((n_ctx, KC)).astype(np.float32)
    qkvb, kc, vc = upload(dev, qkv), upload(dev, kc0), upload(dev, vc0)
    wg = 64
    pipe = kern.get("rope", C=C, N_HEAD=n_head, N_KV=n_kv, NORM=norm, EPS=eps, LANES=lanes, WG=wg)
    dispatch(kern, "rope", pipe, dict(
        qkv=qkvb, rope=upload(dev, table), q_norm=upload(dev, qn) if norm else standin(dev),
        k_norm=upload(dev, kn) if norm else standin(dev), k_cache=kc, v_cache=vc,
        p=params(dev, T, pos0)), cdiv((n_head + 2 * n_kv) * lanes, wg), T)

    cs = table[pos0:pos0 + T][:, None, :]                                 # (T, 1, hd)
    q = qkv[:, :C].reshape(T, n_head, hd).astype(np.float64)
    k = qkv[:, C:C + KC].reshape(T, n_kv, hd).astype(np.float64)
    if norm:
        q, k = rmsnorm(q, qn, eps), rmsnorm(k, kn, eps)
    want_qkv = qkv.astype(np.float64)
    want_qkv[:, :C] = rotate(q, cs).reshape(T, C)
    want_k, want_v = kc0.astype(np.float64), vc0.astype(np.float64)
    want_k[pos0:pos0 + T] = rotate(k, cs).reshape(T, KC)
    want_v[pos0:pos0 + T] = qkv[:, C + KC:]
    name = f"rope T={T} pos0={pos0} heads={n_head}/{n_kv} hd={hd} norm={norm} lanes={lanes}"
    check(name + " q", read(dev, qkvb, (T, C + 2 * KC)), want_qkv)
    check(name + " k_cache", read(dev, kc, (n_ctx, KC)), want_k)
    assert np.array_equal(read(dev, vc, (n_ctx, KC)), want_v.astype(np.float32))


ATTENTION_CASES = [  # T, pos0, n_head, n_kv, hd, n_ctx
    (5, 7, 4, 4, 32, 40),          # 1:1
    (3, 20, 6, 2, 64, 64),         # 3:1
    (2, 2040, 8, 1, 80, 2048),     # 8:1, the end of a large context
    (70, 0, 3, 1, 128, 80),        # a prompt longer than a workgroup
    (1, 100, 9, 3, 64, 120),       # 3:1, odd head count
]


@pytest.mark.parametrize("T,pos0,n_head,n_kv,hd,n_ctx", ATTENTION_CASES)
@pytest.mark.parametrize("wg", [64, 256])
def test_gqa_attention(dev, kern, T, pos0, n_head, n_kv, hd, n_ctx, wg):
    """attention.wgsl with N_KV and QKV_STRIDE: q from the rotated qkv rows, keys and values
    from caches of n_kv heads, each shared by n_head / n_kv query heads."""
    rng = np.random.default_rng(T + pos0 + hd)
    C, KC = n_head * hd, n_kv * hd
    qkv = rng.standard_normal((T, C + 2 * KC)).astype(np.float32)
    kc = rng.standard_normal((n_ctx, KC)).astype(np.float32)   # rows past pos0 + T: never read
    vc = rng.standard_normal((n_ctx, KC)).astype(np.float32)
    y = dev.buffer(T * C * 4)
    pipe = kern.get("attention", C=C, N_HEAD=n_head, N_KV=n_kv, QKV_STRIDE=C + 2 * KC,
                    N_CTX=n_ctx, WG=wg)
    dispatch(kern, "attention", pipe, dict(qkv=upload(dev, qkv), k_cache=upload(dev, kc),
                                           v_cache=upload(dev, vc), y=y, p=params(dev, T, pos0)),
             T, n_head)
    S = pos0 + T
    want = gqa_attention(qkv[:, :C], kc[:S], vc[:S], n_head, n_kv, pos0)
    check(f"attention T={T} pos0={pos0} heads={n_head}/{n_kv} hd={hd} wg={wg}",
          read(dev, y, (T, C)), want)


@pytest.mark.parametrize("fmt", ["f32", "f16", "q8", "q4"])
def test_embedding_without_positions(dev, kern, fmt):
    """x = wte[ids] alone (WPE false: the wpe stand-in is not read), the table in three parts."""
    T, C, V, pos0 = 6, 96, 77, 9
    rng = np.random.default_rng(7)
    wte = rng.standard_normal((V, C)).astype(np.float32)
    ids = np.array([0, 76, 30, 31, 29, 60], np.uint32)
    x = dev.buffer(T * C * 4)
    idb, p, wpe = upload(dev, ids), params(dev, T, pos0), standin(dev)
    wte_v = np.zeros((V, C))
    enc = dev.encoder()
    for row0, rows in [(0, 30), (30, 30), (60, 17)]:
        data, soff, Wv = rows_data(wte[row0:row0 + rows], fmt)
        wte_v[row0:row0 + rows] = Wv
        pipe = kern.get("embedding", C=C, ROW0=row0, ROWS=rows, FMT=FMT[fmt], SOFF=soff,
                        WPE=False, WG=64)
        enc.dispatch(pipe, bind(kern, "embedding", pipe, dict(
            ids=idb, wte=upload_bytes(dev, data), wpe=wpe, x=x, p=p)), cdiv(C, 64), T)
    enc.submit()
    check(f"embedding without wpe {fmt}", read(dev, x, (T, C)), wte_v[ids])


@pytest.mark.parametrize("fmt", ["f16", "q4"])
@pytest.mark.parametrize("shape", [dict(TPR=16, RPW=16, U=4), dict(TPR=1, RPW=64)])
def test_untied_lm_head_with_fused_rmsnorm(dev, kern, fmt, shape):
    """logits = rmsnorm(x[lm_row0 + t]) @ lm_head^T for t < lm_rows: the final norm fused into
    an untied LM head (gemv LM + LN + RMS), the head split into parts."""
    T, K, V, lm_row0, eps = 5, 160, 101, 2, 1e-5
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((T, K)) * 2).astype(np.float32)
    lw = (1 + 0.1 * rng.standard_normal(K)).astype(np.float32)
    head = rng.standard_normal((V, K)).astype(np.float32)
    rows_n = T - lm_row0
    logits = dev.buffer(rows_n * V * 4)
    xb, lwb, p = upload(dev, x), upload(dev, lw), params(dev, T, 0, lm_row0, rows_n)
    want_w = np.zeros((V, K))
    enc = dev.encoder()
    for row0, rows in split_rows(V):
        data, soff, Wv = rows_data(head[row0:row0 + rows], fmt)
        want_w[row0:row0 + rows] = Wv
        pipe = kern.get("gemv", K=K, ROWS=rows, ROW0=row0, OUT_N=V, FMT=FMT[fmt], SOFF=soff,
                        LM=True, LN=True, RMS=True, LN_MAX=K, EPS=eps, **shape)
        group = bind(kern, "gemv", pipe, dict(x=xb, Wt=upload_bytes(dev, data), bias=standin(dev),
                                              out=logits, ln_w=lwb, ln_b=standin(dev),
                                              k_cache=dev.buffer(16), v_cache=dev.buffer(16), p=p))
        enc.dispatch(pipe, group, cdiv(rows, shape["RPW"]), rows_n)
    enc.submit()
    want = rmsnorm(x[lm_row0:], lw, eps) @ want_w.T
    check(f"lm_head RMS {fmt} {shape}", read(dev, logits, (rows_n, V)), want)


@pytest.mark.parametrize("kernel", ["gemv", "matmul", "matvec"])
@pytest.mark.parametrize("where", ["SWIGLU_IN", "SWIGLU_OUT"])
def test_silu_elementwise(dev, kern, kernel, where):
    """silu(gate) * up value by value, gates from -1000 to 60: read on load (SWIGLU_IN,
    identity weights) or emitted (SWIGLU_OUT: gate rows the identity, up rows zero and the up
    values in the bias). Finite everywhere, and within WGSL's accuracy of exp (3 + 2 |g| ulp)
    plus 5 ulp of float64 (to 1e-30 absolute: subnormals may flush to zero)."""
    K = 128
    g = np.concatenate([np.linspace(-1000, 60, K - 8), [-88.5, -87.0, -20.0, -1e-3, 0.0, 1e-3,
                                                        17.0, 88.5]]).astype(np.float32)
    up = np.random.default_rng(1).uniform(0.5, 2.0, K).astype(np.float32)
    eye = np.eye(K, dtype=np.float32)
    out = dev.buffer(K * 4)
    p, r = params(dev, 1), standin(dev)
    flags = dict(SWIGLU_IN=True, BIAS=False) if where == "SWIGLU_IN" else dict(SWIGLU_OUT=True)
    if where == "SWIGLU_IN":
        x, bias = upload(dev, np.concatenate([g, up])), r
        rows = cols = eye
    else:
        x, bias = upload(dev, g), upload(dev, np.concatenate([np.zeros(K, np.float32), up]))
        rows, cols = np.concatenate([eye, 0 * eye]), np.concatenate([eye, 0 * eye], 1)
    caches = dict(k_cache=dev.buffer(16), v_cache=dev.buffer(16), p=p)
    if kernel == "matvec":
        pipe = kern.get("matvec", K=K, N=K, TX=64, TY=1, **flags)
        bufs = dict(x=x, W=upload(dev, cols), bias=bias, out=out, ln_w=r, ln_b=r, **caches)
        groups = (cdiv(K // 4, 64), 1)
    elif kernel == "gemv":
        pipe = kern.get("gemv", K=K, ROWS=len(rows), OUT_N=K, TPR=32, RPW=8, **flags)
        bufs = dict(x=x, Wt=upload(dev, rows), bias=bias, out=out, ln_w=r, ln_b=r, **caches)
        groups = (cdiv(K, 8), 1)
    else:
        pipe = kern.get("matmul", K=K, ROWS=len(rows), OUT_N=K, **flags)
        bufs = dict(x=x, Wt=upload(dev, rows), bias=bias, out=out, **caches)
        groups = (cdiv(K, 32 if where == "SWIGLU_OUT" else 64), 1)
    dispatch(kern, kernel, pipe, bufs, *groups)
    got = read(dev, out, (K,))
    want = silu(g) * up
    assert np.isfinite(got).all()
    ulps = np.abs(got - want) / (np.abs(want) * 2.0 ** -23 + 1e-30)
    bound = 8 + 2 * np.abs(g.astype(np.float64))
    print(f"{kernel} {where} silu: max error {ulps.max():.3g} ulp; max error / bound "
          f"{(ulps / bound).max():.3g}")
    assert (np.abs(got - want) <= bound * 2.0 ** -23 * np.abs(want) + 1e-30).all()
