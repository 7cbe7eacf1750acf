// Count the NaN and infinite values of one weight buffer, once at load, so that a corrupt
// checkpoint fails with a message naming the tensor instead of generating noise.
//
//   result[0] += #{k : x[k] is NaN or infinite}
//   result[1]  = min(result[1], first such k)        (0xffffffff while there is none)
//
//   x is data read as raw bits: f32 values (F16 = false), or f16 values packed two per u32,
//   the first in the low half (F16 = true). A value is NaN or infinite exactly when its
//   exponent bits are all ones: 0x7f800000 in an f32, 0x7c00 in an f16. Only integer
//   operations are used: WGSL has no isNan, and a compiler may assume floats are finite.
//   The padding after the last value of a buffer is zero, so it is finite.
//
// Bindings: 0 data (words) u32, 1 result (2) atomic u32: [count, first index].
// Dispatch: (X) workgroups of WG, any X; each invocation reads every (X * WG)-th word, so
// consecutive invocations read consecutive words.

override F16: bool = false;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> data: array<u32>;
@group(0) @binding(1) var<storage, read_write> result: array<atomic<u32>, 2>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let words = arrayLength(&data);
    let stride = nwg.x * WG;
    var count = 0u;
    var first = 0xffffffffu;
    for (var w = gid.x; w < words; w += stride) {
        let bits = data[w];
        if (F16) {
            let lo = (bits & 0x7c00u) == 0x7c00u;
            let hi = (bits & 0x7c000000u) == 0x7c000000u;
            if (lo || hi) {
                count += select(0u, 1u, lo) + select(0u, 1u, hi);
                first = min(first, select(2u * w + 1u, 2u * w, lo));
            }
        } else if ((bits & 0x7f800000u) == 0x7f800000u) {
            count += 1u;
            first = min(first, w);
        }
    }
    // Atomics only where something was found: a clean buffer costs one read of each word.
    if (count > 0u) {
        atomicAdd(&result[0], count);
        atomicMin(&result[1], first);
    }
}
