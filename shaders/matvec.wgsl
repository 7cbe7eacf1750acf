// Matrix-vector products, one per row of x, with the bias and optional fused steps: the kernel
// of a decoded token (T = 1), and of the prompt on CPU adapters (where matmul's tiles, staged
// with barriers, cost more than they save).
//
//   LN:       x[t, :] is first layer-normalised: (x - mean) / sqrt(var + EPS) * ln_w + ln_b
//   RMS:      with LN, the norm is an RMSNorm (Llama, Qwen): x / sqrt(mean(x^2) + EPS) * ln_w
//             (ln_b is not read)
//   SWIGLU_IN: x has 2K columns per row, [gate; up] (the output of a gate_up product), and the
//             product reads x'[t, k] = silu(x[t, k]) * x[t, K + k] (Llama's MLP before its
//             down projection), silu(g) = g / (1 + exp(-g)); not with LN
//   y[t, n] = sum_k x[t, k] * W[k, n] + bias[n]     x: (T, K), W: (K, N), y: (T, N)
//                                                   K % 4 == 0 and N % 4 == 0
//   SWIGLU_OUT: Llama's gate_up product, emitting silu(gate) * up: W is (K, 2N), the gate
//             columns [0, N) then the matching up columns [N, 2N) ([gate_proj; up_proj]
//             transposed), bias (2N) likewise, and out[t, n] = silu(x . W[:, n] + bias[n]) *
//             (x . W[:, N + n] + bias[N + n]) for n < N (the intermediate size). The down
//             projection then reads out as it is: one silu per output, against one per weight
//             with SWIGLU_IN. With LN, not with GELU, RESIDUAL, KV.
//   BIAS:     false: no bias (bias is not read; Llama's products)
//   GELU:     y = gelu(y)   (GPT-2's tanh form)
//   RESIDUAL: out[t, n] += y (adds into the residual stream); else out[t, n] = y
//   KV:       for the attention's c_attn (N = 3C): the key and value columns of y are also
//             stored in the caches at row pos0 + t
//
// Fusing saves a dispatch, and the round trip of an intermediate through memory, per step; on
// a GPU, decoding is bound by such per-dispatch costs long before memory bandwidth.
//
// W is a Conv1D weight as the checkpoint stores it, [in, out], never transposed (a Linear
// weight [out, in], Llama's and Qwen's, is transposed at load to run here). It is bound as
// raw 32-bit words: f32 values, or (F16) IEEE halves packed two per word, widened with
// unpack2x16float. That needs no `shader-f16` feature, so 16-bit weights halve the bytes read on
// every adapter; accumulation is always f32.
//
// Each invocation owns 4 neighbouring columns (one 16-byte load per row of W, so a row's reads
// coalesce across the TX invocations of a workgroup row) and a 1/TY share of the rows of W,
// taken 4 rows at a time (x is read as vec4: fewer loads and loop steps, 4 independent FMAs).
// With TY > 1 the TY partial sums meet in workgroup memory: many workgroups and short loops
// keep a discrete GPU's memory busy. With TY = 1 and LN off there is no barrier at all, which
// suits CPU adapters (SwiftShader, lavapipe) where a barrier switches between every invocation.
//
// Bindings: 0 x (T, K) f32 ((T, 2K) with SWIGLU_IN), 1 W words ((K, 2N) with SWIGLU_OUT),
//           2 bias (N) f32 ((2N) with SWIGLU_OUT), 3 out (T, N) f32,
//           4 ln_w (K), 5 ln_b (K), 6 k_cache (n_positions, N / 3), 7 v_cache (same),
//           8 params (uniform). Bindings a variant does not use (bias without BIAS, ln_*
//           without LN, ln_b with RMS, caches without KV) take any small buffer.
// Dispatch: (ceil(N / 4 / TX), T).

struct Params {
    T: u32,          // tokens in this forward pass
    pos0: u32,       // position of the first of them
    lm_row0: u32,
    lm_rows: u32,
}

override K: u32;
override N: u32;
override F16: bool = false;
override LN: bool = false;
override RMS: bool = false;
override EPS: f32 = 1e-5;
override SWIGLU_IN: bool = false;
override SWIGLU_OUT: bool = false;
override BIAS: bool = true;
override GELU: bool = false;
override RESIDUAL: bool = false;
override KV: bool = false;
override TX: u32 = 8u;
override TY: u32 = 32u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> W: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> ln_w: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> ln_b: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> k_cache: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<vec4<f32>>;
@group(0) @binding(8) var<uniform> p: Params;

var<workgroup> partial: array<vec4<f32>, TX * TY>;
var<workgroup> red: array<f32, TX * TY>;

// W[k, 4 c4 .. 4 c4 + 3] as f32 (rows of 2N values with SWIGLU_OUT).
fn load4(k: u32, c4: u32) -> vec4<f32> {
    var row4 = N / 4u;
    if (SWIGLU_OUT) {
        row4 = N / 2u;
    }
    let i = k * row4 + c4;
    if (F16) {
        let w = W[i];
        return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    }
    return bitcast<vec4<f32>>(vec4<u32>(W[2u * i], W[2u * i + 1u]));
}

