// Language-model head, tied to the token embedding.
//
//   logits[r, ROW0 + v] = sum_c x[lm_row0 + r, c] * wte[v, c]      for r < lm_rows
//   x: (T, C) after ln_f, C % 4 == 0; wte part: (ROWS, C); logits: (lm_rows, V)
//
// Only rows [lm_row0, lm_row0 + lm_rows) of x are computed: decoding needs only the last.
// A token table larger than one storage binding is split by rows; each part is dispatched on
// its own and writes its columns of the logits. wte is bound as raw words: f32, or (F16)
// halves packed two per word.
//
// wte is [V, C], so one logit is a dot product along a row. TPR invocations share a row, each
// reading every TPR-th group of 4 channels (neighbouring invocations read neighbouring 16-byte
// pieces, which coalesce), and their partial sums meet in workgroup memory; RPW rows per
// workgroup. TPR = 1 gives one invocation per row and no barriers (CPU adapters).
//
// Bindings: 0 x (T, C) f32, 1 wte part words, 2 logits (lm_rows, V) f32,
//           3 params (uniform).
// Dispatch: (ceil(ROWS / RPW), lm_rows).

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
override F16: bool = false;
override TPR: u32 = 32u;
override RPW: u32 = 8u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> wte: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> partial: array<f32, TPR * RPW>;

fn load4(v: u32, c4: u32) -> vec4<f32> {
    let i = v * (C / 4u) + c4;
    if (F16) {
        let w = wte[i];
        return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    }
    return bitcast<vec4<f32>>(vec4<u32>(wte[2u * i], wte[2u * i + 1u]));
}

@compute @workgroup_size(TPR, RPW)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let v = wid.x * RPW + lid.y;
    let r = wid.y;
    let c4n = C / 4u;
    let x0 = (p.lm_row0 + r) * c4n;
    var acc = 0.0;
    if (v < ROWS && r < p.lm_rows) {
        for (var c4 = lid.x; c4 < c4n; c4 += TPR) {
            acc += dot(x[x0 + c4], load4(v, c4));
        }
    }
    if (TPR > 1u) {
        let base = lid.y * TPR;
        partial[base + lid.x] = acc;
        workgroupBarrier();
        for (var s = TPR / 2u; s > 0u; s = s / 2u) {
            if (lid.x < s) {
                partial[base + lid.x] += partial[base + lid.x + s];
            }
            workgroupBarrier();
        }
        acc = partial[base];
    }
    if (lid.x == 0u && v < ROWS && r < p.lm_rows) {
        logits[r * V + ROW0 + v] = acc;
    }
}
