// Log-probabilities of row 0 of the logits, for the tokens an API request asks about: the
// log-sum-exp of the row and its K largest logits (OpenAI's top_logprobs), in two dispatches.
// Only these K + 1 numbers, and the chosen token's (record.wgsl), leave the GPU.
//
//   logprob(i) = logits[i] - lse,  lse = log(sum_j exp(logits[j]))     (the raw log-softmax)
//
//   FINAL = false: workgroup g over logits[g * SPAN, (g + 1) * SPAN): its K largest (value,
//                  index), largest first (the smaller index first on ties, as torch.topk's
//                  stable order), into part_v / part_i [g * K ..), and its (max, sum of
//                  exp(x - max)) into part_m / part_s [g]
//   FINAL = true:  one workgroup merges the PARTS parts: lse into rec[2], and the K largest as
//                  rec[4 + 2j] = index, rec[5 + 2j] = bitcast(logprob), largest first
//
// Each round of the K picks the workgroup's largest remaining candidate by a tree reduction
// and takes it out of its owner's registers: K rounds of log2(WG) barrier steps, with every
// candidate read from memory once.
//
// Bindings: 0 logits (V) f32, 1 part_v (PARTS K) f32, 2 part_i (PARTS K) u32, 3 part_m (PARTS)
// f32, 4 part_s (PARTS) f32, 5 rec (4 + 2 K) u32.
// Dispatch: FINAL = false: (PARTS) with PARTS = ceil(V / SPAN); FINAL = true: (1).
// PARTS K must be at most WG * HELD (4096 candidates: V up to 417k at K = 20).

override V: u32;
override PARTS: u32;
override K: u32 = 0u;          // top logprobs wanted (0 to 20)
override FINAL: bool = false;
const WG: u32 = 256u;
const SPAN: u32 = 2048u;       // logits per workgroup in the first dispatch
const HELD: u32 = 16u;         // candidates an invocation holds in registers, at most
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> part_v: array<f32>;
@group(0) @binding(2) var<storage, read_write> part_i: array<u32>;
@group(0) @binding(3) var<storage, read_write> part_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_s: array<f32>;
@group(0) @binding(5) var<storage, read_write> rec: array<u32>;

var<workgroup> wv: array<f32, WG>;
var<workgroup> wi: array<u32, WG>;
var<workgroup> ws: array<f32, WG>;

// Does (v, i) beat (bv, bi)? Larger value, or equal value and smaller index.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return bi == NONE || (i != NONE && (v > bv || (v == bv && i < bi)));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    // This invocation's candidates (value, index), and its share of the log-sum-exp: the
    // running max m and sum s of exp(x - m) over what it read.
    var hv: array<f32, HELD>;
    var hi: array<u32, HELD>;
    var m = -3.4e38;
    var s = 0.0;
    var n = 0u;
    if (FINAL) {
        for (var c = lid; c < PARTS * K; c += WG) {
            hv[n] = part_v[c];
            hi[n] = part_i[c];
            n++;
        }
        for (var g = lid; g < PARTS; g += WG) {
            let gm = part_m[g];
            let mm = max(m, gm);
            s = s * exp(m - mm) + part_s[g] * exp(gm - mm);
            m = mm;
        }
    } else {
        let end = min(V, (wid.x + 1u) * SPAN);
        for (var i = wid.x * SPAN + lid; i < end; i += WG) {
            let x = logits[i];
            let mm = max(m, x);
            s = s * exp(m - mm) + exp(x - mm);
            m = mm;
            hv[n] = x;
            hi[n] = i;
            n++;
        }
    }

    // The workgroup's (max, sum): a tree over (m, s) pairs.
    wv[lid] = m;
    ws[lid] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if (lid < h) {
            let a = wv[lid];
            let b = wv[lid + h];
            let mm = max(a, b);
            ws[lid] = ws[lid] * exp(a - mm) + ws[lid + h] * exp(b - mm);
            wv[lid] = mm;
        }
        workgroupBarrier();
    }
    let total_m = wv[0];
    let total_s = ws[0];
    workgroupBarrier();
    if (lid == 0u) {
        if (FINAL) {
            rec[2] = bitcast<u32>(total_m + log(total_s));
        } else {
            part_m[wid.x] = total_m;
            part_s[wid.x] = total_s;
        }
    }
    let lse = total_m + log(total_s);

    // K rounds: the largest remaining candidate of the workgroup, taken out by its owner.
    for (var r = 0u; r < K; r++) {
        var bv = -3.4e38;
        var bi = NONE;
        for (var c = 0u; c < n; c++) {
            if (beats(hv[c], hi[c], bv, bi)) {
                bv = hv[c];
                bi = hi[c];
            }
        }
        wv[lid] = bv;
        wi[lid] = bi;
        workgroupBarrier();
        for (var h = WG / 2u; h > 0u; h = h / 2u) {
            if (lid < h && beats(wv[lid + h], wi[lid + h], wv[lid], wi[lid])) {
                wv[lid] = wv[lid + h];
                wi[lid] = wi[lid + h];
            }
            workgroupBarrier();
        }
        let win_v = wv[0];
        let win_i = wi[0];
        workgroupBarrier();
        for (var c = 0u; c < n; c++) {
            if (hi[c] == win_i && win_i != NONE) {
                hi[c] = NONE;
            }
        }
        if (lid == 0u) {
            if (FINAL) {
                rec[4u + 2u * r] = win_i;
                rec[5u + 2u * r] = bitcast<u32>(win_v - lse);
            } else {
                part_v[wid.x * K + r] = win_v;
                part_i[wid.x * K + r] = win_i;
            }
        }
    }
}
