// Matrix-vector products with the weight stored one row per output: every linear layer of a
// decoded token on a GPU, and the language-model head (tied to the token embedding) everywhere.
//
//   y[t, n] = sum_k x[t, k] * Wt[n, k] + bias[ROW0 + n]     x: (T, K), Wt: (ROWS, K) part of
//                                                            an (OUT_N, K) matrix, y: (T, OUT_N)
//   LN:       x[t, :] is first layer-normalised: (x - mean) / sqrt(var + EPS) * ln_w + ln_b
//   RMS:      with LN, the norm is an RMSNorm (Llama, Qwen): x / sqrt(mean(x^2) + EPS) * ln_w
//             (ln_b is not read); times (ln_w + LN_OFFSET) with LN_OFFSET (Gemma's 1 + w)
//   SWIGLU_IN: x has 2K columns per row, [gate; up] (the output of a gate_up product), and the
//             product reads x'[t, k] = silu(x[t, k]) * x[t, K + k] (Llama's MLP before its
//             down projection), silu(g) = g / (1 + exp(-g)); not with LN. With GEGLU the gate's
//             activation is gelu (tanh form) instead: x' = gelu(gate) * up (Gemma's MLP)
//   SWIGLU_OUT: Llama's gate_up product, emitting silu(gate) * up: this part's ROWS rows are
//             ROWS / 2 gate rows, then the matching ROWS / 2 up rows ([gate_proj[a:b];
//             up_proj[a:b]]; a single part is [gate_proj; up_proj] as a whole), and
//             out[t, ROW0 + n] = silu(x . gate_n + bias[ROW0 + n]) * (x . up_n + bias[OUT_N +
//             ROW0 + n]) for n < ROWS / 2, OUT_N = intermediate size, bias (2 OUT_N) the
//             [gate; up] bias. The down projection then reads out as it is. One silu per
//             output, against one per weight with SWIGLU_IN (measured: lavapipe's down projection
//             2-3x slower with SWIGLU_IN; an H200's MLP 8 us a layer slower at Llama-3.2-1B's
//             sizes). With LN, not with GELU, RESIDUAL, KV, LM.
//   ROPE:     Llama's q|k|v product with its rotary embedding and KV store (rope.wgsl's work
//             where q and k have no norm, in this dispatch): the part's ROWS rows are whole
//             heads of HD rows (q heads, then k, then v: ROPE_Q = q rows, ROPE_KV = k rows = v
//             rows in all), and slot r of the part computes the pair of rows a = HD (r / (HD /
//             2)) + r % (HD / 2), b = a + HD / 2 (values i and i + HD / 2 of a head). q and k
//             pairs are rotated by position pos0 + t (with ROPE_ROT; transformers'
//             rotate_half: a' = a cos - b sin, b' = b cos + a sin, cos | sin of row pos of the
//             rope table, bound as ln_b: an RMS norm has no bias), q written to out, k to
//             k_cache and v to v_cache at row pos0 + t (and both to out, which nothing reads).
//             Not with LN without RMS, SWIGLU_OUT, GELU, RESIDUAL, KV, LM.
//   PAIRS:    row slot r computes rows r and r + ceil(ROWS / 2) in one loop, so each piece of
//             x it reads serves two rows (as SWIGLU_OUT's and ROPE's pairs do); dispatch
//             ceil(ceil(ROWS / 2) / RPW) workgroups. Not with SWIGLU_OUT or ROPE.
//   BIAS:     false: no bias (bias is not read; Llama's products)
//   GELU:     y = gelu(y)   (GPT-2's tanh form)
//   RESIDUAL: out[t, ROW0 + n] += y; else out[t, ROW0 + n] = y
//   KV:       for the attention's c_attn (OUT_N = 3C): keys (outputs [C, 2C)) and values
//             ([2C, 3C)) are also stored in the caches at row pos0 + t
//   LM:       the LM head: no bias, x rows lm_row0 + t for t < lm_rows, out = logits
//   SOFTCAP > 0: y = tanh(y / SOFTCAP) * SOFTCAP (Gemma 2's final logit soft-capping)
//   ATT_SPLITS > 0: x is attention.wgsl's partial blocks of ATT_HEADS heads whose keys were cut
//             into chunks (flash-decoding; at most ATT_SPLITS, of max(ceil(n / ATT_SPLITS),
//             MIN_CHUNK) keys for n = pos0 + t + 1, the rule attention.wgsl follows), combined
//             here into the row of x before the product: x[t, h hs + i] = sum_s exp(m_s - M)
//             acc_s[i] / sum_s exp(m_s - M) l_s, M = max_s m_s (staged in workgroup memory as
//             LN's is; not with LN or SWIGLU_IN). ATT_WINDOW > 0: the attention's sliding
//             window (attention.wgsl's WINDOW): n = min(pos0 + t + 1, ATT_WINDOW)
//
// Wt is a Conv1D weight [in, out] transposed to [out, in] at load (on the GPU), or the token
// table [V, C] as stored: row n is contiguous, so the TPR invocations that share a row read
// neighbouring 16-byte pieces of it (coalesced), and there are as many rows as outputs to
// spread over the GPU (a [K, N] layout has only N / 4 such units for the whole matrix, which
// starves a large GPU when N = C). A matrix larger than one storage binding is split by rows
// into parts, each its own dispatch with its own ROW0.
//
// Formats (FMT), each row read in groups (a lane's share of one loop step), accumulation
// always f32:
//   0 f32:  4 values per group (a 16-byte word).
//   1 f16:  8 IEEE halves packed two per u32 (low half first), a 16-byte word per group,
//           widened by unpack2x16float: no `shader-f16` feature needed. K % 8 == 0.
//   2 q8:   signed bytes, k = 4j + i in byte i of u32 j of the row; 8 values (two u32) per
//           group. K % 16 == 0.
//   3 q4:   signed 4-bit values, k = 8j + i in bits 4i..4i+3 of u32 j; 8 values (one u32) per
//           group. K % 32 == 0.
//   q8 and q4 values are scaled per block of BLOCK (a multiple of 8) along k: w = q * s, with
//   the f16 scales s (ROWS, K / BLOCK) packed two per word after the values, from word SOFF.
//   4 bf16: 8 bfloat16 values packed two per u32 (low half first), widened by a shift.
//   16 + t: ggml block type t as a GGUF file stores it (18 Q4_0, 19 Q4_1, 22 Q5_0, 23 Q5_1,
//           24 Q8_0, 26 Q2_K, 27 Q3_K, 28 Q4_K, 29 Q5_K, 30 Q6_K): each row K / 32 or K / 256
//           blocks of bytes, decoded in the kernel (the ggml block section below); a group is
//           8 values of a row, read in value order (Q2_K, Q3_K), or a piece of a block read in
//           the block's own byte order (16 values of Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, 8 of
//           Q8_0, 32 of Q6_K: the section after it).
//   With TPR = 1 the quantized groups are wide: 16 values (a 16-byte word) of q8, 32 of q4
//   and of Q2_K and Q3_K (group_values); the types read in byte order keep their groups.
//
// TPR invocations per row (a power of two) meet in a barrier tree; RPW rows per workgroup; each
// invocation reads U groups per loop step (U loads in flight, not one: a GPU hides its memory
// latency only with many reads outstanding).
// TPR = 1 gives one invocation per row and no barrier (CPU adapters, without LN).
// With LN the normalised row of x is staged in workgroup memory (K <= 4096).
//
// Bindings: 0 x (T, K) f32 ((T, 2K) with SWIGLU_IN), 1 Wt words (values, then scales),
//           2 bias (OUT_N) f32 ((2 OUT_N) with SWIGLU_OUT), 3 out (T, OUT_N) f32,
//           4 ln_w (K), 5 ln_b (K), 6 k_cache (n_positions, OUT_N / 3), 7 v_cache (same),
//           8 params (uniform). Bindings a variant does not use (bias without BIAS or with LM,
//           ln_* without LN, ln_b with RMS, caches without KV) take any small buffer.
// Dispatch: (ceil(ROWS / RPW), T), or (ceil(ROWS / RPW), lm_rows) with LM,
//           or (ceil(ROWS / 2 / RPW), T) with SWIGLU_OUT or ROPE (ceil(ROWS / 2) with PAIRS).

