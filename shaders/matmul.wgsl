// Matrix product for the prompt (T > 1), tiled in workgroup memory, with the bias and optional
// epilogues.
//
//   y[t, n] = sum_k x[t, k] * Wt[n, k] + bias[ROW0 + n]   x: (T, K), Wt: (ROWS, K) part of an
//                                                          (OUT_N, K) matrix, y: (T, OUT_N)
//   SWIGLU_IN: x has 2K columns per row, [gate; up] (the output of a gate_up product), and the
//             product reads x'[t, k] = silu(x[t, k]) * x[t, K + k] (Llama's MLP before its
//             down projection), silu(g) = g / (1 + exp(-g)). With GEGLU the gate's activation
//             is gelu (tanh form) instead: x' = gelu(gate) * up (Gemma's MLP)
//   SWIGLU_OUT: Llama's gate_up product, emitting silu(gate) * up: this part's ROWS rows are
//             ROWS / 2 gate rows, then the matching ROWS / 2 up rows ([gate_proj[a:b];
//             up_proj[a:b]]; a single part is [gate_proj; up_proj] as a whole), and
//             out[t, ROW0 + n] = silu(x . gate_n + bias[ROW0 + n]) * (x . up_n + bias[OUT_N +
//             ROW0 + n]) for n < ROWS / 2, OUT_N = intermediate size, bias (2 OUT_N) the
//             [gate; up] bias. A workgroup computes 32 such outputs: its 64 staged rows are
//             their gate and up rows, placed so each invocation's 4 columns are 2 whole pairs.
//             Not with GELU, RESIDUAL, KV.
//   BIAS:     false: no bias (bias is not read; Llama's products)
//   GELU:     y = gelu(y)
//   RESIDUAL: out[t, ROW0 + n] += y;  else out[t, ROW0 + n] = y
//   KV:       for the attention's c_attn (OUT_N = 3C): keys (outputs [C, 2C)) and values
//             ([2C, 3C)) are also stored in the caches at row pos0 + t
//   SPLIT_K > 1: K is cut into SPLIT_K ranges, one per workgroup z (a long-K product with few
//             columns otherwise gives each workgroup a long serial loop over K); workgroup z
//             writes its partial product, without bias or epilogue, to out[(z T + t), n] (out
//             is then a scratch of SPLIT_K T rows) and reduce.wgsl adds the parts. K %
//             (16 SPLIT_K) == 0. Not with SWIGLU_OUT or KV.
//
// Wt holds one row per output (a Conv1D weight transposed at load), as raw words in the
// formats of gemv.wgsl: FMT 0 f32, 1 f16 pairs, 2 q8, 3 q4 (the last two with f16 scales per
// BLOCK values of a row, from word SOFF), 4 bf16 pairs, 16 + t a ggml block type t as a GGUF
// file stores it (the ggml block section below). K % 4 == 0 (K % 32 for q8, q4 and ggml's).
// A workgroup of 16 x TT / 4 invocations computes a TT x 64 block of out (TT = 64 or 32 rows of
// x); each invocation a 4 x 4 block (4 rows, 4 neighbouring columns). Per step of 16 along K,
// the TT x 16 tile of x and the 64 x 16 tile of Wt are staged in workgroup memory, so each value
// is read from memory once per block and reused TT or 64 times. TT = 32 doubles the workgroups
// of a product with few columns (N = C: at T = 512, 124M's c_proj has 12 x 8 blocks of 64 x 64,
// too few to fill a large GPU). Out-of-range rows, columns and K load zeros and store nothing.
//
// Bindings: 0 x (T, K) f32 ((T, 2K) with SWIGLU_IN), 1 Wt words, 2 bias (OUT_N) f32
//           ((2 OUT_N) with SWIGLU_OUT), 3 out (T, OUT_N) f32, 4 k_cache (n_positions,
//           OUT_N / 3), 5 v_cache (same), 6 params (uniform). Without KV the caches' bindings,
//           without BIAS the bias's, take any small buffer.
// Dispatch: (ceil(ROWS / 64), ceil(T / TT), SPLIT_K); with SWIGLU_OUT (ceil(ROWS / 2 / 32),
//           ceil(T / TT)).

