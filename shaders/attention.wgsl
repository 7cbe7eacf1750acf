// Causal multi-head self-attention over the KV cache, with grouped-query attention (GQA).
//
// For query t of this pass (absolute position pos0 + t) and head h, with hs = C / N_HEAD and
// the key/value head g = h / (N_HEAD / N_KV) that h shares with N_HEAD / N_KV - 1 others:
//   s[j] = q[t, h, :] . k_cache[j, g, :] / sqrt(hs)       for j in 0 ..= pos0 + t
//   a    = softmax(s)
//   y[t, h, :] = sum_j a[j] * v_cache[j, g, :]              y: (T, C), heads side by side
// Options (Gemma, Mistral, Phi-3; none by default):
//   SCALE > 0:   s[j] = q . k * SCALE instead of / sqrt(hs) (Gemma: query_pre_attn_scalar^-1/2)
//   SOFTCAP > 0: s[j] = tanh(s[j] / SOFTCAP) * SOFTCAP after the scale (Gemma 2's attention
//                logit soft-capping)
//   WINDOW > 0:  only the last WINDOW keys, j in (pos0 + t - WINDOW, pos0 + t] (a sliding
//                window as transformers' masks have it: the query's own key and WINDOW - 1
//                before it). Every key stays in the cache (it holds the whole context kept), so
//                a mask over the window is all a sliding layer needs.
// q is the first C columns of each row of qkv, rows QKV_STRIDE values apart; this pass's keys
// and values are already in the caches (GPT-2: the c_attn product stores them there; Llama,
// Qwen: rope.wgsl). hs % 4 == 0 and QKV_STRIDE % 4 == 0: heads are read as vec4.
//   GPT-2 (the defaults): C = n_embd, N_KV = N_HEAD, qkv (T, 3C), caches (N_CTX, C).
//   Llama/Qwen: C = n_head * head_dim (may differ from the hidden size), N_KV = n_kv_head
//   (dividing N_HEAD), QKV_STRIDE = (n_head + 2 n_kv_head) * head_dim, caches
//   (N_CTX, N_KV * head_dim): one row per position, the KV heads side by side.
//
// One workgroup per (t, h). The row's scores live in workgroup memory (N_CTX floats); max and
// sum are reduced with a barrier tree. For the weighted sum of values, the WG invocations split
// into hs / 4 lanes of 4 channels times WG / (hs / 4) slices of the keys, and the slices' partial
// sums meet in workgroup memory: every invocation works however short the head or long the row.
//
// SPLITS > 1 (flash-decoding, for a decoded token: one workgroup per head leaves most of a large
// GPU idle and reads a long context slowly): the n = pos0 + t + 1 keys (min(n, WINDOW) with a
// window, the last of them) are cut into chunks of
// max(ceil(n / SPLITS), MIN_CHUNK) keys, one workgroup each (so a short context uses one, a long
// one up to SPLITS; the workgroups past the last chunk return at once). Each writes its
// unnormalised partial result instead of y: for (t, h, s), a block of hs / 4 + 1 vec4s at
// ((t N_HEAD + h) SPLITS + s)(hs / 4 + 1): acc[0 .. hs) = sum_j exp(s[j] - m_s) v[j], then
// (m_s, l_s, 0, 0) with m_s its chunk's largest score and l_s = sum_j exp(s[j] - m_s). The
// product that reads y combines the blocks of the chunks in use (gemv.wgsl, ATT_SPLITS, with
// the same chunk rule): y = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s, M = max_s m_s.
//
// Bindings: 0 qkv (T, QKV_STRIDE), 1 k_cache (N_CTX, N_KV * hs), 2 v_cache (same),
//           3 y (T, C), or the partial blocks with SPLITS > 1, 4 params (uniform).
// Dispatch: (T, N_HEAD, SPLITS).

struct Params {
    T: u32,
    pos0: u32,
    lm_row0: u32,
    lm_rows: u32,
}

override C: u32;
override N_HEAD: u32;
override N_KV: u32 = N_HEAD;           // key/value heads
override QKV_STRIDE: u32 = 3u * C;      // values per row of qkv
override N_CTX: u32;
override WG: u32 = 256u;
override SPLITS: u32 = 1u;             // chunks of the keys, one workgroup each (see above)
override MIN_CHUNK: u32 = 128u;        // keys per chunk at least, with SPLITS > 1
override SCALE: f32 = 0.0;             // the scores' scale; 0: 1 / sqrt(hs)
override SOFTCAP: f32 = 0.0;           // soft-capping of the scores; 0: none
override WINDOW: u32 = 0u;             // keys attended to at most (sliding window); 0: all