struct Params {
    T: u32,          // tokens in this forward pass
    pos0: u32,       // position of the first of them
    lm_row0: u32,    // first row of x the LM head reads
    lm_rows: u32,    // rows the LM head computes
}

override K: u32;
override ROWS: u32;             // rows of Wt in this part
override ROW0: u32 = 0u;        // first output of this part
override OUT_N: u32;            // outputs in all (columns of out)
override FMT: u32 = 0u;
override BLOCK: u32 = 32u;
override SOFF: u32 = 0u;        // word offset of the scales (q8, q4)
override LN: bool = false;
override RMS: bool = false;
override EPS: f32 = 1e-5;
override SWIGLU_IN: bool = false;
override GEGLU: bool = false;   // with SWIGLU_IN: gelu(gate) * up
override LN_OFFSET: f32 = 0.0;  // with LN and RMS: the norm weights plus this (Gemma: 1)
override SOFTCAP: f32 = 0.0;    // soft-capping of the outputs; 0: none
override SWIGLU_OUT: bool = false;
override PAIRS: bool = false;   // each row slot computes rows r and r + ceil(ROWS / 2) (see below)
override ROPE: bool = false;
override ROPE_ROT: bool = true; // with ROPE: rotate q and k (false: SmolLM3's layers without)
override HD: u32 = 64u;         // with ROPE: the head size
override ROPE_Q: u32 = 0u;      // with ROPE: q rows (query heads * HD)
override ROPE_KV: u32 = 0u;     // with ROPE: k rows (key/value heads * HD)
override BIAS: bool = true;
override GELU: bool = false;
override RESIDUAL: bool = false;
override KV: bool = false;
override LM: bool = false;
override TPR: u32 = 32u;
override RPW: u32 = 8u;
override U: u32 = 1u;           // groups each invocation reads per loop step: 1, 2 or 4
override LN_MAX: u32 = 1u;      // K with LN or ATT_SPLITS (workgroup memory for x's row), else 1
override ATT_SPLITS: u32 = 0u;  // x is split attention's partial blocks (see above)
override ATT_HEADS: u32 = 1u;   // heads in those blocks
override MIN_CHUNK: u32 = 128u; // attention.wgsl's least keys per chunk
override ATT_WINDOW: u32 = 0u;  // attention.wgsl's WINDOW (0: none)

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> Wt: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> ln_w: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> ln_b: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(8) var<uniform> p: Params;

var<workgroup> partial: array<f32, TPR * RPW>;
var<workgroup> xn: array<vec4<f32>, LN_MAX / 4u + 1u>;
var<workgroup> ml: array<vec2<f32>, ATT_HEADS * ATT_SPLITS + 1u>;   // (m_s, l_s) per head, chunk

