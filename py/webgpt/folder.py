"""Open a model folder (Hugging Face layout) and check all of it before any GPU work.

A folder holds config.json, the weights as model.safetensors or as shards listed in
model.safetensors.index.json, and the GPT-2 BPE files vocab.json + merges.txt. open_folder
reads only the small files and the safetensors headers; it returns a ModelSpec that says where
each tensor's bytes are, so the loader can stream them straight to GPU buffers.

Quantized folders (written by `build.py quantize`, format in webgpt/tools/quantize.py) have
"webgpt_quantization": {"bits": 8 or 4, "block": S} in config.json (spec.quantization, a
config.Quantization) and hold, in place of each quantized weight NAME (the four matrices of
every layer, QUANTIZED, and wte.weight), two tensors: NAME.qweight and NAME.scales. In
spec.tensors such a weight is one QuantizedRef under its plain name:

    ref = spec.tensors["h.0.mlp.c_fc.weight"]       # QuantizedRef
    ref.qweight   TensorRef, I8 [N, K] (bits 8) or U8 [N, K/2] (bits 4: value 2j in the low
                  nibble of byte j, 2j+1 in the high one, 4-bit two's complement)
    ref.scales    TensorRef, F16 [N, K/block]: w[n, k] = q[n, k] * scales[n, k // block]
    ref.bits, ref.block, ref.N, ref.K
    ref.shape     the weight's shape in a plain folder: Conv1D [K, N] ([in, out]), wte [V, C]
    ref.transposed  True for the Conv1D matrices (qweight row n = output n = column n of the
                  [in, out] weight); False for wte, whose rows stay token rows (N = V, K = C)

Every other tensor (and every tensor of a plain folder) is a TensorRef of a float dtype.
"""

import os
from dataclasses import dataclass

from .config import QUANTIZATION_KEY, parse_config
from .limits import json_budget, parse_json
from .safetensors import QWEIGHT_SUFFIX, read_header
from .errors import ModelFolderError
from .model import arch_for
from .model.gpt2 import LAYER_MATRICES
from .sources import open_source

__all__ = ["ModelFolderError", "ModelSpec", "TensorRef", "QuantizedRef", "open_folder",
           "expected_shapes", "quantized_names", "QUANTIZED"]

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt")
PREFIX = "transformer."

# The matrices of each layer that a quantized folder quantizes (Conv1D, [in, out]), and the
# suffixes of the two tensors that replace each quantized weight.
QUANTIZED = LAYER_MATRICES  # each layer's matrices the products read (model/gpt2.py)
QWEIGHT, SCALES = QWEIGHT_SUFFIX, ".scales"

LAYOUT = ("a model folder holds config.json, model.safetensors (or shards listed in "
          "model.safetensors.index.json), vocab.json and merges.txt")


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
    shape: tuple        # the plain weight's shape: [K, N] for Conv1D, [V, C] for wte
    transposed: bool    # True for Conv1D (shape is [K, N]), False for wte (shape is [N, K])

    @property
    def N(self):
        """Rows of qweight and scales: output features (Conv1D) or tokens (wte)."""
        return self.qweight.shape[0]

    @property
    def K(self):
        """Values per row: input features (Conv1D) or n_embd (wte)."""
        return self.shape[0] if self.transposed else self.shape[1]

    @property
    def dtype(self):
        return f"Q{self.bits}"

    @property
    def nbytes(self):
        return self.qweight.nbytes + self.scales.nbytes


@dataclass
class ModelSpec:
    config: object  # config.GPT2Config or config.LlamaConfig
    source: object
    # Canonical name -> where its bytes are: a TensorRef, or a QuantizedRef in a quantized
    # folder. Ordered by (file, offset) (a QuantizedRef by its qweight) so that a loader
    # walking the dict reads each file front to back.
    tensors: dict
    tokenizer_files: tuple = TOKENIZER_FILES

    @property
    def quantization(self):
        """None, or the folder's config.Quantization (bits, block)."""
        return self.config.quantization


def expected_shapes(config):
    """Canonical tensor name -> shape of the weights of this config's architecture
    (model/gpt2.py, model/llama.py)."""
    return arch_for(config).expected_shapes(config)


def quantized_names(config):
    """The weights a quantized folder stores quantized (the matrices the products read)."""
    return arch_for(config).quantized_names(config)