struct Params {
    T: u32,          // tokens in this forward pass
    pos0: u32,       // position of the first of them
    lm_row0: u32,    // first row the LM head computes
    lm_rows: u32,    // rows the LM head computes
}

override K: u32;
override ROWS: u32;             // rows of Wt in this part
override ROW0: u32 = 0u;        // first output of this part
override OUT_N: u32;            // outputs in all (columns of out)
override FMT: u32 = 0u;
override BLOCK: u32 = 32u;
override SOFF: u32 = 0u;        // word offset of the scales (q8, q4)
override SWIGLU_IN: bool = false;
override GEGLU: bool = false;   // with SWIGLU_IN: gelu(gate) * up
override SWIGLU_OUT: bool = false;
override BIAS: bool = true;
override GELU: bool = false;
override RESIDUAL: bool = false;
override KV: bool = false;
override TT: u32 = 64u;   // rows of out (tokens) per workgroup: 64 or 32
override SPLIT_K: u32 = 1u;   // ranges of K, one per workgroup z (see above)
const TILE: u32 = 64u;    // columns of out per workgroup
const TK: u32 = 16u;      // step along K

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> Wt: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

var<workgroup> xs: array<array<vec4<f32>, 16>, TK>;    // xs[k][row group]: 4 rows of x
var<workgroup> ws: array<array<vec4<f32>, 16>, TK>;    // ws[k][column group]: 4 rows of Wt

fn scale(r: u32, k: u32) -> f32 {
    let i = r * (K / BLOCK) + k / BLOCK;
    return unpack2x16float(Wt[SOFF + i / 2u])[i % 2u];
}

// Word i (4 bytes) of this part, for the ggml block decoder.
fn word(i: u32) -> u32 {
    return Wt[i];
}

fn ggml_row_values() -> u32 {
    return K;
}

// ---- ggml's block types (FMT 16 + the ggml type id: 18 Q4_0, 19 Q4_1, 22 Q5_0, 23 Q5_1,
// 24 Q8_0, 26 Q2_K, 27 Q3_K, 28 Q4_K, 29 Q5_K, 30 Q6_K), rows of blocks as a GGUF file stores
// them (webgpt/ggml.py has the layouts). A value is w = a q + b: ggml_affine gives (a, b) for
// the 16 values from k (k % 16 == 0), ggml_q4 the integers q of values k .. k + 3 (k % 4 == 0).
// This block is the same text in gemv.wgsl, matmul.wgsl and embedding.wgsl (a test checks).

fn ggml_block_bytes() -> u32 {
    switch FMT {
        case 18u: { return 18u; }
        case 19u: { return 20u; }
        case 22u: { return 22u; }
        case 23u: { return 24u; }
        case 24u: { return 34u; }
        case 26u: { return 84u; }
        case 27u: { return 110u; }
        case 28u: { return 144u; }
        case 29u: { return 176u; }
        default: { return 210u; }
    }
}

fn ggml_block_values() -> u32 {
    return select(32u, 256u, FMT >= 26u);
}

// Byte offset in this part of the block that holds value k of row r.
fn ggml_block(r: u32, k: u32) -> u32 {
    let per_row = ggml_row_values() / ggml_block_values();
    return (r * per_row + k / ggml_block_values()) * ggml_block_bytes();
}

// The byte at byte offset o; the 4 bytes from o (any alignment), low byte first; the f16 at
// an even offset o.
fn ggml_u8(o: u32) -> u32 {
    return (word(o / 4u) >> (8u * (o % 4u))) & 0xffu;
}