// Values per group of a row: one 16-byte word for f32, f16 and bf16; 8 values for the
// quantized formats (two words of q8, one of q4, 8 values of a ggml block; 16 or 32 for the
// ggml types read in their own byte order, see q40_dot below), so that the lanes
// of a row read neighbouring pieces of x as they do for f16 (a lane that took 32 values read
// 128 bytes of x a group, and its neighbour the next 128: a q4 product ran at a sixth of the
// bandwidth of its bytes on an H100, bound by those scattered reads of x).
// With TPR = 1 (one invocation a row: CPU adapters) no neighbour shares the reads of x, and
// the quantized formats keep their wide groups (one 16-byte word of q8 or q4, 32 values of
// Q2_K and Q3_K: wide_dot), fewer scale reads a value (lavapipe, SmolLM2-135M q4: 243 ms/token
// with them, 315 with 8-value groups). The ggml types read in their blocks' byte order keep
// those groups there too (lavapipe, SmolLM2-360M at context 16: Q4_0 1134 -> 605 ms/token,
// Q4_K_M 2047 -> 951, against wide_dot's value-order decoding).
fn group_values() -> u32 {
    if (TPR == 1u) {
        switch FMT {
            case 0u: { return 4u; }
            case 1u, 4u: { return 8u; }
            case 2u: { return 16u; }
            case 18u, 19u, 22u, 23u, 24u, 28u, 29u, 30u: { return byte_order_values(); }
            default: { return 32u; }
        }
    }
    switch FMT {
        case 0u: { return 4u; }
        case 18u, 19u, 22u, 23u, 24u, 28u, 29u, 30u: { return byte_order_values(); }
        default: { return 8u; }
    }
}

// Values per group of the ggml types read in their blocks' own byte order (q40_dot below).
fn byte_order_values() -> u32 {
    switch FMT {
        case 24u: { return 8u; }
        case 30u: { return 32u; }
        default: { return 16u; }
    }
}

// x[t, 4 i .. 4 i + 3], layer-normalised when LN (staged in xn), silu(gate) * up with SWIGLU_IN.
fn xv(x0: u32, i: u32) -> vec4<f32> {
    if (LN || ATT_SPLITS > 0u) {
        return xn[i];
    }
    if (SWIGLU_IN && GEGLU) {
        return gelu4(x[x0 + i]) * x[x0 + K / 4u + i];
    }
    if (SWIGLU_IN) {
        return silu4(x[x0 + i]) * x[x0 + K / 4u + i];
    }
    return x[x0 + i];
}

// g / (1 + exp(-g)) without overflow: exp of -|g| only, so the result is finite for every
// finite g (a naive exp(-g) is inf below g = -88; inf's behaviour is not defined in WGSL).
fn silu4(g: vec4<f32>) -> vec4<f32> {
    let e = exp(-abs(g));
    return select(g * e, g, g >= vec4<f32>(0.0)) / (1.0 + e);
}

fn silu(g: f32) -> f32 {
    let e = exp(-abs(g));
    return select(g * e, g, g >= 0.0) / (1.0 + e);
}

// The f16 scale of row r, block b.
fn scale(r: u32, b: u32) -> f32 {
    let i = r * (K / BLOCK) + b;
    let word = Wt[SOFF / 4u + i / 8u][(i / 2u) % 4u];
    return unpack2x16float(word)[i % 2u];
}

// The 4 signed bytes of w, low byte first: shifted to the top, then arithmetic shifts back.
fn bytes4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(i32(w)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// Signed 4-bit values 0..3 (lo) or 4..7 (hi) of w, lowest first.
fn nibbles_lo(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(i32(w)) << vec4<u32>(28u, 24u, 20u, 16u)) >> vec4<u32>(28u));
}

fn nibbles_hi(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(i32(w)) << vec4<u32>(12u, 8u, 4u, 0u)) >> vec4<u32>(28u));
}

// Word i (4 bytes) of this part, for the ggml block decoder.
fn word(i: u32) -> u32 {
    return Wt[i / 4u][i % 4u];
}

fn ggml_row_values() -> u32 {
    return K;
}

// Values 8 g .. 8 g + 7 of row r (a ggml block type) dotted with x: a (q . x) + b sum(x),
// the 8 values sharing (a, b) (every type's (a, b) covers 16 values from a multiple of 16).
fn ggml_dot(r: u32, g: u32, x0: u32) -> f32 {
    let k = 8u * g;
    let ab = ggml_affine(r, k);
    let x_lo = xv(x0, 2u * g);
    let x_hi = xv(x0, 2u * g + 1u);
    let qx = dot(ggml_q4(r, k), x_lo) + dot(ggml_q4(r, k + 4u), x_hi);
    return ab.x * qx + ab.y * dot(x_lo + x_hi, vec4<f32>(1.0));
}

