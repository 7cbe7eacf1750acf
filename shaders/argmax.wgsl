// Greedy choice, on the GPU: the index of the largest logit of row 0 (the first on ties, as
// torch.argmax), in two dispatches.
//
//   FINAL = false: workgroup g reduces logits[g * SPAN, (g + 1) * SPAN) to best_v[g], best_i[g]
//   FINAL = true:  one workgroup reduces the PARTS pairs and writes the winner to ids[0], the
//                  input of the next decode step, so the next step never waits for the CPU;
//                  the CPU copies ids[0] out to learn the token.
//
// Bindings: 0 logits (V) f32, 1 best_v (PARTS) f32, 2 best_i (PARTS) u32, 3 ids u32.
// Dispatch: FINAL = false: (PARTS) with PARTS = ceil(V / SPAN); FINAL = true: (1).

override V: u32;
override PARTS: u32;
override FINAL: bool = false;
const WG: u32 = 256u;
const SPAN: u32 = 2048u;   // logits per workgroup in the first dispatch

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> best_v: array<f32>;
@group(0) @binding(2) var<storage, read_write> best_i: array<u32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;

var<workgroup> wv: array<f32, WG>;
var<workgroup> wi: array<u32, WG>;

// Does (v, i) beat (bv, bi)? Larger value, or equal value and smaller index.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    if (FINAL) {
        for (var g = lid; g < PARTS; g += WG) {
            if (beats(best_v[g], best_i[g], bv, bi)) {
                bv = best_v[g];
                bi = best_i[g];
            }
        }
    } else {
        let end = min(V, (wid.x + 1u) * SPAN);
        for (var v = wid.x * SPAN + lid; v < end; v += WG) {
            if (beats(logits[v], v, bv, bi)) {
                bv = logits[v];
                bi = v;
            }
        }
    }
    wv[lid] = bv;
    wi[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s && beats(wv[lid + s], wi[lid + s], wv[lid], wi[lid])) {
            wv[lid] = wv[lid + s];
            wi[lid] = wi[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        if (FINAL) {
            ids[0] = wi[0];
        } else {
            best_v[wid.x] = wv[0];
            best_i[wid.x] = wi[0];
        }
    }
}
