// The logits processors an API request asks for, over row 0 of the logits, into a second row
// that the choice (argmax.wgsl, sample.wgsl) reads; the raw row stays for the log-probs.
//
//   x = logits[i] + bias[i]                                   (logit_bias, where BIAS)
//   x = x < 0 ? x * r : x / r          if token i was seen    (repetition_penalty r, as
//                                                              transformers' processor: the
//                                                              prompt and the tokens generated)
//   x = x - c_i * f - (c_i > 0) * p                           (frequency f and presence p, as
//                                                              OpenAI documents them: c_i =
//                                                              times token i was generated)
//   out[i] = x, or -inf where MASK and bit i of mask is clear   (a constraint's allowed
//                                                              tokens: structured output)
//
// counts[i] holds c_i in its low 31 bits and, in its top bit, whether token i is in the
// prompt; record.wgsl adds one for each chosen token.
//
// Bindings: 0 logits (V) f32, 1 bias (V) f32, 2 counts (V) u32, 3 mask (ceil(V / 32)) u32,
// 4 out (V) f32, 5 pen (uniform).
// Dispatch: (ceil(V / WG)).

struct Penalties {
    repetition: f32,    // 1: off
    frequency: f32,     // 0: off
    presence: f32,      // 0: off
}

override V: u32;
override BIAS: bool = false;
override MASK: bool = false;
override WG: u32 = 256u;
const SEEN_IN_PROMPT: u32 = 0x80000000u;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> pen: Penalties;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= V) {
        return;
    }
    var x = logits[i];
    if (BIAS) {
        x += bias[i];
    }
    let n = counts[i];
    let generated = f32(n & ~SEEN_IN_PROMPT);
    if (n != 0u) {
        x = select(x / pen.repetition, x * pen.repetition, x < 0.0);
    }
    x = x - generated * pen.frequency - select(0.0, pen.presence, generated > 0.0);
    if (MASK && ((mask[i / 32u] >> (i % 32u)) & 1u) == 0u) {
        x = bitcast<f32>(0xff800000u);   // -inf: never chosen, probability 0
    }
    out[i] = x;
}
