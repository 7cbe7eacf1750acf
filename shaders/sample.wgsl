// Sampling on the GPU: temperature, top-k, top-p, min-p and a seeded draw, over row 0 of the
// logits.
// Only the chosen token id leaves the GPU: it is written to ids[0], the next pass's input.
//
//   p_i  = exp((logits[i] - max) / temperature)                         (unnormalised)
//   keep = the top_k largest logits (top_k = 0: all), then, of those, the smallest set of most
//          likely tokens whose mass reaches top_p (token i stays while the mass of the tokens
//          more likely than it is below top_p; 1: all), then the tokens with p_i >= min_p (the
//          most likely has p = 1; 0: all), in that order, as Hugging Face's warpers do
//   u    = uniform in [0, 1) from a hash of (seed, step)
//   ids[0] = the first i, in index order, where the running sum of p over kept tokens
//            exceeds u * (sum of p over kept tokens)
//
// The thresholds are found without sorting: logits map to u32 keys that order like the floats,
// and each threshold is built one bit at a time from the top, counting (top-k) or summing
// (top-p) over the row: 32 reductions each, all in one workgroup. Ties at the top-k threshold
// keep every tied token.
//
// Bindings: 0 logits (V) f32, 1 probs (V) f32 scratch, 2 ids u32, 3 sampler (uniform).
// Dispatch: (1).

struct Sampler {
    temperature: f32,   // > 0
    top_k: u32,         // 0: off
    top_p: f32,         // in (0, 1]; 1: off
    seed: u32,
    step: u32,          // index of the token being drawn: a new u for every token
    min_p: f32,         // in [0, 1]; 0: off
}

override V: u32;
const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> probs: array<f32>;
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;
@group(0) @binding(3) var<uniform> s: Sampler;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;

// A u32 that orders like the f32: flip all bits of negatives, the sign bit of the rest.
fn key(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b ^ 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn sum_f(v: f32, lid: u32) -> f32 {
    red_f[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) {
            red_f[lid] += red_f[lid + h];
        }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

fn max_f(v: f32, lid: u32) -> f32 {
    red_f[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) {
            red_f[lid] = max(red_f[lid], red_f[lid + h]);
        }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

fn sum_u(v: u32, lid: u32) -> u32 {
    red_u[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) {
            red_u[lid] += red_u[lid + h];
        }
        workgroupBarrier();
    }
    let r = red_u[0];
    workgroupBarrier();
    return r;
}

// PCG hash (O'Neill), a counter-based generator: the same (seed, step) gives the same u.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;

    // Largest logit, then the unnormalised probabilities.
    var m = -3.4e38;
    for (var i = lid; i < V; i += WG) {
        m = max(m, logits[i]);
    }
    m = max_f(m, lid);
    for (var i = lid; i < V; i += WG) {
        probs[i] = exp((logits[i] - m) / s.temperature);
    }
    // (Each invocation reads back only the probs it wrote until the barriers below.)

    // Top-k: the largest key K with count(key >= K) >= top_k.
    var k_min = 0u;
    if (s.top_k > 0u && s.top_k < V) {
        for (var b = 31; b >= 0; b--) {
            let cand = k_min | (1u << u32(b));
            var n = 0u;
            for (var i = lid; i < V; i += WG) {
                n += select(0u, 1u, key(logits[i]) >= cand);
            }
            if (sum_u(n, lid) >= s.top_k) {
                k_min = cand;
            }
        }
    }

    // Top-p over the top-k survivors: with F(x) = mass of survivors with key > x, the kept
    // tokens are those with F(key) < top_p * Z, i.e. key > y for the largest y with F(y) >= top_p Z.
    var z = 0.0;
    for (var i = lid; i < V; i += WG) {
        z += select(0.0, probs[i], key(logits[i]) >= k_min);
    }
    z = sum_f(z, lid);
    var p_min = 0u;
    if (s.top_p < 1.0) {
        var y = 0u;
        for (var b = 31; b >= 0; b--) {
            let cand = y | (1u << u32(b));
            var f = 0.0;
            for (var i = lid; i < V; i += WG) {
                let kk = key(logits[i]);
                f += select(0.0, probs[i], kk >= k_min && kk > cand);
            }
            if (sum_f(f, lid) >= s.top_p * z) {
                y = cand;
            }
        }
        p_min = y + 1u;
    }
    let lo = max(k_min, p_min);

    // Draw: each invocation owns a contiguous span of the row; an exclusive scan of the spans'
    // masses finds the span holding the goal, which that invocation walks.
    let span = (V + WG - 1u) / WG;
    let first = lid * span;
    let last = min(V, first + span);
    var mass = 0.0;
    for (var i = first; i < last; i++) {
        mass += select(0.0, probs[i], key(logits[i]) >= lo && probs[i] >= s.min_p);
    }
    red_f[lid] = mass;
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var j = 0u; j < WG; j++) {
            total += red_f[j];
        }
        let u = f32(pcg(s.seed ^ pcg(s.step)) >> 8u) / 16777216.0;
        let goal = u * total;
        var acc = 0.0;
        var chosen = 0u;
        for (var j = 0u; j < WG; j++) {
            if (acc + red_f[j] > goal) {
                // Walk span j, summing in the same order as its mass was summed, so the
                // running sum passes the goal inside the span.
                let end = min(V, (j + 1u) * span);
                for (var i = j * span; i < end; i++) {
                    if (key(logits[i]) >= lo && probs[i] >= s.min_p) {
                        chosen = i;
                        acc += probs[i];
                        if (acc > goal) {
                            break;
                        }
                    }
                }
                break;
            }
            acc += red_f[j];
        }
        ids[0] = chosen;
    }
}
