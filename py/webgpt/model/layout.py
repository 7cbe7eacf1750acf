"""How a model runs on one adapter: kernel shapes and storage choices, resolved once.

`layouts(device)` gives the adapter's base layout; `resolve(base, ...)` fits it to one model
(rows for quantized or oversized matrices, no fused layer norm where the row does not fit in
workgroup memory) and checks what cannot be split, raising a sentence when the model cannot
run here. Nothing changes a Layout afterwards: it is a frozen value the weights, the plan and
the page's "How it works" panel all read.
"""

import dataclasses
from types import MappingProxyType


def _frozen(d):
    return MappingProxyType(dict(d))


# Fewer workgroups than this leave a large GPU partly idle (an H100 has 132 multiprocessors):
# gemv_ln's products with fewer take gemv_ln_few's shape.
FEW_WORKGROUPS = 256


@dataclasses.dataclass(frozen=True)
class Layout:
    """kind: "cpu" or "gpu" (kernels without barriers, or kernels that split reductions).

    weights: how a Conv1D matrix is kept: "cols", [in, out] as stored (matvec.wgsl: an
    invocation per 4 outputs, which a CPU streams fastest), or "rows", transposed on the GPU at
    load to one row per output (gemv.wgsl: a GPU needs many rows to spread the reads over).
    prefill: the prompt's products, "matvec" (one token at a time per invocation) or "matmul"
    (64x64 register tiles). fuse_ln: one-token products normalise their input themselves.
    f16: f16 matrices stay halves (else widened to f32 at load). attention: its workgroup size
    (attention_decode: for a decoded token's one query per head).
    attention_splits: at most this many chunks of keys per head, one workgroup each, when a
    decoded token attends (flash-decoding; 1: one workgroup per head), each of at least
    attention_chunk keys (a short context uses one workgroup per head). lm_head_ln: with
    fuse_ln, the LM head's workgroups also do the final norm. split_k: a prompt's residual
    products with a long K (K >= 2 N: the MLP's second product) cut K into this many ranges,
    one workgroup each, whose parts a reduce kernel adds (1: not cut).
    matvec / gemv / gemv_ln / lm_head: workgroup shapes (override constants) of those kernels;
    gemv_ln_few: gemv_ln's shape for a product whose rows would fill fewer than FEW_WORKGROUPS
    workgroups with gemv_ln's (more invocations a row, fewer rows a workgroup: more workgroups).
    """

    kind: str
    weights: str
    prefill: str
    fuse_ln: bool
    f16: bool
    attention: int
    attention_decode: int
    attention_splits: int
    attention_chunk: int
    lm_head_ln: bool
    split_k: int
    matvec: MappingProxyType
    gemv: MappingProxyType
    gemv_ln: MappingProxyType
    lm_head: MappingProxyType
    gemv_ln_few: MappingProxyType

    @classmethod
    def of(cls, value):
        """A Layout from a Layout or a mapping with its fields (e.g. a tuning variant)."""
        if isinstance(value, Layout):
            return value
        d = dict(value)
        d.setdefault("gemv_ln", d.get("gemv"))
        d.setdefault("gemv_ln_few", d.get("gemv_ln"))
        d.setdefault("kind", "gpu" if d.get("prefill") == "matmul" else "cpu")
        d.setdefault("attention_decode", d.get("attention"))
        d.setdefault("attention_splits", 1)
        d.setdefault("attention_chunk", 128)
        d.setdefault("lm_head_ln", False)
        d.setdefault("split_k", 1)
        for k in ("matvec", "gemv", "gemv_ln", "lm_head", "gemv_ln_few"):
            d[k] = _frozen(d[k])
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})

    def replace(self, **changes):
        for k in ("matvec", "gemv", "gemv_ln", "lm_head", "gemv_ln_few"):
            if k in changes:
                changes[k] = _frozen(changes[k])
        return dataclasses.replace(self, **changes)

    # Read like a dict as well (the page's worker and older scripts do).
    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)

    def keys(self):
        return [f.name for f in dataclasses.fields(self)]

    def as_dict(self):
        return {k: (dict(v) if isinstance(v, MappingProxyType) else v)
                for k, v in ((k, getattr(self, k)) for k in self.keys())}


