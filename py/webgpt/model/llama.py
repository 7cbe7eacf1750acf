"""Llama, Qwen2 and Qwen3 (SmolLM2, Llama 3.x, TinyLlama, Qwen2.5, Qwen3): which ops run in
which order, with which weights.

Shapes: T tokens in the pass, C = hidden_size, V = vocab_size, n_ctx = the context kept,
H = num_attention_heads query heads and G = num_key_value_heads key/value heads of hd =
head_dim values each (hd * H need not equal C), I = intermediate_size.
Tensor names are transformers' without the "model." prefix (folder.py canonicalises them):
embed_tokens, layers.N.input_layernorm, layers.N.self_attn.{q,k,v,o}_proj (Linear: [out, in]),
layers.N.self_attn.{q,k}_norm (Qwen3), layers.N.post_attention_layernorm,
layers.N.mlp.{gate,up,down}_proj, norm, lm_head (absent when tied to embed_tokens).

Differences from GPT-2, each one op: RMSNorm instead of layer norm (no bias; fused into the
product after it where the layout allows), no position table (rotary embedding applied to q
and k by rope.wgsl, which also stores k and v into the caches: no extra pass over the cache),
grouped-query attention (keys and values stored once per KV head), and the SwiGLU MLP: gate and
up are one product into (T, 2I), which the down projection reads as silu(gate) * up.

q, k and v are one logical product (qkv_proj), gate and up another (gate_up_proj): the weights
keep the files' tensors, each its own part of the logical matrix (weights.py groups them).
"""

import math
import struct

from ..config import LlamaConfig

WIDTH_NOTE = "the MLP activations (n_positions x 2 intermediate_size, f32)"
NAME = "Llama/Qwen"
PREFIX = "model."  # LlamaForCausalLM's prefix of LlamaModel's names (lm_head has none)
TOKENIZER_FILES = ("tokenizer.json",)


def tied_head(cfg):
    """lm_head.weight where it is tied to embed_tokens (a file may still hold a copy)."""
    return "lm_head.weight" if cfg.tie_word_embeddings else None


