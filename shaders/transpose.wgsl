// Transpose a Conv1D weight from the checkpoint's [in, out] = (K, N) to one row per output,
// (N, K), on the GPU at load (the matrix-vector kernel reads rows; see gemv.wgsl). The CPU
// never touches the values.
//
//   out[n - N0, k] = src[k - K0, n]     for k in [K0, K0 + KR), n in [N0, N0 + NR)
//
// src holds rows [K0, K0 + KR) of the (K, N) matrix (a chunk streamed from the file), as raw
// words: SRC 0 f32, 1 IEEE halves or 2 bfloat16 packed two per word. out holds rows
// [N0, N0 + NR) of the (N, K) result (one part of a matrix split across bindings): f32 words,
// or (DST_F16, SRC = 1) halves packed two per word with the bits kept exactly; then K0 and KR
// are even, so each output word takes two whole source rows.
//
// Bindings: 0 src words, 1 out words.
// Dispatch: ceil(NR * KR / (DST_F16 ? 2 : 1) / WG) workgroups, laid out as (X, Y) with
// X <= 65535; output word index in the chunk = (wg.y * X + wg.x) * WG + local index.

override K: u32;
override N: u32;
override K0: u32;
override KR: u32;
override N0: u32;
override NR: u32;
override SRC: u32 = 0u;
override DST_F16: bool = false;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

// The 16 bits of element e of a packed 16-bit array.
fn half_bits(e: u32) -> u32 {
    return (src[e / 2u] >> (16u * (e % 2u))) & 0xffffu;
}

// Element (kk, n) of the chunk as f32 bits.
fn value_bits(kk: u32, n: u32) -> u32 {
    let e = kk * N + n;
    switch SRC {
        case 0u: { return src[e]; }
        case 1u: { return bitcast<u32>(unpack2x16float(half_bits(e)).x); }
        default: { return half_bits(e) << 16u; }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = (wid.y * nwg.x + wid.x) * WG + lid.x;
    if (DST_F16) {
        // Word w of the chunk: row nr = w / (KR / 2), values kk = 2 (w % (KR / 2)) + 0, 1.
        let per_row = KR / 2u;
        let nr = w / per_row;
        if (nr >= NR) {
            return;
        }
        let kk = 2u * (w % per_row);
        let n = N0 + nr;
        out[nr * (K / 2u) + (K0 + kk) / 2u] = half_bits(kk * N + n) | (half_bits((kk + 1u) * N + n) << 16u);
        return;
    }
    let nr = w / KR;
    if (nr >= NR) {
        return;
    }
    let kk = w % KR;
    out[nr * K + K0 + kk] = value_bits(kk, N0 + nr);
}
