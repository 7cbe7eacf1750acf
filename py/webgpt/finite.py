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

from .errors import ModelFolderError

WG = 256
MAX_GROUPS = 1024   # workgroups per buffer: enough to fill a large GPU, few for a CPU adapter
NONE = 0xFFFFFFFF   # "no index" in the shader's atomicMin


def _buffers(model):
    """[(tensor name, buffer, (offset, size) or None for all of it, f16, index)]: every weight
    buffer with the tensor it holds, and `index(i)`: the flat index in the file's tensor of
    value i of the range. Matrices are split into parts by rows and may be transposed; of a
    quantized matrix only the f16 scales can be non-finite."""
    out = []
    store = model.weight_store
    for name, size in store.vector_groups.items():  # biases joined into one buffer
        out.append((name, store.params[name], None, False, lambda i: i))
    members = {m for group in store.vector_groups.values() for m, _ in group}
    for name, m in store.joined_parts.items():   # matrices copied into one buffer: as one
        part = m.parts[0]
        buf, fmt = part[0], part.fmt
        members |= {member for member, _ in store.joined[name]}
        if fmt in ("q8", "q4"):
            size = -(-m.N * (m.K // m.block) * 2 // 4) * 4
            out.append((name + ".scales", buf, (part[3] * 4, size), True, lambda i: i))
        elif fmt in ("f32", "f16"):
            out.append((name, buf, None, fmt == "f16", lambda i: i))
    for name, ref in model.spec.tensors.items():
        if name in members:
            continue
        m = store.matrix(name)
        if m is None:
            if name in store.params:
                out.append((name, store.params[name], None, name in store.f16_params,
                            lambda i: i))
            continue
        for part in m.parts:
            buf, row0, rows, soff = part
            fmt = getattr(part, "fmt", m.fmt)
            if fmt not in ("f32", "f16", "q8", "q4"):
                continue    # a GGUF file's ggml blocks (and bf16 rows): not checked here
            if fmt in ("q8", "q4"):
                nb = m.K // m.block
                size = -(-rows * nb * 2 // 4) * 4
                out.append((name + ".scales", buf, (soff * 4, size), True,
                            lambda i, row0=row0, nb=nb: row0 * nb + i))
            elif store.arch.matrix_storage(name) == "rows" or hasattr(ref, "ggml_type"):
                # stored as rows: as in the file
                out.append((name, buf, None, fmt == "f16", lambda i, row0=row0, K=m.K: row0 * K + i))
            else:
                # Rows [row0, row0 + rows) of the transposed (N, K) matrix; the file has (K, N).
                out.append((name, buf, None, m.fmt == "f16",
                            lambda i, row0=row0, K=m.K, N=m.N: (i % K) * N + row0 + i // K))
    return out


async def check_finite(model):
    """Raise ModelFolderError naming the file and tensor if any weight is NaN or infinite."""
    dev, kernels, store = model.device, model.kernels, model.weight_store
    todo = _buffers(model)
    if not todo:
        return
    # One [count, first index] pair per buffer, each at an offset a binding may start at.
    align = max(8, dev.limits.get("min-storage-buffer-offset-alignment", 256))
    results = dev.buffer(len(todo) * align, "check_finite results")
    try:
        dev.write(results, 0, (struct.pack("<2I", 0, NONE) + bytes(align - 8)) * len(todo))
        enc = dev.encoder()
        for k, (_, buf, span, f16, _) in enumerate(todo):
            pipe = kernels.get("check_finite", F16=f16, WG=WG)
            data = buf if span is None else (buf, *span)
            words = (buf.size if span is None else span[1]) // 4
            groups = max(1, min(MAX_GROUPS, -(-words // WG)))
            group = kernels.bind("check_finite", pipe, data=data, result=(results, k * align, 8))
            enc.dispatch(pipe, group, groups)
        enc.submit()
        raw = await dev.read(results, 0, len(todo) * align)
    finally:
        dev.destroy(results)

    bad = {}    # tensor name -> [count, first flat index], in file order
    for k, (name, _, _, _, to_index) in enumerate(todo):
        count, index = struct.unpack_from("<2I", raw, k * align)
        if count:
            entry = bad.setdefault(name, [0, None])
            entry[0] += count
            at = to_index(index)
            entry[1] = at if entry[1] is None else min(entry[1], at)
    if bad:
        name, (count, index) = next(iter(bad.items()))
        joined = store.vector_groups.get(name) or store.joined.get(name, [])
        for member, n in joined:  # which member of a joined buffer
            if index < n:
                name = member
                break
            index -= n
        ref = model.spec.tensors.get(name)
        if ref is None:  # NAME.scales of a quantized matrix
            ref = model.spec.tensors[name[:-len(".scales")]].scales
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
