"""Quantized weights: block-wise symmetric int8 / int4 with f16 scales, and the folder converter.

    q, scales = quantize(w, bits=4, block=32)        # w [N, K] float, one row per output
    w2 = dequantize(q, scales, bits=4, block=32)     # float32 [N, K]; |w - w2| <= scale / 2
    quantize_folder("weights/gpt2", "weights/gpt2-q8", bits=8)   # `build.py quantize`
    config, weights = load_weights("weights/gpt2-q8")            # numpy, dequantized

The format (the GPU kernels read exactly this; folder.py checks it and says how the loader
sees it). A quantized model folder is a normal model folder whose config.json has
"webgpt_quantization": {"bits": B, "block": S}, B 8 or 4, S a multiple of 8. The four matrices
of every layer (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj, Conv1D [K = in, N = out]) and
the token table wte.weight ([V, C]: N = V rows of K = C) are each replaced by two tensors:

    NAME.qweight   I8 [N, K] (B = 8), or U8 [N, K/2] (B = 4): two signed 4-bit values per byte,
                   element k = 2j in the low nibble of byte j and k = 2j + 1 in the high one.
                   Row n is output n: the Conv1D weight transposed; wte keeps its [V, C] rows.
    NAME.scales    F16 [N, K/S]: one scale per S consecutive k of a row.

    scale = fl16(max |w| over the block / qmax)        qmax = 127 (B = 8), 7 (B = 4)
    q     = clamp(round_half_to_even(w / scale), -qmax, qmax)    (0 where scale is 0)
    w'    = q * float(scale)

q is computed from the f16-rounded scale, and q * scale is exact in float32 (|q| < 2^7, an f16
has an 11-bit significand), so a GPU that dequantizes in f32 gets dequantize()'s values
bit for bit. Every other tensor (wpe, biases, layer norms) is copied as it is, in its dtype;
names keep the source's prefix ("transformer." or none). lm_head.weight (tied to wte) and the
old attention-mask buffers are not copied.

Error bound: |w - w'| <= scale / 2 for every element whose block has a normal f16 scale; in
general |w - w'| <= max(scale / 2, qmax * ulp(scale) / 2), the second term coming from a max
value that the rounded scale leaves a little over qmax (clamped).

CPython only: numpy is imported here, and nothing the page imports imports this module.
"""

import asyncio
import json
import os
import shutil

import numpy as np

from ..config import QUANTIZATION_KEY, check_quantization
from ..errors import QuantizeError
from ..arch import arch_for
from ..folder import INDEX, SINGLE, QuantizedRef, open_folder, quantized_names
from .importers import _prepare_out
from ..safetensors import read_header

__all__ = ["QuantizeError", "quantize", "dequantize", "pack_int4", "unpack_int4", "error_stats",
           "quantize_folder", "load_weights", "read_tensor", "DEFAULT_BLOCK", "DEFAULT_MAX_SHARD"]

DEFAULT_BLOCK = 32
DEFAULT_MAX_SHARD = 1 << 30
QMAX = {8: 127, 4: 7}
# Files of a model folder besides the weights and config.json that the copy keeps.
OTHER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "generation_config.json", "chat_template.jinja")
# A quantized row is read in 16-byte groups: 16 values of 8 bits, 32 of 4 bits.
ROW_MULTIPLE = {8: 16, 4: 32}
# Values quantized at once: bounds the float64 temporaries of a large matrix (8 MiB each).
CHUNK_VALUES = 1 << 20
NP_DTYPES = {"F32": "<f4", "F16": "<f2", "I8": "i1", "U8": "u1"}


def _check(bits, block):
    why = check_quantization(bits, block)
    if why:
        raise QuantizeError(why)


# ---------------------------------------------------------------- one matrix


def pack_int4(q):
    """int values in [-8, 7], shape [N, K] with K even -> uint8 [N, K/2], low nibble first."""
    q = np.asarray(q)
    if q.ndim != 2 or q.shape[1] % 2:
        raise QuantizeError(
            f"pack_int4 needs a [N, K] array with K even, not shape {list(q.shape)}")
    nib = q.astype(np.uint8) & 0xF
    return nib[:, 0::2] | (nib[:, 1::2] << 4)


