"""Reading config.json's values, the checks every family's config class shares.

`Fields(d, where, what)` reads one config.json dict: each getter checks the value's type and
range and raises a ModelFolderError naming the file and key ("a positive integer (at most N),
not 'abc'"), so a corrupt or hostile config.json is one sentence, never a TypeError or a table
of a billion tensor names. `quantization_of` reads the key a folder written by `build.py
quantize` carries (webgpt/tools/quantize.py has the format).
"""

from dataclasses import dataclass

from ..errors import ModelFolderError, short_repr

# config.json's key for a folder written by `build.py quantize` (webgpt/tools/quantize.py).
QUANTIZATION_KEY = "webgpt_quantization"
QUANT_BITS = (8, 4)


def is_whole(v):
    """An int that is not a bool (true/false is never a size)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_real(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Fields:
    """Checked getters over one config.json dict `d`; `where` names the file in messages and
    `what` the model ("a llama model") in "lacks 'x', which a llama model needs"."""

    def __init__(self, d, where, what):
        self.d, self.where, self.what = d, where, what

    def fail(self, message):
        raise ModelFolderError(f"{self.where}: {message}")

    def get(self, key, default=None):
        return self.d.get(key, default)

    def positive_int(self, key, default=None, limit=1 << 24, too_big=None):
        """d[key] (or `default`), a whole number in [1, limit]. `too_big` replaces the
        message for a value above `limit` (its text follows "KEY = VALUE is ...")."""
        v = self.d.get(key, default)
        if v is None:
            raise ModelFolderError(f"{self.where} lacks {key!r}, which {self.what} needs")
        if not is_whole(v) or v <= 0 or (v > limit and too_big is None):
            self.fail(f"{key} must be a positive integer"
                      f"{'' if too_big else f' (at most {limit})'}, not {short_repr(v)}")
        if v > limit:
            self.fail(f"{key} = {short_repr(v)} is {too_big}")
        return v

    def number(self, key, default, low, high, what=None):
        """d[key] (or `default`) as a float, strictly between `low` and `high`."""
        v = self.d.get(key, default)
        if not is_real(v) or not low < v < high:
            self.fail(what or f"{key} must be a number in ({low}, {high}), not {short_repr(v)}")
        return float(v)

    def refuse(self, refused):
        """Fail on any key of `refused` ({key: why}) set to a value that changes the math."""
        for key, why in refused.items():
            v = self.d.get(key)
            if v not in (None, False, 0, 0.0):
                self.fail(f"{key} = {short_repr(v)}: {why}")


class SizeNames:
    """GPT-2's names for a transformers config's sizes (n_layer, n_head, n_embd, n_positions,
    head_size), which tools and the page read for every family; mixed into the config classes
    that have num_hidden_layers, num_attention_heads, hidden_size, max_position_embeddings and
    head_dim."""
    n_layer = property(lambda self: self.num_hidden_layers)
    n_head = property(lambda self: self.num_attention_heads)
    n_embd = property(lambda self: self.hidden_size)
    n_positions = property(lambda self: self.max_position_embeddings)
    head_size = property(lambda self: self.head_dim)


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
    if not is_whole(bits) or bits not in QUANT_BITS:
        return f"bits must be 8 or 4, not {short_repr(bits)}"
    if not is_whole(block) or block <= 0 or block % 8:
        return f"block must be a positive multiple of 8, not {short_repr(block)}"
    return None


def quantization_of(d, where, row, row_name):
    """config.json's webgpt_quantization (or None), checked; `row`: the rows' length, which
    config key `row_name` gives."""
    if QUANTIZATION_KEY not in d:
        return None
    q = d[QUANTIZATION_KEY]
    if not isinstance(q, dict) or set(q) != {"bits", "block"}:
        raise ModelFolderError(
            f"{where}: {QUANTIZATION_KEY} must be an object {{\"bits\": 8 or 4, "
            f"\"block\": B}}, not {short_repr(q)}")
    why = check_quantization(q["bits"], q["block"])
    if why:
        raise ModelFolderError(f"{where}: {QUANTIZATION_KEY}: {why}")
    if row % q["block"]:
        raise ModelFolderError(
            f"{where}: {QUANTIZATION_KEY} block {q['block']} does not divide {row_name} "
            f"({row}), the length of the rows it quantizes")
    return Quantization(q["bits"], q["block"])
