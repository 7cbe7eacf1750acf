// Language-model head, tied to the token embedding.
//
//   logits[r, ROW0 + v] = sum_c x[lm_row0 + r, c] * wte[v, c]     for r < lm_rows
//   x: (T, C) after ln_f; wte part: (ROWS, C); logits: (lm_rows, V)
//
// Only rows [lm_row0, lm_row0 + lm_rows) of x are computed (decoding needs just the last).
// As in the embedding, a token table larger than one binding is split by rows and each part
// dispatched on its own, writing its columns of the logits.
// One invocation per (vocabulary row, x row); the vocabulary row is read as vec4 where
// C % 4 == 0 would allow it, but here plainly, which any C allows.
//
// Bindings: 0 x (T, C), 1 wte part (ROWS, C), 2 logits (lm_rows, V), 3 params.
// Dispatch: (ceil(ROWS / WG), lm_rows).

struct Params {
    T: u32,
    pos0: u32,
    lm_row0: u32,
    lm_rows: u32,
}

override C: u32;
override V: u32;
override ROW0: u32 = 0u;
override ROWS: u32;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wte: array<f32>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<storage, read> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x;
    let r = gid.y;
    if (v >= ROWS || r >= p.lm_rows) {
        return;
    }
    let x0 = (p.lm_row0 + r) * C;
    let w0 = v * C;
    var acc = 0.0;
    for (var c = 0u; c < C; c++) {
        acc += x[x0 + c] * wte[w0 + c];
    }
    logits[r * V + ROW0 + v] = acc;
}
