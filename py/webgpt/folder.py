"""Open a model folder (Hugging Face layout) and check all of it before any GPU work.

A folder holds config.json, the weights as model.safetensors or as shards listed in
model.safetensors.index.json, and the GPT-2 BPE files vocab.json + merges.txt. open_folder
reads only the small files and the safetensors headers; it returns a ModelSpec that says where
each tensor's bytes are, so the loader can stream them straight to GPU buffers.
"""

import json
import os
from dataclasses import dataclass

from .config import GPT2Config
from .safetensors import read_header
from .sources import ModelFolderError, open_source

__all__ = ["ModelFolderError", "ModelSpec", "TensorRef", "open_folder", "expected_shapes"]

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt")
PREFIX = "transformer."

LAYOUT = ("a model folder holds config.json, model.safetensors (or shards listed in "
          "model.safetensors.index.json), vocab.json and merges.txt")


@dataclass(frozen=True)
class TensorRef:
    file: str       # file name within the folder, as the Source takes it
    dtype: str      # 'F32' | 'F16' | 'BF16'
    shape: tuple
    start: int      # absolute byte range [start, end) in that file
    end: int

    @property
    def nbytes(self):
        return self.end - self.start


@dataclass
class ModelSpec:
    config: GPT2Config
    source: object
    # Canonical name -> where its bytes are, ordered by (file, offset) so that a loader walking
    # the dict reads each file front to back.
    tensors: dict
    tokenizer_files: tuple = TOKENIZER_FILES


def expected_shapes(config):
    """Canonical tensor name -> shape, for GPT2Model's weights (Conv1D weights are [in, out])."""
    C, V, P = config.n_embd, config.vocab_size, config.n_positions
    shapes = {"wte.weight": (V, C), "wpe.weight": (P, C)}
    for i in range(config.n_layer):
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


def _ignored_buffers(n_layer):
    # The causal mask and its fill value, which older transformers versions saved as if they
    # were weights; the model builds its own mask.
    return {f"h.{i}.attn.{b}" for i in range(n_layer) for b in ("bias", "masked_bias")}


def _shape(s):
    return "[" + ", ".join(map(str, s)) + "]"


async def open_folder(source):
    """Read and check a model folder; `source` is a Source or a path (a URL in the browser)."""
    if isinstance(source, (str, os.PathLike)):
        source = open_source(source)

    if not await source.exists("config.json"):
        raise ModelFolderError(f"{source.where('config.json')} is missing; {LAYOUT}")
    config = GPT2Config.from_json(await source.text("config.json"), source.where("config.json"))

    for name in TOKENIZER_FILES:
        if not await source.exists(name):
            raise ModelFolderError(
                f"{source.where(name)} is missing: add GPT-2's tokenizer files vocab.json and "
                f"merges.txt to the folder (they come with the model on Hugging Face)")

    files = await _weight_files(source)
    tensors = await _tensors(source, config, files)
    return ModelSpec(config=config, source=source, tensors=tensors)


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
    try:
        index = json.loads(await source.text(INDEX))
    except ValueError as e:
        raise ModelFolderError(f"{where} is not valid JSON: {e}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelFolderError(
            f"{where} has no \"weight_map\" object mapping tensor names to shard files")
    files = {}
    for tensor, file in weight_map.items():
        # A shard is a file beside the index: no paths, which could leave the folder.
        if not isinstance(file, str) or not file or "/" in file or "\\" in file or file in (".", ".."):
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
    expected = expected_shapes(config)
    ignored = _ignored_buffers(config.n_layer)
    V, C = config.vocab_size, config.n_embd
    found = {}      # canonical name -> (TensorRef, name as saved)

    for file, listed in files.items():
        where = source.where(file)
        header = await read_header(source, file)
        absent = sorted(listed - set(header)) if listed is not None else []
        if absent:
            raise ModelFolderError(
                f"{source.where(INDEX)} places tensor {absent[0]!r} in {where}, "
                f"which does not have it")
        for saved, info in header.items():
            name = saved[len(PREFIX):] if saved.startswith(PREFIX) else saved
            if name == "lm_head.weight":
                # GPT-2 ties the output projection to wte; only that layout is supported.
                if info.shape == (V, C):
                    continue
                raise ModelFolderError(
                    f"tensor {saved!r} in {where} has shape {_shape(info.shape)}; "
                    f"expected {_shape((V, C))} (tied to wte)")
            if name in ignored:
                continue
            if name not in expected:
                raise ModelFolderError(
                    f"tensor {saved!r} in {where} is not a GPT-2 weight for this config.json "
                    f"(n_layer={config.n_layer})")
            if name in found:
                other, other_saved = found[name]
                raise ModelFolderError(
                    f"tensor {name!r} appears twice: as {other_saved!r} in "
                    f"{source.where(other.file)} and as {saved!r} in {where}")
            if info.shape != expected[name]:
                raise ModelFolderError(
                    f"tensor {saved!r} in {where} has shape {_shape(info.shape)}; "
                    f"expected {_shape(expected[name])}")
            found[name] = (TensorRef(file, info.dtype, info.shape, info.start, info.end), saved)

    missing = [name for name in expected if name not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        if len(files) == 1:
            in_what = source.where(next(iter(files)))
        else:
            in_what = f"the shards listed in {source.where(INDEX)}"
        raise ModelFolderError(f"tensor {missing[0]!r} is missing from {in_what}{more}")

    order = {file: k for k, file in enumerate(files)}
    items = sorted(found.items(), key=lambda kv: (order[kv[1][0].file], kv[1][0].start))
    return {name: ref for name, (ref, _) in items}