@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> scores: array<f32, N_CTX>;
var<workgroup> red: array<f32, WG>;
var<workgroup> partial: array<vec4<f32>, WG>;

fn workgroup_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] += red[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let t = wid.x;
    let h = wid.y;
    let split = wid.z;
    let lid = lid3.x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if (t >= p.T) {
        return;
    }
    let c4 = C / 4u;
    let d4n = C / N_HEAD / 4u;            // vec4s per head
    let kv4 = N_KV * d4n;                 // vec4s per row of the caches
    // This workgroup's keys j0 .. j0 + n (all of them, or the window's, unless SPLITS > 1).
    var j0 = 0u;
    var n = p.pos0 + t + 1u;
    if (WINDOW > 0u && n > WINDOW) {
        j0 = n - WINDOW;
        n = WINDOW;
    }
    if (SPLITS > 1u) {
        let chunk = max((n + SPLITS - 1u) / SPLITS, MIN_CHUNK);
        let first = split * chunk;
        if (first >= n) {
            return;   // past the last chunk (uniform per workgroup): not read
        }
        j0 += first;
        n = min(chunk, n - first);
    }
    let q0 = t * (QKV_STRIDE / 4u) + h * d4n;   // q is the first C columns of the row
    let head = (h / (N_HEAD / N_KV)) * d4n;     // this head's keys and values in a cache row
    let scale = select(inverseSqrt(f32(4u * d4n)), SCALE, SCALE > 0.0);

    var m = -3.4e38;
    for (var j = lid; j < n; j += WG) {
        // Four independent partial dots, so four loads of the key row are in flight at once
        // (a loop of one dependent load after another waits out the memory latency each time).
        let k0 = (j0 + j) * kv4 + head;
        var s4 = vec4<f32>(0.0);
        var d = 0u;
        for (; d + 4u <= d4n; d += 4u) {
            s4 += vec4<f32>(dot(qkv[q0 + d], k_cache[k0 + d]),
                            dot(qkv[q0 + d + 1u], k_cache[k0 + d + 1u]),
                            dot(qkv[q0 + d + 2u], k_cache[k0 + d + 2u]),
                            dot(qkv[q0 + d + 3u], k_cache[k0 + d + 3u]));
        }
        var s = s4.x + s4.y + s4.z + s4.w;
        for (; d < d4n; d++) {
            s += dot(qkv[q0 + d], k_cache[k0 + d]);
        }
        s *= scale;
        if (SOFTCAP > 0.0) {
            // As transformers: divided, tanh, multiplied. The argument is clamped where tanh is
            // already +-1 in f32 (some backends compute tanh through exp, which overflows).
            s = tanh(clamp(s / SOFTCAP, -15.0, 15.0)) * SOFTCAP;
        }
        scores[j] = s;
        m = max(m, s);
    }
    m = workgroup_reduce(m, lid, true);

    var l = 0.0;
    for (var j = lid; j < n; j += WG) {
        let e = exp(scores[j] - m);
        scores[j] = e;
        l += e;
    }
    l = workgroup_reduce(l, lid, false);   // ends with a barrier: every exp(.) is visible

    let slices = WG / d4n;
    let d = lid % d4n;
    let slice = lid / d4n;
    var acc = vec4<f32>(0.0);
    if (slice < slices) {
        // Four keys per step: four value loads in flight.
        let v0 = j0 * kv4 + head + d;
        var j = slice;
        for (; j + 3u * slices < n; j += 4u * slices) {
            acc += scores[j] * v_cache[v0 + j * kv4]
                 + scores[j + slices] * v_cache[v0 + (j + slices) * kv4]
                 + scores[j + 2u * slices] * v_cache[v0 + (j + 2u * slices) * kv4]
                 + scores[j + 3u * slices] * v_cache[v0 + (j + 3u * slices) * kv4];
        }
        for (; j < n; j += slices) {
            acc += scores[j] * v_cache[v0 + j * kv4];
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (slice == 0u) {
        for (var s = 1u; s < slices; s++) {
            acc += partial[s * d4n + d];
        }
        if (SPLITS > 1u) {
            let block = ((t * N_HEAD + h) * SPLITS + split) * (d4n + 1u);
            y[block + d] = acc;
            if (d == 0u) {
                y[block + d4n] = vec4<f32>(m, l, 0.0, 0.0);
            }
        } else {
            y[t * c4 + h * d4n + d] = acc / l;
        }
    }
}
