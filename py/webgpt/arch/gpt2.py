"""GPT-2 (GPT2LMHeadModel: GPT-2 124M to 1.5B, distilgpt2, nanoGPT checkpoints): its config,
its tensors, and which ops run in which order with which weights.

Shapes: T tokens in the pass, C = n_embd, V = vocab_size, n_ctx = n_positions, hs = C / n_head.
Tensor names are the canonical ones (transformers' GPT2Model names without the
"transformer." prefix): wte, wpe, h.N.ln_1, h.N.attn.c_attn (Conv1D: [in, out]), ...

Everything GPU-side (kernels, bind groups, fusion of a layer norm into the product after it)
is the recorder's job (webgpt.model.plan.Forward); `forward` below is the model's definition,
as llm.c's gpt2_forward is.
"""

from dataclasses import dataclass
from typing import ClassVar

from ..errors import ModelFolderError, short_repr
from ..limits import json_budget, parse_json
from .base import Architecture, Dims
from .fields import Fields, Quantization, quantization_of

# Both names are GPT-2's tanh approximation of GELU; any other activation would compute
# something the kernels do not implement, so it is refused rather than run wrong.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")

# Upper bounds far beyond any GPT-2 (XL: 48 layers, 1600 wide, 50257 tokens, 1024 positions),
# so that a corrupt config.json fails here with a sentence instead of building a table of a
# billion tensor names or asking the GPU for petabytes.
LIMITS = {"n_layer": 1024, "n_head": 1024, "n_embd": 1 << 16, "vocab_size": 1 << 24,
          "n_positions": 1 << 20}

# The matrices the products read, per layer (Conv1D weights, [in, out] in the file).
LAYER_MATRICES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                  "mlp.c_proj.weight")


