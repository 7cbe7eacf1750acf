// Quantize float weights to webgpt's q8 / q4 rows on the GPU as they stream in
// (webgpt.load(..., quantize="q8" | "q4")), bit for bit what tools/quantize.py's quantize()
// writes (`build.py quantize`):
//
//   per block of BLOCK values of a row (a row: one output's K inputs)
//   scale = fl16(max |w| / QMAX)                 QMAX = 127 (BITS 8) or 7 (BITS 4); the f16
//                                                nearest the exact quotient, ties to even
//   q     = clamp(rint(w / scale), -QMAX, QMAX)  0 where scale is 0; rint: ties to even
//
// WGSL lets a division be off by 2.5 ulp, so each quotient is only a first guess, corrected by
// exact comparisons: the midpoint of two neighbouring f16 values has 12 significant bits and
// its product with QMAX (7 bits) is exact in f32, as is (k + 1/2) scale for |k| <= 128 (9 bits
// times an f16's 11). The results are then the correctly rounded ones numpy computes in f64.
//
// src: the file's bytes of the matrix, SRC 0 f32, 1 f16, 2 bf16 (two per word, low first):
//   COLS false: rows p.r0 .. p.r0 + p.rn of the [N, K] matrix, row-major (a window of rows);
//   COLS true:  the whole [K, N] matrix (a Conv1D weight: output row n is column n).
// out: one part of the quantized matrix, rows ROW0 .. ROW0 + ROWS, as model/weights.py's Matrix
//   holds it: the values (int8, 4 per word; or 4-bit two's complement, 8 per word, low nibble
//   first) row after row, then from word SOFF the f16 scales (ROWS, K / BLOCK), 2 per word.
// Invocation j handles the two blocks whose scales share one word of out: flattened (row,
// block) indices 2 (P0 + j) and 2 (P0 + j) + 1 of the part, P0 = (p.r0 - ROW0) K / BLOCK / 2
// (the caller makes it whole), for the rows of the window (p.rn of them; all ROWS with COLS).
//
// Bindings: 0 src words, 1 out words (the part's buffer), 2 p (uniform: r0, rn).
// Dispatch: (X, Y) workgroups of WG, X <= 65535, X Y WG >= ceil(rows K / BLOCK / 2);
//   invocation index (wid.y X + wid.x) WG + lid.x.

struct Params {
    r0: u32,    // first row of the matrix in src (COLS false)
    rn: u32,    // rows of the window to quantize
    _a: u32,
    _b: u32,
}

override K: u32;            // values per row
override N: u32;            // rows of the whole matrix (outputs)
override ROWS: u32;         // rows of this part
override ROW0: u32 = 0u;    // first row of this part
override SOFF: u32 = 0u;    // word offset of the scales in the part
override BLOCK: u32 = 32u;  // values per scale (a multiple of 8)
override BITS: u32 = 8u;    // 8 or 4
override SRC: u32 = 0u;     // 0 f32, 1 f16, 2 bf16
override COLS: bool = false;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

fn qmax() -> f32 {
    return select(7.0, 127.0, BITS == 8u);
}

// w[r, k] of the matrix (r: a row of the whole matrix).
fn w_at(r: u32, k: u32) -> f32 {
    var i = (r - p.r0) * K + k;
    if (COLS) {
        i = k * N + r;
    }
    switch SRC {
        case 0u: { return bitcast<f32>(src[i]); }
        case 1u: { return unpack2x16float(src[i / 2u])[i % 2u]; }
        default: {
            let w = src[i / 2u];
            return bitcast<f32>(select(w & 0xffff0000u, w << 16u, i % 2u == 0u));
        }
    }
}

fn half(h: u32) -> f32 {
    return unpack2x16float(h).x;
}

// The bits of the f16 nearest a / QMAX (a >= 0, finite), ties to even.
fn scale_bits(a: f32) -> u32 {
    let q = qmax();
    var h = pack2x16float(vec2<f32>(min(a / q, 65504.0), 0.0)) & 0xffffu;
    for (var n = 0u; n < 4u; n++) {
        let v = half(h);
        if (h > 0u) {
            let below = (half(h - 1u) + v) * 0.5 * q;
            if (a < below || (a == below && (h & 1u) == 1u)) {
                h -= 1u;
                continue;
            }
        }
        if (h < 0x7bffu) {
            let above = (half(h + 1u) + v) * 0.5 * q;
            if (a > above || (a == above && (h & 1u) == 1u)) {
                h += 1u;
                continue;
            }
        }
        break;
    }
    return h;
}

// rint(x / s) (ties to even), clamped to [-QMAX, QMAX]; s > 0.
fn quant(x: f32, s: f32) -> i32 {
    var k = round(x / s);
    for (var n = 0u; n < 4u; n++) {
        let odd = (i32(k) & 1) != 0;
        let up = (k + 0.5) * s;
        if (x > up || (x == up && odd)) {
            k += 1.0;
            continue;
        }
        let down = (k - 0.5) * s;
        if (x < down || (x == down && odd)) {
            k -= 1.0;
            continue;
        }
        break;
    }
    return i32(clamp(k, -qmax(), qmax()));
}

// Quantize block b of part row r: its values into out, its scale's f16 bits returned.
fn block(r: u32, b: u32) -> u32 {
    let row = ROW0 + r;
    let k0 = b * BLOCK;
    var a = 0.0;
    for (var k = k0; k < k0 + BLOCK; k++) {
        a = max(a, abs(w_at(row, k)));
    }
    let h = scale_bits(a);
    let s = half(h);
    let per_word = select(8u, 4u, BITS == 8u);
    let bits = 32u / per_word;
    for (var k = k0; k < k0 + BLOCK; k += per_word) {
        var word = 0u;
        for (var j = 0u; j < per_word; j++) {
            var q = 0;
            if (s > 0.0) {
                q = quant(w_at(row, k + j), s);
            }
            word |= (u32(q) & ((1u << bits) - 1u)) << (bits * j);
        }
        out[(r * K + k) / per_word] = word;
    }
    return h;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = (wid.y * nwg.x + wid.x) * WG + lid.x;
    let nb = K / BLOCK;
    var first = 0u;         // flattened (row, block) index of the window's first block
    var count = ROWS * nb;
    if (!COLS) {
        first = (p.r0 - ROW0) * nb;
        count = p.rn * nb;
    }
    let i = first + 2u * j;
    if (i >= first + count) {
        return;
    }
    var word = block(i / nb, i % nb);
    if (i + 1u < first + count) {
        word |= block((i + 1u) / nb, (i + 1u) % nb) << 16u;
    }
    out[SOFF + i / 2u] = word;
}