def unpack_int4(packed):
    """uint8 [N, K/2] -> int8 [N, K]: the two's-complement nibbles, low one first."""
    p = np.asarray(packed, dtype=np.uint8)
    out = np.empty((p.shape[0], p.shape[1] * 2), np.int8)
    out[:, 0::2] = ((p & 0xF) ^ 8).astype(np.int8) - 8
    out[:, 1::2] = ((p >> 4) ^ 8).astype(np.int8) - 8
    return out


def quantize(w, bits=8, block=DEFAULT_BLOCK):
    """(qweight, scales) of a float matrix w [N, K] (one row per output), as the module says.

    qweight is int8 [N, K] for 8 bits, uint8 [N, K/2] (packed) for 4; scales float16
    [N, K/block]. Works through the rows in chunks, so the float64 temporaries stay small.
    """
    _check(bits, block)
    w = np.asarray(w)
    if w.ndim != 2:
        raise QuantizeError(f"quantize needs a matrix [N, K], not shape {list(w.shape)}")
    N, K = w.shape
    if K % block:
        raise QuantizeError(f"rows of {K} values are not a multiple of the block size {block}")
    qmax = QMAX[bits]
    qweight = np.empty((N, K if bits == 8 else K // 2), np.int8 if bits == 8 else np.uint8)
    scales = np.empty((N, K // block), np.float16)
    rows = max(1, CHUNK_VALUES // max(K, 1))
    for n0 in range(0, N, rows):
        x = np.asarray(w[n0:n0 + rows], dtype=np.float64)
        if not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise QuantizeError(f"the value at row {n0 + bad[0]}, column {bad[1]} is not finite")
        x = x.reshape(x.shape[0], K // block, block)                 # (rows, K/S, S)
        amax = np.abs(x).max(axis=2) if K else np.zeros(x.shape[:2])
        with np.errstate(over="ignore"):
            s16 = (amax / qmax).astype(np.float16)                   # (rows, K/S)
        if np.isinf(s16).any():
            raise QuantizeError(f"values up to {amax.max():g} are too large for f16 scales "
                                f"(at most {65504 * qmax:g} with {bits} bits)")
        s = s16.astype(np.float64)[..., None]
        safe = np.where(s > 0, s, 1.0)
        qf = np.where(s > 0, np.rint(x / safe), 0.0)                 # rint: half to even
        q = np.clip(qf, -qmax, qmax).reshape(-1, K).astype(np.int8)
        qweight[n0:n0 + rows] = q if bits == 8 else pack_int4(q)
        scales[n0:n0 + rows] = s16
    return qweight, scales


def dequantize(q, scales, bits=8, block=DEFAULT_BLOCK):
    """float32 [N, K] from quantize()'s (qweight, scales): q * float(scale), exact in f32."""
    _check(bits, block)
    values = np.asarray(q, np.int8) if bits == 8 else unpack_int4(q)
    scales = np.asarray(scales, np.float16)
    N, K = values.shape
    if scales.shape != (N, K // block) or K % block:
        raise QuantizeError(f"scales of shape {list(scales.shape)} do not fit {N} rows of {K} "
                            f"values in blocks of {block}")
    s = np.repeat(scales.astype(np.float32), block, axis=1)
    return values.astype(np.float32) * s


def error_stats(w, qweight, scales, bits, block):
    """How far dequantize(qweight, scales) is from w [N, K], row chunk by row chunk:
    {max_abs_err, max_err_over_scale (largest |w - w'| / its block's scale), mean_abs_err,
    mean_abs_w}."""
    N, K = w.shape
    rows = max(1, CHUNK_VALUES // max(K, 1))
    top = over_top = total = total_w = 0.0
    for n0 in range(0, N, rows):
        x = np.asarray(w[n0:n0 + rows], np.float64)
        s = np.repeat(scales[n0:n0 + rows].astype(np.float64), block, axis=1)
        err = np.abs(dequantize(qweight[n0:n0 + rows], scales[n0:n0 + rows], bits, block) - x)
        over = np.divide(err, s, out=np.zeros_like(err), where=s > 0)
        top = max(top, float(err.max(initial=0)))
        over_top = max(over_top, float(over.max(initial=0)))
        total += float(err.sum())
        total_w += float(np.abs(x).sum())
    count = max(N * K, 1)
    return {"max_abs_err": top, "max_err_over_scale": over_top, "mean_abs_err": total / count,
            "mean_abs_w": total_w / count}


# ---------------------------------------------------------------- reading a folder


def _read_raw(spec, ref):
    with open(spec.source.where(ref.file), "rb") as f:
        f.seek(ref.start)
        raw = f.read(ref.nbytes)
    if len(raw) != ref.nbytes:
        raise QuantizeError(f"{spec.source.where(ref.file)} is truncated")
    return raw


def read_tensor(spec, ref):
    """A TensorRef's values as a numpy array of its shape (bf16 widened to float32)."""
    raw = _read_raw(spec, ref)
    if ref.dtype == "BF16":
        a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        a = np.frombuffer(raw, NP_DTYPES[ref.dtype])
    return a.reshape(ref.shape)


def load_weights(folder):
    """(GPT2Config, {canonical name: float32 array}) of any model folder, quantized ones
    dequantized back to the plain layout (Conv1D [in, out]), for numpy or torch references."""
    spec = asyncio.run(open_folder(folder))
    weights = {}
    for name, ref in spec.tensors.items():
        if isinstance(ref, QuantizedRef):
            w = dequantize(read_tensor(spec, ref.qweight), read_tensor(spec, ref.scales),
                           ref.bits, ref.block)
            weights[name] = np.ascontiguousarray(w.T) if ref.transposed else w
        else:
            weights[name] = read_tensor(spec, ref).astype(np.float32)
    return spec.config, weights


# ---------------------------------------------------------------- writing a folder


def _header_text(entries, metadata):
    """The JSON header of a safetensors file, padded with spaces to a multiple of 8 bytes
    (as the safetensors library writes it, so that the data starts aligned)."""
    parts = [json.dumps("__metadata__") + ":" + json.dumps(metadata, separators=(",", ":"))]
    offset = 0
    for name, dtype, shape, nbytes in entries:
        entry = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        parts.append(json.dumps(name) + ":" + json.dumps(entry, separators=(",", ":")))
        offset += nbytes
    text = ("{" + ",".join(parts) + "}").encode()
    return text + b" " * (-len(text) % 8)


def _plan_shards(outputs, max_shard, metadata):
    """Split the output tensors [(name, dtype, shape, nbytes)], in order, into shards of at most
    max_shard bytes each (header included); a tensor larger than that gets a shard alone."""
    shards, current = [], []
    for out in outputs:
        if current and 8 + len(_header_text(current + [out], metadata)) + sum(
                e[3] for e in current) + out[3] > max_shard:
            shards.append(current)
            current = []
        current.append(out)
    if current:
        shards.append(current)
    return shards


def _prepare_dst(src, dst, force):
    if os.path.realpath(src) == os.path.realpath(dst):
        raise QuantizeError(f"{dst} is the source folder; write the quantized model elsewhere")
    _prepare_out(dst, force, QuantizeError)


def _saved_names(spec):
    """{(file, start): the tensor's name as saved}, to keep the source's prefix."""
    names = {}
    for file in {ref.file for ref in spec.tensors.values()}:
        header = asyncio.run(read_header(spec.source, file))
        names.update({(file, info.start): key for key, info in header.items()})
    return names


def quantize_folder(src, dst, bits=8, block=DEFAULT_BLOCK, max_shard=DEFAULT_MAX_SHARD,
                    force=False, progress=None):
    """Write a quantized copy of model folder `src` (f32/f16/bf16, sharded or not) into `dst`.

    Streams tensor by tensor: at any time one source tensor and its quantized form are in
    memory, never the model. Shards hold at most `max_shard` bytes each (one file,
    model.safetensors, when everything fits; else model-0000k-of-0000n.safetensors and the
    index). `progress(line)` is called once per tensor. Returns a summary dict: files {name:
    bytes}, bytes, source_bytes, and per quantized tensor its max |w - w'| and that error over
    its block's scale ("tensors": [{name, shape, max_abs_err, max_err_over_scale}]).
    """
    _check(bits, block)
    if not isinstance(max_shard, int) or isinstance(max_shard, bool) or max_shard <= 0:
        raise QuantizeError(f"the shard size must be a positive number of bytes, not {max_shard!r}")
    spec = asyncio.run(open_folder(src))
    q = spec.quantization
    if q is not None:
        raise QuantizeError(f"{src} is already quantized ({QUANTIZATION_KEY}: {q.bits}-bit, "
                            f"block {q.block}); quantize the original folder instead")
    say = progress or (lambda line: None)

    # Everything is planned and checked before anything is written.
    plan = _plan_tensors(spec, bits, block)
    outputs = [out for *_, outs in plan for out in outs]
    metadata = {"format": "webgpt", QUANTIZATION_KEY: json.dumps({"bits": bits, "block": block})}
    writer = _ShardWriter(dst, _plan_shards(outputs, max_shard, metadata), metadata)
    for k, size in enumerate(writer.sizes()):
        if size > max_shard:
            say(f"warning: {writer.files[k]} holds {size} bytes, over the shard size "
                f"{max_shard}: tensor {writer.shards[k][0][0]!r} alone is that large")

    _prepare_dst(src, dst, force)
    try:
        stats = _write_tensors(spec, plan, writer, bits, block, say)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    _write_index_and_config(src, dst, spec, writer, outputs, bits, block)

    sizes = {name: os.path.getsize(os.path.join(dst, name)) for name in writer.files}
    source_files = {ref.file for ref in spec.tensors.values()}
    return {"files": sizes, "bytes": sum(sizes.values()),
            "source_bytes": sum(os.path.getsize(spec.source.where(f)) for f in source_files),
            "bits": bits, "block": block, "tensors": stats}


def _plan_tensors(spec, bits, block):
    """What quantize_folder writes, in the source's order: [(name, saved name, ref, transposed,
    outputs)], outputs being [(name, dtype, shape, nbytes)] for the tensor's one or two output
    tensors; `transposed` is None for a tensor copied as it is. Raises QuantizeError for a
    matrix whose rows the block size or the GPU's row groups do not divide."""
    quantized = set(quantized_names(spec.config))
    saved = _saved_names(spec)
    plan = []
    for name, ref in spec.tensors.items():
        where = spec.source.where(ref.file)
        saved_name = saved[(ref.file, ref.start)]
        transposed = None
        if name in quantized:
            # Conv1D matrices ([in, out]) become rows; matrices stored as rows stay so.
            transposed = arch_for(spec.config).matrix_storage(name) == "cols"
            K, N = ref.shape if transposed else ref.shape[::-1]
            if K % block:
                raise QuantizeError(
                    f"tensor {saved_name!r} in {where} has rows of K = {K} inputs, not a "
                    f"multiple of the block size {block}; choose a block that divides {K}")
            if K % ROW_MULTIPLE[bits]:
                raise QuantizeError(
                    f"tensor {saved_name!r} in {where} has rows of K = {K} inputs; the GPU "
                    f"kernels read {bits}-bit rows in 16-byte groups, so K must be a multiple "
                    f"of {ROW_MULTIPLE[bits]} (keep this model in f16 or f32)")
            outs = [(saved_name + ".qweight", "I8" if bits == 8 else "U8",
                     (N, K if bits == 8 else K // 2), N * K if bits == 8 else N * K // 2),
                    (saved_name + ".scales", "F16", (N, K // block), N * (K // block) * 2)]
        else:
            outs = [(saved_name, ref.dtype, ref.shape, ref.nbytes)]
        plan.append((name, saved_name, ref, transposed, outs))
    return plan


class _ShardWriter:
    """Writes output tensors, in order, into the safetensors shards planned for them: each
    shard to `<file>.tmp`, renamed into place once it is complete."""

    def __init__(self, dst, shards, metadata):
        self.dst = dst
        self.shards = shards            # [[(name, dtype, shape, nbytes)]] per file
        self.metadata = metadata
        n = len(shards)
        self.files = [SINGLE] if n == 1 else \
            [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
        self.shard_of = {out[0]: k for k, shard in enumerate(shards) for out in shard}
        self._open = None               # (shard index, file, path) being written

    def sizes(self):
        """The size in bytes of each shard file, header included."""
        return [8 + len(_header_text(shard, self.metadata)) + sum(e[3] for e in shard)
                for shard in self.shards]

    def write(self, out_name, array):
        k = self.shard_of[out_name]
        if self._open is None or self._open[0] != k:
            self.close()
            path = os.path.join(self.dst, self.files[k])
            f = open(path + ".tmp", "wb")
            header = _header_text(self.shards[k], self.metadata)
            f.write(len(header).to_bytes(8, "little") + header)
            self._open = (k, f, path)
        self._open[1].write(memoryview(np.ascontiguousarray(array)).cast("B"))

    def close(self):
        """Finish the shard being written."""
        if self._open is not None:
            _close(*self._open[1:])
            self._open = None

    def abort(self):
        """Remove the shard being written (after an error)."""
        if self._open is not None:
            self._open[1].close()
            os.remove(self._open[2] + ".tmp")
            self._open = None


def _write_tensors(spec, plan, writer, bits, block, say):
    """Copy or quantize each planned tensor into `writer`; returns the error stats of the
    quantized ones."""
    stats = []
    for i, (name, saved_name, ref, transposed, outs) in enumerate(plan):
        line = f"[{i + 1}/{len(plan)}] {saved_name} {list(ref.shape)} {ref.dtype}"
        if transposed is None:
            writer.write(outs[0][0], np.frombuffer(_read_raw(spec, ref), np.uint8))
            say(f"{line}: copied")
            continue
        rows = read_tensor(spec, ref)
        rows = rows.T if transposed else rows                    # [N, K]
        try:
            qweight, scales = quantize(rows, bits, block)
        except QuantizeError as e:
            raise QuantizeError(f"tensor {saved_name!r} in "
                                f"{spec.source.where(ref.file)}: {e}") from None
        writer.write(outs[0][0], qweight)
        writer.write(outs[1][0], scales)
        stat = dict(name=name, shape=list(ref.shape),
                    **error_stats(rows, qweight, scales, bits, block))
        stats.append(stat)
        say(f"{line} -> {outs[0][1]} {list(outs[0][2])} + F16 scales {list(outs[1][2])}: "
            f"max |w - w'| {stat['max_abs_err']:.3g} ({stat['max_err_over_scale']:.3f} "
            f"of its scale)")
    return stats


def _write_index_and_config(src, dst, spec, writer, outputs, bits, block):
    """The shard index (where there are shards), config.json with the quantization, and the
    source's other files (tokenizer, generation config) copied."""
    if len(writer.files) > 1:
        index = {"metadata": {"total_size": sum(out[3] for out in outputs)},
                 "weight_map": {out[0]: writer.files[writer.shard_of[out[0]]]
                                for out in outputs}}
        with open(os.path.join(dst, INDEX), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, sort_keys=True)
            f.write("\n")
    config = asyncio.run(spec.source.json("config.json"))
    config[QUANTIZATION_KEY] = {"bits": bits, "block": block}
    for name in OTHER_FILES:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    with open(os.path.join(dst, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def _close(f, path):
    f.close()
    os.replace(path + ".tmp", path)
