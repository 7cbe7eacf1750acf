"""Phi-3, Phi-3.5 and Phi-4-mini (Phi3ForCausalLM): Llama's forward pass with the file's fused
weights, a partial rotary embedding, LongRoPE and a sliding window on every layer.

Shapes and names as llama.py's (the "model." prefix stripped), but the checkpoint holds q, k, v
as one matrix and gate, up as another, as the products run them:
layers.N.self_attn.qkv_proj (Linear: [(H + 2G) hd, C], q rows then k then v),
layers.N.self_attn.o_proj, layers.N.mlp.gate_up_proj ([2I, C], the gate rows then the up rows,
transformers' `chunk(2)`), layers.N.mlp.down_proj, the two RMSNorms, norm, embed_tokens and
lm_head (absent when tied: Phi-4-mini). No biases.

What differs from Llama, as transformers' modeling_phi3 and modeling_rope_utils compute it:
- partial rotary embedding: only the first R = int(hd * partial_rotary_factor) values of each
  head rotate (Phi-4-mini: 96 of 128), pairing value i with i + R/2; the rest pass as they are.
- LongRoPE ("longrope", or "su"/"yarn", which Phi3Config renames to it): the inverse
  frequencies are 1 / (short_factor_i theta^(2i / R)) while the sequence is at most
  original_max_position_embeddings long, long_factor's past it, and cos and sin are multiplied
  by the attention factor (sqrt(1 + ln(factor) / ln(original)), factor = max_position_embeddings
  / original_max_position_embeddings, unless the config gives them). This keeps a context of at
  most original_max_position_embeddings (4096 for Phi-3.5-mini and Phi-4-mini, as the 4096 kept
  for every family), so transformers' choice is always the short factors and the attention
  factor, and the table is made once.
- sliding_window on every layer where the config has one (Phi-3-mini-4k's 2047; Phi-3.5's and
  Phi-4-mini's 262144 are longer than the context kept, so no window).
"""

import math
from dataclasses import dataclass

from ..errors import short_repr
from .fields import Fields, is_real, quantization_of
from .llama import LlamaArch, LlamaConfig, _attention_sizes, layer_windows
from .rope import SANE, inv_freq, rope_table

PHI3_TYPES = {"phi3": "Phi3ForCausalLM"}
LONGROPE = ("longrope", "su", "yarn")   # Phi3Config reads "su" and "yarn" as "longrope"


@dataclass
class Phi3Config(LlamaConfig):
    """Phi3Config's keys: LlamaConfig's, and the rotary values of a head (R) and the attention
    factor of LongRoPE (1.0 without it)."""
    rotary_dims: int = 0
    attention_factor: float = 1.0
    original_max_position_embeddings: int = 0

    @classmethod
    def from_dict(cls, d, where="config.json"):
        f = Fields(d, where, "a phi3 model")
        act = d.get("hidden_act", "silu")
        if act != "silu":
            f.fail(f"hidden_act {short_repr(act)} is not supported; the MLP must be SwiGLU with "
                   f"'silu'")
        hidden, heads, kv_heads, head_dim = _attention_sizes(f)
        layers = f.positive_int("num_hidden_layers", limit=1024)
        max_pos = f.positive_int("max_position_embeddings")
        original = f.positive_int("original_max_position_embeddings", 4096)
        key = "rope_parameters" if d.get("rope_parameters") is not None else "rope_scaling"
        rope = d.get(key) or {}
        if not isinstance(rope, dict):
            f.fail(f"{key} must be an object, not {short_repr(rope)}")
        theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
        if not is_real(theta) or not SANE[0] <= theta <= SANE[1]:
            f.fail(f"rope_theta must be a number from {SANE[0]:g} to {SANE[1]:g}, not "
                   f"{short_repr(theta)}")
        partial = rope.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0))
        if not is_real(partial) or not 0 < partial <= 1:
            f.fail(f"partial_rotary_factor must be a number in (0, 1], not {short_repr(partial)}")
        rot = int(head_dim * partial)
        if rot % 8:
            f.fail(f"the rotary embedding turns {rot} values of each head (head_dim {head_dim} "
                   f"times partial_rotary_factor {partial}); webgpt needs a multiple of 8")
        kind = rope.get("rope_type", rope.get("type", "default"))
        scaling, factor = None, 1.0
        if kind in LONGROPE:
            scaling, factor = _longrope(f, key, rope, rot, max_pos, original)
        elif kind != "default":
            f.fail(f"{key} of type {short_repr(kind)} is not supported (only 'longrope' and "
                   f"the default rotary embedding are)")
        window = d.get("sliding_window")
        windows = () if window is None else layer_windows(
            f, ["sliding_attention"] * layers, window, layers, "")
        return cls(model_type="phi3", hidden_size=hidden,
                   intermediate_size=f.positive_int("intermediate_size", limit=1 << 20),
                   num_hidden_layers=layers, num_attention_heads=heads,
                   num_key_value_heads=kv_heads, head_dim=head_dim, vocab_size=f.positive_int(
                       "vocab_size"), max_position_embeddings=max_pos,
                   rms_norm_eps=f.number("rms_norm_eps", 1e-5, 0, 1), rope_theta=float(theta),
                   rope_scaling=scaling, tie_word_embeddings=bool(d.get("tie_word_embeddings")),
                   windows=windows, bos_token_id=d.get("bos_token_id"),
                   eos_token_id=d.get("eos_token_id"),
                   quantization=quantization_of(d, where, hidden, "hidden_size"),
                   rotary_dims=rot, attention_factor=factor,
                   original_max_position_embeddings=original if scaling else 0)