def ignored(cfg):
    """Saved tensors that are not weights: the rotary inverse frequencies older transformers
    versions saved (computed here from config.json)."""
    return {f"layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(cfg.num_hidden_layers)}


def _layer_names(cfg, i):
    L = f"layers.{i}."
    return L, L + "self_attn.", L + "mlp."


def expected_shapes(cfg):
    """Canonical tensor name -> shape of this config's weights (Linear weights are [out, in])."""
    C, V, I, hd = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size, cfg.head_dim
    H, G = cfg.num_attention_heads, cfg.num_key_value_heads
    shapes = {"embed_tokens.weight": (V, C), "norm.weight": (C,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, C)
    qkv_bias = cfg.attention_bias
    o_bias = cfg.attention_bias and cfg.model_type != "qwen2"
    for i in range(cfg.num_hidden_layers):
        L, A, M = _layer_names(cfg, i)
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


def quantized_names(cfg):
    """The weights a quantized folder stores quantized: the token table, the LM head and each
    layer's seven matrices."""
    names = ["embed_tokens.weight"] + ([] if cfg.tie_word_embeddings else ["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        _, A, M = _layer_names(cfg, i)
        names += [A + p + "_proj.weight" for p in "qkvo"]
        names += [M + p + "_proj.weight" for p in ("gate", "up", "down")]
    return names


def groups(cfg):
    """[(logical name, [tensor names])]: tensors that run as one product (their rows stacked
    in this order), and their biases likewise."""
    out = []
    for i in range(cfg.num_hidden_layers):
        _, A, M = _layer_names(cfg, i)
        out.append((A + "qkv_proj.weight", [A + p + "_proj.weight" for p in "qkv"]))
        if cfg.attention_bias:
            out.append((A + "qkv_proj.bias", [A + p + "_proj.bias" for p in "qkv"]))
        out.append((M + "gate_up_proj.weight", [M + "gate_proj.weight", M + "up_proj.weight"]))
    return out


def dims(cfg):
    C, hd = cfg.hidden_size, cfg.head_dim
    return {"C": C, "V": cfg.vocab_size, "n_ctx": cfg.n_positions,
            "n_head": cfg.num_attention_heads, "n_kv": cfg.num_key_value_heads,
            "head_size": hd, "q_cols": cfg.num_attention_heads * hd,
            "qkv_cols": (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * hd,
            "n_layer": cfg.num_hidden_layers, "eps": cfg.rms_norm_eps,
            "widest": (max(2 * cfg.intermediate_size,
                           (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * hd),
                       WIDTH_NOTE),
            "biggest_matrix": max(cfg.intermediate_size, cfg.vocab_size) * C * 4}


def activations(cfg):
    """{buffer name: bytes} of the activations, the KV cache and the rotary table."""
    d = dims(cfg)
    C, n_ctx, f = cfg.hidden_size, d["n_ctx"], 4
    kv = cfg.num_key_value_heads * cfg.head_dim
    out = {
        "x": n_ctx * C * f,                         # (T, C) residual stream
        "ln": n_ctx * C * f,                        # (T, C) RMSNorm output
        "qkv": n_ctx * d["qkv_cols"] * f,           # (T, (H + 2G) hd)
        "att": n_ctx * d["q_cols"] * f,             # (T, H hd) attention output
        "fc": n_ctx * 2 * cfg.intermediate_size * f,  # (T, 2I) gate | up
        "rope": n_ctx * cfg.head_dim * f,           # (n_ctx, hd) cos | sin per position
    }
    for i in range(cfg.num_hidden_layers):
        out[f"k_cache.{i}"] = n_ctx * kv * f        # (n_ctx, G hd)
        out[f"v_cache.{i}"] = n_ctx * kv * f
    return out


def matrix_storage(name):
    """Every matrix the products read is stored as rows ([out, in]): nothing is transposed."""
    if name in ("embed_tokens.weight", "lm_head.weight"):
        return "rows"
    if name.startswith("layers.") and name.endswith("_proj.weight"):
        return "rows"
    return None


def is_matrix(name):
    return matrix_storage(name) is not None


def is_table(name):
    return False  # no position table


def inv_freq(cfg):
    """The rotary inverse frequencies (hd / 2 of them) as transformers computes them: in
    float32, then llama3's scaling (Llama 3.1/3.2) where the config has it."""
    hd, base = cfg.head_dim, cfg.rope_theta

    def f32(v):
        return struct.unpack("<f", struct.pack("<f", v))[0]

    out = [f32(1.0 / f32(base ** f32(f32(2 * i) / hd))) for i in range(hd // 2)]
    s = cfg.rope_scaling
    if s:
        factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
        old = s["original_max_position_embeddings"]
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
            scaled.append(f32(g))
        out = scaled
    return out


def rope_table(cfg, n_ctx):
    """(n_ctx, hd) float32 bytes: row pos = cos(pos f_i) for i < hd/2, then sin(pos f_i). The
    angle is rounded to float32 as transformers' float32 product is; cos and sin of it are then
    exact to float32."""
    freqs = inv_freq(cfg)
    half = len(freqs)
    out = bytearray(n_ctx * half * 8)
    pack = struct.Struct(f"<{half}f{half}f").pack_into
    row = 0
    f32 = struct.Struct("<f")
    for pos in range(n_ctx):
        angles = [f32.unpack(f32.pack(pos * f))[0] for f in freqs]
        pack(out, row, *[math.cos(a) for a in angles], *[math.sin(a) for a in angles])
        row += half * 8
    return bytes(out)


def constants(cfg):
    """{buffer name: bytes} written once when the plan is built: the rotary table."""
    return {"rope": rope_table(cfg, cfg.n_positions)}


def context(cfg, device, layout):
    """The context to keep: max_position_embeddings, cut to what attention's workgroup memory
    holds on this adapter and to 4096 (the KV cache grows with it; SmolLM2 and Qwen say 8192 to
    131072)."""
    wg_bytes = device.limits.get("max-compute-workgroup-storage-size", 16384)
    fits = wg_bytes // 4 - layout.attention * 5
    return max(1, min(cfg.max_position_embeddings, fits, 4096))


def forward(f, cfg):
    """One forward pass of T tokens at positions pos0..pos0+T-1, recorded op by op into `f`."""
    C, I = cfg.hidden_size, cfg.intermediate_size
    q_cols = cfg.num_attention_heads * cfg.head_dim
    qkv_cols = (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * cfg.head_dim
    f.embedding("embedding", ids="ids", table="embed_tokens.weight", positions=None,
                out="x")                                                  # x = embed[ids]      (T, C)
    for i in range(cfg.num_hidden_layers):
        L, A, M = _layer_names(cfg, i)
        f.rms_norm(L + "input_layernorm", x="x", out="ln")               # ln = rms(x) w      (T, C)
        f.linear(A + "qkv_proj", x="ln", out="qkv", K=C, N=qkv_cols)     # qkv = ln @ Wqkv^T (+ b) (T, (H+2G) hd)
        f.rope(A + "rope", qkv="qkv", layer=i,
               q_norm=A + "q_norm" if cfg.qk_norm else None,
               k_norm=A + "k_norm" if cfg.qk_norm else None)             # q, k rotated; k, v -> caches[pos0 + t]
        f.attention(A + "attn", qkv="qkv", layer=i, out="att")           # att = attention    (T, H hd)
        f.linear(A + "o_proj", x="att", out="x", K=q_cols, N=C,
                 residual=True)                                          # x += att @ Wo^T    (T, C)
        f.rms_norm(L + "post_attention_layernorm", x="x", out="ln")      # ln = rms(x) w      (T, C)
        f.linear(M + "gate_up_proj", x="ln", out="fc", K=C, N=2 * I)     # fc = ln @ [Wg; Wu]^T (T, 2I)
        f.linear(M + "down_proj", x="fc", out="x", K=I, N=C, residual=True,
                 swiglu_in=True)                                         # x += (silu(g) u) @ Wd^T (T, C)
    f.rms_norm("norm", x="x", out="ln")                                  # ln = rms(x) w      (T, C)
    f.lm_head("embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight",
              x="ln", out="logits")                                      # logits = ln @ W^T  (rows, V)


CONFIG = LlamaConfig
