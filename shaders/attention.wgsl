// Causal multi-head self-attention over the KV cache.
//
// For query t of this pass (absolute position pos0 + t) and head h, with hs = C / N_HEAD:
//   s[j] = q[t, h, :] . k_cache[j, h, :] / sqrt(hs)       for j in 0 ..= pos0 + t
//   a    = softmax(s)
//   y[t, h, :] = sum_j a[j] * v_cache[j, h, :]              y: (T, C), heads side by side
// q comes from the first C columns of qkv (T, 3C); keys and values of this pass are already
// in the caches (kv_store runs first).
//
// One workgroup per (t, h). The scores of one row live in workgroup memory (N_CTX floats);
// max and sum are reduced with a barrier tree.
//
// Bindings: 0 qkv (T, 3C), 1 k_cache (N_CTX, C), 2 v_cache (N_CTX, C), 3 y (T, C), 4 params.
// Dispatch: (T, N_HEAD).

struct Params {
    T: u32,
    pos0: u32,
    lm_row0: u32,
    lm_rows: u32,
}

override C: u32;
override N_HEAD: u32;
override N_CTX: u32;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> p: Params;

var<workgroup> scores: array<f32, N_CTX>;
var<workgroup> red: array<f32, WG>;

fn workgroup_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] += red[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let t = wid.x;
    let h = wid.y;
    let lid = lid3.x;
    // Uniform per workgroup, so barriers below stay in uniform control flow.
    if (t >= p.T) {
        return;
    }
    let hs = C / N_HEAD;
    let n_keys = p.pos0 + t + 1u;
    let q0 = t * 3u * C + h * hs;
    let scale = inverseSqrt(f32(hs));

    var m = -3.4e38;
    for (var j = lid; j < n_keys; j += WG) {
        let k0 = j * C + h * hs;
        var s = 0.0;
        for (var d = 0u; d < hs; d++) {
            s += qkv[q0 + d] * k_cache[k0 + d];
        }
        s *= scale;
        scores[j] = s;
        m = max(m, s);
    }
    m = workgroup_reduce(m, lid, true);

    var l = 0.0;
    for (var j = lid; j < n_keys; j += WG) {
        let e = exp(scores[j] - m);
        scores[j] = e;
        l += e;
    }
    l = workgroup_reduce(l, lid, false);

    // workgroup_reduce ended with a barrier, so every exp(.) is visible here.
    for (var d = lid; d < hs; d += WG) {
        var acc = 0.0;
        for (var j = 0u; j < n_keys; j++) {
            acc += scores[j] * v_cache[j * C + h * hs + d];
        }
        y[t * C + h * hs + d] = acc / l;
    }
}
