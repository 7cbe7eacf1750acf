// Token + position embedding.
//
//   x[t, c] = wte[ids[t], c] + wpe[pos0 + t, c]        x: (T, C)
//   WPE false: x[t, c] = wte[ids[t], c]   (no position embeddings: Llama, Qwen; wpe is not
//              read and takes any small buffer)
//
// The token table may be split by rows across several buffers (a table larger than one
// storage binding); each part is dispatched on its own and writes only the rows whose token
// falls in [ROW0, ROW0 + ROWS). Every token id is < vocab_size, so exactly one part writes it.
// wte and wpe are bound as raw words. wte in the formats of gemv.wgsl: FMT 0 f32, 1 halves
// packed two per word, 2 q8 and 3 q4 (signed values, an f16 scale per BLOCK values of a row,
// the scales from word SOFF); wpe f32, or (WPE_F16) halves.
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
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> wte: array<u32>;
@group(0) @binding(2) var<storage, read> wpe: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// wte[r, c] of this part.
fn wte_at(r: u32, c: u32) -> f32 {
    let i = r * C + c;
    switch FMT {
        case 0u: { return bitcast<f32>(wte[i]); }
        case 1u: { return unpack2x16float(wte[i / 2u])[i % 2u]; }
        default: {
            let b = r * (C / BLOCK) + c / BLOCK;
            let s = unpack2x16float(wte[SOFF + b / 2u])[b % 2u];
            if (FMT == 2u) {
                return f32(extractBits(i32(wte[i / 4u]), 8u * (i % 4u), 8u)) * s;
            }
            return f32(extractBits(i32(wte[i / 8u]), 4u * (i % 8u), 4u)) * s;
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
        x[t * C + c] = wte_at(id - ROW0, c);
    }
}
