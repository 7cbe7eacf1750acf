"""What a model reader returns: a ModelSpec, everything a model file or folder holds, read and
checked, with each tensor's bytes located but not read.

A reader (webgpt.folder for the Hugging Face folder layout) fills one in before any GPU work;
the loader then streams each tensor's bytes from `spec.source` straight into GPU buffers.

Quantized folders (written by `build.py quantize`, format in webgpt/tools/quantize.py) hold,
in place of each quantized weight NAME, two tensors: NAME.qweight and NAME.scales. In
spec.tensors such a weight is one QuantizedRef under its plain name:

    ref = spec.tensors["h.0.mlp.c_fc.weight"]       # QuantizedRef
    ref.qweight   TensorRef, I8 [N, K] (bits 8) or U8 [N, K/2] (bits 4: value 2j in the low
                  nibble of byte j, 2j+1 in the high one, 4-bit two's complement)
    ref.scales    TensorRef, F16 [N, K/block]: w[n, k] = q[n, k] * scales[n, k // block]
    ref.bits, ref.block, ref.N, ref.K
    ref.shape     the weight's shape in a plain folder: Conv1D [K, N] ([in, out]), wte [V, C]
    ref.transposed  True for the Conv1D matrices (qweight row n = output n = column n of the
                  [in, out] weight); False for rows ([out, in]: wte, Linear weights)

A GGUF file's matrices (webgpt.gguf_spec) are BlockRefs: rows of ggml blocks as the file
stores them (webgpt.ggml has the types), decoded by the kernels; its vectors are TensorRefs.

Every other tensor (and every tensor of a plain folder) is a TensorRef of a float dtype.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorRef:
    file: str       # file name within the folder, as the Source takes it
    dtype: str      # 'F32' | 'F16' | 'BF16'; 'I8' | 'U8' for a QuantizedRef's qweight
    shape: tuple
    start: int      # absolute byte range [start, end) in that file
    end: int

    @property
    def nbytes(self):
        return self.end - self.start


@dataclass(frozen=True)
class QuantizedRef:
    """A quantized weight: its two tensors and how to read them (see the module docstring)."""
    qweight: TensorRef  # I8 [N, K] or U8 [N, K/2]
    scales: TensorRef   # F16 [N, K/block]
    bits: int           # 8 | 4
    block: int          # inputs k per scale
    shape: tuple        # the plain weight's shape: [K, N] for Conv1D, [N, K] for rows
    transposed: bool    # True for Conv1D (shape is [K, N]), False for rows (shape is [N, K])

    @property
    def N(self):
        """Rows of qweight and scales: output features (tokens for a token table)."""
        return self.qweight.shape[0]

    @property
    def K(self):
        """Values per row: input features (n_embd for a token table)."""
        return self.shape[0] if self.transposed else self.shape[1]

    @property
    def dtype(self):
        return f"Q{self.bits}"

    @property
    def nbytes(self):
        return self.qweight.nbytes + self.scales.nbytes


@dataclass(frozen=True)
class BlockRef:
    """A GGUF matrix in one of ggml's types (webgpt.ggml), as the file stores it: N rows of K
    values each (one row per output; a token table's row per token), each row K / block values
    blocks. `shape` is the plain weight's shape as the architecture names it ([K, N] for a GPT-2
    Conv1D matrix, whose rows GGUF stores transposed). `permute`: for Llama's q and k, the number
    of heads whose rows llama.cpp's converter interleaved (rotary on pairs); the loader puts
    them back in transformers' order. 0 otherwise."""
    file: str
    ggml_type: str      # "Q4_K", "Q8_0", "F16", ...
    shape: tuple
    N: int
    K: int
    start: int
    end: int
    permute: int = 0

    @property
    def dtype(self):
        return self.ggml_type

    @property
    def nbytes(self):
        return self.end - self.start


@dataclass(frozen=True)
class GGUFQuantization:
    """spec.quantization of a GGUF model: the ggml types of its matrices, most bytes first."""
    types: tuple

    def __str__(self):
        return "+".join(self.types)


@dataclass
class ModelSpec:
    """A model as its reader found it.

    config     the architecture's config class (webgpt.arch: GPT2Config, LlamaConfig)
    source     the Source its bytes come from (webgpt.sources)
    tensors    canonical name -> TensorRef or QuantizedRef, ordered by (file, offset) (a
               QuantizedRef by its qweight) so that a loader walking it reads each file front
               to back
    tokenizer  the tokenizer (webgpt.tokenizer.Tokenizer or webgpt.hf_tokenizer.HFTokenizer),
               with its `chat_template` (None where the model has none)
    stop_ids   the ids that end generation: generation_config.json's eos_token_id and the
               tokenizer's end-of-text id
    gguf       for a GGUF model, a dict about the file(s): "files", "version", "architecture",
               "name" (general.name), "types" (ggml type -> bytes of matrices); None otherwise
    load_quantization  a Quantization (bits, block) the loader quantizes the float matrices to
               on the GPU as they stream in (webgpt.load(..., quantize=...)), or None
    """
    config: object
    source: object
    tensors: dict
    tokenizer: object = None
    stop_ids: frozenset = field(default_factory=frozenset)
    gguf: dict = None
    load_quantization: object = None

    @property
    def quantization(self):
        """None, the folder's Quantization (bits, block), a GGUF model's GGUFQuantization, or
        the Quantization its float matrices get at load (load_quantization:
        webgpt.load(..., quantize="q4"))."""
        if self.config.quantization is None and self.gguf is not None:
            types = self.gguf["types"]
            return GGUFQuantization(tuple(sorted(types, key=lambda t: -types[t])))
        if self.config.quantization is None and self.load_quantization is not None:
            return self.load_quantization
        return self.config.quantization