// A wide group g of row r (TPR = 1: 16 values of q8, 32 of q4, Q2_K or Q3_K) dotted with x.
fn wide_dot(r: u32, g: u32, x0: u32) -> f32 {
    if (FMT >= 16u) {   // two halves of 16 values, each sharing one (a, b)
        var acc = 0.0;
        for (var h = 0u; h < 2u; h++) {
            let k = 32u * g + 16u * h;
            let ab = ggml_affine(r, k);
            var qx = 0.0;
            var sx = 0.0;
            for (var j = 0u; j < 4u; j++) {
                let xs = xv(x0, k / 4u + j);
                qx += dot(ggml_q4(r, k + 4u * j), xs);
                sx += dot(xs, vec4<f32>(1.0));
            }
            acc += ab.x * qx + ab.y * sx;
        }
        return acc;
    }
    let w = Wt[r * (K / group_values()) + g];
    if (FMT == 2u) {
        let i = 4u * g;
        let k = 16u * g;
        if (BLOCK % 16u == 0u) {   // the group lies in one block: one scale
            let d = dot(bytes4(w.x), xv(x0, i)) + dot(bytes4(w.y), xv(x0, i + 1u))
                  + dot(bytes4(w.z), xv(x0, i + 2u)) + dot(bytes4(w.w), xv(x0, i + 3u));
            return d * scale(r, k / BLOCK);
        }
        return (dot(bytes4(w.x), xv(x0, i)) + dot(bytes4(w.y), xv(x0, i + 1u))) * scale(r, k / BLOCK)
             + (dot(bytes4(w.z), xv(x0, i + 2u)) + dot(bytes4(w.w), xv(x0, i + 3u)))
               * scale(r, (k + 8u) / BLOCK);
    }
    let i = 8u * g;
    let k = 32u * g;
    let dx = dot(nibbles_lo(w.x), xv(x0, i)) + dot(nibbles_hi(w.x), xv(x0, i + 1u));
    let dy = dot(nibbles_lo(w.y), xv(x0, i + 2u)) + dot(nibbles_hi(w.y), xv(x0, i + 3u));
    let dz = dot(nibbles_lo(w.z), xv(x0, i + 4u)) + dot(nibbles_hi(w.z), xv(x0, i + 5u));
    let dw = dot(nibbles_lo(w.w), xv(x0, i + 6u)) + dot(nibbles_hi(w.w), xv(x0, i + 7u));
    if (BLOCK % 32u == 0u) {
        return (dx + dy + dz + dw) * scale(r, k / BLOCK);
    }
    return dx * scale(r, k / BLOCK) + dy * scale(r, (k + 8u) / BLOCK)
         + dz * scale(r, (k + 16u) / BLOCK) + dw * scale(r, (k + 24u) / BLOCK);
}

// ---- Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K groups where TPR > 1 (GPUs), in their blocks' own
// byte order, so that a lane reads whole words (ggml_dot's 8 values in value order cost a K
// block about ten loads and sixty integer operations: those products ran at a fraction of
// their bandwidth).

// The 4 bytes from byte offset o (o even): every other block of the types whose blocks are 2
// mod 4 bytes (Q4_0 18, Q5_0 22, Q8_0 34, Q6_K 210) starts 2 bytes past a word. (ggml_u32
// reads any offset, with a branch on the alignment; this one is branch-free.)
fn ggml_even_u32(o: u32) -> u32 {
    let s = 8u * (o % 4u);                          // 0 or 16
    // (w << 16) << (16 - s): zero for s = 0, where one shift by 32 would be a shift by 0
    return (word(o / 4u) >> s) | ((word(o / 4u + 1u) << 16u) << (16u - s));
}

// The 8 bytes from byte offset o (o even) as two words.
fn ggml_run8(o: u32) -> vec2<u32> {
    return vec2<u32>(ggml_even_u32(o), ggml_even_u32(o + 4u));
}

