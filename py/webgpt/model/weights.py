"""A model's weights on the GPU: streamed in once from the model folder, kept until release.

Matrices the products read (the token table and each layer's linear weights, as the
architecture names them) become `Matrix` objects: rows, one per output, split by rows into
parts that each fit one storage binding. Conv1D weights ([in, out] in the file) are transposed
on the GPU chunk by chunk on the way in (the "rows" layout) or kept as stored ("cols", the CPU
layout); quantized matrices arrive as rows. Vectors (biases, norms) and position tables are
f32 always; f16 data other than kept matrices and bf16 are widened by the convert kernel on the
GPU. The CPU holds one chunk of a file at a time, whatever the model's size, and never touches
a weight's value.

A GGUF file's matrices (spec.BlockRef) go in as the file stores them, rows of ggml blocks
(Q4_K, Q6_K, Q8_0, ..., F16, BF16, F32), each part's rows one after another; the kernels decode
the blocks (FMT 16 + the ggml type id). Llama's q and k rows, interleaved per head by
llama.cpp's converter, are put back in transformers' order on the way in: one head's rows at a
time are read into memory and written back de-interleaved (bytes moved, never decoded). The
matrices that run as one product (q, k, v) may then be of different types: each part keeps
its own format.
"""

import math
import struct

from .. import ggml
from ..gpu import GPUError

WG = 64  # invocations per workgroup of the load kernels (convert, transpose)
STAGING = 16 << 20  # bytes of a Conv1D weight streamed per chunk to be transposed at load
SCALE_ALIGN = 256  # byte offset of a quantized part's scales (a binding offset must align)
MAX_WORKGROUPS = 65535  # per dispatch dimension, WebGPU's default limit
FMT = {"f32": 0, "f16": 1, "q8": 2, "q4": 3, "bf16": 4}  # weight formats of gemv, matmul,
# embedding; a ggml block type (a GGUF matrix) is 16 + its ggml id, under its ggml name.
FMT.update({t: ggml.kernel_format(t) for t in ggml.KERNEL_TYPES if t not in ggml.FLOAT_TYPES})
# A GGUF matrix's ggml type -> the Matrix format it is kept in.
GGUF_FORMATS = {"F32": "f32", "F16": "f16", "BF16": "bf16"}


