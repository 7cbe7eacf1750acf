"""Read and check a safetensors header, without reading any tensor data.

The format: an 8-byte little-endian header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data;
offsets are relative to the first byte after the header. Everything a loader needs to stream
tensors straight to the GPU is in the header, so it is checked here in full: a bad file fails
at load with one sentence naming it, before any GPU work.
"""

import json
from dataclasses import dataclass

from .errors import ModelFolderError

# Dtypes the model can upload; their size in bytes.
DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2}
# The integer dtypes of a quantized folder's NAME.qweight tensors, allowed for those names
# only (folder.py checks which one against config.json's quantization).
QWEIGHT_SUFFIX = ".qweight"
QWEIGHT_DTYPE_SIZES = {"I8": 1, "U8": 1}

# GPT-2 XL's header is about 60 KB; a header this large is corruption, not a model.
MAX_HEADER = 100_000_000

U64 = (1 << 64) - 1

# One range request that usually holds the whole header, so the browser needs one round
# trip per file rather than two.
FIRST_READ = 1 << 16


@dataclass(frozen=True)
class TensorInfo:
    dtype: str      # 'F32' | 'F16' | 'BF16' | 'I8' | 'U8'
    shape: tuple
    start: int      # absolute byte offsets in the file: 8 + header length + data_offsets
    end: int

    @property
    def nbytes(self):
        return self.end - self.start


def _size_error(where, n, file_size):
    if n > MAX_HEADER:
        return ModelFolderError(
            f"{where} is not a safetensors file: its header length {n} is over {MAX_HEADER} bytes")
    return ModelFolderError(
        f"{where} is not a safetensors file (or is truncated): its header length {n} "
        f"runs past the end of the {file_size}-byte file")


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs):
    # json.loads would keep the last of two equal keys; two tensors of one name is corruption.
    d = {}
    for k, v in pairs:
        if k in d:
            raise _DuplicateKey(k)
        d[k] = v
    return d


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _show(v):
    """repr of a header value for a message, cut short (a corrupt header may hold anything)."""
    try:
        text = repr(v)
    except RecursionError:
        text = f"a deeply nested {type(v).__name__}"
    except ValueError:      # an int of more than 4300 digits
        text = "an integer of more than 4300 digits"
    return text if len(text) <= 60 else text[:50] + f"... ({len(text)} characters)"


def parse_header(header_bytes, file_size, name):
    """Check a header's JSON (the N bytes after the length) against the file's size.

    Returns {tensor name: TensorInfo} in file order. `name` (path or URL) names the file in
    messages.
    """
    n = len(header_bytes)
    if n > MAX_HEADER or 8 + n > file_size:
        raise _size_error(name, n, file_size)
    try:
        header = json.loads(bytes(header_bytes).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as e:
        raise ModelFolderError(f"{name} lists {_show(e.args[0])} twice in its header") from None
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
        raise ModelFolderError(f"{name} is not a safetensors file: its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise ModelFolderError(f"{name} is not a safetensors file: its header is not a JSON object")

    data_start = 8 + n
    data_size = file_size - data_start
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        what = f"tensor {_show(key)} in {name}"
        if not isinstance(entry, dict) or not all(
                k in entry for k in ("dtype", "shape", "data_offsets")):
            raise ModelFolderError(f"{what} lacks dtype, shape or data_offsets in the header")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        sizes = DTYPE_SIZES
        if key.endswith(QWEIGHT_SUFFIX):
            sizes = {**DTYPE_SIZES, **QWEIGHT_DTYPE_SIZES}
        if not isinstance(dtype, str) or dtype not in sizes:
            also = ""
            if isinstance(dtype, str) and dtype in QWEIGHT_DTYPE_SIZES:
                also = f" ({dtype} only for the {QWEIGHT_SUFFIX} tensors of a quantized folder)"
            raise ModelFolderError(
                f"{what} has dtype {_show(dtype)}; supported dtypes are "
                f"{', '.join(DTYPE_SIZES)}{also}")
        # The format stores sizes and offsets as u64.
        if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= U64 for d in shape):
            raise ModelFolderError(f"{what} has an invalid shape {_show(shape)}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) and 0 <= o <= U64 for o in offsets)):
            raise ModelFolderError(f"{what} has invalid data_offsets {_show(offsets)}")
        if offsets[0] > offsets[1]:
            raise ModelFolderError(
                f"{what} has data_offsets {_show(offsets)} that end before they begin")
        count = 0 if 0 in shape else 1
        for d in shape:
            count *= d
            if count > U64:     # no file holds this much; the byte count check refuses it
                break
        begin, end = offsets
        if end - begin != count * sizes[dtype]:
            raise ModelFolderError(
                f"{what} has {_show(end - begin)} bytes, but shape {_show(shape)} in {dtype} "
                f"needs {_show(count * sizes[dtype])}")
        tensors[key] = TensorInfo(dtype, tuple(shape), data_start + begin, data_start + end)

    ordered = sorted(tensors.items(), key=lambda kv: (kv[1].start, kv[1].end))
    prev_key, prev_end = None, data_start
    for key, info in ordered:
        # Zero-size tensors occupy no bytes and may sit anywhere.
        if info.start < prev_end and info.nbytes:
            raise ModelFolderError(
                f"tensor {_show(key)} in {name} overlaps tensor {_show(prev_key)} in the "
                f"file's data")
        if info.nbytes:
            prev_key, prev_end = key, info.end
    if ordered:
        need = max(info.end for _, info in ordered) - data_start
        if need > data_size:
            last = max(ordered, key=lambda kv: kv[1].end)[0]
            raise ModelFolderError(
                f"{name} is truncated: its header describes {need} bytes of tensor data "
                f"(through tensor {_show(last)}), but only {data_size} are present "
                f"({data_start + need} bytes expected in the file, {file_size} found)")
    return dict(ordered)


async def read_header(source, name):
    """Read and check the header of safetensors file `name` from a Source."""
    where = source.where(name)
    file_size = await source.size(name)
    if file_size < 8:
        raise ModelFolderError(
            f"{where} is too small to be a safetensors file ({file_size} bytes)")
    first = await source.read(name, 0, min(file_size, FIRST_READ))
    n = int.from_bytes(first[:8], "little")
    if n > MAX_HEADER or 8 + n > file_size:
        raise _size_error(where, n, file_size)
    if 8 + n <= len(first):
        header = first[8:8 + n]
    else:
        header = bytes(first[8:]) + await source.read(name, len(first), 8 + n)
    return parse_header(header, file_size, where)
