"""Gemma 2 and Gemma 3 (text): their config, their tensors, and which ops run in which order.

Gemma2ForCausalLM (model_type gemma2), Gemma3ForCausalLM (gemma3_text, the 1B), and the
language model inside Gemma3ForConditionalGeneration checkpoints (gemma3, the 4B and larger:
config.json's text_config; tensors under "language_model.model." as Google published them, or
"model.language_model." as transformers 5 saves them; the vision tower's are skipped).

Shapes as llama.py's: C = hidden_size, H heads and G key/value heads of hd = head_dim values
(hd H need not be C: Gemma-2-2B has 8 x 256 = 2048 against C = 2304), I = intermediate_size,
V = vocab_size (256k, the output projection tied to the token table). Tensor names are
transformers' without the prefix: embed_tokens, layers.N.{input_layernorm,
post_attention_layernorm, pre_feedforward_layernorm, post_feedforward_layernorm},
layers.N.self_attn.{q,k,v,o}_proj, layers.N.self_attn.{q,k}_norm (Gemma 3),
layers.N.mlp.{gate,up,down}_proj, norm.

What differs from Llama, from transformers' modeling_gemma2 / modeling_gemma3 (each an option of
an op in webgpt.model.plan.Forward, so the kernels are the shared ones):
- every RMSNorm multiplies by (1 + w) (weights stored as offsets from 1; a GGUF file stores
  1 + w, so its norm_offset is 0);
- the token embedding times sqrt(hidden_size), as a float32 number (transformers runs it in the
  weights' dtype: in float32, as here and as llama.cpp does; a bfloat16 run rounds it, 33.94
  to 34.0 for Gemma 3 1B);
- four norms a layer: input_layernorm before attention and pre_feedforward_layernorm before the
  MLP as Llama's two, and post_attention_layernorm / post_feedforward_layernorm applied to each
  branch's output before it is added to the residual stream;
- GeGLU: down(gelu_tanh(gate) * up);
- attention scores scaled by query_pre_attn_scalar^-1/2 (not head_dim^-1/2);
- Gemma 2: the scores soft-capped (tanh(s / attn_logit_softcapping) * attn_logit_softcapping)
  and the logits likewise with final_logit_softcapping (Gemma 3's modeling passes no softcap to
  its attention, so its attn_logit_softcapping does nothing there either; its
  final_logit_softcapping, null in the published configs, applies where set);
- sliding layers (layer_types; Gemma 2: every other layer from the first, Gemma 3: five of six)
  attend to the last sliding_window positions (transformers' mask: i - W < j <= i); the cache
  keeps the whole context (at most 4096), so a mask over the window is enough;
- Gemma 3: q and k RMS-normalised per head ((1 + w) again), and two rotary tables: the global
  layers' (rope_theta, and rope scaling where the config has it: the 4B and up use linear
  factor 8) and the sliding layers' (rope_local_base_freq, 10000, unscaled).
"""

import math
from dataclasses import dataclass

from ..errors import short_repr
from .fields import Fields, SizeNames, is_real, quantization_of
from .llama import LlamaArch, _attention_sizes, layer_windows
from .rope import inv_freq, rope_dict, rope_settings, rope_table

GEMMA_TYPES = {"gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
               "gemma3": "Gemma3ForConditionalGeneration"}
# The config classes' defaults for keys a config.json may leave out (Gemma 3's
# Gemma3ForConditionalGeneration gives its text_config few keys).
DEFAULTS = {
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                   num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                   head_dim=256, max_position_embeddings=8192, sliding_window=4096),
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216,
                        num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                        head_dim=256, max_position_embeddings=131072, sliding_window=4096),
}
# The names a Gemma3ForConditionalGeneration checkpoint gives the language model (as Google
# published it, as transformers 5 saves it), and those of the parts that are not it.
MULTIMODAL_PREFIXES = ("language_model.model.", "model.language_model.")
MULTIMODAL_HEADS = ("language_model.lm_head.", "lm_head.")
VISION_PREFIXES = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                   "model.multi_modal_projector.")


