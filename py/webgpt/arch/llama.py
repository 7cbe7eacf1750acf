"""Llama, Qwen2, Qwen3, Mistral and SmolLM3 (SmolLM2, Llama 3.x, TinyLlama, Qwen2.5, Qwen3,
Mistral 7B, SmolLM3): their config, their tensors, and which ops run in which order with which
weights.

Shapes: T tokens in the pass, C = hidden_size, V = vocab_size, n_ctx = the context kept,
H = num_attention_heads query heads and G = num_key_value_heads key/value heads of hd =
head_dim values each (hd * H need not equal C), I = intermediate_size.
Tensor names are transformers' without the "model." prefix (stripped at load):
embed_tokens, layers.N.input_layernorm, layers.N.self_attn.{q,k,v,o}_proj (Linear: [out, in]),
layers.N.self_attn.{q,k}_norm (Qwen3), layers.N.post_attention_layernorm,
layers.N.mlp.{gate,up,down}_proj, norm, lm_head (absent when tied to embed_tokens).

Differences from GPT-2, each one op: RMSNorm instead of layer norm (no bias; fused into the
product after it where the layout allows), no position table (rotary embedding applied to q
and k by rope.wgsl, which also stores k and v into the caches: no extra pass over the cache),
grouped-query attention (keys and values stored once per KV head), and the SwiGLU MLP: gate and
up are one product into (T, 2I), which the down projection reads as silu(gate) * up.

q, k and v are one logical product (qkv_proj), gate and up another (gate_up_proj): the weights
keep the files' tensors, each its own part of the logical matrix (`groups`).

Per layer, as each family's config says: a sliding window (Mistral's `sliding_window` on every
layer; Qwen2/Qwen3 with `use_sliding_window` on the layers from `max_window_layers`, or as
`layer_types` says; SmolLM3 as `layer_types` says): attention to the last W positions only,
the boundary of transformers' masks (masking_utils: key j is seen from query i when
i - W < j <= i). The KV cache keeps the whole context (at most 4096 positions), so a mask over
the window is all it takes; no ring buffer. And SmolLM3's layers without rotary embedding
(`no_rope_layers`: 0 where a layer has none): rope.wgsl only stores their keys and values.
"""

from dataclasses import dataclass

from ..errors import short_repr
from .base import Architecture, Dims
from .fields import Fields, Quantization, SizeNames, is_whole, quantization_of
from .rope import inv_freq, rope_settings, rope_table

# model_type -> the architecture transformers names in config.json's "architectures".
LLAMA_TYPES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
               "qwen3": "Qwen3ForCausalLM", "mistral": "MistralForCausalLM",
               "smollm3": "SmolLM3ForCausalLM"}
# rope_theta where config.json has none, as each config class defaults it.
DEFAULT_THETA = {"smollm3": 2000000.0}
# Keys whose presence (with a value that changes the math) this implementation refuses.
REFUSED = {
    "num_experts": "mixture-of-experts models are not supported",
    "num_local_experts": "mixture-of-experts models are not supported",
    "moe_intermediate_size": "mixture-of-experts models are not supported",
    "attn_logit_softcapping": "attention logit soft-capping is not supported",
    "final_logit_softcapping": "final logit soft-capping is not supported",
}
# The most context kept, whatever the model allows (the KV cache grows with it; SmolLM2 and
# Qwen say 8192 to 131072).
MAX_CONTEXT = 4096