// Q4_0, Q4_1, Q5_0, Q5_1: a group is 16 values, bytes l = 8 (g % 2) .. l + 7 of block g / 2's
// 16 nibble bytes: low nibbles values l .. l + 7, high nibbles 16 + l .. 16 + l + 7 (Q5: their
// fifth bits bits l .. and 16 + l .. of the block's word qh).
fn q40_dot(r: u32, g: u32, x0: u32) -> f32 {
    let b = g / 2u;
    let l = 8u * (g % 2u);
    let o = (r * (K / 32u) + b) * ggml_block_bytes();
    let head = select(2u, 4u, FMT == 19u || FMT == 23u);   // bytes of d (and m)
    let five = FMT == 22u || FMT == 23u;
    let q = ggml_run8(o + head + select(0u, 4u, five) + l);
    var lo0 = byte_field(q.x, 0u, 15u);
    var lo1 = byte_field(q.y, 0u, 15u);
    var hi0 = byte_field(q.x, 4u, 15u);
    var hi1 = byte_field(q.y, 4u, 15u);
    if (five) {
        let qh = vec4<u32>(ggml_even_u32(o + head));
        let at = vec4<u32>(0u, 1u, 2u, 3u) + l;
        lo0 |= ((qh >> at) & vec4<u32>(1u)) << vec4<u32>(4u);
        lo1 |= ((qh >> (at + 4u)) & vec4<u32>(1u)) << vec4<u32>(4u);
        hi0 |= ((qh >> (at + 16u)) & vec4<u32>(1u)) << vec4<u32>(4u);
        hi1 |= ((qh >> (at + 20u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    }
    let i = 8u * b + l / 4u;                        // x's vec4 of value l of block b
    let xa = xv(x0, i);
    let xb = xv(x0, i + 1u);
    let xc = xv(x0, i + 4u);
    let xd = xv(x0, i + 5u);
    let qx = dot(vec4<f32>(lo0), xa) + dot(vec4<f32>(lo1), xb)
           + dot(vec4<f32>(hi0), xc) + dot(vec4<f32>(hi1), xd);
    let d = ggml_f16(o);
    // Q4_0: d (q - 8), Q5_0: d (q - 16); Q4_1, Q5_1: d q + m
    let m = select(select(-8.0, -16.0, five) * d, ggml_f16(o + 2u), FMT == 19u || FMT == 23u);
    return d * qx + m * dot(xa + xb + xc + xd, vec4<f32>(1.0));
}

// Q8_0: a group is 8 values, signed bytes 8 h .. 8 h + 7 of block g / 4 (h = g % 4).
fn q80_dot(r: u32, g: u32, x0: u32) -> f32 {
    let o = (r * (K / 32u) + g / 4u) * 34u;
    let q = ggml_run8(o + 2u + 8u * (g % 4u));
    return ggml_f16(o) * (dot(bytes4(q.x), xv(x0, 2u * g)) + dot(bytes4(q.y), xv(x0, 2u * g + 1u)));
}

// Q4_K, Q5_K: a group is 16 values. Group g of a row: block b = g / 16, j = g % 16, chunk
// c = j / 4 (64 values), bytes l = 8 (j % 4) .. l + 7 of the chunk's 32 nibble bytes, whose
// low nibbles are values 64 c + l .. + 7 (sub-block 2 c) and high nibbles values 64 c + 32 + l
// .. + 7 (sub-block 2 c + 1). Four neighbouring lanes read a chunk's 32 bytes. A block (144 or
// 176 bytes) starts at a 16-byte boundary, so its header (d, dmin and the 12 scale bytes) is
// one vec4 and the 8 nibble bytes are half of one.

// Index in Wt (of 16-byte words) of the first word of block b of row r (Q4_K, Q5_K).
fn kq_block(r: u32, b: u32) -> u32 {
    return (r * (K / 256u) + b) * (ggml_block_bytes() / 16u);
}

// (a, b) of sub-block s (0..7, 32 values) of a Q4_K / Q5_K block whose header is h:
// a = d sc, b = -dmin m (6-bit sc and m; sub-blocks 4..7 keep their top bits in 0..3's).
fn kq_affine(h: vec4<u32>, s: u32) -> vec2<f32> {
    let dm = unpack2x16float(h.x);
    let sh = 8u * (s % 4u);
    var sc = (h.y >> sh) & 63u;
    var m = (h.z >> sh) & 63u;
    if (s >= 4u) {
        sc = ((h.w >> sh) & 15u) | ((((h.y >> sh) >> 6u) & 3u) << 4u);
        m = (((h.w >> sh) >> 4u) & 15u) | ((((h.z >> sh) >> 6u) & 3u) << 4u);
    }
    return vec2<f32>(dm.x * f32(sc), -(dm.y * f32(m)));
}

// The 4 values of bits sh .. sh + n - 1 of each byte of w (n: mask 15, 3 or 1), lowest byte first.
fn byte_field(w: u32, sh: u32, mask: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + sh)) & vec4<u32>(mask);
}

fn kq_dot(r: u32, g: u32, x0: u32) -> f32 {
    let b = g / 16u;
    let j = g % 16u;
    let c = j / 4u;
    let l = 8u * (j % 4u);
    let w0 = kq_block(r, b);
    let h = Wt[w0];
    let w = 8u * c + l / 4u;                        // word of the bytes after the header (qs, Q5_K qh)
    let v = Wt[w0 + select(1u, 3u, FMT == 29u) + w / 4u];
    let q = select(v.xy, v.zw, w % 4u == 2u);
    var lo0 = byte_field(q.x, 0u, 15u);
    var lo1 = byte_field(q.y, 0u, 15u);
    var hi0 = byte_field(q.x, 4u, 15u);
    var hi1 = byte_field(q.y, 4u, 15u);
    if (FMT == 29u) {                               // Q5_K: + 16 by bit 2 c | 2 c + 1 of qh[l ..]
        let hv = Wt[w0 + 1u + l / 16u];
        let qh = select(hv.xy, hv.zw, (l / 4u) % 4u == 2u);
        lo0 |= byte_field(qh.x, 2u * c, 1u) << vec4<u32>(4u);
        lo1 |= byte_field(qh.y, 2u * c, 1u) << vec4<u32>(4u);
        hi0 |= byte_field(qh.x, 2u * c + 1u, 1u) << vec4<u32>(4u);
        hi1 |= byte_field(qh.y, 2u * c + 1u, 1u) << vec4<u32>(4u);
    }
    let ab_lo = kq_affine(h, 2u * c);
    let ab_hi = kq_affine(h, 2u * c + 1u);
    let i = 64u * b + 16u * c + l / 4u;             // x's vec4 of value 64 c + l of block b
    let xa = xv(x0, i);
    let xb = xv(x0, i + 1u);
    let xc = xv(x0, i + 8u);
    let xd = xv(x0, i + 9u);
    let one = vec4<f32>(1.0);
    return ab_lo.x * (dot(vec4<f32>(lo0), xa) + dot(vec4<f32>(lo1), xb)) + ab_lo.y * dot(xa + xb, one)
         + ab_hi.x * (dot(vec4<f32>(hi0), xc) + dot(vec4<f32>(hi1), xd)) + ab_hi.y * dot(xc + xd, one);
}

// Q6_K: a group is 32 values. Group g of a row: block b = g / 8, j = g % 8, half hh = j / 4,
// l = 8 (j % 4): values 128 hh + l + 32 m .. + 7 for m = 0..3, whose low 4 bits are the low
// (m = 0, 1) or high (m = 2, 3) nibbles of ql bytes 64 hh + 32 (m % 2) + l .., their high 2
// bits bits 2 m of qh bytes 32 hh + l .., their scale int8 scales[8 hh + 2 m + l / 16].

// Values m of a Q6_K group (see above) dotted with x's two vec4s xa, xb, before the scales.
fn q6_part(ql: vec2<u32>, qh: vec2<u32>, m: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
    let nib = 4u * (m / 2u);
    let q0 = byte_field(ql.x, nib, 15u) | (byte_field(qh.x, 2u * m, 3u) << vec4<u32>(4u));
    let q1 = byte_field(ql.y, nib, 15u) | (byte_field(qh.y, 2u * m, 3u) << vec4<u32>(4u));
    return dot(vec4<f32>(q0) - 32.0, xa) + dot(vec4<f32>(q1) - 32.0, xb);
}

// Signed byte n (0..7) of the 8 bytes sc.
fn q6_scale(sc: vec2<u32>, n: u32) -> f32 {
    let w = select(sc.x, sc.y, n >= 4u);
    return f32(i32(w << (24u - 8u * (n % 4u))) >> 24u);
}

fn q6k_dot(r: u32, g: u32, x0: u32) -> f32 {
    let b = g / 8u;
    let j = g % 8u;
    let hh = j / 4u;
    let l = 8u * (j % 4u);
    let o = (r * (K / 256u) + b) * 210u;
    let qa = ggml_run8(o + 64u * hh + l);
    let qb = ggml_run8(o + 64u * hh + 32u + l);
    let qh = ggml_run8(o + 128u + 32u * hh + l);
    let sc = ggml_run8(o + 192u + 8u * hh);
    let i = 64u * b + 32u * hh + l / 4u;            // x's vec4 of value 128 hh + l of block b
    let n = l / 16u;
    let acc = q6_scale(sc, n) * q6_part(qa, qh, 0u, xv(x0, i), xv(x0, i + 1u))
            + q6_scale(sc, n + 2u) * q6_part(qb, qh, 1u, xv(x0, i + 8u), xv(x0, i + 9u))
            + q6_scale(sc, n + 4u) * q6_part(qa, qh, 2u, xv(x0, i + 16u), xv(x0, i + 17u))
            + q6_scale(sc, n + 6u) * q6_part(qb, qh, 3u, xv(x0, i + 24u), xv(x0, i + 25u));
    return ggml_f16(o + 208u) * acc;
}

// Dot product of group g of row r with the matching values of x.
fn group_dot(r: u32, g: u32, x0: u32) -> f32 {
    if (TPR == 1u && (FMT == 2u || FMT == 3u || FMT == 26u || FMT == 27u)) {
        return wide_dot(r, g, x0);
    }
    if (FMT == 18u || FMT == 19u || FMT == 22u || FMT == 23u) {
        return q40_dot(r, g, x0);
    }
    if (FMT == 24u) {
        return q80_dot(r, g, x0);
    }
    if (FMT == 28u || FMT == 29u) {
        return kq_dot(r, g, x0);
    }
    if (FMT == 30u) {
        return q6k_dot(r, g, x0);
    }
    if (FMT >= 16u) {
        return ggml_dot(r, g, x0);
    }
    let x_lo = xv(x0, 2u * g);
    let x_hi = xv(x0, 2u * g + 1u);
    switch FMT {
        case 0u: {
            return dot(bitcast<vec4<f32>>(Wt[r * (K / 4u) + g]), xv(x0, g));
        }
        case 1u: {
            let w = Wt[r * (K / 8u) + g];
            return dot(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), x_lo)
                 + dot(vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)), x_hi);
        }
        case 2u: {                  // words 2 g, 2 g + 1 of the row: 4 signed bytes each
            let j = r * (K / 4u) + 2u * g;
            let w = Wt[j / 4u];
            let lo = select(w.x, w.z, j % 4u == 2u);
            let hi = select(w.y, w.w, j % 4u == 2u);
            return (dot(bytes4(lo), x_lo) + dot(bytes4(hi), x_hi)) * scale(r, 8u * g / BLOCK);
        }
        case 4u: {
            let w = Wt[r * (K / 8u) + g];
            return dot(vec4<f32>(bf16_pair(w.x), bf16_pair(w.y)), x_lo)
                 + dot(vec4<f32>(bf16_pair(w.z), bf16_pair(w.w)), x_hi);
        }
        default: {                  // word g of the row: 8 signed nibbles
            let j = r * (K / 8u) + g;
            let w = Wt[j / 4u][j % 4u];
            return (dot(nibbles_lo(w), x_lo) + dot(nibbles_hi(w), x_hi)) * scale(r, 8u * g / BLOCK);
        }
    }
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

