// Token + position embedding.
//
//   x[t, c] = wte[ids[t], c] + wpe[pos0 + t, c]        x: (T, C)
//   WPE false: x[t, c] = wte[ids[t], c]   (no position embeddings: Llama, Qwen; wpe is not
//              read and takes any small buffer)
//   SCALE:     x[t, c] = wte[ids[t], c] * SCALE, without WPE (Gemma: sqrt(hidden_size), in f32)
//
// The token table may be split by rows across several buffers (a table larger than one
// storage binding); each part is dispatched on its own and writes only the rows whose token
// falls in [ROW0, ROW0 + ROWS). Every token id is < vocab_size, so exactly one part writes it.
// wte and wpe are bound as raw words. wte in the formats of gemv.wgsl: FMT 0 f32, 1 halves
// packed two per word, 2 q8 and 3 q4 (signed values, an f16 scale per BLOCK values of a row,
// the scales from word SOFF), 4 bf16 pairs, 16 + t a ggml block type t as a GGUF file stores
// it (the row's block decoded: the ggml block section below); wpe f32, or (WPE_F16) halves.
//
// Bindings: 0 ids (T) u32, 1 wte part words, 2 wpe words, 3 x (T, C) f32, 4 params (uniform).
// Dispatch: (ceil(C / WG), T).

struct Params {
    T: u32,          // tokens in this forward pass
    pos0: u32,       // position of the first of them
    lm_row0: u32,
    lm_rows: u32,
}

override C: u32;
override ROW0: u32 = 0u;
override ROWS: u32;
override FMT: u32 = 0u;
override BLOCK: u32 = 32u;
override SOFF: u32 = 0u;
override WPE: bool = true;
override WPE_F16: bool = false;
override SCALE: f32 = 1.0;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> wte: array<u32>;
@group(0) @binding(2) var<storage, read> wpe: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// Word i (4 bytes) of this part, for the ggml block decoder.
fn word(i: u32) -> u32 {
    return wte[i];
}

fn ggml_row_values() -> u32 {
    return C;
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

// wte[r, c] of this part.
fn wte_at(r: u32, c: u32) -> f32 {
    let i = r * C + c;
    switch FMT {
        case 0u: { return bitcast<f32>(wte[i]); }
        case 1u: { return unpack2x16float(wte[i / 2u])[i % 2u]; }
        case 4u: { return bf16_pair(wte[i / 2u])[i % 2u]; }
        case 2u, 3u: {
            let b = r * (C / BLOCK) + c / BLOCK;
            let s = unpack2x16float(wte[SOFF + b / 2u])[b % 2u];
            if (FMT == 2u) {
                return f32(extractBits(i32(wte[i / 4u]), 8u * (i % 4u), 8u)) * s;
            }
            return f32(extractBits(i32(wte[i / 8u]), 4u * (i % 8u), 4u)) * s;
        }
        default: {
            return ggml_load4(r, c - c % 4u)[c % 4u];
        }
    }
}

fn wpe_at(i: u32) -> f32 {
    if (WPE_F16) {
        return unpack2x16float(wpe[i / 2u])[i % 2u];
    }
    return bitcast<f32>(wpe[i]);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (c >= C || t >= p.T) {
        return;
    }
    let id = ids[t];
    if (id < ROW0 || id >= ROW0 + ROWS) {
        return;
    }
    if (WPE) {
        x[t * C + c] = wte_at(id - ROW0, c) + wpe_at((p.pos0 + t) * C + c);
    } else {
        x[t * C + c] = wte_at(id - ROW0, c) * SCALE;
    }
}