@dataclass
class GemmaConfig(SizeNames):
    """Gemma 2 / Gemma 3 hyperparameters (Gemma2Config, Gemma3TextConfig keys)."""
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float                  # the global layers'
    rope_scaling: dict                 # the global layers' (None, or linear's {"factor"})
    rope_local_theta: float            # the sliding layers' (Gemma 3; Gemma 2's: rope_theta)
    windows: tuple                     # each layer's sliding window (0: global)
    query_pre_attn_scalar: float
    attn_logit_softcapping: float = None
    final_logit_softcapping: float = None
    qk_norm: bool = False              # Gemma 3
    tie_word_embeddings: bool = True
    attention_bias = False             # never (refused): Llama's groups() asks
    norm_offset: float = 1.0           # RMSNorm weights are w - 1 (0: a GGUF file's, 1 + w)
    bos_token_id: object = None
    eos_token_id: object = None
    quantization: object = None

    @property
    def embed_scale(self):
        """sqrt(hidden_size): the token embedding's factor (rounded to float32 by the kernel)."""
        return math.sqrt(self.hidden_size)

    @classmethod
    def from_dict(cls, d, where="config.json"):
        """The config of config.json's parsed object `d`, checked (a gemma3 config: its
        text_config)."""
        model_type = d.get("model_type")
        if model_type == "gemma3":
            text = d.get("text_config")
            if not isinstance(text, dict):
                Fields(d, where, "a gemma3 model").fail(
                    f"text_config must be an object (Gemma 3's language model), not "
                    f"{short_repr(text)}")
            got = cls.from_dict(dict(text, model_type="gemma3_text"),
                                f"{where} (text_config)")
            got.model_type = "gemma3"
            # Gemma3Config's own key ties the head (the text_config's is not read there).
            got.tie_word_embeddings = bool(d.get("tie_word_embeddings", True))
            if got.eos_token_id is None:
                got.eos_token_id = d.get("eos_token_id")
            return got
        gemma3 = model_type == "gemma3_text"
        f = Fields({**DEFAULTS[model_type], **d}, where, f"a {model_type} model")
        act = d.get("hidden_activation", d.get("hidden_act", "gelu_pytorch_tanh"))
        if act != "gelu_pytorch_tanh":
            f.fail(f"hidden_activation {short_repr(act)} is not supported; Gemma's MLP is GeGLU "
                   f"with 'gelu_pytorch_tanh'")
        for key in ("attention_bias", "use_bidirectional_attention"):
            if d.get(key):
                f.fail(f"{key} = {short_repr(d[key])} is not supported")
        hidden, heads, kv_heads, head_dim = _attention_sizes(f)
        layers = f.positive_int("num_hidden_layers", limit=1024)
        if gemma3:
            theta, scaling, local = _gemma3_rope(f)
            every = f.positive_int("sliding_window_pattern", 6, limit=1024)
        else:
            theta, scaling = rope_settings(f, 10000.0, kinds=())
            local, every = theta, 2
        types = d.get("layer_types")
        if types is None:   # as the config classes make it
            types = ["sliding_attention" if (i + 1) % every else "full_attention"
                     for i in range(layers)]
        windows = layer_windows(f, types, f.get("sliding_window"), layers,
                                "sliding_window is null")
        softcaps = [None if gemma3 else 50.0, None if gemma3 else 30.0]
        for n, key in enumerate(("attn_logit_softcapping", "final_logit_softcapping")):
            v = d.get(key, softcaps[n])
            if v is not None and (not is_real(v) or not 0 < v < 1e6):
                f.fail(f"{key} must be a positive number or null, not {short_repr(v)}")
            softcaps[n] = None if v is None else float(v)
        return cls(model_type=model_type, hidden_size=hidden,
                   intermediate_size=f.positive_int("intermediate_size", limit=1 << 20),
                   num_hidden_layers=layers, num_attention_heads=heads,
                   num_key_value_heads=kv_heads, head_dim=head_dim,
                   vocab_size=f.positive_int("vocab_size"),
                   max_position_embeddings=f.positive_int("max_position_embeddings"),
                   rms_norm_eps=f.number("rms_norm_eps", 1e-6, 0, 1),
                   rope_theta=theta, rope_scaling=scaling, rope_local_theta=local,
                   windows=windows or (0,) * layers,
                   query_pre_attn_scalar=f.number("query_pre_attn_scalar", 256, 0, 1 << 24),
                   # Gemma 3's attention takes no softcap (see the module docstring).
                   attn_logit_softcapping=None if gemma3 else softcaps[0],
                   final_logit_softcapping=softcaps[1], qk_norm=gemma3,
                   tie_word_embeddings=bool(d.get("tie_word_embeddings", True)),
                   bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"),
                   quantization=quantization_of(d, where, hidden, "hidden_size"))


