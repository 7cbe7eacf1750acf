// Append this pass's keys and values to the layer's KV cache.
//
//   k_cache[pos0 + t, c] = qkv[t, C + c]
//   v_cache[pos0 + t, c] = qkv[t, 2C + c]        qkv: (T, 3C), caches: (n_positions, C)
//
// Bindings: 0 qkv (T, 3C), 1 k_cache, 2 v_cache, 3 params.
// Dispatch: (ceil(C / WG), T).

struct Params {
    T: u32,
    pos0: u32,
    lm_row0: u32,
    lm_rows: u32,
}

override C: u32;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (c >= C || t >= p.T) {
        return;
    }
    let dst = (p.pos0 + t) * C + c;
    k_cache[dst] = qkv[t * 3u * C + C + c];
    v_cache[dst] = qkv[t * 3u * C + 2u * C + c];
}
