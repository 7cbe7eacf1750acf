"""GPT-2: which ops run in which order, with which weights.

Shapes: T tokens in the pass, C = n_embd, V = vocab_size, n_ctx = n_positions, hs = C / n_head.
Tensor names are the canonical ones folder.py gives (transformers' GPT2Model names without
the "transformer." prefix): wte, wpe, h.N.ln_1, h.N.attn.c_attn (Conv1D: [in, out]), ...

Everything GPU-side (kernels, bind groups, fusion of a layer norm into the product after it)
is the recorder's job (plan.Forward); this module is the model's definition, as llm.c's
gpt2_forward is. A second architecture is a module beside this one with the same four
functions.
"""

NAME = "GPT-2"
PREFIX = "transformer."  # GPT2LMHeadModel's prefix of GPT2Model's names
TOKENIZER_FILES = ("vocab.json", "merges.txt")
# The matrices the products read, per layer (Conv1D weights, [in, out] in the file).
LAYER_MATRICES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                  "mlp.c_proj.weight")


def expected_shapes(cfg):
    """Canonical tensor name -> shape, for GPT2Model's weights (Conv1D weights are [in, out])."""
    C, V, P = cfg.n_embd, cfg.vocab_size, cfg.n_positions
    shapes = {"wte.weight": (V, C), "wpe.weight": (P, C)}
    for i in range(cfg.n_layer):
        h = f"h.{i}."
        shapes.update({
            h + "ln_1.weight": (C,), h + "ln_1.bias": (C,),
            h + "attn.c_attn.weight": (C, 3 * C), h + "attn.c_attn.bias": (3 * C,),
            h + "attn.c_proj.weight": (C, C), h + "attn.c_proj.bias": (C,),
            h + "ln_2.weight": (C,), h + "ln_2.bias": (C,),
            h + "mlp.c_fc.weight": (C, 4 * C), h + "mlp.c_fc.bias": (4 * C,),
            h + "mlp.c_proj.weight": (4 * C, C), h + "mlp.c_proj.bias": (C,),
        })
    shapes["ln_f.weight"] = (C,)
    shapes["ln_f.bias"] = (C,)
    return shapes


def quantized_names(cfg):
    """The weights a quantized folder stores quantized: wte and each layer's matrices."""
    return ["wte.weight"] + [f"h.{i}.{m}" for i in range(cfg.n_layer) for m in LAYER_MATRICES]


def tied_head(cfg):
    """The name of an output projection the file may hold that is tied to the token table
    (skipped when its shape matches), or None."""
    return "lm_head.weight"


def ignored(cfg):
    """Saved tensors that are not weights: the causal mask and its fill value, which older
    transformers versions saved; the model builds its own mask."""
    return {f"h.{i}.attn.{b}" for i in range(cfg.n_layer) for b in ("bias", "masked_bias")}


def dims(cfg):
    """The sizes the plan and the layout need, under the names they use."""
    C = cfg.n_embd
    return {"C": C, "V": cfg.vocab_size, "n_ctx": cfg.n_positions, "n_head": cfg.n_head,
            "head_size": C / cfg.n_head, "n_layer": cfg.n_layer,
            "eps": cfg.layer_norm_epsilon,
            "widest": (4 * C, "the MLP activations (n_positions x 4 n_embd, f32)"),
            "biggest_matrix": 4 * C * C * 4}


def activations(cfg):
    """{buffer name: bytes} of the activations and the KV cache, sized for the whole context."""
    C, n_ctx, f = cfg.n_embd, cfg.n_positions, 4
    out = {
        "x": n_ctx * C * f,            # (T, C) residual stream
        "ln": n_ctx * C * f,           # (T, C) layer norm output
        "qkv": n_ctx * 3 * C * f,      # (T, 3C)
        "att": n_ctx * C * f,          # (T, C) attention output
        "fc": n_ctx * 4 * C * f,       # (T, 4C) MLP hidden
    }
    for i in range(cfg.n_layer):
        out[f"k_cache.{i}"] = n_ctx * C * f  # (n_ctx, C)
        out[f"v_cache.{i}"] = n_ctx * C * f  # (n_ctx, C)
    return out


def matrix_storage(name):
    """How the file stores a matrix the products read: "rows" ([out, in]: the token table),
    "cols" ([in, out]: Conv1D), or None for a tensor that is not such a matrix."""
    if name == "wte.weight":
        return "rows"
    if name.startswith("h.") and name.split(".", 2)[-1] in LAYER_MATRICES:
        return "cols"
    return None


def is_matrix(name):
    return matrix_storage(name) is not None


def is_table(name):
    """A position table: kept as f16 halves where the layout keeps halves."""
    return name == "wpe.weight"


def forward(f, cfg):
    """One forward pass of T tokens at positions pos0..pos0+T-1, recorded op by op into `f`."""
    C = cfg.n_embd
    f.embedding("embedding", ids="ids", table="wte.weight", positions="wpe.weight",
                out="x")                                                   # x = wte[ids] + wpe  (T, C)
    for i in range(cfg.n_layer):
        h = f"h.{i}."
        f.layer_norm(h + "ln_1", x="x", out="ln")                         # ln = ln_1(x)        (T, C)
        f.linear(h + "attn.c_attn", x="ln", out="qkv", K=C, N=3 * C,
                 kv=i)                                                    # qkv = ln @ W + b    (T, 3C)
        #                                                                   and k, v -> caches[pos0 + t]
        f.attention(h + "attn", qkv="qkv", layer=i, out="att")            # att = attention     (T, C)
        f.linear(h + "attn.c_proj", x="att", out="x", K=C, N=C,
                 residual=True)                                           # x += att @ W + b    (T, C)
        f.layer_norm(h + "ln_2", x="x", out="ln")                         # ln = ln_2(x)        (T, C)
        f.linear(h + "mlp.c_fc", x="ln", out="fc", K=C, N=4 * C,
                 gelu=True)                                               # fc = gelu(ln @ W + b) (T, 4C)
        f.linear(h + "mlp.c_proj", x="fc", out="x", K=4 * C, N=C,
                 residual=True)                                           # x += fc @ W + b     (T, C)
    f.layer_norm("ln_f", x="x", out="ln")                                 # ln = ln_f(x)        (T, C)
    f.lm_head("wte.weight", x="ln", out="logits")                         # logits = ln @ wte^T (rows, V)