@dataclass
class GPT2Config:
    """GPT-2's hyperparameters (transformers' GPT2Config keys)."""
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    n_positions: int
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    # Set for a quantized folder (config.json's "webgpt_quantization": {"bits", "block"}).
    quantization: Quantization = None
    model_type: ClassVar[str] = "gpt2"

    @property
    def head_size(self):
        return self.n_embd // self.n_head

    @property
    def n_params(self):
        """Parameter count with lm_head tied to wte (as GPT-2 and Hugging Face count them)."""
        C = self.n_embd
        # ln_1, ln_2: 4C; c_attn: 3C*C + 3C; attn c_proj: C*C + C; c_fc: 4C*C + 4C; mlp c_proj: 4C*C + C
        per_layer = 12 * C * C + 13 * C
        return (self.vocab_size + self.n_positions) * C + self.n_layer * per_layer + 2 * C

    @classmethod
    def from_json(cls, text, where="config.json"):
        """Parse config.json text; `where` (its path or URL) names the file in error messages."""
        # Bounded: a config.json of a million nested lists is one sentence, not a traceback
        # or gigabytes of lists.
        d = parse_json(text, where, budget=json_budget("config.json"))
        if not isinstance(d, dict):
            raise ModelFolderError(f"{where} must hold a JSON object of GPT2Config keys")
        model_type = d.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ModelFolderError(
                f"{where} describes a {short_repr(model_type)} model; GPT2Config reads only GPT-2's "
                f"('gpt2')")
        return cls.from_dict(d, where)

    @classmethod
    def from_dict(cls, d, where="config.json"):
        """The config of config.json's parsed object `d`, checked."""
        # n_ctx is the older name of n_positions; transformers reads n_positions first.
        if "n_positions" not in d and "n_ctx" in d:
            d = dict(d, n_positions=d["n_ctx"])
        f = Fields(d, where, "GPT-2")

        def size(key):
            return f.positive_int(key, limit=LIMITS[key], too_big=(
                f"far larger than any GPT-2 (at most {LIMITS[key]} here); the file is corrupt "
                f"or describes another model"))

        n_layer, n_head, n_embd = size("n_layer"), size("n_head"), size("n_embd")
        vocab_size, n_positions = size("vocab_size"), size("n_positions")
        if n_embd % n_head:
            f.fail(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        eps = f.number("layer_norm_epsilon", 1e-5, 0, 1, what=(
            f"layer_norm_epsilon must be a small positive number, not "
            f"{short_repr(d.get('layer_norm_epsilon'))}"))
        act = d.get("activation_function", "gelu_new")
        if act not in TANH_GELU:
            f.fail(f"activation_function {short_repr(act)} is not supported; webgpt implements "
                   f"GPT-2's tanh GELU ('gelu_new' or 'gelu_pytorch_tanh')")
        _refuse_other_math(f, n_embd)
        return cls(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size,
                   n_positions=n_positions, layer_norm_epsilon=eps, activation_function=act,
                   quantization=quantization_of(d, where, n_embd, "n_embd"))


def _refuse_other_math(f, n_embd):
    """Options that change the weights' shapes or the attention math: refused here, with the
    key named, rather than failing later on a shape or running a different model."""
    n_inner = f.get("n_inner")
    if n_inner is not None and n_inner != 4 * n_embd:
        f.fail(f"n_inner = {short_repr(n_inner)} is not supported; the MLP must be 4 * n_embd wide")
    if f.get("scale_attn_weights", True) is not True:
        f.fail("scale_attn_weights = false is not supported")
    if f.get("scale_attn_by_inverse_layer_idx", False) is not False:
        f.fail("scale_attn_by_inverse_layer_idx = true is not supported")


class GPT2Arch(Architecture):
    name = "GPT-2"
    model_types = {"gpt2": None}  # GPT2LMHeadModel and GPT2Model checkpoints alike
    config_class = GPT2Config
    prefix = "transformer."  # GPT2LMHeadModel's prefix of GPT2Model's names
    tokenizer_files = ("vocab.json", "merges.txt")

    # ------------------------------------------------------------ the folder

    def expected_shapes(self):
        """Canonical tensor name -> shape, for GPT2Model's weights (Conv1D weights are [in, out])."""
        cfg = self.config
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

    def matrix_storage(self, name):
        """The token table is rows ([V, C]); each layer's four Conv1D matrices are columns."""
        if name == "wte.weight":
            return "rows"
        if name.startswith("h.") and name.split(".", 2)[-1] in LAYER_MATRICES:
            return "cols"
        return None

    def is_table(self, name):
        return name == "wpe.weight"

    def tied_head(self):
        """lm_head.weight is always the token table in GPT-2."""
        return "lm_head.weight"

    def ignored(self):
        """The causal mask and its fill value, which older transformers versions saved; the
        model builds its own mask."""
        return {f"h.{i}.attn.{b}" for i in range(self.config.n_layer)
                for b in ("bias", "masked_bias")}

    # ------------------------------------------------------------ sizes

    def max_context(self):
        return self.config.n_positions

    @property
    def dims(self):
        cfg = self.config
        C = cfg.n_embd
        return Dims(C=C, V=cfg.vocab_size, n_ctx=self.n_ctx, n_layer=cfg.n_layer,
                    n_head=cfg.n_head, n_kv=cfg.n_head, head_size=cfg.head_size,
                    eps=cfg.layer_norm_epsilon, widest=4 * C,
                    widest_what="the MLP activations (n_positions x 4 n_embd, f32)",
                    biggest_matrix=4 * C * C * 4)

    def activations(self):
        """{buffer name: bytes} of the activations and the KV cache, sized for the whole context."""
        C, n_ctx, f = self.config.n_embd, self.n_ctx, 4
        out = {
            "x": n_ctx * C * f,            # (T, C) residual stream
            "ln": n_ctx * C * f,           # (T, C) layer norm output
            "qkv": n_ctx * 3 * C * f,      # (T, 3C)
            "att": n_ctx * C * f,          # (T, C) attention output
            "fc": n_ctx * 4 * C * f,       # (T, 4C) MLP hidden
        }
        for i in range(self.config.n_layer):
            out[f"k_cache.{i}"] = n_ctx * C * f  # (n_ctx, C)
            out[f"v_cache.{i}"] = n_ctx * C * f  # (n_ctx, C)
        return out

    # ------------------------------------------------------------ the forward pass

    def forward(self, f):
        """One forward pass of T tokens at positions pos0..pos0+T-1, recorded op by op into `f`."""
        cfg = self.config
        C = cfg.n_embd
        f.embedding("embedding", ids="ids", table="wte.weight", positions="wpe.weight",
                    out="x")                                               # x = wte[ids] + wpe  (T, C)
        for i in range(cfg.n_layer):
            h = f"h.{i}."
            f.layer_norm(h + "ln_1", x="x", out="ln")                     # ln = ln_1(x)        (T, C)
            f.linear(h + "attn.c_attn", x="ln", out="qkv", K=C, N=3 * C,
                     kv=i)                                                # qkv = ln @ W + b    (T, 3C)
            #                                                               and k, v -> caches[pos0 + t]
            f.attention(h + "attn", qkv="qkv", layer=i, out="att")        # att = attention     (T, C)
            f.linear(h + "attn.c_proj", x="att", out="x", K=C, N=C,
                     residual=True)                                       # x += att @ W + b    (T, C)
            f.layer_norm(h + "ln_2", x="x", out="ln")                     # ln = ln_2(x)        (T, C)
            f.linear(h + "mlp.c_fc", x="ln", out="fc", K=C, N=4 * C,
                     gelu=True)                                           # fc = gelu(ln @ W + b) (T, 4C)
            f.linear(h + "mlp.c_proj", x="fc", out="x", K=4 * C, N=C,
                     residual=True)                                       # x += fc @ W + b     (T, C)
        f.layer_norm("ln_f", x="x", out="ln")                             # ln = ln_f(x)        (T, C)
        f.lm_head("wte.weight", x="ln", out="logits")                     # logits = ln @ wte^T (rows, V)