@dataclass
class LlamaConfig(SizeNames):
    """Llama-family hyperparameters (transformers' LlamaConfig / Qwen2Config / Qwen3Config keys)."""
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
    rope_theta: float
    rope_scaling: dict = None          # None or {"rope_type": "llama3", ...}
    tie_word_embeddings: bool = False
    attention_bias: bool = False       # q/k/v biases (always for Qwen2)
    mlp_bias: bool = False
    qk_norm: bool = False              # Qwen3: RMSNorm of each q and k head
    windows: tuple = ()                # each layer's sliding window (0: none); () for none at all
    rope_layers: tuple = ()            # whether each layer rotates q and k (SmolLM3); (): all do
    bos_token_id: object = None
    eos_token_id: object = None        # an int or a list of ints
    quantization: Quantization = None

    @classmethod
    def from_dict(cls, d, where="config.json"):
        """The config of config.json's parsed object `d`, checked."""
        model_type = d.get("model_type")
        f = Fields(d, where, f"a {model_type} model")
        f.refuse(REFUSED)
        act = d.get("hidden_act", "silu")
        if act != "silu":
            f.fail(f"hidden_act {short_repr(act)} is not supported; the MLP must be SwiGLU with "
                   f"'silu'")
        if d.get("mlp_bias"):
            f.fail("mlp_bias = true is not supported")
        hidden, heads, kv_heads, head_dim = _attention_sizes(f)
        rope_theta, rope_scaling = rope_settings(f, DEFAULT_THETA.get(model_type, 10000.0))
        attention_bias = bool(d.get("attention_bias", model_type == "qwen2"))
        layers = f.positive_int("num_hidden_layers", limit=1024)
        return cls(model_type=model_type, hidden_size=hidden,
                   intermediate_size=f.positive_int("intermediate_size", limit=1 << 20),
                   num_hidden_layers=layers,
                   num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                   vocab_size=f.positive_int("vocab_size"),
                   max_position_embeddings=f.positive_int("max_position_embeddings"),
                   rms_norm_eps=f.number("rms_norm_eps", 1e-6, 0, 1),
                   rope_theta=rope_theta, rope_scaling=rope_scaling,
                   tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                   attention_bias=attention_bias, qk_norm=model_type == "qwen3",
                   windows=_windows(f, model_type, layers),
                   rope_layers=_rope_layers(f, layers) if model_type == "smollm3" else (),
                   bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"),
                   quantization=quantization_of(d, where, hidden, "hidden_size"))


def layer_windows(f, layer_types, window, n_layer, why_none):
    """Each layer's sliding window from `layer_types` (config.json's list of "full_attention"
    and "sliding_attention", one per layer) and the window W (None where the config has none:
    a sliding layer is then refused, `why_none` saying why); () where no layer slides."""
    if not isinstance(layer_types, list) or len(layer_types) != n_layer or any(
            t not in ("full_attention", "sliding_attention") for t in layer_types):
        f.fail(f"layer_types must list 'full_attention' or 'sliding_attention' for each of the "
               f"{n_layer} layers, not {short_repr(layer_types)}")
    if "sliding_attention" not in layer_types:
        return ()
    if window is None:
        f.fail(f"layer_types has sliding_attention layers, but {why_none}")
    if not is_whole(window) or window <= 0:
        f.fail(f"sliding_window must be a positive integer, not {short_repr(window)}")
    return tuple(window if t == "sliding_attention" else 0 for t in layer_types)


def _windows(f, model_type, n_layer):
    """Each layer's sliding window as transformers' config class for `model_type` makes its
    layer_types and sliding_window (Llama has none)."""
    d = f.d
    if model_type == "llama":
        return ()
    if model_type == "mistral":
        window = d.get("sliding_window", 4096)        # MistralConfig's default
        if window is None:
            return ()
        return layer_windows(f, ["sliding_attention"] * n_layer, window, n_layer, "")
    types = d.get("layer_types")
    if model_type == "smollm3":
        window = d.get("sliding_window")
        if types is None:
            # SmolLM3Config: the layers without rotary embedding slide, with use_sliding_window.
            slide = bool(d.get("use_sliding_window")) and window is not None
            types = ["sliding_attention" if slide and not rope else "full_attention"
                     for rope in _rope_layers(f, n_layer)]
        return layer_windows(f, types, window, n_layer, "there is no sliding_window")
    # Qwen2, Qwen3: sliding_window counts only with use_sliding_window; without layer_types,
    # the layers from max_window_layers on slide.
    window = d.get("sliding_window", 4096) if d.get("use_sliding_window") else None
    if types is None:
        if window is None:
            return ()
        first = d.get("max_window_layers", 28)
        if not is_whole(first) or first < 0:
            f.fail(f"max_window_layers must be a whole number, not {short_repr(first)}")
        types = ["sliding_attention" if i >= first else "full_attention" for i in range(n_layer)]
    return layer_windows(f, types, window, n_layer,
                         "use_sliding_window is not set, so transformers has no window for them")


def _rope_layers(f, n_layer):
    """SmolLM3's no_rope_layers (1 where a layer rotates q and k, 0 where it does not), or the
    pattern of no_rope_layer_interval (every interval-th layer without) where it has none."""
    flags = f.get("no_rope_layers")
    if flags is None:
        every = f.positive_int("no_rope_layer_interval", 4, limit=1 << 20)
        return tuple((i + 1) % every != 0 for i in range(n_layer))
    if not isinstance(flags, list) or len(flags) != n_layer or any(
            v not in (0, 1) or isinstance(v, float) for v in flags):
        f.fail(f"no_rope_layers must list 1 or 0 for each of the {n_layer} layers, not "
               f"{short_repr(flags)}")
    return tuple(bool(v) for v in flags)


