// Matrix product for the prompt (T > 1), tiled in workgroup memory, with the bias and optional
// epilogues.
//
//   y[t, n] = sum_k x[t, k] * W[k, n] + bias[n]     x: (T, K), W: (K, N), y: (T, N), N % 4 == 0
//   GELU:     y = gelu(y)
//   RESIDUAL: out[t, n] += y;  else out[t, n] = y
//   KV:       for the attention's c_attn (N = 3C): the key and value columns of y are also
//             stored in the caches at row pos0 + t
//
// W is [in, out] as stored, bound as raw words: f32, or (F16) halves packed two per word.
// A workgroup of 16 x 16 invocations computes a 64 x 64 block of out; each invocation a 4 x 4
// block (4 rows, 4 neighbouring columns). Per step of 16 along K, the 64 x 16 tile of x and the
// 16 x 64 tile of W are staged in workgroup memory, so each value is read from memory once per
// block and reused 64 times. Out-of-range rows, columns and K load zeros and store nothing.
//
// Bindings: 0 x (T, K) f32, 1 W words, 2 bias (N) f32, 3 out (T, N) f32,
//           4 k_cache (n_positions, N / 3), 5 v_cache (same), 6 params (uniform).
//           Without KV the caches' bindings take any small buffer.
// Dispatch: (ceil(N / 64), ceil(T / 64)).

struct Params {
    T: u32,          // tokens in this forward pass
    pos0: u32,       // position of the first of them
    lm_row0: u32,    // first row the LM head computes
    lm_rows: u32,    // rows the LM head computes
}

override K: u32;
override N: u32;
override F16: bool = false;
override GELU: bool = false;
override RESIDUAL: bool = false;
override KV: bool = false;
const BLOCK: u32 = 64u;   // rows and columns of out per workgroup
const TK: u32 = 16u;      // step along K

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> W: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<vec4<f32>>;
@group(0) @binding(6) var<uniform> p: Params;

var<workgroup> xs: array<array<f32, TK>, BLOCK>;        // xs[row][k]
var<workgroup> ws: array<array<vec4<f32>, 16>, TK>;     // ws[k][column group]

fn load4(k: u32, c4: u32) -> vec4<f32> {
    let i = k * (N / 4u) + c4;
    if (F16) {
        let w = W[i];
        return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    }
    return bitcast<vec4<f32>>(vec4<u32>(W[2u * i], W[2u * i + 1u]));
}

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn gelu(h: vec4<f32>) -> vec4<f32> {
    let u = clamp(SQRT_2_OVER_PI * (h + 0.044715 * h * h * h), vec4<f32>(-15.0), vec4<f32>(15.0));
    return 0.5 * h * (1.0 + tanh(u));
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n4 = N / 4u;
    let t0 = wid.y * BLOCK;
    let c4 = wid.x * 16u + lid.x;          // this invocation's column group
    let flat = lid.y * 16u + lid.x;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < K; k0 += TK) {
        // Stage x: 64 x 16 values, 4 per invocation.
        for (var r = 0u; r < 4u; r++) {
            let i = flat + r * 256u;
            let row = i / TK;
            let kk = i % TK;
            let t = t0 + row;
            let k = k0 + kk;
            xs[row][kk] = select(0.0, x[t * K + k], t < p.T && k < K);
        }
        // Stage W: 16 rows x 16 column groups, one vec4 per invocation.
        let kw = k0 + lid.y;
        var w = vec4<f32>(0.0);
        if (kw < K && c4 < n4) {
            w = load4(kw, c4);
        }
        ws[lid.y][lid.x] = w;
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let wv = ws[kk][lid.x];
            for (var r = 0u; r < 4u; r++) {
                acc[r] += xs[lid.y * 4u + r][kk] * wv;
            }
        }
        workgroupBarrier();
    }
    if (c4 >= n4) {
        return;
    }
    let b = bias[c4];
    for (var r = 0u; r < 4u; r++) {
        let t = t0 + lid.y * 4u + r;
        if (t < p.T) {
            var y = acc[r] + b;
            if (GELU) {
                y = gelu(y);
            }
            if (RESIDUAL) {
                out[t * n4 + c4] += y;
            } else {
                out[t * n4 + c4] = y;
            }
            if (KV) {
                let c4n = n4 / 3u;
                let row = (p.pos0 + t) * c4n;
                if (c4 >= 2u * c4n) {
                    v_cache[row + c4 - 2u * c4n] = y;
                } else if (c4 >= c4n) {
                    k_cache[row + c4 - c4n] = y;
                }
            }
        }
    }
}
