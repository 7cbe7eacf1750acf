// Rotary position embedding (RoPE) of this pass's queries and keys, and the store of its keys
// and values into the KV caches (Llama, Qwen): the step between the q/k/v product and the
// attention, in one dispatch.
//
// qkv (T, S), S = (N_HEAD + 2 N_KV) * HD with the head size HD = C / N_HEAD: each row holds
// the N_HEAD query heads, then the N_KV key heads, then the N_KV value heads, HD values each
// (bias, if any, already added). For token t at position pos = pos0 + t, and every half-head
// index i < HD / 2 (transformers' `rotate_half` convention: value i pairs with i + HD / 2):
//   NORM:  first u = u / sqrt(mean(u^2) + EPS) * (w + NORM_OFFSET) per head u of q (w = q_norm)
//          and of k (w = k_norm): Qwen3's q_norm / k_norm, RMSNorm over the HD values of one
//          head (Gemma 3's with NORM_OFFSET = 1: it multiplies by 1 + w)
//   u'[i]          = u[i] * cos[pos, i] - u[i + R/2] * sin[pos, i]
//   u'[i + R/2]    = u[i + R/2] * cos[pos, i] + u[i] * sin[pos, i]
//   for i < R / 2, R = ROT the rotated values of a head: HD by default; fewer with a partial
//   rotary embedding (Phi-4-mini: 3/4 of HD), whose other values u[R ..] pass as they are;
//   ROT = 0 rotates nothing (SmolLM3's layers without rotary embedding).
//   q heads:  rotated in place in qkv (the attention reads them there)
//   k heads:  rotated into k_cache[pos, g, :] (the k columns of qkv are left as they were)
//   v heads:  copied into v_cache[pos, g, :]
// The caches are (n_ctx, N_KV * HD) per layer: one row per position, the KV heads side by
// side, each stored once (grouped-query attention reads it for N_HEAD / N_KV query heads).
//
// rope (n_ctx, R), computed on the CPU at load so large positions are exact: row pos holds
// cos(pos * f_i) for i < R / 2, then sin(pos * f_i) for i < R / 2, f_i the (possibly scaled)
// inverse frequencies, times any attention scaling of the rope type (longrope's). (The
// cos/sin tensors of transformers are these halves repeated twice.) R % 8 == 0 and HD % 4 == 0:
// the halves are read as vec4s of 4 neighbouring pairs.
//
// LANES invocations share a head (a power of two dividing WG), each taking every LANES-th
// group of 4 pairs: 1 on CPU adapters (no barrier at all), up to HD / 8 on a GPU (short
// loops). With NORM every lane sums the squares of its whole head itself (no reduction
// across lanes), and, as q is rewritten in place, waits at one barrier until all have read it.
//
// Bindings: 0 qkv (T, S) f32, read and written; 1 rope (n_ctx, R) f32; 2 q_norm (HD) f32;
//           3 k_norm (HD) f32; 4 k_cache (n_ctx, N_KV * HD) f32; 5 v_cache (same);
//           6 params (uniform). Without NORM, q_norm and k_norm take any small buffer.
// Dispatch: (ceil((N_HEAD + 2 N_KV) * LANES / WG), T).

struct Params {
    T: u32,          // tokens in this forward pass
    pos0: u32,       // position of the first of them
    lm_row0: u32,
    lm_rows: u32,
}

override C: u32;                // N_HEAD * HD: the query columns of a row (as attention.wgsl)
override N_HEAD: u32;           // query heads
override N_KV: u32 = N_HEAD;    // key/value heads
override NORM: bool = false;    // RMSNorm of every q and k head first (Qwen3)
override EPS: f32 = 1e-6;
override NORM_OFFSET: f32 = 0.0;       // added to the norm weights (Gemma 3: 1)
override ROT: u32 = C / N_HEAD;        // values of a head rotated (R): all, fewer, or none
override LANES: u32 = 1u;       // invocations per head
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> rope: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> q_norm: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> k_norm: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> k_cache: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<vec4<f32>>;
@group(0) @binding(6) var<uniform> p: Params;

// The norm weights of head slot `slot` (a q or a k head), values 4 g .. 4 g + 3.
fn norm_w(slot: u32, g: u32) -> vec4<f32> {
    if (slot < N_HEAD) {
        return q_norm[g] + NORM_OFFSET;
    }
    return k_norm[g] + NORM_OFFSET;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // t from the workgroup id: uniform across the workgroup, so the barrier below is too.
    let t = wid.y;
    let i = wid.x * WG + lid.x;
    let slot = i / LANES;                     // head: q [0, N_HEAD), k, then v
    let lane = i % LANES;
    let hd = C / N_HEAD;                      // values per head
    let d4 = hd / 4u;                         // vec4s per head
    let live = t < p.T && slot < N_HEAD + 2u * N_KV;
    let pos = p.pos0 + t;
    let base = t * (N_HEAD + 2u * N_KV) * d4 + slot * d4;

    // Per-head RMSNorm (as transformers' Qwen3RMSNorm in f32): every lane sums the whole head.
    var rstd = 1.0;
    if (NORM && live && slot < N_HEAD + N_KV) {
        var q = 0.0;
        for (var g = 0u; g < d4; g++) {
            q += dot(qkv[base + g], qkv[base + g]);
        }
        rstd = inverseSqrt(q / f32(hd) + EPS);
    }
    if (NORM && LANES > 1u) {
        workgroupBarrier();   // every lane has read its head before q is rewritten in place
    }
    if (!live) {
        return;
    }

    if (slot >= N_HEAD + N_KV) {
        // A value head: stored as it is.
        let dst = pos * N_KV * d4 + (slot - N_HEAD - N_KV) * d4;
        for (var g = lane; g < d4; g += LANES) {
            v_cache[dst + g] = qkv[base + g];
        }
        return;
    }
    let r4 = ROT / 8u;                        // vec4s per rotated half
    let row = pos * (ROT / 4u);               // cos then sin of this position
    let kdst = pos * N_KV * d4 + (slot - N_HEAD) * d4;
    for (var g = lane; g < r4; g += LANES) {
        var a = qkv[base + g];                // values 4 g .. 4 g + 3
        var b = qkv[base + r4 + g];           // their partners, R / 2 further
        if (NORM) {
            a = a * rstd * norm_w(slot, g);
            b = b * rstd * norm_w(slot, r4 + g);
        }
        let c = rope[row + g];
        let s = rope[row + r4 + g];
        let ra = a * c - b * s;
        let rb = b * c + a * s;
        if (slot < N_HEAD) {
            qkv[base + g] = ra;
            qkv[base + r4 + g] = rb;
        } else {
            k_cache[kdst + g] = ra;
            k_cache[kdst + r4 + g] = rb;
        }
    }
    // The values past R (none unless the rotation is partial or off): normalised where NORM,
    // q's in place, k's into the cache.
    for (var g = 2u * r4 + lane; g < d4; g += LANES) {
        var u = qkv[base + g];
        if (NORM) {
            u = u * rstd * norm_w(slot, g);
        }
        if (slot >= N_HEAD) {
            k_cache[kdst + g] = u;
        } else if (NORM) {
            qkv[base + g] = u;
        }
    }
}
