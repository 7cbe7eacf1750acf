"""Model hyperparameters, read from a model folder's config.json: GPT2Config (GPT-2's keys) and
LlamaConfig (LlamaConfig / Qwen2Config / Qwen3Config keys); parse_config picks one by
model_type. Keys that would change the math in ways the kernels do not implement are refused
with a sentence naming the key."""

from dataclasses import dataclass

from .errors import ModelFolderError
from .limits import json_budget, parse_json

# Both names are GPT-2's tanh approximation of GELU; any other activation would compute
# something the kernels do not implement, so it is refused rather than run wrong.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")

# Upper bounds far beyond any GPT-2 (XL: 48 layers, 1600 wide, 50257 tokens, 1024 positions),
# so that a corrupt config.json fails here with a sentence instead of building a table of a
# billion tensor names or asking the GPU for petabytes.
LIMITS = {"n_layer": 1024, "n_head": 1024, "n_embd": 1 << 16, "vocab_size": 1 << 24,
          "n_positions": 1 << 20}

# config.json's key for a folder written by `build.py quantize` (webgpt/tools/quantize.py).
QUANTIZATION_KEY = "webgpt_quantization"
QUANT_BITS = (8, 4)


def _show(v):
    """repr of a config value for a message, cut short."""
    try:
        text = repr(v)
    except RecursionError:
        text = f"a deeply nested {type(v).__name__}"
    return text if len(text) <= 60 else text[:50] + f"... ({len(text)} characters)"


@dataclass(frozen=True)
class Quantization:
    """How a quantized folder stores its matrices (webgpt/tools/quantize.py has the format).

    bits: 8 (signed int8 values) or 4 (signed 4-bit values, two per byte); block: how many
    consecutive inputs share one f16 scale (a multiple of 8).
    """
    bits: int
    block: int

    @property
    def qmax(self):
        return 127 if self.bits == 8 else 7

    @property
    def qdtype(self):
        """The safetensors dtype of the .qweight tensors."""
        return "I8" if self.bits == 8 else "U8"


