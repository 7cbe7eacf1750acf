// After the choice of a token (ids[0]), what an API request keeps of it on the GPU:
//
//   COUNT:   counts[ids[0]] += 1          (the generated-token counts penalize.wgsl reads)
//   LOGPROB: rec[0] = ids[0], rec[1] = bitcast(logits[ids[0]] - lse)   (its raw log-prob;
//            logprobs.wgsl wrote lse into rec[2] and the top alternatives from rec[4])
//
// Then rec, read back in place of ids[0], carries the token and its log-probs in one copy.
//
// Bindings: 0 logits (V) f32, 1 ids u32, 2 counts (V) u32, 3 rec (4 + 2 K) u32.
// Dispatch: (1).

override COUNT: bool = false;
override LOGPROB: bool = false;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> rec: array<u32>;

@compute @workgroup_size(1)
fn main() {
    let id = ids[0];
    if (COUNT) {
        counts[id] += 1u;
    }
    if (LOGPROB) {
        rec[0] = id;
        rec[1] = bitcast<u32>(logits[id] - bitcast<f32>(rec[2]));
    }
}
