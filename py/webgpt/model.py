"""GPT-2 on the GPU: weights uploaded once, a forward pass as a flat list of kernel dispatches.

Shapes: T tokens in this pass, C = n_embd, V = vocab_size, n_ctx = n_positions, hs = C / n_head.
Every buffer is created at load, sized for the whole context; every bind group is built once.
A forward pass is one command encoder and one submit; decoding reads back one token id.

The KV cache holds keys and values of positions [0, pos) for every layer. `logits(ids)` runs
the whole sequence from position 0; generation runs the prompt in one batched pass and then one
token per pass through the cache. Decoding stays on the GPU: the argmax kernel (greedy) or the
sampling kernel (temperature, top-k, top-p, seeded) writes the chosen token where the next pass
reads its input, so later passes are queued before token n is read back, and the read-back
latency hides behind compute. Only token ids leave the GPU.

Weights keep the precision of the file: f32, or f16 (packed two per 32-bit word and widened in
the kernels, which needs no `shader-f16` feature). Vectors (biases, layernorm) are f32 always.
"""

import math
import secrets
import struct
import time
import warnings

from collections import deque

from .kernels import Kernels

WG = 64  # invocations per workgroup of the simple 1-D kernels (embedding, kv_store, layernorm)
ARGMAX_SPAN = 2048  # logits per workgroup in the first argmax dispatch (argmax.wgsl's SPAN)
PIPELINE = 4  # decode passes queued ahead of the token being read back
STAGING = 16 << 20  # bytes of a Conv1D weight streamed per chunk to be transposed at load
FMT = {"f32": 0, "f16": 1, "q8": 2, "q4": 3}  # weight formats of gemv.wgsl and matmul.wgsl
SCALE_ALIGN = 256  # byte offset of a quantized part's scales (a binding offset must align)


def layouts(device, kind=None):
    """Workgroup shapes for this adapter (or for `kind`, "cpu" or "gpu"). On a CPU adapter a
    workgroup barrier switches between all its invocations, so kernels there work without
    barriers (one invocation per output); on a GPU they split each reduction across many
    invocations to keep memory busy.

    "weights" says how a Conv1D matrix is kept: "cols", [in, out] as stored (matvec.wgsl: an
    invocation per 4 outputs, which a CPU streams fastest), or "rows", transposed on the GPU at
    load to one row per output (gemv.wgsl: a GPU needs many rows to spread the reads over).
    Quantized weights are always rows (the folder stores them so)."""
    if kind == "cpu" or (kind is None and device.is_cpu):
        # Widening halves costs more there than the bytes it saves (measured on SwiftShader:
        # 124M decodes in 237 ms/token with f32 weights, 323 with packed f16), so f16 files
        # are widened to f32 at load.
        return {"weights": "cols", "matvec": dict(TX=64, TY=1), "gemv": dict(TPR=1, RPW=64),
                "lm_head": dict(TPR=1, RPW=64), "attention": 64, "prefill": "matvec",
                "fuse_ln": False, "f16": False}
    # On a GPU each dependent dispatch costs microseconds of drain and refill, so the decode
    # matvecs also do the layer norms before them (fuse_ln), and the prompt uses matmul's tiles.
    # gemv/lm_head shapes measured end to end on an H200 (tests/tune_kernels.py): with two or
    # four loads in flight per invocation, 1.5B f16 decodes at 2.9-3.0 ms/token at context 16
    # against 3.26 with one; the products that normalise x first do it for 16 rows per
    # workgroup rather than 8 (3.22 against 3.57 ms/token on a slower machine).
    return {"weights": "rows", "matvec": dict(TX=8, TY=32), "gemv": dict(TPR=32, RPW=8, U=2),
            "gemv_ln": dict(TPR=16, RPW=16, U=2), "lm_head": dict(TPR=16, RPW=16, U=4),
            "attention": 256, "prefill": "matmul", "fuse_ln": True, "f16": True}
MAX_WORKGROUPS = 65535  # per dispatch dimension, WebGPU's default limit
LOGITS_BYTES = 64 << 20  # at most this much of (rows, V) logits in one buffer


