// Widen 16-bit floats, as stored in a checkpoint, to f32 on the GPU (no CPU pass over weights).
//
//   out[i] = f32(src[i])         src: n halves packed two per u32 (little-endian), out: (n)
//   BF16: src holds bfloat16 instead of IEEE half.
//
// Bindings: 0 src (ceil(n / 2)) u32, 1 out (n) f32.
// Dispatch: ceil(ceil(n / 2) / WG) workgroups, laid out as (X, Y) with X <= 65535 when there
// are more than one dimension allows; word index = (wg.y * X + wg.x) * WG + local index.

override N: u32;            // number of values
override BF16: bool = false;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let w = (wid.y * nwg.x + wid.x) * WG + lid.x;
    let i = 2u * w;
    if (i >= N) {
        return;
    }
    let bits = src[w];
    var pair: vec2<f32>;
    if (BF16) {
        pair = vec2<f32>(bitcast<f32>(bits << 16u), bitcast<f32>(bits & 0xffff0000u));
    } else {
        pair = unpack2x16float(bits);
    }
    out[i] = pair.x;
    if (i + 1u < N) {
        out[i + 1u] = pair.y;
    }
}
