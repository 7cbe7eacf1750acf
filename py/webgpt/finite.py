"""Check, on the GPU, that a loaded model's weights hold no NaN or infinite value.

A checkpoint saved from a diverged training run, or corrupted on disk or on the way, can hold
NaN or infinity; the model would then produce NaN logits and noise, with nothing saying why.
The weights never pass through the Python heap (in the browser they go from `fetch` straight
to GPU buffers), so the check runs where they are: one dispatch of shaders/check_finite.wgsl
per weight buffer, all in one submit, and one small read-back of a count and a first index
per tensor. It reads each weight once, as a decode step does, so it costs about one token's
time at load.
"""

import struct

from .sources import ModelFolderError

WG = 256
MAX_GROUPS = 1024   # workgroups per buffer: enough to fill a large GPU, few for a CPU adapter
NONE = 0xFFFFFFFF   # "no index" in the shader's atomicMin


def _buffers(model):
    """[(tensor name, buffer, first element, number of values)]: every weight buffer, with the
    tensor it holds (the token table is split into parts by rows)."""
    C = model.config.n_embd
    out = []
    for name in model.spec.tensors:
        if name == "wte.weight":
            out += [(name, buf, row0 * C, rows * C) for buf, row0, rows in model.wte_parts]
        elif name in model.params:
            shape = model.spec.tensors[name].shape
            n = 1
            for d in shape:
                n *= d
            out.append((name, model.params[name], 0, n))
    return out


def _is_f16(buf, n):
    """How the buffer stores n values: f32 (False), f16 packed in u32 (True), or neither
    (None: a layout this check does not know, skipped)."""
    if buf.size == 4 * n:
        return False
    if buf.size == (2 * n + 3) // 4 * 4:
        return True
    return None


async def check_finite(model):
    """Raise ModelFolderError naming the file and tensor if any weight is NaN or infinite."""
    dev, kernels = model.device, model.kernels
    todo = [(name, buf, first, n, _is_f16(buf, n)) for name, buf, first, n in _buffers(model)]
    todo = [t for t in todo if t[4] is not None]
    if not todo:
        return
    # One [count, first index] pair per buffer, each at an offset a binding may start at.
    align = max(8, dev.limits.get("min-storage-buffer-offset-alignment", 256))
    results = dev.buffer(len(todo) * align, "check_finite results")
    try:
        dev.write(results, 0, (struct.pack("<2I", 0, NONE) + bytes(align - 8)) * len(todo))
        enc = dev.encoder()
        for k, (_, buf, _, n, f16) in enumerate(todo):
            pipe = kernels.get("check_finite", F16=f16, WG=WG)
            words = buf.size // 4
            groups = max(1, min(MAX_GROUPS, -(-words // WG)))
            enc.dispatch(pipe, dev.bind_group(pipe, [buf, (results, k * align, 8)]), groups)
        enc.submit()
        raw = await dev.read(results, 0, len(todo) * align)
    finally:
        dev.destroy(results)

    bad = {}    # tensor name -> [count, first flat index], in file order
    for k, (name, _, first, _, _) in enumerate(todo):
        count, index = struct.unpack_from("<2I", raw, k * align)
        if count:
            entry = bad.setdefault(name, [0, None])
            entry[0] += count
            at = first + index
            entry[1] = at if entry[1] is None else min(entry[1], at)
    if bad:
        name, (count, index) = next(iter(bad.items()))
        ref = model.spec.tensors[name]
        where = model.spec.source.where(ref.file)
        if len(ref.shape) == 2:
            at = f"row {index // ref.shape[1]}, column {index % ref.shape[1]}"
        else:
            at = f"index {index}"
        more = ""
        if len(bad) > 1:
            others = len(bad) - 1
            more = f", and {others} more tensor{'s have' if others > 1 else ' has'} some"
        values = "value is" if count == 1 else "values are"
        raise ModelFolderError(
            f"{where}: its weights contain NaN or infinite values: {count} {values} not finite "
            f"in tensor {name!r} (the first at {at}){more}; the file is corrupt, or was saved "
            f"from a training run that diverged")
