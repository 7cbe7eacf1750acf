// Token + position embedding.
//
//   x[t, c] = wte[ids[t], c] + wpe[pos0 + t, c]        x: (T, C)
//
// The token table may be split by rows across several buffers (a table larger than one
// storage binding); each part is dispatched on its own and writes only the rows whose token
// falls in [ROW0, ROW0 + ROWS). Every token id is < vocab_size, so exactly one part writes it.
//
// Bindings: 0 ids (T) u32, 1 wte part (ROWS, C), 2 wpe (n_positions, C), 3 x (T, C), 4 params.
// Dispatch: (ceil(C / WG), T).

struct Params {
    T: u32,          // tokens in this forward pass
    pos0: u32,       // position of the first of them
    lm_row0: u32,    // first row the LM head computes
    lm_rows: u32,    // rows the LM head computes
}

override C: u32;
override ROW0: u32 = 0u;
override ROWS: u32;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> wte: array<f32>;
@group(0) @binding(2) var<storage, read> wpe: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read> p: Params;

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
    x[t * C + c] = wte[(id - ROW0) * C + c] + wpe[(p.pos0 + t) * C + c];
}