def _attention_sizes(f):
    """(hidden_size, num_attention_heads, num_key_value_heads, head_dim), checked together."""
    hidden = f.positive_int("hidden_size", limit=1 << 16)
    heads = f.positive_int("num_attention_heads", limit=1024)
    kv_heads = f.positive_int("num_key_value_heads", heads, limit=1024)
    if heads % kv_heads:
        f.fail(f"num_key_value_heads ({kv_heads}) must divide num_attention_heads ({heads}): "
               f"each key/value head serves the same number of query heads")
    head_dim = f.get("head_dim")
    if head_dim is None:
        if hidden % heads:
            f.fail(f"hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads}) "
                   f"and there is no head_dim")
        head_dim = hidden // heads
    return hidden, heads, kv_heads, f.positive_int("head_dim", head_dim, limit=1024)


def _layer_names(i):
    L = f"layers.{i}."
    return L, L + "self_attn.", L + "mlp."


class LlamaArch(Architecture):
    name = "Llama/Qwen"
    model_types = LLAMA_TYPES
    config_class = LlamaConfig
    prefix = "model."  # LlamaForCausalLM's prefix of LlamaModel's names (lm_head has none)
    tokenizer_files = ("tokenizer.json",)
    layers_key = "num_hidden_layers"

    # ------------------------------------------------------------ the folder

    def expected_shapes(self):
        """Canonical tensor name -> shape of this config's weights (Linear weights are [out, in])."""
        cfg = self.config
        C, V, I, hd = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size, cfg.head_dim
        H, G = cfg.num_attention_heads, cfg.num_key_value_heads
        shapes = {"embed_tokens.weight": (V, C), "norm.weight": (C,)}
        if not cfg.tie_word_embeddings:
            shapes["lm_head.weight"] = (V, C)
        qkv_bias = cfg.attention_bias
        o_bias = cfg.attention_bias and cfg.model_type != "qwen2"
        for i in range(cfg.num_hidden_layers):
            L, A, M = _layer_names(i)
            shapes.update({
                L + "input_layernorm.weight": (C,), L + "post_attention_layernorm.weight": (C,),
                A + "q_proj.weight": (H * hd, C), A + "k_proj.weight": (G * hd, C),
                A + "v_proj.weight": (G * hd, C), A + "o_proj.weight": (C, H * hd),
                M + "gate_proj.weight": (I, C), M + "up_proj.weight": (I, C),
                M + "down_proj.weight": (C, I),
            })
            if qkv_bias:
                shapes.update({A + "q_proj.bias": (H * hd,), A + "k_proj.bias": (G * hd,),
                               A + "v_proj.bias": (G * hd,)})
            if o_bias:
                shapes[A + "o_proj.bias"] = (C,)
            if cfg.qk_norm:
                shapes.update({A + "q_norm.weight": (hd,), A + "k_norm.weight": (hd,)})
        return shapes

    def matrix_storage(self, name):
        """Every matrix the products read is stored as rows ([out, in]): nothing is transposed."""
        if name in ("embed_tokens.weight", "lm_head.weight"):
            return "rows"
        if name.startswith("layers.") and name.endswith("_proj.weight"):
            return "rows"
        return None

    def tied_head(self):
        """lm_head.weight where it is tied to embed_tokens (a file may still hold a copy)."""
        return "lm_head.weight" if self.config.tie_word_embeddings else None

    def ignored(self):
        """The rotary inverse frequencies older transformers versions saved (computed here
        from config.json)."""
        return {f"layers.{i}.self_attn.rotary_emb.inv_freq"
                for i in range(self.config.num_hidden_layers)}

    # ------------------------------------------------------------ sizes

    def max_context(self):
        return self.config.max_position_embeddings

    def context(self, device, layout):
        """max_position_embeddings, cut to what attention's workgroup memory holds on this
        adapter and to MAX_CONTEXT."""
        wg_bytes = device.limits.get("max-compute-workgroup-storage-size", 16384)
        fits = wg_bytes // 4 - layout.attention * 5
        return max(1, min(self.max_context(), fits, MAX_CONTEXT))

    @property
    def dims(self):
        cfg = self.config
        C, hd = cfg.hidden_size, cfg.head_dim
        H, G = cfg.num_attention_heads, cfg.num_key_value_heads
        return Dims(C=C, V=cfg.vocab_size, n_ctx=self.n_ctx, n_layer=cfg.num_hidden_layers,
                    n_head=H, n_kv=G, head_size=hd, eps=cfg.rms_norm_eps,
                    widest=max(2 * cfg.intermediate_size, (H + 2 * G) * hd),
                    widest_what="the MLP activations (n_positions x 2 intermediate_size, f32)",
                    biggest_matrix=max(cfg.intermediate_size, cfg.vocab_size) * C * 4)

    def activations(self):
        """{buffer name: bytes} of the activations, the KV cache and the rotary table."""
        cfg, d = self.config, self.dims
        C, n_ctx, f = cfg.hidden_size, self.n_ctx, 4
        out = {
            "x": n_ctx * C * f,                         # (T, C) residual stream
            "ln": n_ctx * C * f,                        # (T, C) RMSNorm output
            "qkv": n_ctx * d.qkv_cols * f,              # (T, (H + 2G) hd)
            "att": n_ctx * d.q_cols * f,                # (T, H hd) attention output
            "fc": n_ctx * 2 * cfg.intermediate_size * f,  # (T, 2I) gate | up
            "rope": n_ctx * cfg.head_dim * f,           # (n_ctx, hd) cos | sin per position
        }
        for i in range(cfg.num_hidden_layers):
            out[f"k_cache.{i}"] = n_ctx * d.kv_cols * f  # (n_ctx, G hd)
            out[f"v_cache.{i}"] = n_ctx * d.kv_cols * f
        return out

    def groups(self):
        """q, k, v run as one product (qkv_proj), gate and up as another (gate_up_proj)."""
        out = []
        for i in range(self.config.num_hidden_layers):
            _, A, M = _layer_names(i)
            out.append((A + "qkv_proj.weight", [A + p + "_proj.weight" for p in "qkv"]))
            if self.config.attention_bias:
                out.append((A + "qkv_proj.bias", [A + p + "_proj.bias" for p in "qkv"]))
            out.append((M + "gate_up_proj.weight",
                        [M + "gate_proj.weight", M + "up_proj.weight"]))
        return out

    def constants(self):
        """The rotary table, written once."""
        cfg = self.config
        return {"rope": rope_table(inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling),
                                   self.n_ctx)}

    def rope_options(self, i):
        """What layer i's rope op takes besides its buffers: no rotation for SmolLM3's layers
        without rotary embedding."""
        layers = self.config.rope_layers
        return {"rot": 0} if layers and not layers[i] else {}

    def window(self, i):
        """Layer i's sliding window, or None."""
        windows = self.config.windows
        return (windows[i] or None) if windows else None

    # ------------------------------------------------------------ the forward pass

    def forward(self, f):
        """One forward pass of T tokens at positions pos0..pos0+T-1, recorded op by op into `f`."""
        cfg, d = self.config, self.dims
        C, I = cfg.hidden_size, cfg.intermediate_size
        f.embedding("embedding", ids="ids", table="embed_tokens.weight", positions=None,
                    out="x")                                              # x = embed[ids]      (T, C)
        for i in range(cfg.num_hidden_layers):
            L, A, M = _layer_names(i)
            f.rms_norm(L + "input_layernorm", x="x", out="ln")           # ln = rms(x) w      (T, C)
            f.linear(A + "qkv_proj", x="ln", out="qkv", K=C,
                     N=d.qkv_cols)                                       # qkv = ln @ Wqkv^T (+ b) (T, (H+2G) hd)
            f.rope(A + "rope", qkv="qkv", layer=i,
                   q_norm=A + "q_norm" if cfg.qk_norm else None,
                   k_norm=A + "k_norm" if cfg.qk_norm else None,
                   **self.rope_options(i))                               # q, k rotated; k, v -> caches[pos0 + t]
            f.attention(A + "attn", qkv="qkv", layer=i, out="att",
                        window=self.window(i))                           # att = attention    (T, H hd)
            f.linear(A + "o_proj", x="att", out="x", K=d.q_cols, N=C,
                     residual=True)                                      # x += att @ Wo^T    (T, C)
            f.rms_norm(L + "post_attention_layernorm", x="x", out="ln")  # ln = rms(x) w      (T, C)
            f.linear(M + "gate_up_proj", x="ln", out="fc", K=C, N=2 * I)  # fc = ln @ [Wg; Wu]^T (T, 2I)
            f.linear(M + "down_proj", x="fc", out="x", K=I, N=C, residual=True,
                     swiglu_in=True)                                     # x += (silu(g) u) @ Wd^T (T, C)
        f.rms_norm("norm", x="x", out="ln")                              # ln = rms(x) w      (T, C)
        f.lm_head("embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight",
                  x="ln", out="logits")                                  # logits = ln @ W^T  (rows, V)