def _quantized_shapes(config, name):
    """(qweight shape, scales shape) of quantized weight `name` for this config."""
    q = config.quantization
    K, N = expected_shapes(config)[name]
    if arch_for(config).matrix_storage(name) == "rows":
        K, N = N, K                 # [N, K] as stored: rows are outputs (tokens for wte)
    return (N, K if q.bits == 8 else K // 2), (N, K // q.block)


def _shape(s):
    return "[" + ", ".join(map(str, s)) + "]"


async def open_folder(source):
    """Read and check a model folder; `source` is a Source or a path (a URL in the browser)."""
    if isinstance(source, (str, os.PathLike)):
        source = open_source(source)

    if not await source.exists("config.json"):
        raise ModelFolderError(f"{source.where('config.json')} is missing; {LAYOUT}")
    config = parse_config(await source.text("config.json"), source.where("config.json"))
    arch = arch_for(config)

    for name in arch.TOKENIZER_FILES:
        if not await source.exists(name):
            files = " and ".join(arch.TOKENIZER_FILES)
            raise ModelFolderError(
                f"{source.where(name)} is missing: add the {arch.NAME} tokenizer file"
                f"{'s' if len(arch.TOKENIZER_FILES) > 1 else ''} {files} to the folder (they "
                f"come with the model on Hugging Face)")

    files = await _weight_files(source)
    tensors = await _tensors(source, config, files)
    return ModelSpec(config=config, source=source, tensors=tensors,
                     tokenizer_files=arch.TOKENIZER_FILES)


async def _weight_files(source):
    """The safetensors files to read, each with the tensor names the index places in it
    (None for a single model.safetensors, which has no index)."""
    if await source.exists(SINGLE):
        return {SINGLE: None}
    if not await source.exists(INDEX):
        hint = ""
        if await source.exists("pytorch_model.bin"):
            hint = (" (the folder has pytorch_model.bin, a pickle webgpt does not read: "
                    "save the model as safetensors)")
        raise ModelFolderError(
            f"{source.where(SINGLE)} is missing, and there is no {INDEX} for a sharded "
            f"model either{hint}")

    where = source.where(INDEX)
    index = parse_json(await source.text(INDEX), where, budget=json_budget(INDEX))
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelFolderError(
            f"{where} has no \"weight_map\" object mapping tensor names to shard files")
    files = {}
    for tensor, file in weight_map.items():
        # A shard is a file beside the index: no paths, which could leave the folder.
        if (not isinstance(file, str) or not file or "/" in file or "\\" in file or "\0" in file
                or file in (".", "..")):
            raise ModelFolderError(
                f"{where} maps tensor {tensor!r} to {file!r}, which is not a file name in the folder")
        files.setdefault(file, set()).add(tensor)
    # Shard names sort in their numbered order, so the loader reads shard 1 first.
    files = dict(sorted(files.items()))
    for file in files:
        if not await source.exists(file):
            raise ModelFolderError(f"{source.where(file)} is missing; {INDEX} lists it as a shard")
    return files


async def _tensors(source, config, files):
    arch = arch_for(config)
    expected = expected_shapes(config)
    ignored = arch.ignored(config)
    tied = arch.tied_head(config)
    V, C = config.vocab_size, config.n_embd
    quant = config.quantization
    quantizable = set(quantized_names(config))
    config_where = source.where("config.json")
    found = {}      # canonical name -> (TensorRef, name as saved); NAME.qweight/.scales too

    for file, listed in files.items():
        where = source.where(file)
        header = await read_header(source, file)
        absent = sorted(listed - set(header)) if listed is not None else []
        if absent:
            raise ModelFolderError(
                f"{source.where(INDEX)} places tensor {absent[0]!r} in {where}, "
                f"which does not have it")
        for saved, info in header.items():
            name = saved[len(arch.PREFIX):] if saved.startswith(arch.PREFIX) else saved
            if name == tied:
                # An output projection tied to the token table (GPT-2 always, others by
                # config.json's tie_word_embeddings): the table serves, the copy is skipped.
                if info.shape == (V, C):
                    continue
                raise ModelFolderError(
                    f"tensor {saved!r} in {where} has shape {_shape(info.shape)}; "
                    f"expected {_shape((V, C))} (tied to the token table)")
            if name in ignored:
                continue
            part = next((p for p in (QWEIGHT, SCALES) if name.endswith(p)), None)
            base = name[:-len(part)] if part else name
            if part and base in expected:
                _check_part(saved, info, where, base, part, config, quantizable, config_where)
            elif name not in expected:
                raise ModelFolderError(
                    f"tensor {saved!r} in {where} is not a {arch.NAME} weight for this "
                    f"config.json (n_layer={config.n_layer})")
            if name in found:
                other, other_saved = found[name]
                raise ModelFolderError(
                    f"tensor {name!r} appears twice: as {other_saved!r} in "
                    f"{source.where(other.file)} and as {saved!r} in {where}")
            # Plain tensors are floats: read_header allows I8 and U8 for NAME.qweight only.
            if not part and info.shape != expected[name]:
                raise ModelFolderError(
                    f"tensor {saved!r} in {where} has shape {_shape(info.shape)}; "
                    f"expected {_shape(expected[name])}")
            found[name] = (TensorRef(file, info.dtype, info.shape, info.start, info.end), saved)

    if quant is not None:
        for name in quantizable:
            if name in found and name + QWEIGHT in found:
                (plain, plain_saved), (q, q_saved) = found[name], found[name + QWEIGHT]
                raise ModelFolderError(
                    f"tensor {name!r} is there twice, plain and quantized: as {plain_saved!r} "
                    f"in {source.where(plain.file)} and as {q_saved!r} in {source.where(q.file)}")
            if name in found:
                plain, plain_saved = found[name]
                raise ModelFolderError(
                    f"tensor {plain_saved!r} in {source.where(plain.file)} is not quantized, but "
                    f"{config_where} says the folder is ({QUANTIZATION_KEY}: {quant.bits}-bit, "
                    f"block {quant.block}): {name + QWEIGHT!r} and {name + SCALES!r} should "
                    f"hold it")

    want = [n for n in expected if quant is None or n not in quantizable]
    if quant is not None:
        want += [n + p for n in quantized_names(config) for p in (QWEIGHT, SCALES)]
    missing = [name for name in want if name not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        if len(files) == 1:
            in_what = source.where(next(iter(files)))
        else:
            in_what = f"the shards listed in {source.where(INDEX)}"
        raise ModelFolderError(f"tensor {missing[0]!r} is missing from {in_what}{more}")

    entries = {}
    for name in expected:
        if name in found:
            entries[name] = found[name][0]
        else:   # a quantized folder's weight: checked above, both parts are there
            qweight, scales = found[name + QWEIGHT][0], found[name + SCALES][0]
            entries[name] = QuantizedRef(qweight, scales, quant.bits, quant.block, expected[name],
                                         transposed=arch.matrix_storage(name) == "cols")
    order = {file: k for k, file in enumerate(files)}

    def position(item):
        ref = item[1]
        ref = ref.qweight if isinstance(ref, QuantizedRef) else ref
        return order[ref.file], ref.start

    return dict(sorted(entries.items(), key=position))


def _check_part(saved, info, where, base, part, config, quantizable, config_where):
    """Check NAME.qweight or NAME.scales (`part`) against config.json's quantization."""
    quant = config.quantization
    if quant is None:
        raise ModelFolderError(
            f"tensor {saved!r} in {where} is part of a quantized weight, but {config_where} "
            f"has no {QUANTIZATION_KEY!r} (bits, block) to say how to read it")
    if base not in quantizable:
        raise ModelFolderError(
            f"tensor {saved!r} in {where}: {base!r} is never quantized (only the token table "
            f"and the matrices the products read are)")
    qshape, sshape = _quantized_shapes(config, base)
    dtype, shape = (quant.qdtype, qshape) if part == QWEIGHT else ("F16", sshape)
    how = f"{quant.bits}-bit, block {quant.block} ({QUANTIZATION_KEY} in {config_where})"
    if info.dtype != dtype:
        raise ModelFolderError(
            f"tensor {saved!r} in {where} has dtype {info.dtype!r}; a {how} folder stores it "
            f"as {dtype}")
    if info.shape != shape:
        raise ModelFolderError(
            f"tensor {saved!r} in {where} has shape {_shape(info.shape)}; expected "
            f"{_shape(shape)} for {how}")