def _gemma3_rope(f):
    """(global theta, global scaling, local theta) of a Gemma 3 config: transformers 5 writes
    rope_parameters {"full_attention": {...}, "sliding_attention": {...}}; older files
    rope_theta, rope_scaling (the global layers') and rope_local_base_freq."""
    params = f.get("rope_parameters")
    if params is not None:
        if not isinstance(params, dict) or not {"full_attention", "sliding_attention"} >= set(
                params):
            f.fail(f"rope_parameters must be an object with full_attention and "
                   f"sliding_attention entries, not {short_repr(params)}")
        theta, scaling = rope_dict(f, "rope_parameters.full_attention",
                                   params.get("full_attention"), f.get("rope_theta", 1e6),
                                   kinds=("linear",))
        local, _ = rope_dict(f, "rope_parameters.sliding_attention",
                             params.get("sliding_attention"),
                             f.get("rope_local_base_freq", 10000.0), kinds=())
        return theta, scaling, local
    theta, scaling = rope_settings(f, 1e6, kinds=("linear",))
    local, _ = rope_dict(f, "rope_local_base_freq", None, f.get("rope_local_base_freq", 10000.0))
    return theta, scaling, local


def _layer_names(i):
    L = f"layers.{i}."
    return L, L + "self_attn.", L + "mlp."


