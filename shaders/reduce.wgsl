// The parts of a split-K product (matmul.wgsl with SPLIT_K > 1) added into the residual stream:
//
//   out[t, n] += sum_z parts[z T + t, n] + bias[n]       parts: (SPLIT_K T, N), out: (T, N)
//   BIAS: false: no bias (bias is not read)
//
// Bindings: 0 parts, 1 bias (N) f32, 2 out (T, N), 3 params (uniform).
// Dispatch: (ceil(N / WG), T).

struct Params {
    T: u32,
    pos0: u32,
    lm_row0: u32,
    lm_rows: u32,
}

override N: u32;
override SPLIT_K: u32 = 1u;
override BIAS: bool = true;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let t = gid.y;
    if (n >= N || t >= p.T) {
        return;
    }
    var y = 0.0;
    for (var z = 0u; z < SPLIT_K; z++) {
        y += parts[(z * p.T + t) * N + n];
    }
    if (BIAS) {
        y += bias[n];
    }
    out[t * N + n] += y;
}
