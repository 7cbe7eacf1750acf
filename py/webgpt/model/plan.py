"""The forward pass as data: for each pass kind, a flat list of launch records.

A `Launch` is (name, shader, pipeline, bind group, grid): what the GPU runs for one op, built
once at load from the resolved layout and the uploaded weights. Encoding a pass is a loop
over its list; the profiler (tools/bench.py) and the page's "How it works" panel read the same
lists by name, and each record names its .wgsl file: one hop from an op to its kernel.

Pass kinds:
    "prompt"   a pass of T > 1 tokens (the prompt; logits of a sequence), ending in the LM head
    "decode"   a pass of one token through the KV cache, ending in the LM head
    "lm_head"  the LM head alone (more rows of logits() after the first)
    "argmax"   ids[0] = argmax(logits[0])   (greedy)
    "sample"   ids[0] ~ softmax(logits[0] / temperature), top-k, top-p, min-p, seeded
and, made on first use by `chooser(...)` for a request's logits processors and log-probs:
    "choose ..."  log-probs of the raw row (logprobs.wgsl), the processors into a second row
               (penalize.wgsl), argmax or sample over it, the chosen token recorded
               (record.wgsl: its count and log-prob)

A prompt longer than the plan's `chunk` (prompt_chunk: the activations are sized for that many
tokens, the KV cache for the whole context) runs as passes of `chunk` tokens one after
another through the KV cache, positions pos0 advancing; those before the last skip the LM head
(encoded with rows = 0).

The architecture (webgpt.arch: gpt2.py, llama.py) says which ops run in which order with
which weights, by calling the recorder `Forward` once per pass kind: one line per op, as
llm.c's gpt2_forward.
`Forward` picks the kernel for each op from the layout (one place decides: `linear` below),
fuses a norm into the product after it where the layout allows, and binds buffers by the
names the shader declares (kernels.bind).

A grid entry is a number or a symbol resolved when the pass is encoded: "T" (tokens in the
pass), "T64", "T32" (ceil(T / 64), ceil(T / 32): matmul's row tiles), "rows" (rows of logits).
"""

import collections
import struct

from .weights import Allocator, cdiv
from .layout import FEW_WORKGROUPS

FLOAT_FORMATS = (0, 1, 4)   # gemv.wgsl's FMT of f32, f16, bf16 rows

WG = 64  # invocations per workgroup of the simple 1-D kernels (embedding, layernorm)
ARGMAX_SPAN = 2048  # logits per workgroup in the first argmax dispatch (argmax.wgsl's SPAN)
PIPELINE = 4  # decode passes queued ahead of the token being read back
LOGITS_BYTES = 64 << 20  # at most this much of (rows, V) logits in one buffer
# About this much at most of a prompt pass's activations (its rows: x, qkv, the MLP's hidden, the
# split-K parts), but never fewer than PROMPT_TOKENS tokens a pass where a binding holds them
# (llama.cpp's default micro-batch; a GPU's prompt products want many rows): a longer prompt
# runs in chunks (prompt_chunk), so prompt memory grows with the chunk, not with the context.
# Qwen2.5-0.5B: 54 KiB of rows a token, chunks of 1216 tokens (its 4096-token context as one
# pass would take 212 MiB, its MLP rows alone 152 MiB in one binding: more than the 128 MiB
# a browser's device gets by default).
PROMPT_BYTES = 64 << 20
PROMPT_TOKENS = 512

Launch = collections.namedtuple("Launch", "name shader pipeline bind_group grid")
# How a pass kind chooses the next token: its launches' kind, and what to copy to a read-back
# slot: `src` (a buffer name: "ids", or "rec" with the log-probs) and its first `nbytes`.
Chooser = collections.namedtuple("Chooser", "kind src nbytes")
MAX_TOP_LOGPROBS = 20  # OpenAI's top_logprobs bound; logprobs.wgsl holds PARTS K candidates
SLOT_BYTES = 4 * (4 + 2 * MAX_TOP_LOGPROBS)  # a read-back slot: a token, or its record
# One matrix product as Forward.linear resolved it: the input buffer x (the norm's input where
# one is fused), the norm's override constants, the buffers to bind (bias, out, caches, norm
# weights), the epilogue's flags.
_Product = collections.namedtuple("_Product", "name label x K N norm bufs flags")


