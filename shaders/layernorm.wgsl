// Layer normalisation over the channels of each row, or (RMS) its root-mean-square form.
//
//   out[t, :] = (x[t, :] - mean) / sqrt(var + EPS) * w + b       x, out: (T, C)
//   RMS:  out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + EPS) * w  (Llama's and Qwen's RMSNorm:
//         no mean subtracted, no bias; b is not read and takes any small buffer)
//   OFFSET: with RMS, the weight is (w + OFFSET): Gemma's RMSNorm multiplies by (1 + w)
//   RESIDUAL: with RMS, out[t, :] += the norm rather than out[t, :] = it (Gemma's post-norms,
//         applied to a branch's output before it joins the residual stream, out)
//
// One workgroup per row; mean and variance are reduced in workgroup memory (two passes over
// the row, which is in cache: numerically better than E[x^2] - E[x]^2). RMS needs one.
//
// Bindings: 0 x (T, C), 1 w (C), 2 b (C), 3 out (T, C), 4 params (uniform).
// Dispatch: (T).

struct Params {
    T: u32,
    pos0: u32,
    lm_row0: u32,
    lm_rows: u32,
}

override C: u32;
override EPS: f32 = 1e-5;
override RMS: bool = false;
override OFFSET: f32 = 0.0;
override RESIDUAL: bool = false;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> red: array<f32, WG>;

// Sum of `v` over the workgroup; every invocation gets the result.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let t = wid.x;
    let lid = lid3.x;
    let row = t * C;
    // t is uniform across the workgroup, so this early exit keeps barriers uniform.
    if (t >= p.T) {
        return;
    }
    if (RMS) {
        // As transformers' LlamaRMSNorm in f32: x * rsqrt(mean(x^2) + eps), then * w (Gemma:
        // then * (1 + w), the sum in f32 first).
        var q = 0.0;
        for (var c = lid; c < C; c += WG) {
            q += x[row + c] * x[row + c];
        }
        let rstd = inverseSqrt(workgroup_sum(q, lid) / f32(C) + EPS);
        for (var c = lid; c < C; c += WG) {
            let y = x[row + c] * rstd * (w[c] + OFFSET);
            if (RESIDUAL) {
                out[row + c] += y;
            } else {
                out[row + c] = y;
            }
        }
        return;
    }
    var s = 0.0;
    for (var c = lid; c < C; c += WG) {
        s += x[row + c];
    }
    let mean = workgroup_sum(s, lid) / f32(C);
    var q = 0.0;
    for (var c = lid; c < C; c += WG) {
        let d = x[row + c] - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(workgroup_sum(q, lid) / f32(C) + EPS);
    for (var c = lid; c < C; c += WG) {
        out[row + c] = (x[row + c] - mean) * rstd * w[c] + b[c];
    }
}
