"""Read and check a safetensors header, without reading any tensor data.

The format: an 8-byte little-endian header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data;
offsets are relative to the first byte after the header. Everything a loader needs to stream
tensors straight to the GPU is in the header, so it is checked here in full: a bad file fails
at load with one sentence naming it, before any GPU work.
"""

from dataclasses import dataclass

from .errors import ModelFolderError, short_repr
from .limits import no_cycle_collection, parse_json

# Dtypes the model can upload; their size in bytes.
DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2}
# The integer dtypes of a quantized folder's NAME.qweight tensors, allowed for those names
# only (folder.py checks which one against config.json's quantization).
QWEIGHT_SUFFIX = ".qweight"
QWEIGHT_DTYPE_SIZES = {"I8": 1, "U8": 1}
QWEIGHT_SIZES = {**DTYPE_SIZES, **QWEIGHT_DTYPE_SIZES}

# GPT-2 XL's header is about 60 KB, a shard of a large sharded model's a few hundred KB, and
# 100,000 tensors in one file would take about 10 MB; a larger header is corruption.
MAX_HEADER = 32 << 20
# What parsing a header may take (webgpt.limits.parse_json estimates it before parsing): a real
# header costs about 1 KB per tensor, a header of tiny nested lists 25 times its size.
HEADER_BUDGET = 256 << 20

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
    # Called for every object of the header: the usual case (no duplicate) stays in C.
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return d


def _u64s(values):
    """Whether `values` is a list of integers in 0..2**64-1 (bool is not one)."""
    return (type(values) is list and set(map(type, values)) <= {int}
            and (not values or (min(values) >= 0 and max(values) <= U64)))


def _what(key, name):
    return f"tensor {short_repr(key)} in {name}"


def parse_header(header_bytes, file_size, name):
    """Check a header's JSON (the N bytes after the length) against the file's size.

    Returns {tensor name: TensorInfo} in file order. `name` (path or URL) names the file in
    messages.
    """
    with no_cycle_collection():     # a header of 100,000 tensors makes 500,000 objects
        return _parse_header(header_bytes, file_size, name)


def _parse_header(header_bytes, file_size, name):
    n = len(header_bytes)
    if n > MAX_HEADER or 8 + n > file_size:
        raise _size_error(name, n, file_size)
    try:
        header = parse_json(header_bytes, name, budget=HEADER_BUDGET, hook=_no_duplicates,
                            subject=f"{name} is not a safetensors file: its header")
    except _DuplicateKey as e:
        raise ModelFolderError(f"{name} lists {short_repr(e.args[0])} twice in its header") \
            from None
    if not isinstance(header, dict):
        raise ModelFolderError(f"{name} is not a safetensors file: its header is not a JSON object")

    data_start = 8 + n
    data_size = file_size - data_start
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if type(entry) is not dict or "dtype" not in entry or "shape" not in entry \
                or "data_offsets" not in entry:
            raise ModelFolderError(f"{_what(key, name)} lacks dtype, shape or data_offsets in "
                                   f"the header")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        sizes = DTYPE_SIZES
        if key.endswith(QWEIGHT_SUFFIX):
            sizes = QWEIGHT_SIZES
        if type(dtype) is not str or dtype not in sizes:
            what = _what(key, name)
            also = ""
            if isinstance(dtype, str) and dtype in QWEIGHT_DTYPE_SIZES:
                also = f" ({dtype} only for the {QWEIGHT_SUFFIX} tensors of a quantized folder)"
            raise ModelFolderError(
                f"{what} has dtype {short_repr(dtype)}; supported dtypes are "
                f"{', '.join(DTYPE_SIZES)}{also}")
        # The format stores sizes and offsets as u64.
        if not _u64s(shape):
            raise ModelFolderError(f"{_what(key, name)} has an invalid shape {short_repr(shape)}")
        if not _u64s(offsets) or len(offsets) != 2:
            raise ModelFolderError(
                f"{_what(key, name)} has invalid data_offsets {short_repr(offsets)}")
        if offsets[0] > offsets[1]:
            raise ModelFolderError(
                f"{_what(key, name)} has data_offsets {short_repr(offsets)} that end before "
                f"they begin")
        count = 0 if 0 in shape else 1
        for d in shape:
            count *= d
            if count > U64:     # no file holds this much; the byte count check refuses it
                break
        begin, end = offsets
        if end - begin != count * sizes[dtype]:
            raise ModelFolderError(
                f"{_what(key, name)} has {short_repr(end - begin)} bytes, but shape "
                f"{short_repr(shape)} in {dtype} needs {short_repr(count * sizes[dtype])}")
        tensors[key] = TensorInfo(dtype, tuple(shape), data_start + begin, data_start + end)

    ordered = sorted(tensors.items(), key=lambda kv: (kv[1].start, kv[1].end))
    prev_key, prev_end = None, data_start
    for key, info in ordered:
        # Zero-size tensors occupy no bytes and may sit anywhere.
        if info.start < prev_end and info.nbytes:
            raise ModelFolderError(
                f"tensor {short_repr(key)} in {name} overlaps tensor {short_repr(prev_key)} in "
                f"the file's data")
        if info.nbytes:
            prev_key, prev_end = key, info.end
    if ordered:
        need = max(info.end for _, info in ordered) - data_start
        if need > data_size:
            last = max(ordered, key=lambda kv: kv[1].end)[0]
            raise ModelFolderError(
                f"{name} is truncated: its header describes {need} bytes of tensor data "
                f"(through tensor {short_repr(last)}), but only {data_size} are present "
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