fn ggml_u32(o: u32) -> u32 {
    let s = 8u * (o % 4u);
    let lo = word(o / 4u) >> s;
    if (s == 0u) {
        return lo;
    }
    return lo | (word(o / 4u + 1u) << (32u - s));
}

fn ggml_f16(o: u32) -> f32 {
    return unpack2x16float(word(o / 4u) >> (8u * (o % 4u))).x;
}

// (a, b) of the values k .. k + 15 of row r.
fn ggml_affine(r: u32, k: u32) -> vec2<f32> {
    let o = ggml_block(r, k);
    let i = k % ggml_block_values();
    switch FMT {
        case 19u, 23u: {                        // Q4_1, Q5_1: d, m
            return vec2<f32>(ggml_f16(o), ggml_f16(o + 2u));
        }
        case 26u: {                             // Q2_K: d (sc & 15), -dmin (sc >> 4)
            let sc = ggml_u8(o + i / 16u);
            return vec2<f32>(ggml_f16(o + 80u) * f32(sc & 15u),
                             -(ggml_f16(o + 82u) * f32(sc >> 4u)));
        }
        case 27u: {                             // Q3_K: d (6-bit scale - 32)
            let s = i / 16u;
            let lo = (ggml_u8(o + 96u + s % 8u) >> (4u * (s / 8u))) & 15u;
            let hi = (ggml_u8(o + 104u + s % 4u) >> (2u * (s / 4u))) & 3u;
            return vec2<f32>(ggml_f16(o + 108u) * f32(i32(lo | (hi << 4u)) - 32), 0.0);
        }
        case 28u, 29u: {                        // Q4_K, Q5_K: d sc, -dmin m (6 bits each)
            let j = i / 32u;
            var sc = ggml_u8(o + 4u + j) & 63u;
            var m = ggml_u8(o + 8u + j) & 63u;
            if (j >= 4u) {
                sc = (ggml_u8(o + 8u + j) & 15u) | ((ggml_u8(o + j) >> 6u) << 4u);
                m = (ggml_u8(o + 8u + j) >> 4u) | ((ggml_u8(o + 4u + j) >> 6u) << 4u);
            }
            return vec2<f32>(ggml_f16(o) * f32(sc), -(ggml_f16(o + 2u) * f32(m)));
        }
        case 30u: {                             // Q6_K: d (int8 scale)
            let sc = i32(ggml_u8(o + 192u + i / 16u) << 24u) >> 24u;
            return vec2<f32>(ggml_f16(o + 208u) * f32(sc), 0.0);
        }
        default: {                              // Q4_0, Q5_0, Q8_0: d
            return vec2<f32>(ggml_f16(o), 0.0);
        }
    }
}