def _longrope(f, key, rope, rot, max_pos, original):
    """({"rope_type": "longrope", "short_factor": [...]}, attention factor) of a LongRoPE dict,
    as _compute_longrope_parameters: Phi3Config's top-level original_max_position_embeddings
    is the one it uses."""
    for name in ("short_factor", "long_factor"):
        v = rope.get(name)
        if not isinstance(v, list) or len(v) != rot // 2 or not all(
                is_real(x) and SANE[0] <= x <= SANE[1] for x in v):
            f.fail(f"{key}.{name} must list {rot // 2} numbers (half the rotated values of a "
                   f"head), not {short_repr(v)}")
    factor = rope.get("factor")
    if factor is None:
        factor = max_pos / original
    attention = rope.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    if not is_real(attention) or not 0 < attention <= 16:
        f.fail(f"{key}.attention_factor must be a number in (0, 16], not {short_repr(attention)}")
    return {"rope_type": "longrope", "short_factor": tuple(rope["short_factor"])}, float(attention)


class Phi3Arch(LlamaArch):
    name = "Phi-3"
    model_types = PHI3_TYPES
    config_class = Phi3Config

    def expected_shapes(self):
        """Canonical tensor name -> shape: the fused qkv_proj and gate_up_proj as the file
        holds them (Linear weights are [out, in])."""
        cfg, d = self.config, self.dims
        C, V, I = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size
        shapes = {"embed_tokens.weight": (V, C), "norm.weight": (C,)}
        if not cfg.tie_word_embeddings:
            shapes["lm_head.weight"] = (V, C)
        for i in range(cfg.num_hidden_layers):
            L = f"layers.{i}."
            shapes.update({
                L + "input_layernorm.weight": (C,), L + "post_attention_layernorm.weight": (C,),
                L + "self_attn.qkv_proj.weight": (d.qkv_cols, C),
                L + "self_attn.o_proj.weight": (C, d.q_cols),
                L + "mlp.gate_up_proj.weight": (2 * I, C), L + "mlp.down_proj.weight": (C, I),
            })
        return shapes

    def groups(self):
        """None: the file's qkv_proj and gate_up_proj are already one matrix each."""
        return []

    def max_context(self):
        """max_position_embeddings, and with LongRoPE at most original_max_position_embeddings
        (the short factors' range: see the module docstring)."""
        cfg = self.config
        return min(cfg.max_position_embeddings,
                   cfg.original_max_position_embeddings or cfg.max_position_embeddings)

    def constants(self):
        """The rotary table of the R rotated values, times the attention factor."""
        cfg = self.config
        return {"rope": rope_table(inv_freq(cfg.rotary_dims, cfg.rope_theta, cfg.rope_scaling),
                                   self.n_ctx, cfg.attention_factor)}

    def activations(self):
        out = super().activations()
        out["rope"] = self.n_ctx * self.config.rotary_dims * 4  # (n_ctx, R) cos | sin
        return out

    def rope_options(self, i):
        return {"rot": self.config.rotary_dims}