// Sum of v over the workgroup, for every invocation (LN statistics).
fn workgroup_sum(v: f32, flat: u32) -> f32 {
    let n = TPR * RPW;
    partial[flat] = v;
    workgroupBarrier();
    for (var s = n / 2u; s > 0u; s = s / 2u) {
        if (flat < s) {
            partial[flat] += partial[flat + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

// This lane's share of (row r of Wt) . x[t]: groups lx, lx + TPR, ... of the row.
fn row_dot(r: u32, lx: u32, x0: u32) -> f32 {
    // U independent groups per step keep U loads in flight per invocation.
    var acc = 0.0;
    let groups = K / group_values();
    var g = lx;
    for (; g + (U - 1u) * TPR < groups; g += U * TPR) {
        var d = group_dot(r, g, x0);
        if (U >= 2u) {
            d += group_dot(r, g + TPR, x0);
        }
        if (U >= 4u) {
            d += group_dot(r, g + 2u * TPR, x0) + group_dot(r, g + 3u * TPR, x0);
        }
        acc += d;
    }
    for (; g < groups; g += TPR) {
        acc += group_dot(r, g, x0);
    }
    return acc;
}

// row_dot of rows ra and rb at once (SWIGLU_OUT's gate and up rows, ROPE's pair, PAIRS): one
// loop, so each group's reads of x serve both rows (the compiler keeps one load of each piece
// of x: no store comes between them). Its U groups a step are a loop over u, not written out
// as in row_dot: a compiler that inlines before it folds the overrides (Mesa's NIR) compiles
// each call site of group_dot in full, and the K-quant decoders are long (written out, the two
// functions made a gemv pipeline compile 1.6 times as long on lavapipe). row_dot keeps its
// steps written out: as a loop over u, single rows ran up to 9% slower on the H100 (GPT-2
// 1.5B's GPU pass 2624 -> 2868 us), while this loop costs at most 2% (Llama-3.2-1B F16 pass
// 1307 -> 1329 us, Q4_0 1069 -> 1090, SmolLM2-135M Q4_K_M 1194 -> 1185).
fn row_dot2(ra: u32, rb: u32, lx: u32, x0: u32) -> vec2<f32> {
    var acc = vec2<f32>(0.0);
    let groups = K / group_values();
    var g = lx;
    for (; g + (U - 1u) * TPR < groups; g += U * TPR) {
        var d = vec2<f32>(0.0);
        for (var u = 0u; u < U; u++) {
            d += vec2<f32>(group_dot(ra, g + u * TPR, x0), group_dot(rb, g + u * TPR, x0));
        }
        acc += d;
    }
    for (; g < groups; g += TPR) {
        acc += vec2<f32>(group_dot(ra, g, x0), group_dot(rb, g, x0));
    }
    return acc;
}

// The sum of v over the TPR lanes of row slot ly (a barrier tree), for every lane.
fn row_sum(v: f32, lx: u32, ly: u32) -> f32 {
    let base = ly * TPR;
    partial[base + lx] = v;
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s = s / 2u) {
        if (lx < s) {
            partial[base + lx] += partial[base + lx + s];
        }
        workgroupBarrier();
    }
    return partial[base];
}

// ROPE's pair of outputs na, nb = na + HD / 2 of token t (before their biases): rotated where
// they are q or k, then stored (see ROPE above).
fn rope_store(na: u32, nb: u32, t: u32, acc_a: f32, acc_b: f32) {
    var a = acc_a;
    var b = acc_b;
    if (BIAS) {
        a += bias[na];
        b += bias[nb];
    }
    let pos = p.pos0 + t;
    if (ROPE_ROT && na < ROPE_Q + ROPE_KV) {
        let i = na % HD;
        let j = pos * HD + i;
        let c = ln_b[j / 4u][j % 4u];
        let s = ln_b[(j + HD / 2u) / 4u][(j + HD / 2u) % 4u];
        let a0 = a;
        a = a0 * c - b * s;
        b = b * c + a0 * s;
    }
    out[t * OUT_N + na] = a;
    out[t * OUT_N + nb] = b;
    let row = pos * ROPE_KV;
    if (na >= ROPE_Q + ROPE_KV) {
        v_cache[row + na - ROPE_Q - ROPE_KV] = a;
        v_cache[row + nb - ROPE_Q - ROPE_KV] = b;
    } else if (na >= ROPE_Q) {
        k_cache[row + na - ROPE_Q] = a;
        k_cache[row + nb - ROPE_Q] = b;
    }
}

// Output n of token t from its dot product acc (and, with SWIGLU_OUT, the up row's acc_up):
// bias, activation, soft-capping, then stored (added with RESIDUAL; KV: also to the caches).
fn finish(n: u32, t: u32, acc: f32, acc_up: f32) {
    var y = acc;
    if (!LM && BIAS) {
        y += bias[n];
    }
    if (SWIGLU_OUT) {
        var up = acc_up;
        if (BIAS) {
            up += bias[OUT_N + n];
        }
        y = silu(y) * up;
    }
    if (GELU) {
        y = gelu(y);
    }
    if (SOFTCAP > 0.0) {
        // As transformers: divided, tanh, multiplied (clamped where tanh is +-1 in f32).
        y = tanh(clamp(y / SOFTCAP, -15.0, 15.0)) * SOFTCAP;
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

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// h^3 as h * h * h (pow is undefined for negative bases in WGSL); the tanh argument is clamped
// where tanh is already +-1 in f32, since some backends compute tanh through exp and overflow.
fn gelu(h: f32) -> f32 {
    let u = clamp(SQRT_2_OVER_PI * (h + 0.044715 * h * h * h), -15.0, 15.0);
    return 0.5 * h * (1.0 + tanh(u));
}

fn gelu4(h: vec4<f32>) -> vec4<f32> {
    let u = clamp(SQRT_2_OVER_PI * (h + 0.044715 * h * h * h), vec4<f32>(-15.0), vec4<f32>(15.0));
    return 0.5 * h * (1.0 + tanh(u));
}

@compute @workgroup_size(TPR, RPW)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wid.x * RPW + lid.y;
    let t = wid.y;
    var xrow = t;
    if (LM) {
        xrow = p.lm_row0 + t;
    }
    var x0 = xrow * (K / 4u);
    if (SWIGLU_IN) {
        x0 = xrow * (K / 2u);    // rows of 2K values
    }

    // The row of x is read from memory once, into xn, and normalised there: each invocation
    // keeps to its own elements i, so no barrier is needed between the passes over them.
    if (LN && RMS) {
        // As transformers' LlamaRMSNorm in f32: x * rsqrt(mean(x^2) + eps), then * w.
        let flat = lid.y * TPR + lid.x;
        let n = TPR * RPW;
        var q = 0.0;
        for (var i = flat; i < K / 4u; i += n) {
            let v = x[x0 + i];
            xn[i] = v;
            q += dot(v, v);
        }
        let rstd = inverseSqrt(workgroup_sum(q, flat) / f32(K) + EPS);
        for (var i = flat; i < K / 4u; i += n) {
            xn[i] = xn[i] * rstd * (ln_w[i] + LN_OFFSET);
        }
        workgroupBarrier();
    } else if (LN) {
        // Workgroup size TPR * RPW is a power of two here (the loader keeps it so).
        let flat = lid.y * TPR + lid.x;
        let n = TPR * RPW;
        var s = 0.0;
        for (var i = flat; i < K / 4u; i += n) {
            let v = x[x0 + i];
            xn[i] = v;
            s += dot(v, vec4<f32>(1.0));
        }
        let mean = workgroup_sum(s, flat) / f32(K);
        var q = 0.0;
        for (var i = flat; i < K / 4u; i += n) {
            let d = xn[i] - mean;
            q += dot(d, d);
        }
        let rstd = inverseSqrt(workgroup_sum(q, flat) / f32(K) + EPS);
        for (var i = flat; i < K / 4u; i += n) {
            xn[i] = (xn[i] - mean) * rstd * ln_w[i] + ln_b[i];
        }
        workgroupBarrier();
    }

    if (ATT_SPLITS > 0u) {
        // The attention's partial results, combined. The chunks in use, as attention.wgsl cut
        // (divisions by `splits`, never by ATT_SPLITS itself: a compiler may fold q / 0 in
        // this unused branch into an error where ATT_SPLITS = 0).
        let splits = max(ATT_SPLITS, 1u);
        var keys = p.pos0 + xrow + 1u;
        if (ATT_WINDOW > 0u) {
            keys = min(keys, ATT_WINDOW);
        }
        let chunk = max((keys + splits - 1u) / splits, MIN_CHUNK);
        let used = (keys + chunk - 1u) / chunk;
        let flat = lid.y * TPR + lid.x;
        let d4n = K / 4u / ATT_HEADS;       // vec4s per head
        let first = xrow * ATT_HEADS * ATT_SPLITS;
        // Every (m_s, l_s) into workgroup memory with one load each, so the loop below reads
        // global memory only for the values.
        for (var q = flat; q < ATT_HEADS * ATT_SPLITS; q += TPR * RPW) {
            if (q % splits < used) {
                ml[q] = x[(first + q) * (d4n + 1u) + d4n].xy;
            }
        }
        workgroupBarrier();
        for (var i = flat; i < K / 4u; i += TPR * RPW) {
            let h = (i / d4n) * ATT_SPLITS;
            var big = ml[h].x;
            for (var s = 1u; s < used; s++) {
                big = max(big, ml[h + s].x);
            }
            var num = vec4<f32>(0.0);
            var den = 0.0;
            for (var s = 0u; s < used; s++) {
                let w = exp(ml[h + s].x - big);
                num += w * x[(first + h + s) * (d4n + 1u) + i % d4n];
                den += w * ml[h + s].y;
            }
            xn[i] = num / den;
        }
        workgroupBarrier();
    }

    var out_rows = ROWS;
    var ra = r;                  // the row of acc
    var rb = r + ROWS / 2u;      // the row of acc_up: SWIGLU_OUT's up row, ROPE's pair
    if (SWIGLU_OUT || ROPE) {
        out_rows = ROWS / 2u;    // (gate, up) row pairs: r and r + ROWS / 2
    }
    if (ROPE) {
        ra = HD * (r / (HD / 2u)) + r % (HD / 2u);
        rb = ra + HD / 2u;
    }
    if (PAIRS) {
        out_rows = (ROWS + 1u) / 2u;
        rb = r + out_rows;       // past the last row for the last slot of an odd ROWS
    }
    let live = r < out_rows && (!LM || t < p.lm_rows);
    var acc = 0.0;
    var acc_up = 0.0;
    if (live) {
        if (SWIGLU_OUT || ROPE || PAIRS) {
            let both = row_dot2(ra, min(rb, ROWS - 1u), lid.x, x0);
            acc = both.x;
            acc_up = both.y;
        } else {
            acc = row_dot(ra, lid.x, x0);
        }
    }
    if (TPR > 1u) {
        acc = row_sum(acc, lid.x, lid.y);
        if (SWIGLU_OUT || ROPE || PAIRS) {
            workgroupBarrier();   // every lane has its sum before partial is reused
            acc_up = row_sum(acc_up, lid.x, lid.y);
        }
    }
    if (lid.x != 0u || !live) {
        return;
    }
    if (ROPE) {
        rope_store(ROW0 + ra, ROW0 + rb, t, acc, acc_up);
        return;
    }
    finish(ROW0 + ra, t, acc, acc_up);
    if (PAIRS && rb < ROWS) {
        finish(ROW0 + rb, t, acc_up, 0.0);
    }
}