def cdiv(a, b):
    return -(-a // b)


def is_matrix(name):
    """A weight the linear kernels read: wte and the four Conv1D matrices of each layer."""
    return name == "wte.weight" or (name.startswith("h.") and name.endswith(".weight")
                                    and (".attn.c_" in name or ".mlp.c_" in name))


class Matrix:
    """A weight matrix on the GPU as rows (one per output, K values each), split by rows into
    parts that each fit one storage binding: parts = [(buffer, first row, rows, scales word
    offset)]. fmt: "f32" | "f16" | "q8" | "q4" (block: values per scale)."""

    def __init__(self, name, K, N, fmt, block=0):
        self.name, self.K, self.N, self.fmt, self.block = name, K, N, fmt, block
        self.parts = []

    def row_bytes(self):
        """Bytes of one row's values (scales not counted)."""
        return {"f32": 4 * self.K, "f16": 2 * self.K, "q8": self.K, "q4": self.K // 2}[self.fmt]

    def part_bytes(self, rows):
        """(values bytes, scales offset in bytes, total bytes) of a part of `rows` rows."""
        values = rows * self.row_bytes()
        if self.fmt not in ("q8", "q4"):
            return values, values, values
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


class GPT2:
    """A GPT-2 model resident on one GPU device. Made by `webgpt.load`."""

    def __init__(self, spec, device, tokenizer, layout=None):
        cfg = spec.config
        self.spec = spec
        self.config = cfg
        self.device = device
        self.tokenizer = tokenizer
        self.kernels = Kernels(device)
        self.layout = dict(layout or layouts(device))
        self.quantization = getattr(spec, "quantization", None)
        C, V, n_ctx = cfg.n_embd, cfg.vocab_size, cfg.n_positions
        self.C, self.V, self.n_ctx = C, V, n_ctx
        # Quantized folders store rows; a matrix too big for one binding as [in, out] needs
        # rows too (rows split into parts; columns would not).
        too_big = 4 * C * C * 4 > device.max_binding
        if self.quantization is not None or too_big:
            self.layout["weights"] = "rows"
        self.rows = self.layout["weights"] == "rows"
        # f16 storage when every float matrix in the file is f16 (as a model saved in half
        # precision) and the layout keeps halves (rows of 16-byte groups: C % 8 == 0).
        floats = [t for n, t in spec.tensors.items()
                  if is_matrix(n) and not hasattr(t, "qweight")]
        self.uses_f16 = (self.layout["f16"] and all(t.dtype == "F16" for t in floats)
                         and (not self.rows or C % 8 == 0))
        wpe = spec.tensors.get("wpe.weight")
        self.wpe_f16 = self.layout["f16"] and wpe is not None and wpe.dtype == "F16"
        q = self.quantization
        self.weights = f"q{q.bits}" if q is not None else ("f16" if self.uses_f16 else "f32")
        self.stats = {}
        self.released = False  # release() was called: every method raises
        self._owned = []  # every buffer made by _buffer and not destroyed yet
        self.pos = 0  # tokens held in the KV cache
        self.params = {}  # canonical tensor name -> GPU buffer (vectors, wpe, "cols" matrices)
        self.mats = {}  # canonical name -> Matrix (wte always; Conv1D weights with "rows")
        self._check_fits()

    @property
    def wte_parts(self):
        """[(buffer, first row, rows)]: the token table, split by binding size."""
        m = self.mats.get("wte.weight")
        return [(b, r0, n) for b, r0, n, _ in m.parts] if m else []

    def weight_bytes(self):
        """Bytes of GPU memory the weights take."""
        return sum(b.size for b in self.params.values()) + \
            sum(p[0].size for m in self.mats.values() for p in m.parts)

    # ---------------------------------------------------------------- limits

    def _check_fits(self):
        """Fail before any upload if the model cannot run on this device, saying why."""
        cfg, dev = self.config, self.device
        C, V, n_ctx = self.C, self.V, self.n_ctx
        if C % 4 or (C // cfg.n_head) % 4:
            raise ValueError(f"n_embd ({C}) and the head size n_embd / n_head "
                             f"({C / cfg.n_head:g}) must be multiples of 4: the kernels read vec4s")
        limit = dev.max_binding
        # Matrices are split into parts that fit; activations and caches are not.
        biggest = {
            "the MLP activations (n_positions x 4 n_embd, f32)": n_ctx * 4 * C * 4,
            "one row of logits (vocab_size, f32)": V * 4,
        }
        for what, nbytes in biggest.items():
            if nbytes > limit:
                raise MemoryError(
                    f"{what} need {nbytes / 2**20:.1f} MiB in one storage binding, but this "
                    f"adapter ({dev.describe()}) allows {limit / 2**20:.1f} MiB; use a smaller "
                    f"model, or one with a shorter context (n_positions)")
        wg_bytes = dev.limits.get("max-compute-workgroup-storage-size", 16384)
        att_wg = self.layout["attention"]
        need = (n_ctx + att_wg * 5) * 4  # scores, max/sum tree, vec4 partial sums
        if need > wg_bytes:
            raise MemoryError(
                f"attention keeps {n_ctx} scores in workgroup memory ({need} bytes in all), more "
                f"than this adapter's {wg_bytes}; n_positions must be at most "
                f"{wg_bytes // 4 - att_wg * 5}")
        if self.rows and self.layout["fuse_ln"] and C * 4 > wg_bytes - 4096:
            self.layout["fuse_ln"] = False  # gemv stages the normalised row in workgroup memory

    # ---------------------------------------------------------------- loading

    async def upload(self, progress=None):
        """Stream every tensor from the model folder into its GPU buffer(s).

        Matrices become rows (Matrix parts): quantized ones as stored, Conv1D weights
        transposed on the GPU chunk by chunk ("rows" layout), the token table as stored. The CPU
        holds one chunk of a file at a time, whatever the model's size.
        """
        spec = self.spec
        total = sum(t.nbytes for t in spec.tensors.values())
        self._done = 0

        def report(n=0):
            self._done += n
            if progress is not None:
                progress("weights", self._done, total)

        self._report = report
        report()
        self._staging = None
        # spec.tensors is in file order, so a streaming source reads each file front to back.
        for name, ref in spec.tensors.items():
            if hasattr(ref, "qweight"):
                await self._upload_quantized(name, ref)
            elif name == "wte.weight":
                await self._upload_rows(name, ref)
            elif is_matrix(name) and self.rows:
                await self._upload_transposed(name, ref)
            else:
                keep_f16 = self.wpe_f16 if name == "wpe.weight" else self.uses_f16
                self.params[name] = await self._upload_tensor(ref, ref.start, ref.end,
                                                              _numel(ref.shape), name, keep_f16)
                report(ref.nbytes)
        if self._staging is not None:
            self._owned.remove(self._staging)
            self.device.destroy(self._staging)  # freed once the submitted transposes have run
            self._staging = None
        self._build()

    def _new_matrix(self, name, K, N, fmt, block=0):
        m = Matrix(name, K, N, fmt, block)
        per_part = m.rows_per_part(self.device.max_binding)
        for row0 in range(0, N, per_part):
            rows = min(per_part, N - row0)
            _, soff, size = m.part_bytes(rows)
            label = name if rows == N else f"{name}[{row0}:{row0 + rows}]"
            m.parts.append((self._buffer(size, label), row0, rows, soff // 4))
        self.mats[name] = m
        return m

    async def _upload_rows(self, name, ref):
        """A float matrix stored as rows ([V, C] token table): each part's bytes as they are,
        or widened to f32 by the convert kernel."""
        N, K = ref.shape
        fmt = "f16" if self.uses_f16 else "f32"
        m = Matrix(name, K, N, fmt)
        per_part = m.rows_per_part(self.device.max_binding)
        itemsize = ref.nbytes // (N * K)
        for row0 in range(0, N, per_part):
            rows = min(per_part, N - row0)
            start = ref.start + row0 * K * itemsize
            buf = await self._upload_tensor(ref, start, start + rows * K * itemsize, rows * K,
                                            f"{name}[{row0}:{row0 + rows}]", self.uses_f16)
            m.parts.append((buf, row0, rows, 0))
            self._report(rows * K * itemsize)
        self.mats[name] = m

    async def _upload_quantized(self, name, ref):
        """qweight rows then scales into each part (values, then scales from SCALE_ALIGN)."""
        m = self._new_matrix(name, ref.K, ref.N, f"q{ref.bits}", ref.block)
        qrow = ref.qweight.nbytes // ref.N
        srow = ref.scales.nbytes // ref.N
        for t, row_bytes, at in ((ref.qweight, qrow, 0), (ref.scales, srow, None)):
            for buf, row0, rows, soff in m.parts:
                start = t.start + row0 * row_bytes
                await self._stream_into(t.file, start, start + rows * row_bytes, buf,
                                        soff * 4 if at is None else at)
                self._report(rows * row_bytes)

    async def _upload_transposed(self, name, ref):
        """A Conv1D weight [K, N] as rows [N, K]: streamed in chunks of whole source rows into
        a staging buffer, each chunk transposed into every part by transpose.wgsl."""
        dev = self.device
        K, N = ref.shape
        fmt = "f16" if self.uses_f16 else "f32"
        m = self._new_matrix(name, K, N, fmt)
        src = {"F32": 0, "F16": 1, "BF16": 2}[ref.dtype]
        itemsize = ref.nbytes // (K * N)
        chunk_rows = max(2, min(K, min(STAGING, dev.max_binding) // (N * itemsize)) // 2 * 2)
        if self._staging is None or self._staging.size < chunk_rows * N * itemsize:
            if self._staging is not None:
                self._owned.remove(self._staging)
                dev.destroy(self._staging)
            self._staging = self._buffer(chunk_rows * N * itemsize, "staging (transpose)")
        for k0 in range(0, K, chunk_rows):
            kr = min(chunk_rows, K - k0)
            start = ref.start + k0 * N * itemsize
            await self._stream_into(ref.file, start, start + kr * N * itemsize, self._staging)
            enc = dev.encoder()
            for buf, row0, rows, _ in m.parts:
                words = rows * kr // (2 if fmt == "f16" else 1)
                groups = cdiv(words, WG)
                gx = min(groups, MAX_WORKGROUPS)
                pipe = self.kernels.get("transpose", K=K, N=N, K0=k0, KR=kr, N0=row0, NR=rows,
                                        SRC=src, DST_F16=(fmt == "f16"), WG=WG)
                enc.dispatch(pipe, dev.bind_group(pipe, [self._staging, buf]), gx,
                             cdiv(groups, gx))
            # Queue order keeps the next chunk's write after this transpose has read.
            enc.submit()
            self._report(kr * N * itemsize)

    async def _upload_tensor(self, ref, start, end, n, label, keep_f16=False):
        """Copy bytes [start, end) of a file (n values) into a new buffer.

        Data already in the storage dtype goes straight in: f32, or f16 matrices kept as halves
        (`keep_f16`). Other 16-bit data (bf16, f16 vectors) goes into a staging buffer and is
        widened to f32 by the convert kernel on the GPU; no CPU pass ever touches the weights.
        """
        dev = self.device
        keep_f16 = keep_f16 and ref.dtype == "F16" and len(ref.shape) == 2
        if ref.dtype == "F32" or keep_f16:
            out = self._buffer(end - start, label)
            await self._stream_into(ref.file, start, end, out)
            return out
        out = self._buffer(n * 4, label)
        staging = self._buffer(end - start, label + " (16-bit)")
        await self._stream_into(ref.file, start, end, staging)
        groups = cdiv(cdiv(n, 2), WG)
        gx = min(groups, MAX_WORKGROUPS)
        pipe = self.kernels.get("convert", N=n, BF16=(ref.dtype == "BF16"), WG=WG)
        enc = dev.encoder()
        enc.dispatch(pipe, dev.bind_group(pipe, [staging, out]), gx, cdiv(groups, gx))
        enc.submit()
        self._owned.remove(staging)
        dev.destroy(staging)  # freed once the submitted conversion has run
        return out

    async def _stream_into(self, file, start, end, buf, offset=0):
        async for chunk in self.spec.source.chunks(file, start, end):
            self.device.write(buf, offset, chunk)
            offset += len(chunk)

    # ---------------------------------------------------------------- buffers, bind groups

    def _build(self):
        cfg, dev, k = self.config, self.device, self.kernels
        self._built_from = len(self._owned)  # buffers from here on are _build's (rebuild())
        C, V, n_ctx, L = self.C, self.V, self.n_ctx, cfg.n_layer
        f16, lay, eps = self.uses_f16, self.layout, cfg.layer_norm_epsilon
        f = 4  # bytes per f32
        self.logit_rows = max(1, min(n_ctx, LOGITS_BYTES // (V * f), dev.max_binding // (V * f)))
        self.argmax_parts = cdiv(V, ARGMAX_SPAN)
        buf = self._buffer
        self.ids = buf(n_ctx * 4, "ids")                    # (n_ctx) u32
        self.x = buf(n_ctx * C * f, "x")                     # (T, C) residual stream
        self.ln = buf(n_ctx * C * f, "ln")                   # (T, C) layernorm output
        self.qkv = buf(n_ctx * 3 * C * f, "qkv")             # (T, 3C)
        self.att = buf(n_ctx * C * f, "att")                 # (T, C) attention output
        self.fc = buf(n_ctx * 4 * C * f, "fc")               # (T, 4C) MLP hidden
        self.logits_buf = buf(self.logit_rows * V * f, "logits")  # (rows, V)
        self.best_v = buf(self.argmax_parts * 4, "argmax values")  # (parts) f32
        self.best_i = buf(self.argmax_parts * 4, "argmax indices")  # (parts) u32
        self.uniform = buf(16, "params", uniform=True)       # T, pos0, lm_row0, lm_rows
        self.sampler = buf(32, "sampler", uniform=True)      # temperature, top_k, top_p, seed, step
        self.probs = buf(V * f, "probs")                     # (V) sampling scratch
        self.k_cache = [buf(n_ctx * C * f, f"k_cache.{i}") for i in range(L)]  # (n_ctx, C)
        self.v_cache = [buf(n_ctx * C * f, f"v_cache.{i}") for i in range(L)]  # (n_ctx, C)
        # Stand-ins for the bindings a kernel variant does not use (two writable ones must not
        # alias each other).
        self.unused = [buf(16, "unused") for _ in range(3)]
        # Mappable slots for token ids: read while the passes queued after them run.
        self.slots = [dev.readback_buffer(8, f"token slot {i}") for i in range(PIPELINE)]
        P = self.params
        bg = dev.bind_group
        unused_r, unused_k, unused_v = self.unused

        def linear(src, prefix, out, K, N, ln=None, gelu=False, residual=False, kv=None):
            """out = src @ W + b with its fused steps: dispatches (pipeline, bind group,
            workgroups along x) for one token ("mv") and for the prompt ("mm", matmul's tiles
            on a GPU); with `ln` and the fuse_ln layout, the one-token pass reads the residual
            stream x and does that layer norm itself."""
            b = P[prefix + ".bias"]
            kc, vc = kv or (unused_k, unused_v)
            fuse = ln is not None and lay["fuse_ln"]
            lw, lb = (P[ln + ".weight"], P[ln + ".bias"]) if fuse else (unused_r, unused_r)
            flags = dict(GELU=gelu, RESIDUAL=residual, KV=kv is not None)
            op = {"fused_ln": fuse, "mv": [], "mm": []}
            if not self.rows:
                shape = dict(lay["matvec"])
                if shape["TY"] > 1 and N // 4 // shape["TX"] < 64:
                    # Few columns (c_proj's N = C): narrower workgroups, more of them, so more
                    # of the GPU reads W at once.
                    shape = dict(TX=shape["TX"] // 2, TY=shape["TY"] * 2)
                mv = k.get("matvec", K=K, N=N, F16=f16, LN=fuse, EPS=eps, **flags, **shape)
                op["mv"].append((mv, bg(mv, [self.x if fuse else src, P[prefix + ".weight"], b,
                                             out, lw, lb, kc, vc, self.uniform]),
                                 cdiv(N // 4, shape["TX"])))
                return op
            m = self.mats[prefix + ".weight"]
            for part, row0, rows, soff in m.parts:
                fmt = dict(K=K, ROWS=rows, ROW0=row0, OUT_N=N, FMT=FMT[m.fmt],
                           BLOCK=m.block or 32, SOFF=soff)
                # With the layer norm fused, each workgroup first normalises its row of x:
                # "gemv_ln" may give those products more rows per workgroup to share that work.
                shape = lay.get("gemv_ln", lay["gemv"]) if fuse else lay["gemv"]
                mv = k.get("gemv", **fmt, LN=fuse, EPS=eps, LN_MAX=K if fuse else 1, **flags,
                           **shape)
                op["mv"].append((mv, bg(mv, [self.x if fuse else src, part, b, out, lw, lb, kc,
                                             vc, self.uniform]),
                                 cdiv(rows, shape["RPW"])))
                if lay["prefill"] == "matmul":
                    mm = k.get("matmul", **fmt, **flags)
                    op["mm"].append((mm, bg(mm, [src, part, b, out, kc, vc, self.uniform]),
                                     cdiv(rows, 64)))
            return op

        def norm(x, prefix, out):
            pipe = k.get("layernorm", C=C, EPS=eps, WG=WG)
            return pipe, bg(pipe, [x, P[prefix + ".weight"], P[prefix + ".bias"], out, self.uniform])

        self.embed = []
        self.lm_head = []
        wpe, wte = P["wpe.weight"], self.mats["wte.weight"]
        for part, row0, rows, soff in wte.parts:
            fmt = dict(ROWS=rows, ROW0=row0, FMT=FMT[wte.fmt], BLOCK=wte.block or 32, SOFF=soff)
            pe = k.get("embedding", C=C, WPE_F16=self.wpe_f16, WG=WG, **fmt)
            self.embed.append((pe, bg(pe, [self.ids, part, wpe, self.x, self.uniform])))
            pl = k.get("gemv", K=C, OUT_N=V, LM=True, **fmt, **lay["lm_head"])
            self.lm_head.append((pl, bg(pl, [self.ln, part, unused_r, self.logits_buf, unused_r,
                                             unused_r, unused_k, unused_v, self.uniform]),
                                 cdiv(rows, lay["lm_head"]["RPW"])))

        self.layers = []
        att = k.get("attention", C=C, N_HEAD=cfg.n_head, N_CTX=n_ctx, WG=lay["attention"])
        for i in range(L):
            h = f"h.{i}."
            kv = (self.k_cache[i], self.v_cache[i])
            self.layers.append({
                "ln_1": norm(self.x, h + "ln_1", self.ln),
                "c_attn": linear(self.ln, h + "attn.c_attn", self.qkv, C, 3 * C, ln=h + "ln_1", kv=kv),
                "attn": (att, bg(att, [self.qkv, *kv, self.att, self.uniform])),
                "attn_proj": linear(self.att, h + "attn.c_proj", self.x, C, C, residual=True),
                "ln_2": norm(self.x, h + "ln_2", self.ln),
                "c_fc": linear(self.ln, h + "mlp.c_fc", self.fc, C, 4 * C, ln=h + "ln_2", gelu=True),
                "mlp_proj": linear(self.fc, h + "mlp.c_proj", self.x, 4 * C, C, residual=True),
            })
        self.ln_f = norm(self.x, "ln_f", self.ln)
        bufs = [self.logits_buf, self.best_v, self.best_i, self.ids]
        a1 = k.get("argmax", V=V, PARTS=self.argmax_parts, FINAL=False)
        a2 = k.get("argmax", V=V, PARTS=self.argmax_parts, FINAL=True)
        self.argmax = [(a1, bg(a1, bufs), self.argmax_parts), (a2, bg(a2, bufs), 1)]
        sp = k.get("sample", V=V)
        self.sample = (sp, bg(sp, [self.logits_buf, self.probs, self.ids, self.sampler]))

    def rebuild(self):
        """Compile the pipelines again from the current WGSL (the files, or the texts in
        `kernels.sources`) and remake the activation buffers and bind groups; the weights stay
        where they are. For edited shaders and model code (the page's editor)."""
        self._check_usable()
        built, self._owned = self._owned[self._built_from:], self._owned[:self._built_from]
        for b in built:
            self.device.destroy(b)
        for b in self.slots:
            b.destroy()
        self.kernels.clear()
        self._build()

    def release(self):
        """Destroy every GPU buffer of this model. Idempotent, and safe after a load that
        failed part way; afterwards every method raises GPUError saying to load it again."""
        if self.released:
            return
        self.released = True
        owned, self._owned = self._owned, []
        self.params, self.mats = {}, {}
        for b in owned:
            self.device.destroy(b)
        for b in getattr(self, "slots", []):
            b.destroy()

    def _buffer(self, size, label, uniform=False):
        """device.buffer, remembered so that release() destroys it, even one a failed load
        made before it could be kept anywhere else. Out of memory says what the whole model
        needs and what would fit."""
        try:
            b = self.device.buffer(size, label, uniform)
        except MemoryError as e:
            weights, total = self.planned_bytes()
            raise MemoryError(
                f"{e}. This model needs about {total / 2**20:.0f} MiB of GPU memory in all "
                f"({weights / 2**20:.0f} MiB of {self.weights} weights); smaller weights fit in "
                f"less: f16 (half of f32), or 8 or 4 bits (python build.py quantize)") from None
        self._owned.append(b)
        return b

    def planned_bytes(self):
        """(weights, total): GPU bytes this model takes once loaded, weights and in all
        (activations sized for the whole context and the KV cache included)."""
        cfg = self.config
        C, V, n_ctx, L = self.C, self.V, self.n_ctx, cfg.n_layer
        weights = 0
        for name, ref in self.spec.tensors.items():
            if hasattr(ref, "qweight"):
                weights += ref.nbytes
            elif len(ref.shape) == 2:
                f16 = self.wpe_f16 if name == "wpe.weight" else self.uses_f16
                weights += _numel(ref.shape) * (2 if f16 else 4)
            else:
                weights += _numel(ref.shape) * 4
        logit_rows = max(1, min(n_ctx, LOGITS_BYTES // (V * 4)))
        activations = 4 * (n_ctx * C * 3 + n_ctx * 3 * C + n_ctx * 4 * C + logit_rows * V + V
                           + 2 * L * n_ctx * C)
        return weights, weights + activations

    async def close(self):
        """release(), for `await model.close()` beside the async API."""
        self.release()

    def _check_usable(self):
        if self.released:
            from .gpu import GPUError
            raise GPUError("this model was released (release() or close()); load it again "
                           "with webgpt.load")

    # ---------------------------------------------------------------- forward

    def _encode(self, enc, T, lm_rows, choose):
        """Record one forward pass of T tokens (ids and params already written); then, with
        `choose` "argmax" or "sample", the choice of the next token into ids[0]."""
        C = self.C
        for pipe, group in self.embed:                           # x = wte[ids] + wpe   (T, C)
            enc.dispatch(pipe, group, cdiv(C, WG), T)
        matvec = T == 1 or self.layout["prefill"] == "matvec"

        def norm(op, layer_norm):
            if not (matvec and op["fused_ln"]):                  # else the matvec does it
                enc.dispatch(*layer_norm, T)

        def linear(op):
            for pipe, group, groups in op["mv"] if matvec else op["mm"]:
                enc.dispatch(pipe, group, groups, T if matvec else cdiv(T, 64))

        heads = self.config.n_head
        for layer in self.layers:
            norm(layer["c_attn"], layer["ln_1"])                 # ln = ln_1(x)         (T, C)
            linear(layer["c_attn"])                              # qkv = ln @ W + b     (T, 3C)
            #                                                      and k, v -> caches[pos0 + t]
            enc.dispatch(*layer["attn"], T, heads)               # att = attention      (T, C)
            linear(layer["attn_proj"])                           # x += att @ W + b     (T, C)
            norm(layer["c_fc"], layer["ln_2"])                   # ln = ln_2(x)         (T, C)
            linear(layer["c_fc"])                                # fc = gelu(ln @ W + b) (T, 4C)
            linear(layer["mlp_proj"])                            # x += fc @ W + b      (T, C)
        enc.dispatch(*self.ln_f, T)                              # ln = ln_f(x)         (T, C)
        self._encode_lm_head(enc, lm_rows)                       # logits = ln @ wte^T  (rows, V)
        if choose == "argmax":
            for pipe, group, groups in self.argmax:              # ids[0] = argmax(logits[0])
                enc.dispatch(pipe, group, groups)
        elif choose == "sample":
            enc.dispatch(*self.sample, 1)                        # ids[0] ~ softmax(logits[0] / t)

    def _encode_lm_head(self, enc, lm_rows):
        for pipe, group, groups in self.lm_head:
            enc.dispatch(pipe, group, groups, lm_rows)

    def _write_params(self, T, pos0, lm_row0, lm_rows):
        self.device.write(self.uniform, 0, struct.pack("<4I", T, pos0, lm_row0, lm_rows))

    def _check_ids(self, ids):
        V = self.V
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < V:
                raise ValueError(f"token ids must be whole numbers in [0, {V}), got {i!r}")

    def _submit(self, ids, pos0, choose, slot=None):
        """Queue a forward pass at positions pos0.. that computes the last row's logits and,
        with `choose`, picks the next token into ids[0].

        `ids` are written to the GPU first; None means the one token the previous pass left
        in ids[0]. With `slot`, the chosen token is copied there for map_read.
        """
        dev = self.device
        if ids is not None:
            dev.write(self.ids, 0, struct.pack(f"<{len(ids)}I", *ids))
        T = 1 if ids is None else len(ids)
        assert 0 < T and pos0 + T <= self.n_ctx
        self._write_params(T, pos0, T - 1, 1)
        enc = dev.encoder()
        self._encode(enc, T, 1, choose)
        if slot is not None:
            enc.copy(self.ids, 0, slot, 0, 4)
        enc.submit()
        self.pos = pos0 + T

    async def sync(self):
        """Wait until all queued GPU work of this model is done."""
        self._check_usable()
        await self.device.read(self.ids, 0, 4)

    async def logits(self, ids):
        """Full forward of `ids` from position 0, no cache reuse: float32 logits (T, V)."""
        self._check_usable()
        ids = list(ids)
        self._check_ids(ids)
        T, V = len(ids), self.V
        if not 0 < T <= self.n_ctx:
            raise ValueError(f"logits() takes 1 to {self.n_ctx} token ids (n_positions), got {T}")
        dev = self.device
        dev.write(self.ids, 0, struct.pack(f"<{T}I", *ids))
        out = bytearray()
        for row0 in range(0, T, self.logit_rows):
            rows = min(self.logit_rows, T - row0)
            self._write_params(T, 0, row0, rows)
            enc = dev.encoder()
            if row0 == 0:
                self._encode(enc, T, rows, None)
            else:
                self._encode_lm_head(enc, rows)  # ln_f output is still in self.ln
            enc.submit()
            out += await dev.read(self.logits_buf, 0, rows * V * 4)
        self.pos = T
        return memoryview(bytes(out)).cast("f", (T, V))

    # ---------------------------------------------------------------- generation

    def encode_prompt(self, prompt):
        if not isinstance(prompt, str):
            raise ValueError(f"the prompt must be text, got {type(prompt).__name__}")
        ids = self.tokenizer.encode(prompt)
        if not ids:
            eot = self.tokenizer.eot_id
            if eot is None:
                raise ValueError("the prompt is empty; type some text to continue")
            ids = [eot]  # GPT-2's unconditional start
        return ids

    async def generate_ids(self, ids, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                           seed=None, stop_at_eot=True):
        """Generate token ids after `ids`; returns the new ids only."""
        out = []
        async for token in self.stream_ids(ids, max_new_tokens, temperature, top_k, top_p, seed,
                                           stop_at_eot):
            out.append(token)
        return out

    async def stream_ids(self, ids, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                         seed=None, stop_at_eot=True):
        """Yield new token ids one by one: the prompt in one pass, then one pass per token.

        Every pass ends with the choice of the next token on the GPU (argmax at temperature 0,
        else the sampling kernel seeded with `seed` and the token's index), so up to PIPELINE
        passes are queued ahead of the token being read back. When the context (n_positions)
        is full, the window slides: the last 3/4 of it is run again as a new prompt, and a
        UserWarning says so.
        """
        from .sampling import check_params

        self._check_usable()
        ids = list(ids)
        self._check_ids(ids)
        check_params(max_new_tokens, temperature, top_k, top_p, seed)
        if not ids:
            raise ValueError("generation needs at least one prompt token")
        n_ctx, dev = self.n_ctx, self.device
        choose = "argmax" if temperature == 0 else "sample"
        if seed is None:
            seed = secrets.randbits(32)  # recorded in stats, so the run can be repeated
        eot = self.tokenizer.eot_id if (stop_at_eot and self.tokenizer is not None) else None
        stats = self.stats = {"load_s": self.stats.get("load_s"), "prefill_tokens": 0,
                              "prefill_s": 0.0, "first_token_s": None, "decode_tokens": 0,
                              "decode_s": 0.0, "window_slides": 0, "seed": seed}
        if len(ids) > n_ctx:
            warnings.warn(f"the prompt has {len(ids)} tokens, more than the model's context of "
                          f"{n_ctx}; only the last {n_ctx} are used", UserWarning, stacklevel=2)
        if max_new_tokens == 0:
            return
        history = list(ids)
        window = ids[-n_ctx:]  # tokens the next pass must write (None: ids[0] is on the GPU)
        pos = 0                # positions queued into the KV cache
        submitted = 0          # passes queued, one per new token
        inflight = deque()     # read-back slots of queued passes, oldest first
        sampler = (float(temperature), top_k or 0, 1.0 if top_p is None else float(top_p),
                   seed % 2**32)

        def submit():
            nonlocal window, pos, submitted
            if choose == "sample":
                dev.write(self.sampler, 0, struct.pack("<fIfII", *sampler, submitted))
            slot = self.slots[submitted % PIPELINE]
            self._submit(window, pos, choose, slot)
            inflight.append(slot)
            pos += 1 if window is None else len(window)
            window, submitted = None, submitted + 1

        t0 = time.perf_counter()
        t_first = None
        for produced in range(max_new_tokens):
            self._check_usable()  # released while this generator was suspended
            if submitted == produced:  # this token's pass is not queued yet
                if window is None and pos + 1 > n_ctx:
                    keep = max(1, n_ctx * 3 // 4)
                    warnings.warn(f"the context of {n_ctx} tokens is full: sliding the window to "
                                  f"the last {keep} tokens", UserWarning, stacklevel=2)
                    stats["window_slides"] += 1
                    window, pos = history[-keep:], 0
                if produced == 0:
                    stats["prefill_tokens"] = len(window)
                submit()
            # Queue the next passes before reading this token (their input is on the GPU), so
            # the GPU works while the CPU waits for the read-back.
            while submitted < max_new_tokens and pos + 1 <= n_ctx and len(inflight) < PIPELINE:
                submit()
            token = struct.unpack("<I", await dev.map_read(inflight.popleft(), 4))[0]
            now = time.perf_counter()
            if produced == 0:
                t_first = now
                stats["first_token_s"] = stats["prefill_s"] = now - t0
            else:
                stats["decode_tokens"] = produced
                stats["decode_s"] = now - t_first
            history.append(token)
            yield token
            if token == eot:
                return

    async def stream(self, prompt, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                     seed=None, stop_at_eot=True):
        """Yield text pieces of the continuation of `prompt` as tokens are produced."""
        from .tokenizer import StreamDecoder

        decoder = StreamDecoder(self.tokenizer)
        async for token in self.stream_ids(self.encode_prompt(prompt), max_new_tokens, temperature,
                                           top_k, top_p, seed, stop_at_eot):
            piece = decoder.push(token)
            if piece:
                yield piece
        rest = decoder.flush()
        if rest:
            yield rest

    async def generate(self, prompt, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                       seed=None, stop_at_eot=True):
        """The continuation of `prompt` as one string (temperature 0 is greedy)."""
        pieces = []
        async for piece in self.stream(prompt, max_new_tokens, temperature, top_k, top_p, seed,
                                       stop_at_eot):
            pieces.append(piece)
        return "".join(pieces)


def _numel(shape):
    return math.prod(shape) if shape else 1
