// Copy, to measure the memory bandwidth a plain kernel reaches on this device (the floor that
// decoding is compared with in `python -m webgpt bench`).
//
//   dst[i] = src[i]            src, dst: (N4) vec4<f32>
//
// Bindings: 0 src, 1 dst.
// Dispatch: ceil(N4 / WG) workgroups as (X, Y), X <= 65535; index = (wg.y * X + wg.x) * WG + lid.

override N4: u32;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid.x;
    if (i < N4) {
        dst[i] = src[i];
    }
}