def layouts(device, kind=None):
    """The base layout of this adapter (or of `kind`, "cpu" or "gpu"). On a CPU adapter a
    workgroup barrier switches between all its invocations, so kernels there work without
    barriers (one invocation per output); on a GPU they split each reduction across many
    invocations to keep memory busy."""
    if kind == "cpu" or (kind is None and device.is_cpu):
        # Widening halves costs more there than the bytes it saves (measured on SwiftShader:
        # 124M decodes in 237 ms/token with f32 weights, 323 with packed f16), so f16 files
        # are widened to f32 at load.
        return Layout.of({"kind": "cpu", "weights": "cols", "matvec": dict(TX=64, TY=1),
                          "gemv": dict(TPR=1, RPW=64), "lm_head": dict(TPR=1, RPW=64),
                          "attention": 64, "attention_decode": 64, "attention_splits": 1,
                          "attention_chunk": 128,
                          "lm_head_ln": False, "split_k": 1,
                          "prefill": "matvec",
                          "fuse_ln": False, "f16": False})
    # On a GPU each dependent dispatch costs microseconds of drain and refill, so the decode
    # products also do the layer norms before them (fuse_ln), and the prompt uses matmul's tiles.
    # gemv/lm_head shapes measured end to end on an H200 (tests/tune_kernels.py): with two or
    # four loads in flight per invocation, 1.5B f16 decodes at 2.9-3.0 ms/token at context 16
    # against 3.26 with one; the products that normalise x first do it for 16 rows per
    # workgroup rather than 8 (3.22 against 3.57 ms/token on a slower machine). Then by GPU
    # timestamps (tests/probe_decode.py --variants, H200, 2026-12-02): the products without a
    # norm, whose N = C rows are few, with 64 invocations per row rather than 32 (1.5B decode
    # pass 2474 us against 2688, 124M 471 against 505), and a decoded token's attention with
    # 128 invocations per head rather than 256 (1.5B at context 1000: 2751 us a pass against
    # 2809, 124M 507 against 519; 64 is best at context 16, 588 against 628 us for 1.5B's 48
    # attentions, and worst at 1000: 2953 us).
    # Two rows a row slot (PAIRS: one read of x for both) where that leaves enough workgroups.
    # A product with a fused norm over few rows (a small model's q|k|v, a Q4_K_M file's v
    # apart from q|k) spreads them over more workgroups, 64 invocations a row (gemv_ln_few).
    return Layout.of({"kind": "gpu", "weights": "rows", "matvec": dict(TX=8, TY=32),
                      "gemv": dict(TPR=64, RPW=4, U=2, PAIRS=True),
                      "gemv_ln": dict(TPR=16, RPW=16, U=2, PAIRS=True),
                      "gemv_ln_few": dict(TPR=64, RPW=4, U=2),
                      "lm_head": dict(TPR=16, RPW=16, U=4, PAIRS=True), "attention": 256,
                      "attention_decode": 128, "attention_splits": 16, "attention_chunk": 128,
                      "lm_head_ln": True, "split_k": 3, "prefill": "matmul", "fuse_ln": True,
                      "f16": True})


def resolve(base, device, dims, quantized):
    """`base` fitted to one model on `device`; raises (ValueError, MemoryError) with a sentence
    where the model cannot run here. dims: the architecture's sizes (webgpt.arch.Dims)."""
    C, V, n_ctx = dims.C, dims.V, dims.n_ctx
    if C % 4 or dims.head_size % 4:
        raise ValueError(f"n_embd ({C}) and the head size ({dims.head_size}) must be "
                         f"multiples of 4: the kernels read vec4s")
    limit = device.max_binding
    # Matrices are split into parts that fit; a prompt runs in chunks of as many tokens as its
    # activations' rows fit (plan.prompt_chunk), the context is kept as long as the KV cache
    # fits (Model: Architecture.binding_context). What is left is one token's row of each.
    biggest = {
        f"one token's row of {dims.widest_what}": dims.widest * 4,
        "one row of logits (vocab_size, f32)": V * 4,
    }
    size = lambda n: f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"
    for what, nbytes in biggest.items():
        if nbytes > limit:
            raise MemoryError(
                f"{what} needs {size(nbytes)} in one storage binding, but this adapter "
                f"({device.describe()}) allows {size(limit)}; use a smaller model")
    wg_bytes = device.limits.get("max-compute-workgroup-storage-size", 16384)
    need = (n_ctx + base.attention * 5) * 4  # scores, max/sum tree, vec4 partial sums
    if need > wg_bytes:
        raise MemoryError(
            f"attention keeps {n_ctx} scores in workgroup memory ({need} bytes in all), more "
            f"than this adapter's {wg_bytes}; n_positions must be at most "
            f"{wg_bytes // 4 - base.attention * 5}")
    # Quantized folders store rows; a matrix too big for one binding as [in, out] needs rows
    # too (rows split into parts; columns would not).
    rows = base.weights == "rows" or quantized or dims.biggest_matrix > limit
    # The fused layer norm stages the normalised row in workgroup memory.
    fuse_ln = base.fuse_ln and rows and C * 4 <= wg_bytes - 4096
    return base.replace(weights="rows" if rows else "cols", fuse_ln=fuse_ln)