// Sum of v over the workgroup (any size), for every invocation.
fn workgroup_sum(v: f32, flat: u32) -> f32 {
    let n = TX * TY;
    red[flat] = v;
    workgroupBarrier();
    var half = 1u;
    while (half * 2u < n) {
        half *= 2u;
    }
    for (var s = half; s > 0u; s = s / 2u) {
        if (flat < s && flat + s < n) {
            red[flat] += red[flat + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// g / (1 + exp(-g)) without overflow: exp of -|g| only, so the result is finite for every
// finite g (a naive exp(-g) is inf below g = -88; inf's behaviour is not defined in WGSL).
fn silu(g: vec4<f32>) -> vec4<f32> {
    let e = exp(-abs(g));
    return select(g * e, g, g >= vec4<f32>(0.0)) / (1.0 + e);
}

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// h^3 as h * h * h (pow is undefined for negative bases in WGSL); the tanh argument is clamped
// where tanh is already +-1 in f32, since some backends compute tanh through exp and overflow.
fn gelu(h: vec4<f32>) -> vec4<f32> {
    let u = clamp(SQRT_2_OVER_PI * (h + 0.044715 * h * h * h), vec4<f32>(-15.0), vec4<f32>(15.0));
    return 0.5 * h * (1.0 + tanh(u));
}

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wid.y;
    let c4 = wid.x * TX + lid.x;
    let n4 = N / 4u;
    let k4n = K / 4u;
    var x0 = t * k4n;
    if (SWIGLU_IN) {
        x0 = 2u * t * k4n;    // rows of 2K values
    }

    // Layer norm statistics of row t, two passes (the row is in cache).
    var mean = 0.0;
    var rstd = 1.0;
    if (LN && RMS) {
        // As transformers' LlamaRMSNorm in f32: x * rsqrt(mean(x^2) + eps), then * w.
        let flat = lid.y * TX + lid.x;
        var q = 0.0;
        for (var k4 = flat; k4 < k4n; k4 += TX * TY) {
            q += dot(x[x0 + k4], x[x0 + k4]);
        }
        rstd = inverseSqrt(workgroup_sum(q, flat) / f32(K) + EPS);
    } else if (LN) {
        let flat = lid.y * TX + lid.x;
        var s = 0.0;
        for (var k4 = flat; k4 < k4n; k4 += TX * TY) {
            s += dot(x[x0 + k4], vec4<f32>(1.0));
        }
        mean = workgroup_sum(s, flat) / f32(K);
        var q = 0.0;
        for (var k4 = flat; k4 < k4n; k4 += TX * TY) {
            let d = x[x0 + k4] - mean;
            q += dot(d, d);
        }
        rstd = inverseSqrt(workgroup_sum(q, flat) / f32(K) + EPS);
    }

    var acc = vec4<f32>(0.0);
    var acc_up = vec4<f32>(0.0);    // SWIGLU_OUT: the up columns N + 4 c4 ..
    if (c4 < n4) {
        for (var k4 = lid.y; k4 < k4n; k4 += TY) {
            var xv = x[x0 + k4];
            if (LN && RMS) {
                xv = xv * rstd * ln_w[k4];
            } else if (LN) {
                xv = (xv - mean) * rstd * ln_w[k4] + ln_b[k4];
            } else if (SWIGLU_IN) {
                xv = silu(xv) * x[x0 + k4n + k4];
            }
            let k = 4u * k4;
            acc += xv.x * load4(k, c4) + xv.y * load4(k + 1u, c4)
                 + xv.z * load4(k + 2u, c4) + xv.w * load4(k + 3u, c4);
            if (SWIGLU_OUT) {
                let u4 = n4 + c4;
                acc_up += xv.x * load4(k, u4) + xv.y * load4(k + 1u, u4)
                        + xv.z * load4(k + 2u, u4) + xv.w * load4(k + 3u, u4);
            }
        }
    }
    if (TY > 1u) {
        partial[lid.y * TX + lid.x] = acc;
        workgroupBarrier();
        if (lid.y == 0u) {
            for (var j = 1u; j < TY; j++) {
                acc += partial[j * TX + lid.x];
            }
        }
        if (SWIGLU_OUT) {
            workgroupBarrier();   // the gate sums are read before partial is reused
            partial[lid.y * TX + lid.x] = acc_up;
            workgroupBarrier();
            if (lid.y == 0u) {
                for (var j = 1u; j < TY; j++) {
                    acc_up += partial[j * TX + lid.x];
                }
            }
        }
    }
    if (lid.y != 0u || c4 >= n4) {
        return;
    }
    var y = acc;
    if (BIAS) {
        y += bias[c4];
    }
    if (SWIGLU_OUT) {
        var up = acc_up;
        if (BIAS) {
            up += bias[n4 + c4];
        }
        y = silu(y) * up;
    }
    if (GELU) {
        y = gelu(y);
    }
    let o = t * n4 + c4;
    if (RESIDUAL) {
        out[o] += y;
    } else {
        out[o] = y;
    }
    if (KV) {
        // Columns [C, 2C) are keys, [2C, 3C) values; C % 4 == 0 keeps a vec4 in one of them.
        let c4n = n4 / 3u;
        let row = (p.pos0 + t) * c4n;
        if (c4 >= 2u * c4n) {
            v_cache[row + c4 - 2u * c4n] = y;
        } else if (c4 >= c4n) {
            k_cache[row + c4 - c4n] = y;
        }
    }
}