def check_quantization(bits, block):
    """None when (bits, block) is a valid quantization, else the sentence that says why not."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in QUANT_BITS:
        return f"bits must be 8 or 4, not {_show(bits)}"
    if not isinstance(block, int) or isinstance(block, bool) or block <= 0 or block % 8:
        return f"block must be a positive multiple of 8, not {_show(block)}"
    return None


@dataclass
class GPT2Config:
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    n_positions: int
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    # Set for a quantized folder (config.json's "webgpt_quantization": {"bits", "block"}).
    quantization: Quantization = None

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
                f"{where} describes a {_show(model_type)} model; webgpt runs only GPT-2 ('gpt2')")

        # n_ctx is the older name of n_positions; transformers reads n_positions first.
        if "n_positions" not in d and "n_ctx" in d:
            d = dict(d, n_positions=d["n_ctx"])

        def positive_int(key):
            if key not in d:
                raise ModelFolderError(f"{where} lacks {key!r}, which GPT-2 needs")
            v = d[key]
            # bool is an int in Python, but true/false is never a size.
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ModelFolderError(
                    f"{where}: {key} must be a positive integer, not {_show(v)}")
            if v > LIMITS[key]:
                raise ModelFolderError(
                    f"{where}: {key} = {_show(v)} is far larger than any GPT-2 (at most "
                    f"{LIMITS[key]} here); the file is corrupt or describes another model")
            return v

        n_layer = positive_int("n_layer")
        n_head = positive_int("n_head")
        n_embd = positive_int("n_embd")
        vocab_size = positive_int("vocab_size")
        n_positions = positive_int("n_positions")
        if n_embd % n_head:
            raise ModelFolderError(
                f"{where}: n_embd ({n_embd}) must be a multiple of n_head ({n_head})")

        eps = d.get("layer_norm_epsilon", 1e-5)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
            raise ModelFolderError(
                f"{where}: layer_norm_epsilon must be a small positive number, not {_show(eps)}")

        act = d.get("activation_function", "gelu_new")
        if act not in TANH_GELU:
            raise ModelFolderError(
                f"{where}: activation_function {_show(act)} is not supported; webgpt implements "
                f"GPT-2's tanh GELU ('gelu_new' or 'gelu_pytorch_tanh')")

        # Options that change the weights' shapes or the attention math: refuse them here,
        # with the key named, rather than fail later on a shape or run a different model.
        n_inner = d.get("n_inner")
        if n_inner is not None and n_inner != 4 * n_embd:
            raise ModelFolderError(
                f"{where}: n_inner = {_show(n_inner)} is not supported; the MLP must be 4 * n_embd wide")
        if d.get("scale_attn_weights", True) is not True:
            raise ModelFolderError(f"{where}: scale_attn_weights = false is not supported")
        if d.get("scale_attn_by_inverse_layer_idx", False) is not False:
            raise ModelFolderError(
                f"{where}: scale_attn_by_inverse_layer_idx = true is not supported")

        quantization = _quantization(d, where, n_embd, "n_embd")

        return cls(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size,
                   n_positions=n_positions, layer_norm_epsilon=float(eps),
                   activation_function=act, quantization=quantization)


# ---------------------------------------------------------------- Llama, Qwen2, Qwen3

# model_type -> the architecture transformers names in config.json's "architectures".
LLAMA_TYPES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
               "qwen3": "Qwen3ForCausalLM"}
# Keys whose presence (with a value that changes the math) this implementation refuses.
_REFUSED = {
    "use_sliding_window": "sliding-window attention is not supported",
    "num_experts": "mixture-of-experts models are not supported",
    "num_local_experts": "mixture-of-experts models are not supported",
    "moe_intermediate_size": "mixture-of-experts models are not supported",
    "attn_logit_softcapping": "attention logit soft-capping is not supported",
    "final_logit_softcapping": "final logit soft-capping is not supported",
}


@dataclass
class LlamaConfig:
    """Llama-family hyperparameters (transformers' LlamaConfig / Qwen2Config / Qwen3Config keys).

    `context` is the context this runtime keeps (the KV cache's length): at most
    max_position_embeddings, and smaller where the adapter or memory asks (set at load).
    """
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
    bos_token_id: object = None
    eos_token_id: object = None        # an int or a list of ints
    quantization: Quantization = None
    context: int = 0

    # The names the rest of the package uses for every architecture.
    @property
    def n_layer(self):
        return self.num_hidden_layers

    @property
    def n_head(self):
        return self.num_attention_heads

    @property
    def n_embd(self):
        return self.hidden_size

    @property
    def n_positions(self):
        return self.context or self.max_position_embeddings

    @property
    def head_size(self):
        return self.head_dim

    @classmethod
    def from_dict(cls, d, where="config.json"):
        model_type = d.get("model_type")
        for key, why in _REFUSED.items():
            v = d.get(key)
            if v not in (None, False, 0, 0.0):
                raise ModelFolderError(f"{where}: {key} = {_show(v)}: {why}")
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise ModelFolderError(f"{where}: hidden_act {_show(act)} is not supported; the MLP "
                                   f"must be SwiGLU with 'silu'")

        def positive_int(key, default=None, limit=1 << 24):
            v = d.get(key, default)
            if v is None:
                raise ModelFolderError(f"{where} lacks {key!r}, which a {model_type} model needs")
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= limit:
                raise ModelFolderError(
                    f"{where}: {key} must be a positive integer (at most {limit}), not {_show(v)}")
            return v

        def number(key, default, low, high):
            v = d.get(key, default)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not low < v < high:
                raise ModelFolderError(f"{where}: {key} must be a number in ({low}, {high}), "
                                       f"not {_show(v)}")
            return float(v)

        hidden = positive_int("hidden_size", limit=1 << 16)
        heads = positive_int("num_attention_heads", limit=1024)
        kv_heads = positive_int("num_key_value_heads", heads, limit=1024)
        if heads % kv_heads:
            raise ModelFolderError(
                f"{where}: num_key_value_heads ({kv_heads}) must divide num_attention_heads "
                f"({heads}): each key/value head serves the same number of query heads")
        head_dim = d.get("head_dim")
        if head_dim is None:
            if hidden % heads:
                raise ModelFolderError(f"{where}: hidden_size ({hidden}) is not a multiple of "
                                       f"num_attention_heads ({heads}) and there is no head_dim")
            head_dim = hidden // heads
        head_dim = positive_int("head_dim", head_dim, limit=1024)
        # transformers 5 writes "rope_parameters" {"rope_type", "rope_theta", ...}; older
        # versions "rope_theta" and "rope_scaling" {"rope_type" or "type", ...}.
        key = "rope_parameters" if d.get("rope_parameters") is not None else "rope_scaling"
        rope_scaling = d.get(key)
        rope_theta = d.get("rope_theta", 10000.0)
        if rope_scaling is not None:
            if not isinstance(rope_scaling, dict):
                raise ModelFolderError(f"{where}: {key} must be an object, not "
                                       f"{_show(rope_scaling)}")
            rope_theta = rope_scaling.get("rope_theta", rope_theta)
            kind = rope_scaling.get("rope_type", rope_scaling.get("type", "default"))
            if kind == "default":
                rope_scaling = None
            elif kind != "llama3":
                raise ModelFolderError(
                    f"{where}: {key} of type {_show(kind)} is not supported (only 'llama3' "
                    f"and the default rotary embedding are)")
            else:
                for name in ("factor", "low_freq_factor", "high_freq_factor",
                             "original_max_position_embeddings"):
                    v = rope_scaling.get(name)
                    if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                        raise ModelFolderError(f"{where}: {key}.{name} must be a positive "
                                               f"number, not {_show(v)}")
                if rope_scaling["low_freq_factor"] >= rope_scaling["high_freq_factor"]:
                    raise ModelFolderError(f"{where}: {key}.low_freq_factor must be below "
                                           f"high_freq_factor")
        if not isinstance(rope_theta, (int, float)) or isinstance(rope_theta, bool) \
                or not 0 < rope_theta < float("inf"):
            raise ModelFolderError(f"{where}: rope_theta must be a positive number, not "
                                   f"{_show(rope_theta)}")
        if d.get("mlp_bias"):
            raise ModelFolderError(f"{where}: mlp_bias = true is not supported")
        attention_bias = bool(d.get("attention_bias", model_type == "qwen2"))
        if model_type == "qwen2" and d.get("attention_bias") is False:
            attention_bias = False
        eos = d.get("eos_token_id")
        quantization = _quantization(d, where, hidden, "hidden_size")
        return cls(model_type=model_type, hidden_size=hidden,
                   intermediate_size=positive_int("intermediate_size", limit=1 << 20),
                   num_hidden_layers=positive_int("num_hidden_layers", limit=1024),
                   num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                   vocab_size=positive_int("vocab_size"),
                   max_position_embeddings=positive_int("max_position_embeddings", limit=1 << 24),
                   rms_norm_eps=number("rms_norm_eps", 1e-6, 0, 1),
                   rope_theta=float(rope_theta),
                   rope_scaling=rope_scaling,
                   tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                   attention_bias=attention_bias, qk_norm=model_type == "qwen3",
                   bos_token_id=d.get("bos_token_id"), eos_token_id=eos,
                   quantization=quantization)


def _quantization(d, where, row, row_name):
    """config.json's webgpt_quantization (or None), checked; `row`: the rows' length, which
    config key `row_name` gives."""
    if QUANTIZATION_KEY not in d:
        return None
    q = d[QUANTIZATION_KEY]
    if not isinstance(q, dict) or set(q) != {"bits", "block"}:
        raise ModelFolderError(
            f"{where}: {QUANTIZATION_KEY} must be an object {{\"bits\": 8 or 4, "
            f"\"block\": B}}, not {_show(q)}")
    why = check_quantization(q["bits"], q["block"])
    if why:
        raise ModelFolderError(f"{where}: {QUANTIZATION_KEY}: {why}")
    if row % q["block"]:
        raise ModelFolderError(
            f"{where}: {QUANTIZATION_KEY} block {q['block']} does not divide {row_name} "
            f"({row}), the length of the rows it quantizes")
    return Quantization(q["bits"], q["block"])


def parse_config(text, where="config.json"):
    """GPT2Config or LlamaConfig from config.json text, by its model_type."""
    d = parse_json(text, where, budget=json_budget("config.json"))
    if not isinstance(d, dict):
        raise ModelFolderError(f"{where} must hold a JSON object of model settings")
    model_type = d.get("model_type", "gpt2")
    if model_type == "gpt2":
        return GPT2Config.from_json(text, where)
    if model_type in LLAMA_TYPES:
        archs = d.get("architectures")
        want = LLAMA_TYPES[model_type]
        if isinstance(archs, list) and archs and archs[0] != want:
            raise ModelFolderError(
                f"{where}: architectures {_show(archs)} is not supported for model_type "
                f"{model_type!r} (webgpt runs {want})")
        return LlamaConfig.from_dict(d, where)
    raise ModelFolderError(
        f"{where} describes a {_show(model_type)} model; webgpt runs GPT-2 ('gpt2'), Llama "
        f"('llama'), Qwen2 ('qwen2') and Qwen3 ('qwen3')")