def prompt_chunk(arch, layout, max_binding=None, budget=PROMPT_BYTES):
    """The most prompt tokens one forward pass runs: the whole context where its activations'
    rows fit `budget` bytes, else as many as fit but at least PROMPT_TOKENS (a multiple of 64:
    matmul's tiles of rows), and never more than one storage binding of `max_binding` bytes
    (None: no bound) holds of the widest of those buffers. At least 1. A longer prompt runs as
    passes of this many tokens one after another through the KV cache (Plan.queue,
    Model.logits)."""
    n_ctx = arch.dims.n_ctx
    rows = _rows_per_token(arch, layout)
    n = min(n_ctx, max(PROMPT_TOKENS, budget // sum(rows)))
    if max_binding is not None:
        n = min(n, max_binding // max(rows))
    if 64 < n < n_ctx:
        n -= n % 64
    return max(1, n)


def _rows_per_token(arch, layout):
    """Bytes a token of a prompt pass takes in each buffer that holds the pass's rows (ids,
    the architecture's activations but the KV cache and tables, the split-K parts)."""
    one = arch.pass_activations(1)
    rows = [4] + [nbytes for name, nbytes in one.items()
                  if not name.startswith(arch.context_buffers)]
    split = Plan.split_k_bytes(arch.dims, layout, 1)
    return rows + [split] if split else rows


def logit_rows(V, chunk, max_binding=None):
    """Rows of logits one LM head dispatch computes: at most a chunk's, LOGITS_BYTES of them
    and one binding's."""
    rows = min(chunk, LOGITS_BYTES // (V * 4))
    if max_binding is not None:
        rows = min(rows, max_binding // (V * 4))
    return max(1, rows)


def buffer_sizes(arch, layout, chunk, max_binding=None):
    """{buffer name: bytes} of the buffers a Plan makes (its `buf`) for prompt passes of at most
    `chunk` tokens: the KV cache and the tables for the whole context, the rest per pass."""
    d = arch.dims
    V, parts = d.V, cdiv(d.V, ARGMAX_SPAN)
    out = {"ids": chunk * 4}                                  # (chunk) u32
    out.update(arch.pass_activations(chunk))                  # see the arch module
    out["logits"] = logit_rows(V, chunk, max_binding) * V * 4  # (rows, V)
    out["best_v"] = parts * 4                                 # (parts) f32
    out["best_i"] = parts * 4                                 # (parts) u32
    out["probs"] = V * 4                                      # (V) sampling scratch
    split = Plan.split_k_bytes(d, layout, chunk)
    if split:
        out["split_k"] = split                                # (split_k chunk, C)
    out["params"] = 16    # T, pos0, lm_row0, lm_rows
    out["sampler"] = 32   # temperature, top_k, top_p, seed, step
    return out


LABELS = {"best_v": "argmax values", "best_i": "argmax indices", "split_k": "split-K parts"}
UNIFORMS = ("params", "sampler")


def resolve_grid(v, T, rows):
    """A grid entry's value for T tokens and `rows` rows of logits."""
    if v.__class__ is int:
        return v
    if v == "T":
        return T
    if v == "rows":
        return rows
    return cdiv(T, int(v[1:]))  # "T64", "T32": row tiles of that many tokens


class Plan:
    """Activations, bind groups and launch lists of one model over its uploaded weights.

    Made again by `rebuild` (an edited shader or module) over the same weights: only this
    object's buffers are destroyed and remade. `chunk`: the most prompt tokens a pass runs
    (None: prompt_chunk's rule); the KV cache holds the whole context, the activations one
    chunk's rows.
    """

    def __init__(self, arch, weights, layout, kernels, device, chunk=None):
        self.arch, self.weights, self.layout = arch, weights, layout
        self.kernels, self.device = kernels, device
        self.alloc = Allocator(device, weights.alloc.oom_note)
        self.dims = d = arch.dims
        self.chunk = min(chunk or prompt_chunk(arch, layout, device.max_binding), d.n_ctx)
        sizes = buffer_sizes(arch, layout, self.chunk, device.max_binding)
        self.activations = {n: sizes[n] for n in arch.activations()}   # {name: bytes}
        self.logit_rows = logit_rows(d.V, self.chunk, device.max_binding)
        self.argmax_parts = cdiv(d.V, ARGMAX_SPAN)
        self.slots = []
        self._standins = {}
        self._resolved = {}
        try:
            self.buf = {name: self.alloc.buffer(nbytes, LABELS.get(name, name),
                                                uniform=name in UNIFORMS)
                        for name, nbytes in sizes.items()}
            for name, data in arch.constants().items():
                device.write(self.buf[name], 0, data)  # tables the kernels read (rope)
            # Mappable slots for token ids: read while the passes queued after them run.
            self.slots = [device.readback_buffer(SLOT_BYTES, f"token slot {i}")
                          for i in range(PIPELINE)]
            self.passes = {}
            self._headless = {}  # {kind: its launches but the LM head's}: a prompt's chunks
            for kind in ("prompt", "decode"):
                f = Forward(self, kind)
                arch.forward(f)
                self.passes[kind] = f.launches
                head = {id(l) for l in f.lm_head_launches}
                self._headless[kind] = [l for l in f.launches if id(l) not in head]
                if kind == "prompt":
                    self.passes["lm_head"] = f.lm_head_launches
            self.passes["argmax"], self.passes["sample"] = self._choose()
        except BaseException:
            self.release()
            raise

    @staticmethod
    def planned_bytes(arch, layout=None, chunk=None, max_binding=None):
        """GPU bytes of the activations, KV cache and scratch the plan of `arch` will make
        with prompt passes of at most `chunk` tokens (None: prompt_chunk's rule) on an adapter
        of `max_binding` bytes a binding (None: no bound)."""
        chunk = min(chunk or prompt_chunk(arch, layout, max_binding), arch.dims.n_ctx)
        return sum(buffer_sizes(arch, layout, chunk, max_binding).values())

    @staticmethod
    def split_k_bytes(dims, layout, tokens=None):
        """The scratch of the split-K products' parts: (split_k tokens, C) f32 for passes of
        `tokens` tokens (None: the context), where the layout cuts them (its prompts run
        matmul)."""
        if layout is None or layout.prefill != "matmul" or layout.split_k <= 1:
            return 0
        return layout.split_k * (tokens or dims.n_ctx) * dims.C * 4

    def standin(self, index, space):
        """A small buffer for binding `index` where a kernel variant does not use it: one per
        binding index, so two writable stand-ins never alias each other."""
        key = (index, space == "uniform")
        if key not in self._standins:
            self._standins[key] = self.alloc.buffer(16, f"unused binding {index}",
                                                    uniform=key[1])
        return self._standins[key]

    def bind(self, shader, pipeline, **buffers):
        return self.kernels.bind(shader, pipeline, standin=self.standin, **buffers)

    def _choose(self, logits="logits"):
        """The argmax and sample launches over row 0 of buffer `logits`."""
        k, b, V = self.kernels, self.buf, self.dims.V
        out = {"logits": b[logits], "best_v": b["best_v"], "best_i": b["best_i"], "ids": b["ids"]}
        argmax = []
        for final, groups in ((False, self.argmax_parts), (True, 1)):
            pipe = k.get("argmax", V=V, PARTS=self.argmax_parts, FINAL=final)
            argmax.append(Launch("argmax" + (" (final)" if final else ""), "argmax.wgsl", pipe,
                                 self.bind("argmax", pipe, **out), (groups, 1, 1)))
        pipe = k.get("sample", V=V)
        sample = [Launch("sample", "sample.wgsl", pipe,
                         self.bind("sample", pipe, logits=b[logits], probs=b["probs"],
                                   ids=b["ids"], s=b["sampler"]), (1, 1, 1))]
        return argmax, sample

    def chooser(self, greedy=True, penalize=False, bias=False, logprobs=None, mask=False):
        """How to choose the next token for a request: greedy or sampled, after the penalties
        (repetition, frequency, presence: penalize), a logit bias (bias) and a mask of the
        allowed tokens (mask: a constraint's, written before each choice), with the raw
        log-probs of the chosen token and of `logprobs` top alternatives (None: none). Without
        any of these, the plain "argmax" / "sample" passes; else a pass kind of its own, made
        on first use (its scratch buffers too: about 12 V bytes), and kept."""
        if not (penalize or bias or mask or logprobs is not None):
            return Chooser("argmax" if greedy else "sample", "ids", 4)
        kind = (f"choose {'argmax' if greedy else 'sample'}{' penalize' * penalize}"
                f"{' bias' * bias}{' mask' * mask}"
                f"{'' if logprobs is None else f' logprobs {logprobs}'}")
        if kind not in self.passes:
            self.passes[kind] = self._choose_with(greedy, penalize, bias, logprobs, mask)
        if logprobs is None:
            return Chooser(kind, "ids", 4)
        return Chooser(kind, "rec", 4 * (4 + 2 * logprobs))

    def _control_buffers(self):
        """The scratch of the processors and log-probs (made once, on first use)."""
        if "rec" not in self.buf:
            b, V = self.alloc.buffer, self.dims.V
            parts = cdiv(V, ARGMAX_SPAN)
            self.buf.update({
                "logits_p": b(V * 4, "processed logits"),                  # (V) f32
                "bias": b(V * 4, "logit bias"),                            # (V) f32
                "counts": b(V * 4, "token counts"),                        # (V) u32
                "mask": b(cdiv(V, 32) * 4, "allowed tokens"),              # (V) bits
                "part_v": b(parts * MAX_TOP_LOGPROBS * 4, "top logits"),   # (parts, 20) f32
                "part_i": b(parts * MAX_TOP_LOGPROBS * 4, "top indices"),  # (parts, 20) u32
                "part_m": b(parts * 4, "part max"),                        # (parts) f32
                "part_s": b(parts * 4, "part sum"),                        # (parts) f32
                "rec": b(SLOT_BYTES, "token record"),                      # (4 + 2 K) u32
                "pen": b(16, "penalties", uniform=True),                   # repetition, freq, pres
            })
        return self.buf

    def _choose_with(self, greedy, penalize, bias, logprobs, mask):
        k, V = self.kernels, self.dims.V
        b = self._control_buffers()
        parts = cdiv(V, ARGMAX_SPAN)
        out = []
        if logprobs is not None:
            if parts * logprobs > 256 * 16:
                raise ValueError(f"top_logprobs={logprobs} over a vocabulary of {V} is more "
                                 f"than logprobs.wgsl holds (PARTS K <= 4096)")
            bufs = {n: b[n] for n in ("logits", "part_v", "part_i", "part_m", "part_s", "rec")}
            for final, groups in ((False, parts), (True, 1)):
                pipe = k.get("logprobs", V=V, PARTS=parts, K=logprobs, FINAL=final)
                out.append(Launch("logprobs" + (" (final)" if final else ""), "logprobs.wgsl",
                                  pipe, self.bind("logprobs", pipe, **bufs), (groups, 1, 1)))
        row = "logits"
        if penalize or bias or mask:
            pipe = k.get("penalize", V=V, BIAS=bias, **({"MASK": True} if mask else {}))
            group = self.bind("penalize", pipe, logits=b["logits"], bias=b["bias"],
                              counts=b["counts"], mask=b["mask"], out=b["logits_p"],
                              pen=b["pen"])
            out.append(Launch("penalties", "penalize.wgsl", pipe, group, (cdiv(V, 256), 1, 1)))
            row = "logits_p"
        argmax, sample = self._choose(row)
        out += argmax if greedy else sample
        if penalize or logprobs is not None:
            pipe = k.get("record", COUNT=penalize, LOGPROB=logprobs is not None)
            group = self.bind("record", pipe, logits=b["logits"], ids=b["ids"],
                              counts=b["counts"], rec=b["rec"])
            out.append(Launch("record", "record.wgsl", pipe, group, (1, 1, 1)))
        return out

    # ------------------------------------------------------------ encoding

    def dispatches(self, kind, T=1, rows=1):
        """The launches of pass `kind` as the device's replayable sequence of (pipeline, bind
        group, x, y, z) for T tokens and `rows` rows of logits (0: none, the pass without its
        LM head: a prompt's chunk before the last); made once per (kind, T, rows) and kept (a
        decode pass is the same sequence every token)."""
        assert T <= self.chunk, (T, self.chunk)  # the activations hold a chunk's rows
        key = (kind, T, rows)
        got = self._resolved.get(key)
        if got is None:
            launches = self.passes[kind] if rows else self._headless[kind]
            got = self.device.sequence(
                [(l.pipeline, l.bind_group, *(resolve_grid(v, T, rows) for v in l.grid))
                 for l in launches])
            if len(self._resolved) > 64:
                self._resolved.clear()
            self._resolved[key] = got
        return got

    def encode(self, enc, kind, T=1, rows=1):
        enc.run(self.dispatches(kind, T, rows))

    def queue(self, ids, pos0, choose, slot=None):
        """Queue the forward pass of `ids` at positions pos0.. that computes the last row's
        logits and, with `choose` (a Chooser, or "argmax" / "sample"), picks the next token
        into ids[0]. More ids than `chunk` run as passes of `chunk` tokens one after another
        through the KV cache (pos0 advancing), only the last with the LM head.

        `ids` are written to the GPU first; None means the one token the previous pass left
        in ids[0]. With `slot`, the chosen token (or its record) is copied there for map_read.
        """
        T = 1 if ids is None else len(ids)
        assert 0 < T and pos0 + T <= self.dims.n_ctx
        for start in range(0, T, self.chunk):
            part = None if ids is None else ids[start:start + self.chunk]
            last = start + self.chunk >= T
            self._queue_pass(part, pos0 + start, 1 if last else 0, choose if last else None,
                             slot)

    def _queue_pass(self, ids, pos0, rows, choose, slot):
        """One pass of queue(): `rows` 1 with the LM head (the last row's logits), 0 without."""
        dev = self.device
        if ids is not None:
            dev.write(self.buf["ids"], 0, struct.pack(f"<{len(ids)}I", *ids))
        T = 1 if ids is None else len(ids)
        self.write_params(T, pos0, T - 1, 1)
        enc = dev.encoder()
        self.encode(enc, "decode" if T == 1 else "prompt", T, rows)
        if choose is not None:
            self.encode_choice(enc, choose, slot)
        enc.submit()

    def encode_choice(self, enc, choose, slot=None):
        """Record the choice of the next token (a Chooser, or "argmax" / "sample"), and its
        copy into `slot` where given."""
        if isinstance(choose, str):
            choose = Chooser(choose, "ids", 4)
        self.encode(enc, choose.kind)
        if slot is not None:
            enc.copy(self.buf[choose.src], 0, slot, 0, choose.nbytes)

    def write_params(self, T, pos0, lm_row0, lm_rows):
        self.device.write(self.buf["params"], 0, struct.pack("<4I", T, pos0, lm_row0, lm_rows))

    def launches(self, kind):
        """The launch records of pass `kind` (name, shader, pipeline, bind group, grid)."""
        return list(self.passes[kind])

    def describe(self):
        """{kind: [(name, shader file, grid)]}: the plan as plain data (the page shows it)."""
        return {kind: [(l.name, l.shader, tuple(l.grid)) for l in launches]
                for kind, launches in self.passes.items()}

    def buffers(self):
        return list(self.alloc.owned)

    def release(self):
        self.alloc.release()
        for s in self.slots:
            self.device.destroy_readback(s)
        self.slots = []
        self._standins = {}
        self._resolved = {}
        self._headless = {}


def row_pairs(shape, rows, fmt):
    """(gemv shape, row slots to dispatch) for a product over `rows` rows of format `fmt`
    (gemv.wgsl's FMT): the shape's PAIRS (two rows a slot, sharing their reads of x) kept for
    quantized rows only, where the reads of x weigh most (H100, Llama-3.2-1B at context 16:
    Q4_0's GPU pass 1145 -> 1068 us with it, F16's 1288 -> 1317), and only where the halved
    slots still fill FEW_WORKGROUPS workgroups (else a large GPU would idle)."""
    if not shape.get("PAIRS"):
        return shape, rows
    if fmt in FLOAT_FORMATS:
        return {**shape, "PAIRS": False}, rows
    half = cdiv(rows, 2)
    if cdiv(half, shape["RPW"]) < FEW_WORKGROUPS:
        return {**shape, "PAIRS": False}, rows
    return shape, half


class _Products:
    """How Forward runs a matrix product (its `linear` op decides which): matvec over a matrix
    kept [in, out] (the CPU layout), gemv for one token over rows, matmul for a prompt (with
    split-K for the long-K residual products), and the peepholes that fold the op after a gemv
    product into it (rope, SwiGLU). A base of Forward, which holds the state they use: the
    plan, whether the pass runs one token at a time (`matvec`), `launches`, `_add`,
    `_last_gemv`."""

    def _matvec(self, prod):
        """The product over a matrix kept [in, out] (matvec.wgsl: an invocation per 4 outputs)."""
        p, shape = self.plan, dict(self.plan.layout.matvec)
        if not self.matvec:
            raise ValueError("the 'cols' weight layout runs prompts with matvec "
                             "(prefill='matvec')")
        if shape["TY"] > 1 and prod.N // 4 // shape["TX"] < 64:
            # Few columns (c_proj's N = C): narrower workgroups, more of them, so more of the
            # GPU reads W at once.
            shape = dict(TX=shape["TX"] // 2, TY=shape["TY"] * 2)
        pipe = p.kernels.get("matvec", K=prod.K, N=prod.N, F16=p.weights.uses_f16, **prod.norm,
                             **prod.flags, **shape)
        group = p.bind("matvec", pipe, x=prod.x, W=self._param(prod.name + ".weight"),
                       **prod.bufs)
        self._add(prod.label, "matvec", pipe, group, (cdiv(prod.N // 4, shape["TX"]), "T", 1))

    def _gemv(self, prod, fused_norm):
        """One token's product over rows, part by part (gemv.wgsl). With the norm fused, each
        workgroup first normalises its row of x: "gemv_ln" may give those products more rows
        per workgroup to share that work."""
        p = self.plan
        m = p.weights.mats[prod.name + ".weight"]
        # ROPE, SWIGLU_OUT: a workgroup row per pair of rows
        pairs = prod.flags.get("ROPE", False) or prod.flags.get("SWIGLU_OUT", False)
        for part in m.parts:
            rows = part[2] // 2 if pairs else part[2]
            shape = p.layout.gemv_ln if fused_norm else p.layout.gemv
            # (RMS norms only: GPT-2's LayerNorm, two reductions in each workgroup, was slower
            # so, H100 124M 457 -> 467 us a pass)
            if fused_norm and prod.norm.get("RMS") and cdiv(rows, shape["RPW"]) < FEW_WORKGROUPS:
                shape = p.layout.gemv_ln_few
            consts = m.constants(part)
            if pairs:
                shape = {**shape, "PAIRS": False}
            else:
                shape, rows = row_pairs(shape, rows, consts.get("FMT", 0))
            pipe = p.kernels.get("gemv", K=prod.K, OUT_N=prod.N, **consts, **prod.norm,
                                 **{"LN_MAX": prod.K if fused_norm else 1, **prod.flags}, **shape)
            group = p.bind("gemv", pipe, x=prod.x, Wt=part[0], **prod.bufs)
            self._add(prod.label, "gemv", pipe, group, (cdiv(rows, shape["RPW"]), "T", 1))
        self._last_gemv = (prod, fused_norm, len(m.parts))

    def _remade(self, out, label, fits, N=None, flags=(), bufs=()):
        """The gemv product recorded just before (_last_gemv), which wrote buffer `out`, made
        again with `flags` and `bufs` added, N outputs (None: its own) and `label` after its
        own: the ops a peephole folds into it (rope, SwiGLU). False, and nothing changed, where
        there is none, it took a fused LayerNorm (whose ln_b binding ROPE uses) or an epilogue
        already, or `fits(product, matrix)` says no."""
        last, self._last_gemv = self._last_gemv, None
        if last is None:
            return False
        prod, fused_norm, n = last
        p = self.plan
        m = p.weights.mats[prod.name + ".weight"]
        if prod.bufs["out"] is not p.buf[out] or prod.norm.get("LN") and not prod.norm.get("RMS") \
                or any(prod.flags.get(f) for f in ("KV", "GELU", "RESIDUAL", "SWIGLU_IN",
                                                     "SWIGLU_OUT", "ROPE")) \
                or not fits(prod, m):
            return False
        del self.launches[-n:]
        self._gemv(_Product(prod.name, f"{prod.label} + {label}", prod.x, prod.K, N or prod.N,
                            prod.norm, dict(prod.bufs, **dict(bufs)),
                            dict(prod.flags, **dict(flags))), fused_norm)
        self._last_gemv = None
        return True

    def _swiglu_in_product(self, x, K):
        """silu(gate) * up done by the gemv product that wrote `x` ((gate | up), 2K columns)
        just before (gemv.wgsl's SWIGLU_OUT: one silu per output rather than one per weight
        of the next product), where that product's matrix is one part [gate; up]; it then
        writes K columns. False where it cannot be done."""
        return self._remade(x, "silu(gate) * up",
                            lambda prod, m: prod.N == 2 * K and len(m.parts) == 1,
                            N=K, flags={"SWIGLU_OUT": True})

    def _rope_in_product(self, name, qkv, layer, rotate):
        """The rope op done by the gemv product that wrote `qkv` just before it (gemv.wgsl's
        ROPE: one dispatch a layer fewer), where that product wrote all of q|k|v and its
        parts hold whole heads. False where it cannot be done (the rope op then runs on its
        own)."""
        p, d = self.plan, self.plan.dims
        hd = d.head_size

        def fits(prod, m):
            return prod.N == d.q_cols + 2 * d.n_kv * hd and \
                not any(part[1] % hd or part[2] % hd for part in m.parts)

        flags = dict(ROPE=True, HD=hd, ROPE_Q=d.q_cols, ROPE_KV=d.n_kv * hd,
                     **({} if rotate else {"ROPE_ROT": False}))
        bufs = dict(ln_b=p.buf["rope"], k_cache=p.buf[f"k_cache.{layer}"],
                    v_cache=p.buf[f"v_cache.{layer}"])
        return self._remade(qkv, name.rsplit(".", 1)[-1], fits, flags=flags, bufs=bufs)

    def _matmul(self, prod, residual, kv, out):
        """A prompt's product over rows in 64 x 64 tiles (matmul.wgsl). The residual products
        have N = C columns, few 64-wide blocks: half-height tiles (32 tokens) give them twice
        the workgroups, and a long K is cut into ranges (split-K) whose parts a reduce adds
        after the last part."""
        p = self.plan
        m = p.weights.mats[prod.name + ".weight"]
        tt = {"TT": 32} if residual else {}
        cut = self._split_k(prod.K, prod.N, residual, kv)
        if cut > 1:
            tt["SPLIT_K"] = cut
        bufs = {k: v for k, v in prod.bufs.items() if k not in ("ln_w", "ln_b")}
        for part in m.parts:
            pipe = p.kernels.get("matmul", K=prod.K, OUT_N=prod.N, **m.constants(part),
                                 **prod.flags, **tt)
            group = p.bind("matmul", pipe, x=prod.x, Wt=part[0],
                           **(dict(bufs, out=p.buf["split_k"]) if cut > 1 else bufs))
            self._add(prod.label, "matmul", pipe, group,
                      (cdiv(part[2], 64), "T32" if residual else "T64", cut))
        if cut > 1:
            has_bias = bufs["bias"] is not None
            pipe = p.kernels.get("reduce", N=prod.N, SPLIT_K=cut,
                                 **({} if has_bias else {"BIAS": False}))
            group = p.bind("reduce", pipe, parts=p.buf["split_k"], bias=bufs["bias"],
                           out=p.buf[out], p=p.buf["params"])
            self._add(f"{prod.name} (sum of {cut} parts)", "reduce", pipe, group,
                      (cdiv(prod.N, 256), "T", 1))

    def _split_k(self, K, N, residual, kv):
        """Ranges of K for a prompt's product (see Layout.split_k), 1 for none."""
        cut = self.plan.layout.split_k if "split_k" in self.plan.buf else 1
        if (self.matvec or not residual or kv is not None or K < 2 * N
                or N > self.plan.dims.C):  # the scratch holds rows of C
            return 1
        while cut > 1 and K % (16 * cut):
            cut -= 1
        return cut

class Forward(_Products):
    """Records the ops of one pass kind as launches; the architecture module calls it in order.

    Buffers are named: activations by the names the architecture's `activations()` gives
    ("x", "ln", "qkv", ...), weights by their tensor names. `decode` passes use the one-token
    kernels (and may fuse a norm into the product that follows it); `prompt` passes use the
    layout's prefill kernels.
    """

    def __init__(self, plan, kind):
        self.plan, self.kind = plan, kind
        self.launches = []
        self.lm_head_launches = []  # the LM head's, also a pass of their own
        lay = plan.layout
        self.matvec = kind == "decode" or lay.prefill == "matvec"
        self.fuse = self.matvec and lay.fuse_ln
        self._pending = None  # a norm waiting to be fused into the next product
        self._split = None    # (buffer, splits): split attention's partials, for the next product
        self._last_gemv = None  # (product, fused norm, launches) of the last gemv op, for rope

    # helpers

    def _param(self, name):
        return self.plan.weights.params[name]

    def _add(self, name, shader, pipe, group, grid):
        self.launches.append(Launch(name, shader + ".wgsl", pipe, group, tuple(grid)))
        self._last_gemv = None  # set again by _gemv after its own launches

    def _flush(self):
        if self._split is not None:
            raise ValueError(f"the split attention's partial results in {self._split[0]!r} must "
                             f"be read by the product that follows it (a linear op on that "
                             f"buffer), before any other op")
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._emit_norm(*pending)

    # ops

    def embedding(self, name, ids, table, positions, out, scale=None):
        """out[t] = table[ids[t]] (+ positions[pos0 + t] where there is a position table;
        times `scale` where given: Gemma's sqrt(C))                         (T, C)"""
        self._flush()
        p, k = self.plan, self.plan.kernels
        C = p.dims.C
        m = p.weights.mats[table]
        wpe = positions is not None
        scaled = {} if scale is None else {"SCALE": scale}
        for part in m.parts:
            pipe = k.get("embedding", C=C, WPE=wpe,
                         WPE_F16=wpe and p.weights.keeps_f16(positions), WG=WG,
                         **m.constants(part), **scaled)
            group = p.bind("embedding", pipe, ids=p.buf[ids], wte=part[0],
                           wpe=self._param(positions) if wpe else None, x=p.buf[out],
                           p=p.buf["params"])
            self._add(name, "embedding", pipe, group, (cdiv(C, WG), "T", 1))

    def layer_norm(self, name, x, out):
        """out = (x - mean) / sqrt(var + eps) * w + b, per row     (T, C)
        In a pass whose products can do it, it is left to the next product that reads `out`."""
        self._norm(name, x, out, rms=False)

    def rms_norm(self, name, x, out, offset=0.0, residual=False):
        """out = x / sqrt(mean(x^2) + eps) * (w + offset), per row   (T, C)
        (offset 1: Gemma's norms). Fused into the next product as layer_norm is; with
        `residual`, out += the norm instead (Gemma's post-norms), a dispatch of its own."""
        self._norm(name, x, out, rms=True, offset=offset, residual=residual)

    def _norm(self, name, x, out, rms, offset=0.0, residual=False):
        self._flush()
        if self.fuse and not residual:
            self._pending = (name, x, out, rms, offset)
        else:
            self._emit_norm(name, x, out, rms, offset, residual)

    def _emit_norm(self, name, x, out, rms, offset=0.0, residual=False):
        p = self.plan
        # The options only where they apply, so the other models' pipelines keep their keys.
        options = dict(**({"OFFSET": offset} if offset else {}),
                       **({"RESIDUAL": True} if residual else {}))
        pipe = p.kernels.get("layernorm", C=p.dims.C, EPS=p.dims.eps, RMS=rms, WG=WG, **options)
        group = p.bind("layernorm", pipe, x=p.buf[x], w=self._param(name + ".weight"),
                       b=None if rms else self._param(name + ".bias"), out=p.buf[out],
                       p=p.buf["params"])
        self._add(name, "layernorm", pipe, group, ("T", 1, 1))

    def linear(self, name, x, out, K, N, gelu=False, residual=False, kv=None, swiglu_in=False,
               geglu_in=False):
        """out = x @ W + b (b where the model has it), with its fused epilogue: gelu,
        out += (residual), and with kv=i the k and v thirds stored into layer i's caches at
        pos0 + t; with swiglu_in, x holds (gate | up) of 2K columns and the product reads
        silu(gate) * up (gelu(gate) * up with geglu_in: Gemma's MLP).     (T, N)
        Which kernel runs is decided here, for every product of every architecture: matvec
        (weights kept [in, out]: the CPU layout), gemv (one token, rows), matmul (a prompt)."""
        p, lay = self.plan, self.plan.layout
        if swiglu_in and self._swiglu_in_product(x, K):
            swiglu_in = False   # the product before this one wrote silu(gate) * up already
        split, self._split = self._split, None
        if split is not None and split[0] != x:
            self._split = split
            self._flush()  # raises: the partials must be read by this product
        norm = None
        if self._pending is not None and self._pending[2] == x:
            norm, self._pending = self._pending, None
        self._flush()
        has_bias = name + ".bias" in p.weights.params
        bufs = dict(bias=self._param(name + ".bias") if has_bias else None, out=p.buf[out],
                    k_cache=p.buf[f"k_cache.{kv}"] if kv is not None else None,
                    v_cache=p.buf[f"v_cache.{kv}"] if kv is not None else None, p=p.buf["params"])
        ln_constants, ln = self._fused(norm)
        flags = dict(GELU=gelu, RESIDUAL=residual, KV=kv is not None)
        # Only where they differ from the defaults, so GPT-2's pipelines keep their keys.
        if split is not None:
            flags.update(ATT_SPLITS=split[1], ATT_HEADS=p.dims.n_head,
                         MIN_CHUNK=lay.attention_chunk, LN_MAX=K)
            if split[2]:
                flags["ATT_WINDOW"] = split[2]
        if not has_bias:
            flags["BIAS"] = False
        if swiglu_in or geglu_in:
            flags["SWIGLU_IN"] = True
        if geglu_in:
            flags["GEGLU"] = True
        label = f"{norm[0]} + {name}" if norm else name
        if split is not None:
            label = f"(attention's {split[1]} parts) + {name}"
        # What the kernels of this product share: the input row (normalised first where a
        # norm is fused: its own input), the norm's constants, the buffers, the flags.
        prod = _Product(name, label, p.buf[norm[1] if norm else x], K, N,
                        dict(LN=norm is not None, EPS=p.dims.eps, **ln_constants),
                        dict(bufs, **ln), flags)
        if name + ".weight" in p.weights.params:  # kept [in, out] as stored: the CPU layout
            self._matvec(prod)
        elif self.matvec:
            self._gemv(prod, fused_norm=norm is not None)
        else:
            assert split is None  # attention splits only in decode passes
            self._matmul(prod, residual, kv, out)

    def _fused(self, norm):
        """({override: value}, {binding: buffer}) of a pending norm fused into the product
        after it: RMS and its weight offset where they apply, and its weight and bias buffers
        (None for none)."""
        if norm is None:
            return {}, dict(ln_w=None, ln_b=None)
        name, _, _, rms, offset = norm
        constants = dict(**({"RMS": True} if rms else {}), **({"LN_OFFSET": offset} if offset else {}))
        return constants, dict(ln_w=self._param(name + ".weight"),
                               ln_b=None if rms else self._param(name + ".bias"))

    def rope(self, name, qkv, layer, q_norm=None, k_norm=None, norm_offset=0.0, table="rope",
             rot=None):
        """q, k of this pass rotated by their positions (the `table` of cos | sin, "rope"),
        after an RMSNorm of each head with q_norm / k_norm where given (weights + norm_offset:
        Gemma 3's 1); rotated k and v -> layer's caches at pos0 + t. `rot`: the values of a
        head rotated where not all of them (a partial rotary embedding; 0: none, SmolLM3's
        layers without it).                                               (T, (H + 2G) hd)"""
        self._flush()
        p, d = self.plan, self.plan.dims
        hd = d.head_size
        if q_norm is None and table == "rope" and rot in (None, hd, 0) \
                and self._rope_in_product(name, qkv, layer, rot != 0):
            return
        lanes = 1  # invocations per head: a power of two, at most hd / 8 (1 on a CPU adapter)
        while p.layout.kind != "cpu" and lanes * 2 <= min(8, hd // 8):
            lanes *= 2
        norm = q_norm is not None
        H, G = d.n_head, d.n_kv
        options = dict(**({"NORM_OFFSET": norm_offset} if norm_offset else {}),
                       **({"ROT": rot} if rot is not None and rot != hd else {}))
        pipe = p.kernels.get("rope", C=d.q_cols, N_HEAD=H, N_KV=G, NORM=norm,
                             EPS=d.eps, LANES=lanes, WG=64, **options)
        group = p.bind("rope", pipe, qkv=p.buf[qkv], rope=p.buf[table],
                       q_norm=self._param(q_norm + ".weight") if norm else None,
                       k_norm=self._param(k_norm + ".weight") if norm else None,
                       k_cache=p.buf[f"k_cache.{layer}"], v_cache=p.buf[f"v_cache.{layer}"],
                       p=p.buf["params"])
        self._add(name, "rope", pipe, group, (cdiv((H + 2 * G) * lanes, 64), "T", 1))

    def attention(self, name, qkv, layer, out, scale=None, softcap=None, window=None):
        """out = softmax(q k^T / sqrt(hs), causal) v per head, over the KV cache (each of the
        n_kv key/value heads serving n_head / n_kv query heads)           (T, n_head hs)
        Options (Gemma, Mistral, Phi-3, windowed Qwen): `scale` instead of 1 / sqrt(hs),
        `softcap` (scores -> tanh(s / softcap) softcap), `window`: only the last `window` keys
        (a sliding window: the cache keeps every key of the context, so a mask is enough; a
        window at least the context kept is no window)."""
        self._flush()
        p, d = self.plan, self.plan.dims
        gqa = {}
        if d.n_kv != d.n_head:  # grouped-query attention: fewer k, v columns than q's
            gqa = dict(N_KV=d.n_kv, QKV_STRIDE=d.qkv_cols)
        window = window if window and window < d.n_ctx else 0
        for key, value in (("SCALE", scale), ("SOFTCAP", softcap), ("WINDOW", window)):
            if value:  # only where given, so the other models' pipelines keep their keys
                gqa[key] = value
        splits = self._splits(out)
        if splits > 1:
            gqa.update(SPLITS=splits, MIN_CHUNK=p.layout.attention_chunk)
        pipe = p.kernels.get("attention", C=d.q_cols, N_HEAD=d.n_head, N_CTX=d.n_ctx, **gqa,
                             WG=p.layout.attention_decode if self.kind == "decode"
                             else p.layout.attention)
        group = p.bind("attention", pipe, qkv=p.buf[qkv], k_cache=p.buf[f"k_cache.{layer}"],
                       v_cache=p.buf[f"v_cache.{layer}"], y=p.buf[out], p=p.buf["params"])
        self._add(name, "attention", pipe, group, ("T", d.n_head, splits))
        if splits > 1:
            self._split = (out, splits, window)

    def _splits(self, out):
        """Chunks of keys per head for a decoded token's attention (flash-decoding): enough
        workgroups to keep a large GPU's multiprocessors busy (about 256 in all, at most the
        layout's attention_splits), where the product after it combines them (gemv, so the
        "rows" layout; the row fits in its workgroup memory) and the partial blocks fit in the
        output buffer; else 1."""
        p, d = self.plan, self.plan.dims
        lay = p.layout
        if self.kind != "decode" or lay.attention_splits <= 1 or lay.weights != "rows":
            return 1
        wg_bytes = p.device.limits.get("max-compute-workgroup-storage-size", 16384)
        if d.q_cols * 4 > wg_bytes - 4096:
            return 1  # the product stages the combined row in workgroup memory
        H, hs = d.n_head, d.head_size
        splits = max(1, min(lay.attention_splits, 256 // H))
        room = p.activations[out] // (4 * H * (hs + 4))  # hs + 4 floats a block
        return max(1, min(splits, room))

    def lm_head(self, name, x, out, softcap=None):
        """logits = x[lm_row0 : lm_row0 + rows] @ W^T              (rows, V)
        (then tanh(logits / softcap) softcap where given: Gemma's final soft-capping).
        In a pass that fuses norms (decode on a GPU, where the layout's lm_head_ln allows), the
        final norm is done by each of its workgroups rather than by a dispatch of its own."""
        p, lay = self.plan, self.plan.layout
        norm = None
        if self._pending is not None and self._pending[2] == x and lay.lm_head_ln:
            norm, self._pending = self._pending, None
        self._flush()
        m = p.weights.mats[name]
        C, V = p.dims.C, p.dims.V
        constants, ln = self._fused(norm)
        if norm is not None:
            constants.update(LN=True, EPS=p.dims.eps, LN_MAX=C)
        if softcap:
            constants["SOFTCAP"] = softcap
        for part in m.parts:
            shape, slots = row_pairs(lay.lm_head, part[2], m.constants(part).get("FMT", 0))
            pipe = p.kernels.get("gemv", K=C, OUT_N=V, LM=True, **m.constants(part), **constants,
                                 **shape)
            group = p.bind("gemv", pipe, x=p.buf[norm[1] if norm else x], Wt=part[0], bias=None,
                           out=p.buf[out], **ln, k_cache=None, v_cache=None, p=p.buf["params"])
            launch = Launch(f"{norm[0]} + lm_head" if norm else "lm_head", "gemv.wgsl", pipe,
                            group, (cdiv(slots, shape["RPW"]), "rows", 1))
            self.launches.append(launch)
            self.lm_head_launches.append(launch)