def cdiv(a, b):
    return -(-a // b)


def numel(shape):
    return math.prod(shape) if shape else 1


class Part(tuple):
    """One part of a Matrix: (buffer, first row, rows, scales word offset), `fmt`, the format
    of its rows (a grouped matrix's parts may differ: a GGUF file's q, k and v), and `offset`,
    the byte offset of its first row in the buffer (a grouped member's view; else 0)."""

    def __new__(cls, buffer, row0, rows, soff, fmt, offset=0):
        part = super().__new__(cls, (buffer, row0, rows, soff))
        part.fmt, part.offset = fmt, offset
        return part


class Matrix:
    """A weight matrix on the GPU as rows (one per output, K values each), split by rows into
    parts that each fit one storage binding: parts = [Part(buffer, first row, rows, scales word
    offset)]. fmt: "f32" | "f16" | "bf16" | "q8" | "q4" (block: values per scale) | a ggml
    block type's name ("Q4_K", ...: rows of blocks as a GGUF file stores them)."""

    def __init__(self, name, K, N, fmt, block=0):
        self.name, self.K, self.N, self.fmt, self.block = name, K, N, fmt, block
        self.parts = []

    def row_bytes(self):
        """Bytes of one row's values (scales not counted)."""
        if self.fmt in ggml.BY_NAME:
            return ggml.row_bytes(self.fmt, self.K)
        return {"f32": 4 * self.K, "f16": 2 * self.K, "bf16": 2 * self.K, "q8": self.K,
                "q4": self.K // 2}[self.fmt]

    def part_bytes(self, rows):
        """(values bytes, scales offset in bytes, total bytes) of a part of `rows` rows."""
        values = rows * self.row_bytes()
        if self.fmt not in ("q8", "q4"):
            padded = cdiv(values, 16) * 16  # whole 16-byte groups (rows of blocks need not be)
            return values, padded, padded
        soff = cdiv(values, SCALE_ALIGN) * SCALE_ALIGN
        return values, soff, soff + cdiv(rows * (self.K // self.block) * 2, 16) * 16

    def rows_per_part(self, limit):
        """Rows per part so that a part fits `limit` bytes (the last part may have fewer)."""
        per_row = self.row_bytes() + (2 * self.K // self.block if self.block else 0)
        slack = SCALE_ALIGN + 16 if self.block else 0  # the scales' alignment and padding
        rows = max(1, min(self.N, (limit - slack) // per_row))
        while rows > 1 and self.part_bytes(rows)[2] > limit:
            rows -= 1
        return rows

    def constants(self, part):
        """The override constants that say where a part's rows and scales are."""
        _, row0, rows, soff = part
        fmt = getattr(part, "fmt", self.fmt)
        return dict(ROWS=rows, ROW0=row0, FMT=FMT[fmt], BLOCK=self.block or 32, SOFF=soff)

    @property
    def formats(self):
        """The formats of its parts, in order, each once."""
        return list(dict.fromkeys(getattr(p, "fmt", self.fmt) for p in self.parts))


class Allocator:
    """Makes GPU buffers and remembers them, so that `release()` destroys every one, even one a
    failed load made before it could be kept anywhere else. `oom_note()` adds to an
    out-of-memory error what the whole model needs and what would fit."""

    def __init__(self, device, oom_note=None):
        self.device = device
        self.owned = []
        self.oom_note = oom_note

    def buffer(self, size, label, uniform=False):
        try:
            b = self.device.buffer(size, label, uniform)
        except MemoryError as e:
            note = self.oom_note() if self.oom_note is not None else ""
            raise MemoryError(f"{e}{note}") from None
        self.owned.append(b)
        return b

    def destroy(self, b):
        self.owned.remove(b)
        self.device.destroy(b)

    def release(self):
        owned, self.owned = self.owned, []
        for b in owned:
            self.device.destroy(b)


class Weights:
    """Every weight of one model on one device: `params` (name -> buffer: vectors, position
    tables, and matrices kept as [in, out]) and `mats` (name -> Matrix). `arch` is the
    model's architecture (webgpt.arch), which says which tensors are matrices and how the
    file stores them. `f16_params`: the params held as f16 halves (the rest are f32)."""

    def __init__(self, spec, device, kernels, layout, arch, oom_note=None):
        self.spec, self.device, self.kernels, self.layout = spec, device, kernels, layout
        self.arch = arch
        self.alloc = Allocator(device, oom_note)
        self.params = {}
        self.mats = {}
        self.f16_params = set()
        # Tensors that run as one product (the architecture's groups(): q, k, v; gate, up):
        # member name -> its own Matrix, whose parts the group's Matrix holds; and vector
        # groups (their biases): group name -> [(member name, values)] in the group's buffer.
        self.member_mats = {}
        self.vector_groups = {}
        # Groups copied into one buffer (Weights._joined): group name -> [(member name, values)]
        # in the buffer's order, and NAME.scales -> the same of their scales (q8, q4).
        self.joined = {}
        self.joined_parts = {}  # the same names -> the joined Matrix (one part)
        self.rows = layout.weights == "rows"
        q = getattr(spec, "quantization", None)
        # f16 storage when every float matrix in the file is f16 (as a model saved in half
        # precision) and the layout keeps halves (rows of 16-byte groups: K % 8 == 0).
        floats = [(n, t) for n, t in spec.tensors.items()
                  if arch.is_matrix(n) and not hasattr(t, "qweight")]

        def k_of(name, t):  # the length of a row as the kernels read it
            return t.shape[1] if arch.matrix_storage(name) == "rows" else t.shape[0]

        self.uses_f16 = (layout.f16 and all(t.dtype == "F16" for _, t in floats)
                         and (not self.rows or all(k_of(n, t) % 8 == 0 for n, t in floats)))
        self.f16_tables = {n for n, t in spec.tensors.items()
                           if arch.is_table(n) and layout.f16 and t.dtype == "F16"}
        if getattr(spec, "gguf", None) is not None:
            self.format = str(q)    # the ggml types of its matrices: "Q4_K+Q6_K"
        else:
            self.format = f"q{q.bits}" if q is not None else ("f16" if self.uses_f16 else "f32")

    def keeps_f16(self, name):
        """Whether tensor `name` stays as f16 halves on the GPU (else f32)."""
        return name in self.f16_tables if self.arch.is_table(name) else self.uses_f16

    def bytes(self):
        """Bytes of GPU memory the weights take."""
        return sum(b.size for b in self.params.values()) + \
            sum(p[0].size for m in self.mats.values() for p in m.parts)

    def planned_bytes(self):
        """Bytes the weights will take once loaded (before any upload)."""
        total = 0
        lq = getattr(self.spec, "load_quantization", None)
        for name, ref in self.spec.tensors.items():
            if hasattr(ref, "qweight") or hasattr(ref, "ggml_type"):
                total += ref.nbytes
            elif lq is not None and self.arch.is_matrix(name):
                total += numel(ref.shape) * lq.bits // 8 + numel(ref.shape) // lq.block * 2
            elif len(ref.shape) == 2:
                total += numel(ref.shape) * (2 if self.keeps_f16(name) else 4)
            else:
                total += numel(ref.shape) * 4
        return total

    def buffers(self):
        return list(self.alloc.owned)

    def matrix(self, name):
        """The Matrix of tensor `name`, also where it runs as part of a group."""
        return self.mats.get(name) or self.member_mats.get(name)

    def group(self, groups):
        """Join tensors that run as one product: [(group name, [member names])]. Matrices
        become one Matrix whose parts hold the members' rows, stacked in order: neighbouring
        members of one format are copied into one buffer (one dispatch for them, not one a
        member: each dispatch costs a GPU microseconds), each member's Matrix then a view of
        its rows there (Part.offset); a member of another format (a GGUF file's Q6_K v beside
        Q4_K q and k) or split into parts keeps its buffer(s) as parts of the group. Vectors
        are copied into one buffer, in order."""
        enc, spent = None, []
        for name, members in groups:
            if name.endswith(".weight"):
                ms = [self.mats.pop(m) for m in members]
                for m in ms:
                    # webgpt's own formats share one block size; ggml members may differ.
                    own = {"q8", "q4"} & {m.fmt, ms[0].fmt}
                    if m.K != ms[0].K or own and (m.fmt, m.block) != (ms[0].fmt, ms[0].block):
                        raise ValueError(f"{m.name} cannot run in one product with "
                                         f"{ms[0].name}: their rows differ")
                    self.member_mats[m.name] = m
                g = Matrix(name, ms[0].K, sum(m.N for m in ms), ms[0].fmt, ms[0].block)
                row = 0
                for run in _runs(ms):
                    n = sum(m.N for m in run)
                    label = name if len(run) == len(ms) else f"{name}[{row}:{row + n}]"
                    one = len(run) > 1 and self._joined(label, run)
                    for m in [one] if one else run:
                        g.parts += [Part(q[0], row + q[1], q[2], q[3], q.fmt) for q in m.parts]
                        row += m.N
                self.mats[name] = g
                continue
            bufs = [self.params.pop(m) for m in members]
            out = self.alloc.buffer(sum(b.size for b in bufs), name)
            enc = enc or self.device.encoder()
            offset = 0
            for b in bufs:
                enc.copy(b, 0, out, offset, b.size)
                offset += b.size
            self.params[name] = out
            self.vector_groups[name] = [(m, b.size // 4) for m, b in zip(members, bufs)]
            spent += bufs
        if enc is not None:   # the vectors' copies (small), all in one submit
            enc.submit()
            for b in spent:
                self.alloc.destroy(b)  # freed once the submitted copies have run

    def _joined(self, name, ms):
        """Members `ms` (one format, one part each) as one Matrix in one buffer, or None where
        they would not fit one binding together or a copy would not start at a 4-byte
        boundary. Values of every row, then (q8, q4) the scales of every row, as one matrix of
        the rows stacked; copied on the GPU, each member's buffer freed after (the copy holds
        these members twice for a moment, never the model)."""
        fmt, block = ms[0].fmt, ms[0].block
        g = Matrix(name, ms[0].K, sum(m.N for m in ms), fmt, block)
        _, soff, size = g.part_bytes(g.N)
        vb = g.row_bytes()
        sb = 2 * g.K // block if fmt in ("q8", "q4") else 0
        starts = [sum(m.N for m in ms[:i]) for i in range(len(ms) + 1)]
        if size > self.device.max_binding or any(r * vb % 4 or r * sb % 4 for r in starts):
            return None
        buf = self.alloc.buffer(size, name)
        enc = self.device.encoder()
        spent = [m.parts[0][0] for m in ms]
        for m, row in zip(ms, starts):
            src, _, rows, msoff = m.parts[0]
            enc.copy(src, 0, buf, row * vb, rows * vb)
            if sb:
                enc.copy(src, msoff * 4, buf, soff + row * sb, rows * sb)
            m.parts = [Part(buf, 0, rows, (soff + row * sb) // 4, fmt, row * vb)]
        enc.submit()
        for b in spent:
            self.alloc.destroy(b)  # freed once the submitted copies have run
        g.parts = [Part(buf, 0, g.N, soff // 4, fmt)]
        self.joined[name] = [(m.name, m.N * m.K) for m in ms]
        if sb:
            self.joined[name + ".scales"] = [(m.name + ".scales", m.N * (m.K // block))
                                             for m in ms]
        self.joined_parts[name] = g
        return g

    def release(self):
        self.params, self.mats, self.f16_params = {}, {}, set()
        self.member_mats, self.joined, self.joined_parts = {}, {}, {}
        self.alloc.release()

    async def upload(self, progress=None):
        """Stream every tensor from the model folder into its GPU buffer(s), in file order (so
        a streaming source reads each file front to back)."""
        await _Upload(self, progress).run()
        self.group(self.arch.groups())


class _Upload:
    """The transient state of one upload: progress so far and the transpose staging buffer."""

    def __init__(self, weights, progress):
        self.w = weights
        self.dev = weights.device
        self.progress = progress
        self.total = sum(t.nbytes for t in weights.spec.tensors.values())
        self.done = 0
        self.staging = None

    def report(self, n=0):
        self.done += n
        if self.progress is not None:
            self.progress("weights", self.done, self.total)

    async def run(self):
        w = self.w
        self.report()
        try:
            for name, ref in w.spec.tensors.items():
                stored = w.arch.matrix_storage(name)  # None (not a matrix), "rows" or "cols"
                lq = getattr(w.spec, "load_quantization", None)
                if hasattr(ref, "ggml_type"):
                    await self.blocks(name, ref)
                elif lq is not None and stored is not None and not hasattr(ref, "qweight"):
                    await self.quantize(name, ref, lq, stored)
                elif hasattr(ref, "qweight"):
                    await self.quantized(name, ref)
                elif stored == "rows":
                    await self.rows(name, ref)
                elif stored == "cols" and w.rows:
                    await self.transposed(name, ref)
                else:
                    keep_f16 = w.keeps_f16(name) and ref.dtype == "F16" and len(ref.shape) == 2
                    w.params[name] = await self.tensor(ref, ref.start, ref.end, numel(ref.shape),
                                                       name, keep_f16)
                    if keep_f16:
                        w.f16_params.add(name)
                    self.report(ref.nbytes)
        finally:
            if self.staging is not None:
                w.alloc.destroy(self.staging)  # freed once the submitted transposes have run

    def new_matrix(self, name, K, N, fmt, block=0, row_multiple=1):
        m = Matrix(name, K, N, fmt, block)
        per_part = m.rows_per_part(self.dev.max_binding)
        per_part = max(row_multiple, per_part // row_multiple * row_multiple)
        for row0 in range(0, N, per_part):
            rows = min(per_part, N - row0)
            _, soff, size = m.part_bytes(rows)
            label = name if rows == N else f"{name}[{row0}:{row0 + rows}]"
            m.parts.append(Part(self.w.alloc.buffer(size, label), row0, rows, soff // 4, fmt))
        self.w.mats[name] = m
        return m

    async def blocks(self, name, ref):
        """A GGUF matrix (BlockRef): its rows as the file stores them into each part; Llama's q
        and k (ref.permute heads) de-interleaved per head on the way."""
        fmt = GGUF_FORMATS.get(ref.ggml_type, ref.ggml_type)
        # Whole heads per part: each head's rows are written at a 4-byte aligned offset.
        m = self.new_matrix(name, ref.K, ref.N, fmt,
                            row_multiple=ref.N // ref.permute if ref.permute else 1)
        rb = m.row_bytes()
        if not ref.permute:
            for buf, row0, rows, _ in m.parts:
                start = ref.start + row0 * rb
                await self.stream_into(ref.file, start, start + rows * rb, buf)
                self.report(rows * rb)
            return
        hd = ref.N // ref.permute   # rows per head; the file has rows 2i, 2i + 1 for i, i + hd/2
        for h in range(ref.permute):
            start = ref.start + h * hd * rb
            head = bytearray()
            async for chunk in self.w.spec.source.chunks(ref.file, start, start + hd * rb):
                head += _as_bytes(chunk)
            rows = [head[(2 * i + j) * rb:(2 * i + j + 1) * rb]
                    for j in (0, 1) for i in range(hd // 2)]
            self.put_rows(m, h * hd, b"".join(rows), rb)
            self.report(hd * rb)

    async def quantize(self, name, ref, q, stored):
        """A float matrix quantized on the GPU as it streams in (quantize.wgsl, bit for bit
        tools/quantize.py's format): a Conv1D matrix ([K, N], stored "cols") whole in a staging
        buffer, a matrix of rows a window of rows at a time; only that staging buffer holds
        full-precision values, and it is freed after the matrix."""
        dev, alloc, kernels = self.dev, self.w.alloc, self.w.kernels
        cols = stored == "cols"
        K, N = ref.shape if cols else ref.shape[::-1]
        nb = K // q.block
        m = self.new_matrix(name, K, N, f"q{q.bits}", q.block)
        itemsize = ref.nbytes // (N * K)
        src = {"F32": 0, "F16": 1, "BF16": 2}[ref.dtype]
        # Rows per window: whole scale words per window (even rows where a row has an odd
        # number of blocks), within STAGING bytes (the whole matrix for a Conv1D one).
        window = N if cols else max(2, min(N, STAGING // (K * itemsize)) // 2 * 2)
        staging = alloc.buffer((N if cols else window) * K * itemsize, f"{name} (to quantize)")
        params = alloc.buffer(16, f"{name} (quantize params)", uniform=True)
        try:
            if cols:
                await self.stream_into(ref.file, ref.start, ref.end, staging)
                self.report(ref.nbytes)
            for part in m.parts:
                buf, row0, rows, soff = part
                pipe = kernels.get("quantize", K=K, N=N, ROWS=rows, ROW0=row0, SOFF=soff,
                                   BLOCK=q.block, BITS=q.bits, SRC=src, COLS=cols, WG=WG)
                group = kernels.bind("quantize", pipe, src=staging, out=buf, p=params)
                for r0 in range(row0, row0 + rows, window if not cols else rows):
                    rn = min(window, row0 + rows - r0) if not cols else rows
                    if not cols:
                        start = ref.start + r0 * K * itemsize
                        await self.stream_into(ref.file, start, start + rn * K * itemsize,
                                               staging)
                        self.report(rn * K * itemsize)
                    dev.write(params, 0, struct.pack("<4I", r0, rn, 0, 0))
                    groups = cdiv(cdiv(rn * nb, 2), WG)
                    gx = min(groups, MAX_WORKGROUPS)
                    enc = dev.encoder()
                    enc.dispatch(pipe, group, gx, cdiv(groups, gx))
                    enc.submit()    # queue order: the next window's writes come after this
        finally:
            alloc.destroy(staging)
            alloc.destroy(params)

    def put_rows(self, m, row, data, rb):
        """Rows from `row` on (bytes `data`, `rb` bytes each) into the parts that hold them."""
        n = len(data) // rb
        for buf, row0, rows, _ in m.parts:
            a, b = max(row, row0), min(row + n, row0 + rows)
            if a < b:
                self.dev.write(buf, (a - row0) * rb, data[(a - row) * rb:(b - row) * rb])

    async def rows(self, name, ref):
        """A float matrix stored as rows ([N, K], e.g. the token table): each part's bytes as
        they are, or widened to f32 by the convert kernel."""
        N, K = ref.shape
        f16 = self.w.uses_f16
        m = Matrix(name, K, N, "f16" if f16 else "f32")
        per_part = m.rows_per_part(self.dev.max_binding)
        itemsize = ref.nbytes // (N * K)
        for row0 in range(0, N, per_part):
            rows = min(per_part, N - row0)
            start = ref.start + row0 * K * itemsize
            buf = await self.tensor(ref, start, start + rows * K * itemsize, rows * K,
                                    f"{name}[{row0}:{row0 + rows}]", f16)
            m.parts.append(Part(buf, row0, rows, 0, m.fmt))
            self.report(rows * K * itemsize)
        self.w.mats[name] = m

    async def quantized(self, name, ref):
        """qweight rows then scales into each part (values, then scales from SCALE_ALIGN)."""
        m = self.new_matrix(name, ref.K, ref.N, f"q{ref.bits}", ref.block)
        qrow = ref.qweight.nbytes // ref.N
        srow = ref.scales.nbytes // ref.N
        for t, row_bytes, at in ((ref.qweight, qrow, 0), (ref.scales, srow, None)):
            for buf, row0, rows, soff in m.parts:
                start = t.start + row0 * row_bytes
                await self.stream_into(t.file, start, start + rows * row_bytes, buf,
                                       soff * 4 if at is None else at)
                self.report(rows * row_bytes)

    async def transposed(self, name, ref):
        """A Conv1D weight [K, N] as rows [N, K]: streamed in chunks of whole source rows into
        a staging buffer, each chunk transposed into every part by transpose.wgsl."""
        dev, alloc = self.dev, self.w.alloc
        K, N = ref.shape
        fmt = "f16" if self.w.uses_f16 else "f32"
        m = self.new_matrix(name, K, N, fmt)
        src = {"F32": 0, "F16": 1, "BF16": 2}[ref.dtype]
        itemsize = ref.nbytes // (K * N)
        chunk_rows = max(2, min(K, min(STAGING, dev.max_binding) // (N * itemsize)) // 2 * 2)
        if self.staging is None or self.staging.size < chunk_rows * N * itemsize:
            if self.staging is not None:
                alloc.destroy(self.staging)
                self.staging = None
            self.staging = alloc.buffer(chunk_rows * N * itemsize, "staging (transpose)")
        kernels = self.w.kernels
        for k0 in range(0, K, chunk_rows):
            kr = min(chunk_rows, K - k0)
            start = ref.start + k0 * N * itemsize
            await self.stream_into(ref.file, start, start + kr * N * itemsize, self.staging)
            enc = dev.encoder()
            for buf, row0, rows, _ in m.parts:
                words = rows * kr // (2 if fmt == "f16" else 1)
                groups = cdiv(words, WG)
                gx = min(groups, MAX_WORKGROUPS)
                pipe = kernels.get("transpose", K=K, N=N, K0=k0, KR=kr, N0=row0, NR=rows,
                                   SRC=src, DST_F16=(fmt == "f16"), WG=WG)
                enc.dispatch(pipe, kernels.bind("transpose", pipe, src=self.staging, out=buf),
                             gx, cdiv(groups, gx))
            # Queue order keeps the next chunk's write after this transpose has read.
            enc.submit()
            self.report(kr * N * itemsize)

    async def tensor(self, ref, start, end, n, label, keep_f16=False):
        """Bytes [start, end) of a file (n values) into a new buffer.

        Data already in the storage dtype goes straight in: f32, or f16 data kept as halves
        (`keep_f16`: the caller checked it is F16). Other 16-bit data (bf16, f16 vectors) goes into a staging buffer and is
        widened to f32 by the convert kernel on the GPU.
        """
        dev, alloc = self.dev, self.w.alloc
        if ref.dtype == "F32" or keep_f16:
            out = alloc.buffer(end - start, label)
            await self.stream_into(ref.file, start, end, out)
            return out
        out = alloc.buffer(n * 4, label)
        staging = alloc.buffer(end - start, label + " (16-bit)")
        await self.stream_into(ref.file, start, end, staging)
        groups = cdiv(cdiv(n, 2), WG)
        gx = min(groups, MAX_WORKGROUPS)
        kernels = self.w.kernels
        pipe = kernels.get("convert", N=n, BF16=(ref.dtype == "BF16"), WG=WG)
        enc = dev.encoder()
        enc.dispatch(pipe, kernels.bind("convert", pipe, src=staging, out=out), gx,
                     cdiv(groups, gx))
        enc.submit()
        alloc.destroy(staging)  # freed once the submitted conversion has run
        return out

    async def stream_into(self, file, start, end, buf, offset=0):
        async for chunk in self.w.spec.source.chunks(file, start, end):
            self.dev.write(buf, offset, chunk)
            offset += len(chunk)


def _runs(ms):
    """Matrices `ms` cut into runs of neighbours that can share one buffer (the same format and
    block, one part each); any other matrix a run of its own."""
    runs = []
    for m in ms:
        last = runs[-1][-1] if runs else None
        if last is not None and len(m.parts) == len(last.parts) == 1 \
                and (m.fmt, m.block) == (last.fmt, last.block):
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def _as_bytes(chunk):
    """A source's chunk as Python bytes-like: a memoryview as it is, a JS Uint8Array copied."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return chunk
    return chunk.to_bytes()


def released_error():
    return GPUError("this model was released (release() or close()); load it again with "
                    "webgpt.load")