// The integers q of values k .. k + 3 of row r.
fn ggml_q4(r: u32, k: u32) -> vec4<f32> {
    let o = ggml_block(r, k);
    let i = k % ggml_block_values();
    let sh = vec4<u32>(0u, 8u, 16u, 24u);
    switch FMT {
        case 18u, 19u: {                        // nibbles: value i low, i + 16 high (Q4_0: - 8)
            let w = ggml_u32(o + select(2u, 4u, FMT == 19u) + i % 16u) >> (4u * (i / 16u));
            let q = vec4<f32>((vec4<u32>(w) >> sh) & vec4<u32>(15u));
            return select(q, q - 8.0, FMT == 18u);
        }
        case 22u, 23u: {                        // nibbles | fifth bit << 4 (Q5_0: - 16)
            let qh = select(2u, 4u, FMT == 23u);
            let h = ggml_u32(o + qh) >> i;
            let w = ggml_u32(o + qh + 4u + i % 16u) >> (4u * (i / 16u));
            let q = ((vec4<u32>(w) >> sh) & vec4<u32>(15u))
                  | (((vec4<u32>(h) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) << vec4<u32>(4u));
            return select(vec4<f32>(q), vec4<f32>(q) - 16.0, FMT == 22u);
        }
        case 24u: {                             // signed bytes
            let w = i32(ggml_u32(o + 2u + i));
            return vec4<f32>((vec4<i32>(w) << (vec4<u32>(24u) - sh)) >> vec4<u32>(24u));
        }
        case 26u: {                             // 2 bits: qs[32 (i / 128) + i % 32] >> 2 ((i % 128) / 32)
            let w = ggml_u32(o + 16u + 32u * (i / 128u) + i % 32u) >> (2u * ((i % 128u) / 32u));
            return vec4<f32>((vec4<u32>(w) >> sh) & vec4<u32>(3u));
        }
        case 27u: {                             // 2 bits as Q2_K's, - 4 where bit i / 32 of hmask[i % 32] is 0
            let w = ggml_u32(o + 32u + 32u * (i / 128u) + i % 32u) >> (2u * ((i % 128u) / 32u));
            let h = ggml_u32(o + i % 32u) >> (i / 32u);
            let q = vec4<f32>((vec4<u32>(w) >> sh) & vec4<u32>(3u));
            return q - 4.0 * (1.0 - vec4<f32>((vec4<u32>(h) >> sh) & vec4<u32>(1u)));
        }
        case 28u, 29u: {                        // nibbles qs[32 (i / 64) + i % 32] >> 4 ((i % 64) / 32)
            let w = ggml_u32(o + select(16u, 48u, FMT == 29u) + 32u * (i / 64u) + i % 32u)
                    >> (4u * ((i % 64u) / 32u));
            var q = vec4<f32>((vec4<u32>(w) >> sh) & vec4<u32>(15u));
            if (FMT == 29u) {                   // Q5_K: + 16 bit i / 32 of qh[i % 32]
                let h = ggml_u32(o + 16u + i % 32u) >> (i / 32u);
                q += 16.0 * vec4<f32>((vec4<u32>(h) >> sh) & vec4<u32>(1u));
            }
            return q;
        }
        default: {                              // Q6_K: 4 low bits | 2 high bits << 4, - 32
            let rr = i % 128u;
            let w = ggml_u32(o + 64u * (i / 128u) + rr % 64u) >> (4u * (rr / 64u));
            let h = ggml_u32(o + 128u + 32u * (i / 128u) + rr % 32u) >> (2u * (rr / 32u));
            let q = ((vec4<u32>(w) >> sh) & vec4<u32>(15u)) | (((vec4<u32>(h) >> sh) & vec4<u32>(3u)) << vec4<u32>(4u));
            return vec4<f32>(q) - 32.0;
        }
    }
}

// Values k .. k + 3 of row r, decoded.
fn ggml_load4(r: u32, k: u32) -> vec4<f32> {
    let ab = ggml_affine(r, k);
    return ggml_q4(r, k) * ab.x + ab.y;
}

// bf16 values k, k + 1 of the word at value index e (e even).
fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
// ---- end of ggml's block types

// Wt[r, k .. k + 3] as f32 (k % 4 == 0).
fn load4(r: u32, k: u32) -> vec4<f32> {
    let e = r * K + k;
    switch FMT {
        case 0u: {
            return bitcast<vec4<f32>>(vec4<u32>(Wt[e], Wt[e + 1u], Wt[e + 2u], Wt[e + 3u]));
        }
        case 1u: {
            return vec4<f32>(unpack2x16float(Wt[e / 2u]), unpack2x16float(Wt[e / 2u + 1u]));
        }
        case 2u: {
            let s = i32(Wt[e / 4u]);
            return vec4<f32>(f32(extractBits(s, 0u, 8u)), f32(extractBits(s, 8u, 8u)),
                             f32(extractBits(s, 16u, 8u)), f32(extractBits(s, 24u, 8u)))
                   * scale(r, k);
        }
        case 3u: {
            let s = i32(Wt[e / 8u]);
            let b = 16u * ((e / 4u) % 2u);
            return vec4<f32>(f32(extractBits(s, b, 4u)), f32(extractBits(s, b + 4u, 4u)),
                             f32(extractBits(s, b + 8u, 4u)), f32(extractBits(s, b + 12u, 4u)))
                   * scale(r, k);
        }
        case 4u: {
            return vec4<f32>(bf16_pair(Wt[e / 2u]), bf16_pair(Wt[e / 2u + 1u]));
        }
        default: {
            return ggml_load4(r, k);
        }
    }
}

// g / (1 + exp(-g)) without overflow: exp of -|g| only, so the result is finite for every
// finite g (a naive exp(-g) is inf below g = -88; inf's behaviour is not defined in WGSL).
fn silu(g: f32) -> f32 {
    let e = exp(-abs(g));
    return select(g * e, g, g >= 0.0) / (1.0 + e);
}

// x'[t, k] of an in-range (t, k): x[t, k], or silu(gate) * up with SWIGLU_IN (gelu with GEGLU).
fn x_at(t: u32, k: u32) -> f32 {
    if (SWIGLU_IN && GEGLU) {
        return gelu(x[2u * t * K + k]) * x[2u * t * K + K + k];
    }
    if (SWIGLU_IN) {
        return silu(x[2u * t * K + k]) * x[2u * t * K + K + k];
    }
    return x[t * K + k];
}

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn gelu(h: f32) -> f32 {
    let u = clamp(SQRT_2_OVER_PI * (h + 0.044715 * h * h * h), -15.0, 15.0);
    return 0.5 * h * (1.0 + tanh(u));
}

// Staging: x value j of the TT x 16 tile at (t0, k0) (neighbouring j: neighbouring k of a row);
// Wt's 4 neighbouring values f of the 64 x 16 tile of workgroup column wx at k0 (column f / 4
// of the tile).
fn x_val(t0: u32, k0: u32, j: u32) -> f32 {
    let t = t0 + j / TK;
    let k = k0 + j % TK;
    if (t < p.T && k < K) {
        return x_at(t, k);
    }
    return 0.0;
}

fn x_store(j: u32, v: f32) {
    let row = j / TK;
    xs[j % TK][row / 4u][row % 4u] = v;
}

fn w_val(wx: u32, k0: u32, f: u32) -> vec4<f32> {
    let wr = f / 4u;
    let kw = k0 + 4u * (f % 4u);
    var wrow = wx * TILE + wr;    // the row of Wt staged as column wr of the tile
    var wlive = wrow < ROWS;
    if (SWIGLU_OUT) {
        // Columns 4 j, 4 j + 1: the gate rows of pairs 2 j, 2 j + 1 of this tile's 32;
        // columns 4 j + 2, 4 j + 3: their up rows, ROWS / 2 further.
        let pair = wx * 32u + 2u * (wr / 4u) + wr % 2u;
        wrow = pair + (wr % 4u) / 2u * (ROWS / 2u);
        wlive = pair < ROWS / 2u;
    }
    if (kw < K && wlive) {
        return load4(wrow, kw);
    }
    return vec4<f32>(0.0);
}

// Stored transposed (ws[k][column]) for the product below.
fn w_store(f: u32, w: vec4<f32>) {
    let wr = f / 4u;
    let k4 = 4u * (f % 4u);
    ws[k4][wr / 4u][wr % 4u] = w.x;
    ws[k4 + 1u][wr / 4u][wr % 4u] = w.y;
    ws[k4 + 2u][wr / 4u][wr % 4u] = w.z;
    ws[k4 + 3u][wr / 4u][wr % 4u] = w.w;
}

@compute @workgroup_size(16, TT / 4u)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t0 = wid.y * TT;
    let r0 = wid.x * TILE;
    let flat = lid.y * 16u + lid.x;
    let n_inv = 4u * TT;      // invocations: 4 x values each per step, 1 or 2 groups of Wt
    // acc_i[c]: out[t0 + 4 lid.y + i, r0 + 4 lid.x + c]. Four named vectors, not an array:
    // a dynamically indexed array may be kept in (slow) local memory instead of registers.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // The next step's values are loaded into registers while this step computes, so the
    // memory latency overlaps the arithmetic instead of following it (one workgroup per
    // multiprocessor is common at these sizes, with nothing else to hide it).
    let kbeg = wid.z * (K / SPLIT_K);     // this workgroup's range of K
    let kend = kbeg + K / SPLIT_K;
    var x0 = x_val(t0, kbeg, flat);
    var x1 = x_val(t0, kbeg, flat + n_inv);
    var x2 = x_val(t0, kbeg, flat + 2u * n_inv);
    var x3 = x_val(t0, kbeg, flat + 3u * n_inv);
    var w0 = w_val(wid.x, kbeg, flat);
    var w1 = vec4<f32>(0.0);
    if (n_inv < 256u) {
        w1 = w_val(wid.x, kbeg, flat + n_inv);
    }
    for (var k0 = kbeg; k0 < kend; k0 += TK) {
        x_store(flat, x0);
        x_store(flat + n_inv, x1);
        x_store(flat + 2u * n_inv, x2);
        x_store(flat + 3u * n_inv, x3);
        w_store(flat, w0);
        if (n_inv < 256u) {
            w_store(flat + n_inv, w1);
        }
        workgroupBarrier();
        let k1 = k0 + TK;
        if (k1 < kend) {
            x0 = x_val(t0, k1, flat);
            x1 = x_val(t0, k1, flat + n_inv);
            x2 = x_val(t0, k1, flat + 2u * n_inv);
            x3 = x_val(t0, k1, flat + 3u * n_inv);
            w0 = w_val(wid.x, k1, flat);
            if (n_inv < 256u) {
                w1 = w_val(wid.x, k1, flat + n_inv);
            }
        }
        for (var kk = 0u; kk < TK; kk++) {
            let wv = ws[kk][lid.x];
            let xv = xs[kk][lid.y];
            acc0 += xv.x * wv;
            acc1 += xv.y * wv;
            acc2 += xv.z * wv;
            acc3 += xv.w * wv;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let t = t0 + lid.y * 4u + i;
        if (t >= p.T) {
            continue;
        }
        var acc = acc0;
        switch i {
            case 1u: { acc = acc1; }
            case 2u: { acc = acc2; }
            case 3u: { acc = acc3; }
            default: {}
        }
        if (SWIGLU_OUT) {
            // acc: gate, gate, up, up of pairs 2 lid.x, 2 lid.x + 1.
            for (var c = 0u; c < 2u; c++) {
                let pair = wid.x * 32u + 2u * lid.x + c;
                if (pair >= ROWS / 2u) {
                    continue;
                }
                let n = ROW0 + pair;
                var gate = acc[c];
                var up = acc[c + 2u];
                if (BIAS) {
                    gate += bias[n];
                    up += bias[OUT_N + n];
                }
                out[t * OUT_N + n] = silu(gate) * up;
            }
            continue;
        }
        for (var c = 0u; c < 4u; c++) {
            let r = r0 + 4u * lid.x + c;
            if (r >= ROWS) {
                continue;
            }
            let n = ROW0 + r;
            if (SPLIT_K > 1u) {
                out[(wid.z * p.T + t) * OUT_N + n] = acc[c];   // a part: reduce.wgsl adds them
                continue;
            }
            var y = acc[c];
            if (BIAS) {
                y += bias[n];
            }
            if (GELU) {
                y = gelu(y);
            }
            let o = t * OUT_N + n;
            if (RESIDUAL) {
                out[o] += y;
            } else {
                out[o] = y;
            }
            if (KV) {
                let C = OUT_N / 3u;
                let row = (p.pos0 + t) * C;
                if (n >= 2u * C) {
                    v_cache[row + n - 2u * C] = y;
                } else if (n >= C) {
                    k_cache[row + n - C] = y;
                }
            }
        }
    }
}