class GemmaArch(LlamaArch):
    name = "Gemma"
    model_types = GEMMA_TYPES
    config_class = GemmaConfig

    # ------------------------------------------------------------ the folder

    def canonical(self, saved):
        """"model." stripped (Gemma2ForCausalLM, Gemma3ForCausalLM); for a
        Gemma3ForConditionalGeneration checkpoint its language model's prefixes, and None for
        the vision tower's tensors."""
        if self.config.model_type != "gemma3":
            return super().canonical(saved)
        if saved.startswith(VISION_PREFIXES):
            return None
        for prefix in MULTIMODAL_PREFIXES + MULTIMODAL_HEADS:
            if saved.startswith(prefix):
                return ("lm_head." if prefix in MULTIMODAL_HEADS else "") + saved[len(prefix):]
        return saved

    def expected_shapes(self):
        """Canonical tensor name -> shape (Linear weights are [out, in])."""
        cfg = self.config
        C, V, I, hd = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size, cfg.head_dim
        H, G = cfg.num_attention_heads, cfg.num_key_value_heads
        shapes = {"embed_tokens.weight": (V, C), "norm.weight": (C,)}
        if not cfg.tie_word_embeddings:
            shapes["lm_head.weight"] = (V, C)
        for i in range(cfg.num_hidden_layers):
            L, A, M = _layer_names(i)
            for norm in ("input_layernorm", "post_attention_layernorm",
                         "pre_feedforward_layernorm", "post_feedforward_layernorm"):
                shapes[L + norm + ".weight"] = (C,)
            shapes.update({
                A + "q_proj.weight": (H * hd, C), A + "k_proj.weight": (G * hd, C),
                A + "v_proj.weight": (G * hd, C), A + "o_proj.weight": (C, H * hd),
                M + "gate_proj.weight": (I, C), M + "up_proj.weight": (I, C),
                M + "down_proj.weight": (C, I),
            })
            if cfg.qk_norm:
                shapes.update({A + "q_norm.weight": (hd,), A + "k_norm.weight": (hd,)})
        return shapes

    # ------------------------------------------------------------ sizes

    def activations(self):
        """Llama's, and the sliding layers' rotary table where it differs (Gemma 3)."""
        out = super().activations()
        if self._local_table():
            out["rope_local"] = out["rope"]   # (n_ctx, hd) cos | sin
        return out

    def _local_table(self):
        """Whether the sliding layers rotate by a table of their own."""
        cfg = self.config
        return any(cfg.windows) and (cfg.rope_local_theta != cfg.rope_theta or cfg.rope_scaling)

    def constants(self):
        """The rotary tables, written once: the global layers' and (Gemma 3) the sliding ones'."""
        cfg = self.config
        out = {"rope": rope_table(inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling),
                                  self.n_ctx)}
        if self._local_table():
            out["rope_local"] = rope_table(inv_freq(cfg.head_dim, cfg.rope_local_theta),
                                           self.n_ctx)
        return out

    # ------------------------------------------------------------ the forward pass

    def forward(self, f):
        """One forward pass of T tokens at positions pos0..pos0+T-1, recorded op by op into `f`."""
        cfg, d = self.config, self.dims
        C, I, one = cfg.hidden_size, cfg.intermediate_size, cfg.norm_offset
        scale = cfg.query_pre_attn_scalar ** -0.5
        local = "rope_local" if self._local_table() else "rope"
        f.embedding("embedding", ids="ids", table="embed_tokens.weight", positions=None,
                    out="x", scale=cfg.embed_scale)                     # x = embed[ids] sqrt(C) (T, C)
        for i in range(cfg.num_hidden_layers):
            L, A, M = _layer_names(i)
            window = cfg.windows[i] or None
            f.rms_norm(L + "input_layernorm", x="x", out="ln",
                       offset=one)                                      # ln = rms(x) (1 + w)  (T, C)
            f.linear(A + "qkv_proj", x="ln", out="qkv", K=C,
                     N=d.qkv_cols)                                      # qkv = ln @ Wqkv^T   (T, (H+2G) hd)
            f.rope(A + "rope", qkv="qkv", layer=i,
                   q_norm=A + "q_norm" if cfg.qk_norm else None,
                   k_norm=A + "k_norm" if cfg.qk_norm else None, norm_offset=one,
                   table=local if window else "rope")                   # q, k rotated; k, v -> caches[pos0 + t]
            f.attention(A + "attn", qkv="qkv", layer=i, out="att", scale=scale,
                        softcap=cfg.attn_logit_softcapping,
                        window=window)                                  # att = attention     (T, H hd)
            f.linear(A + "o_proj", x="att", out="ln", K=d.q_cols, N=C)  # ln = att @ Wo^T     (T, C)
            f.rms_norm(L + "post_attention_layernorm", x="ln", out="x", offset=one,
                       residual=True)                                   # x += rms(ln) (1 + w) (T, C)
            f.rms_norm(L + "pre_feedforward_layernorm", x="x", out="ln",
                       offset=one)                                      # ln = rms(x) (1 + w)  (T, C)
            f.linear(M + "gate_up_proj", x="ln", out="fc", K=C, N=2 * I)  # fc = ln @ [Wg; Wu]^T (T, 2I)
            f.linear(M + "down_proj", x="fc", out="ln", K=I, N=C,
                     geglu_in=True)                                     # ln = (gelu(g) u) @ Wd^T (T, C)
            f.rms_norm(L + "post_feedforward_layernorm", x="ln", out="x", offset=one,
                       residual=True)                                   # x += rms(ln) (1 + w) (T, C)
        f.rms_norm("norm", x="x", out="ln", offset=one)                 # ln = rms(x) (1 + w)  (T, C)
        f.lm_head("embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight",
                  x="ln", out="logits",
                  softcap=cfg.final_logit_softcapping)                  # logits = cap(ln @ W^T) (rows, V)
