"""Rotary position embedding: config.json's rope settings and the table rope.wgsl reads.

Shared by the families that rotate q and k (llama.py, gemma.py, phi3.py): the inverse
frequencies as transformers computes them (float32, then the config's scaling: llama3's,
linear, longrope's short factors), and the (n_ctx, R) table of cos | sin per position that the
kernel reads instead of computing trigonometry on the GPU (R = the rotated values of a head:
all of them, or fewer with a partial rotary embedding).
"""

import math
import struct

from ..errors import short_repr
from .fields import is_real

LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
# The range of rope_theta and of llama3's scaling numbers: the frequencies are float32, which a
# theta of 1e-300 makes 1/0 and one of 1e308 overflows (real models: theta 1e4 to 1e7).
SANE = (1e-6, 1e20)


def rope_settings(f, default_theta=10000.0, kinds=("llama3",)):
    """(rope_theta, scaling) from config.json's Fields `f`: scaling is None (the default rotary
    embedding) or the scaling dict of one of `kinds` ("llama3": {"factor", "low_freq_factor",
    ...}; "linear": {"factor"}; "longrope": checked by the family that takes it). transformers
    5 writes "rope_parameters" {"rope_type", "rope_theta", ...}; older versions "rope_theta"
    and "rope_scaling" {"rope_type" or "type", ...}."""
    key = "rope_parameters" if f.get("rope_parameters") is not None else "rope_scaling"
    return rope_dict(f, key, f.get(key), f.get("rope_theta", default_theta), kinds)


def rope_dict(f, key, scaling, theta, kinds=("llama3",)):
    """(rope_theta, scaling) of one rope dict `scaling` (config.json's `key`, or None: the
    default rotary embedding at `theta`), as rope_settings."""
    if scaling is not None:
        if not isinstance(scaling, dict):
            f.fail(f"{key} must be an object, not {short_repr(scaling)}")
        theta = scaling.get("rope_theta", theta)
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind == "default":
            scaling = None
        elif kind not in kinds:
            f.fail(f"{key} of type {short_repr(kind)} is not supported (only "
                   f"{', '.join(map(repr, kinds))} and the default rotary embedding are)")
        elif kind in ("llama3", "linear"):
            for name in LLAMA3_KEYS if kind == "llama3" else ("factor",):
                v = scaling.get(name)
                if not is_real(v) or not SANE[0] <= v <= SANE[1]:
                    f.fail(f"{key}.{name} must be a number from {SANE[0]:g} to {SANE[1]:g}, "
                           f"not {short_repr(v)}")
            if kind == "llama3" and scaling["low_freq_factor"] >= scaling["high_freq_factor"]:
                f.fail(f"{key}.low_freq_factor must be below high_freq_factor")
            scaling = dict(scaling, rope_type=kind)
    if not is_real(theta) or not SANE[0] <= theta <= SANE[1]:
        f.fail(f"rope_theta must be a number from {SANE[0]:g} to {SANE[1]:g}, not "
               f"{short_repr(theta)}")
    return float(theta), scaling


def _f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def inv_freq(head_dim, theta, scaling=None):
    """The rotary inverse frequencies (head_dim / 2 of them: head_dim is the values rotated) as
    transformers computes them: in float32, then llama3's scaling (Llama 3.1/3.2) where the
    config has it, linear's (Gemma 3's global layers: divided by the factor), longrope's short
    factors ({"rope_type": "longrope", "short_factor": [...]}: 1 / (factor theta^(2i / d))),
    or a GGUF file's per-frequency factors ({"rope_type": "factors", "factors": [...]})."""
    powers = [_f32(theta ** _f32(_f32(2 * i) / head_dim)) for i in range(head_dim // 2)]
    kind = scaling.get("rope_type") if scaling else None
    if kind == "longrope":
        return [_f32(1.0 / _f32(_f32(k) * p)) for p, k in zip(powers, scaling["short_factor"])]
    out = [_f32(1.0 / p) for p in powers]
    if not scaling:
        return out
    if kind == "linear":
        return [_f32(f / _f32(scaling["factor"])) for f in out]
    if kind == "factors":
        # A GGUF file's rope_freqs.weight (llama.cpp writes llama3's scaling as one factor per
        # frequency): each frequency divided by its factor, as llama.cpp's rope does.
        return [_f32(f / _f32(k)) for f, k in zip(out, scaling["factors"])]
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    scaled = []
    for f in out:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            g = f
        elif wavelen > low_wavelen:
            g = f / factor
        else:
            smooth = (old / wavelen - low) / (high - low)
            g = (1 - smooth) * f / factor + smooth * f
        scaled.append(_f32(g))
    return scaled


def rope_table(freqs, n_ctx, scale=1.0):
    """(n_ctx, R) float32 bytes for inverse frequencies `freqs` (R / 2 of them): row pos =
    cos(pos f_i) for i < R/2, then sin(pos f_i). The angle is rounded to float32 as
    transformers' float32 product is; cos and sin of it are then exact to float32. `scale`:
    the rope type's attention scaling (longrope's), multiplied in float32 as transformers does."""
    half = len(freqs)
    out = bytearray(n_ctx * half * 8)
    pack = struct.Struct(f"<{half}f{half}f").pack_into
    row = 0
    f32 = struct.Struct("<f")
    k = _f32(scale)
    for pos in range(n_ctx):
        angles = [f32.unpack(f32.pack(pos * f))[0] for f in freqs]
        values = [math.cos(a) for a in angles] + [math.sin(a) for a in angles]
        if scale != 1.0:
            values = [_f32(_f32(v) * k) for v in values]
        pack(out, row, *values)
        row += half * 8
    return bytes(out)
