"""GPT-2 hyperparameters, read from a model folder's config.json (Hugging Face GPT2Config keys)."""

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

        quantization = None
        if QUANTIZATION_KEY in d:
            q = d[QUANTIZATION_KEY]
            if not isinstance(q, dict) or set(q) != {"bits", "block"}:
                raise ModelFolderError(
                    f"{where}: {QUANTIZATION_KEY} must be an object {{\"bits\": 8 or 4, "
                    f"\"block\": B}}, not {_show(q)}")
            why = check_quantization(q["bits"], q["block"])
            if why:
                raise ModelFolderError(f"{where}: {QUANTIZATION_KEY}: {why}")
            if n_embd % q["block"]:
                raise ModelFolderError(
                    f"{where}: {QUANTIZATION_KEY} block {q['block']} does not divide n_embd "
                    f"({n_embd}), the length of the rows it quantizes")
            quantization = Quantization(q["bits"], q["block"])

        return cls(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab_size,
                   n_positions=n_positions, layer_norm_epsilon=float(eps),
                   activation_function=act, quantization=quantization)
