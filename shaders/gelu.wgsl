// GELU, GPT-2's tanh approximation, in place.
//
//   h = 0.5 * h * (1 + tanh(sqrt(2 / pi) * (h + 0.044715 * h^3)))        h: (T, N)
//
// h^3 is written as h * h * h: pow(h, 3.0) is undefined for negative h in WGSL. The tanh
// argument is clamped to +-15, where tanh is +-1 in f32, because some backends compute tanh
// through exp and overflow to NaN for large arguments.
//
// Bindings: 0 h (T, N), 1 params.
// Dispatch: (ceil(N / WG), T).

struct Params {
    T: u32,
    pos0: u32,
    lm_row0: u32,
    lm_rows: u32,
}

override N: u32;
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> h: array<f32>;
@group(0) @binding(1) var<storage, read> p: Params;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let t = gid.y;
    if (n >= N || t >= p.T) {
        return;
    }
    let i = t * N + n;
    let v = h[i];
    let u = clamp(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v), -15.0, 15.0);
    h[i] = 0.5 * v * (1.0 + tanh(u));
}
