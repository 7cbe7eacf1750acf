// Matrix-vector product with bias, for T = 1 (one decoded token).
//
//   out[n] = sum_k x[k] * W[k, n] + bias[n]                 x: (K), W: (K, N), out: (N)
//   RESIDUAL: out[n] += (the above)
//
// W is [in, out] as stored in the checkpoint. One invocation per output column: neighbouring
// invocations read neighbouring columns of each row of W, so reads coalesce, and there are no
// barriers (which are costly on CPU adapters such as SwiftShader and lavapipe).
//
// Bindings: 0 x (K), 1 W (K, N), 2 bias (N), 3 out (N).
// Dispatch: (ceil(N / WG)).

override K: u32;
override N: u32;
override RESIDUAL: bool = false;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    if (n >= N) {
        return;
    }
    var acc = 0.0;
    for (var k = 0u; k < K; k++) {
        acc += x[k] * W[k * N + n];
    }
    let v = acc + bias[n];
    if (RESIDUAL) {
        out[n] += v;
    } else {
        out[n] = v;
    }
}
