// Causal multi-head self-attention of a prompt (T > 1 queries) over the KV cache, QB queries of
// one head per workgroup: the same result as attention.wgsl (see there for q, the caches and
// GQA), computed as flash-attention does, so each key and value row is read once per QB
// queries rather than once per query (a 512-token prompt of GPT-2 124M reads 800 MB of keys
// and values one query at a time, 50 MB in blocks of 16).
//
// For each tile of TKV keys (staged in workgroup memory with the values), invocation (qi, ki)
// scores query qi against key ki; then each query's running maximum m, sum l and output
// accumulator (unnormalised, rescaled by exp(m_old - m_new) when m grows) take in the tile.
// Invocation (qi, ki) keeps channels ki, ki + TKV, ... (vec4s) of query qi's accumulator in
// registers: at most 4 of them, so hs <= 16 TKV. A key past a query's position scores
// -3.4e38 and weighs exp(-3.4e38 - m) = 0.
//
// Bindings: 0 qkv (T, QKV_STRIDE), 1 k_cache (N_CTX, N_KV * hs), 2 v_cache (same),
//           3 y (T, C), 4 params (uniform).
// Dispatch: (ceil(T / QB), N_HEAD).

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
override QB: u32 = 16u;                 // queries per workgroup
override TKV: u32 = 16u;                // keys per tile

const NONE: f32 = -3.4e38;

@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> qs: array<vec4<f32>, QB * C / N_HEAD / 4u>;    // the block's queries, scaled
var<workgroup> ks: array<vec4<f32>, TKV * C / N_HEAD / 4u>;   // this tile's keys
var<workgroup> vs: array<vec4<f32>, TKV * C / N_HEAD / 4u>;   // and values
var<workgroup> sc: array<f32, QB * TKV>;                       // the tile's scores
var<workgroup> ml: array<vec2<f32>, QB>;                       // running (m, l) per query

@compute @workgroup_size(QB * TKV)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let t0 = wid.x * QB;
    let h = wid.y;
    let lid = lid3.x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if (t0 >= p.T) {
        return;
    }
    let qi = lid / TKV;
    let ki = lid % TKV;
    let c4 = C / 4u;
    let d4n = C / N_HEAD / 4u;                  // vec4s per head
    let kv4 = N_KV * d4n;                       // vec4s per row of the caches
    let head = (h / (N_HEAD / N_KV)) * d4n;     // this head's keys and values in a cache row
    let scale = inverseSqrt(f32(4u * d4n));
    let t = t0 + qi;                            // this invocation's query
    let live = t < p.T;
    let last = min(t0 + QB, p.T) - 1u;          // the block's last query
    let n = p.pos0 + last + 1u;                 // keys the block reads

    for (var i = lid; i < QB * d4n; i += QB * TKV) {
        let tq = t0 + i / d4n;
        var q = vec4<f32>(0.0);
        if (tq < p.T) {
            q = qkv[tq * (QKV_STRIDE / 4u) + h * d4n + i % d4n] * scale;
        }
        qs[i] = q;
    }
    if (lid < QB) {
        ml[lid] = vec2<f32>(NONE, 0.0);
    }
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);

    for (var j0 = 0u; j0 < n; j0 += TKV) {
        for (var i = lid; i < TKV * d4n; i += QB * TKV) {
            let key = j0 + i / d4n;
            var kv = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if (key < n) {
                kv = k_cache[key * kv4 + head + i % d4n];
                vv = v_cache[key * kv4 + head + i % d4n];
            }
            ks[i] = kv;
            vs[i] = vv;
        }
        workgroupBarrier();   // the tile (and, the first time, the queries) staged

        let key = j0 + ki;
        var s = NONE;
        if (live && key <= p.pos0 + t) {
            // Four independent partial dots (four reads in flight).
            var s4 = vec4<f32>(0.0);
            var d = 0u;
            for (; d + 4u <= d4n; d += 4u) {
                s4 += vec4<f32>(dot(qs[qi * d4n + d], ks[ki * d4n + d]),
                                dot(qs[qi * d4n + d + 1u], ks[ki * d4n + d + 1u]),
                                dot(qs[qi * d4n + d + 2u], ks[ki * d4n + d + 2u]),
                                dot(qs[qi * d4n + d + 3u], ks[ki * d4n + d + 3u]));
            }
            s = s4.x + s4.y + s4.z + s4.w;
            for (; d < d4n; d++) {
                s += dot(qs[qi * d4n + d], ks[ki * d4n + d]);
            }
        }
        sc[qi * TKV + ki] = s;
        workgroupBarrier();   // every score of the tile written

        let old = ml[qi];
        var m = old.x;
        for (var k = 0u; k < TKV; k++) {
            m = max(m, sc[qi * TKV + k]);
        }
        let alpha = exp(old.x - m);
        var l = 0.0;
        a0 *= alpha;
        a1 *= alpha;
        a2 *= alpha;
        a3 *= alpha;
        for (var k = 0u; k < TKV; k++) {
            let w = exp(sc[qi * TKV + k] - m);
            l += w;
            let v = k * d4n + ki;
            if (ki < d4n) {
                a0 += w * vs[v];
            }
            if (ki + TKV < d4n) {
                a1 += w * vs[v + TKV];
            }
            if (ki + 2u * TKV < d4n) {
                a2 += w * vs[v + 2u * TKV];
            }
            if (ki + 3u * TKV < d4n) {
                a3 += w * vs[v + 3u * TKV];
            }
        }
        workgroupBarrier();   // every read of ml, sc, vs done
        if (ki == 0u) {
            ml[qi] = vec2<f32>(m, old.y * alpha + l);
        }
    }
    workgroupBarrier();   // the last (m, l) written

    if (live) {
        let l = ml[qi].y;
        let out = t * c4 + h * d4n + ki;
        if (ki < d4n) {
            y[out] = a0 / l;
        }
        if (ki + TKV < d4n) {
            y[out + TKV] = a1 / l;
        }
        if (ki + 2u * TKV < d4n) {
            y[out + 2u * TKV] = a2 / l;
        }
        if (ki + 3u * TKV < d4n) {
            y[out + 3u * TKV] = a3 / l;
        }
    }
}
