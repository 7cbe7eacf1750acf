// Greedy choice: the index of the largest logit of row 0 (the first on ties, as torch.argmax).
//
//   out[0] = argmax_v logits[0, v]            logits: (1, V)
//
// One workgroup: each invocation scans a strided slice, then a barrier tree keeps
// (value, index) pairs, preferring the smaller index on equal values.
//
// Bindings: 0 logits (V), 1 out (1) u32.
// Dispatch: (1).

override V: u32;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var v = lid; v < V; v += WG) {
        let x = logits[v];
        if (x > bv) {
            bv = x;
            bi = v;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = best_i[0];
    }
}
