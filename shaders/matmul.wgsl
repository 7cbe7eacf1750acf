// Matrix product with bias, for T > 1 (the prompt): tiled in workgroup memory.
//
//   out[t, n] = sum_k x[t, k] * W[k, n] + bias[n]           x: (T, K), W: (K, N), out: (T, N)
//   RESIDUAL: out[t, n] += (the above)                       (adds into the residual stream)
//
// W is a Conv1D weight exactly as GPT-2 checkpoints store it, [in, out]; no transpose.
// Each workgroup computes a TILE x TILE block of out; each invocation one element. Tiles of
// x and W are staged in workgroup memory so each value is read from memory once per block.
// Out-of-range rows and columns load zeros and store nothing, so any T, K, N work.
//
// Bindings: 0 x (T, K), 1 W (K, N), 2 bias (N), 3 out (T, N), 4 params.
// Dispatch: (ceil(N / TILE), ceil(T / TILE)).

struct Params {
    T: u32,
    pos0: u32,
    lm_row0: u32,
    lm_rows: u32,
}

override K: u32;
override N: u32;
override RESIDUAL: bool = false;
const TILE: u32 = 16u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> p: Params;

var<workgroup> xs: array<array<f32, TILE>, TILE>;   // xs[row][k]
var<workgroup> ws: array<array<f32, TILE>, TILE>;   // ws[k][col]

@compute @workgroup_size(TILE, TILE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = wid.x * TILE + lid.x;
    let t = wid.y * TILE + lid.y;
    var acc = 0.0;
    for (var k0 = 0u; k0 < K; k0 += TILE) {
        let kx = k0 + lid.x;
        let kw = k0 + lid.y;
        xs[lid.y][lid.x] = select(0.0, x[t * K + kx], t < p.T && kx < K);
        ws[lid.y][lid.x] = select(0.0, W[kw * N + n], kw < K && n < N);
        workgroupBarrier();
        for (var i = 0u; i < TILE; i++) {
            acc += xs[lid.y][i] * ws[i][lid.x];
        }
        workgroupBarrier();
    }
    if (t < p.T && n < N) {
        let v = acc + bias[n];
        if (RESIDUAL) {
            out[t * N + n] += v;
        } else {
            out[t * N + n] = v;
        }
    }
}
