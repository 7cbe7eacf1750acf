"""ggml's tensor types: what each GGUF type id is, how its blocks are laid out in bytes, and which
of them the kernels decode.

A ggml tensor of a block type stores each row (ne0 values, the input features of a matrix) as
ne0 / block_values blocks of block_bytes bytes, one after another; rows follow each other with
no padding. The layouts are ggml's (ggml-common.h in ggml-org/llama.cpp; the `gguf` package's
gguf/quants.py has a numpy decoder for each), and the kernels' decoder is the same table in WGSL
(shaders/gemv.wgsl, matmul.wgsl and embedding.wgsl: FMT 16 + the type id). Each block's values
are integers q with one or two f16 factors, w = a q + b:

    Q4_0  32 values in 18 bytes: d, 16 bytes of nibbles (value i < 16 low, i + 16 high)  w = d (q - 8)
    Q4_1  32 in 20: d, m, nibbles as Q4_0                                                w = d q + m
    Q5_0  32 in 22: d, 32 high bits (u32), nibbles; q = nibble | high << 4               w = d (q - 16)
    Q5_1  32 in 24: d, m, high bits, nibbles                                             w = d q + m
    Q8_0  32 in 34: d, 32 signed bytes                                                   w = d q
    Q2_K  256 in 84: 16 bytes of (scale | min << 4) per 16 values, 64 bytes of 2-bit q,
          d, dmin                                                        w = d sc q - dmin m
    Q3_K  256 in 110: 32 bytes of high bits, 64 of 2-bit q, 12 of 6-bit signed scales
          (per 16 values, -32), d; q = low - 4 where the high bit is 0     w = d sc q
    Q4_K  256 in 144: d, dmin, 12 bytes of 6-bit (scale, min) per 32 values, 128 of nibbles
                                                                         w = d sc q - dmin m
    Q5_K  256 in 176: as Q4_K with 32 bytes of fifth bits before the nibbles
    Q6_K  256 in 210: 128 bytes of low nibbles, 64 of high 2 bits, 16 int8 scales (per 16
          values), d; q - 32                                                w = d sc q
and the plain types F32, F16 and BF16 (one value each). Everything else ggml has (the IQ types,
the ternary TQ types, MXFP4, the integer types) is named in a sentence and refused.
"""

__all__ = ["TYPES", "GGMLType", "type_of", "KERNEL_TYPES", "row_bytes", "kernel_format"]


class GGMLType:
    """One ggml tensor type: its GGUF id, name, values per block and bytes per block."""

    __slots__ = ("id", "name", "block_values", "block_bytes")

    def __init__(self, id, name, block_values, block_bytes):
        self.id, self.name = id, name
        self.block_values, self.block_bytes = block_values, block_bytes

    def __repr__(self):
        return f"GGMLType({self.name})"

    @property
    def is_block(self):
        return self.block_values > 1


QK_K = 256
# id -> (name, values per block, bytes per block), as ggml numbers them. Ids 4, 5 (Q4_2, Q4_3)
# and 31-33, 36-38 were removed from ggml and never appear in a file of today.
_TABLE = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", QK_K, 84), 11: ("Q3_K", QK_K, 110), 12: ("Q4_K", QK_K, 144),
    13: ("Q5_K", QK_K, 176), 14: ("Q6_K", QK_K, 210), 15: ("Q8_K", QK_K, 292),
    16: ("IQ2_XXS", QK_K, 66), 17: ("IQ2_XS", QK_K, 74), 18: ("IQ3_XXS", QK_K, 98),
    19: ("IQ1_S", QK_K, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", QK_K, 110),
    22: ("IQ2_S", QK_K, 82), 23: ("IQ4_XS", QK_K, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", QK_K, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", QK_K, 54), 35: ("TQ2_0", QK_K, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}
TYPES = {i: GGMLType(i, *v) for i, v in _TABLE.items()}
BY_NAME = {t.name: t for t in TYPES.values()}

# The types the kernels decode (a Q2_K ... Q8_0 file holds only these). FMT of gemv, matmul
# and embedding: F32 0, F16 1, BF16 4, a block type 16 + its id.
KERNEL_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
FLOAT_TYPES = ("F32", "F16", "BF16")


def type_of(type_id):
    """The GGMLType of a GGUF type id, or None for an id ggml does not have."""
    return TYPES.get(type_id)


def row_bytes(t, K):
    """Bytes of one row of K values of type `t` (a GGMLType or its name); K is a multiple of
    its block."""
    t = BY_NAME[t] if isinstance(t, str) else t
    return K // t.block_values * t.block_bytes


def kernel_format(name):
    """The kernels' FMT override for ggml type `name` (one of KERNEL_TYPES)."""
    if name == "F32":
        return 0
    if name == "F16":
        return 1
    if name == "BF16":
        return 4
    return 16 + BY_NAME[name].id


def unsupported_sentence(name):
    """Why the kernels cannot run ggml type `name`: for messages."""
    if name.startswith("IQ"):
        kind = "an importance-matrix (IQ) type"
    elif name.startswith("TQ"):
        kind = "a ternary type"
    elif name in ("I8", "I16", "I32", "I64", "F64"):
        kind = "an integer or f64 type, which no model's matrices use"
    else:
        kind = "a type the kernels do not decode"
    return (f"{name} is {kind}; webgpt decodes {', '.join(KERNEL_TYPES)} (take the repository's "
            f"Q4_K_M, Q5_K_M, Q6_K or Q8_0 file)")
