"""The model object `webgpt.load` returns: full logits, pipelined generation, the text API.

It owns three parts: the uploaded weights (weights.Weights), the plan over them (plan.Plan:
activations, bind groups, launch lists), and the architecture module that defines the forward
pass (gpt2.py). Every buffer is created at load, sized for the whole context; a forward pass is
one command encoder and one submit; decoding reads back one token id.

The KV cache holds keys and values of positions [0, pos) for every layer. `logits(ids)` runs
the whole sequence from position 0; generation runs the prompt in one batched pass and then one
token per pass through the cache. Decoding stays on the GPU: the argmax kernel (greedy) or the
sampling kernel (temperature, top-k, top-p, seeded) writes the chosen token where the next pass
reads its input, so later passes are queued before token n is read back, and the read-back
latency hides behind compute. Only token ids leave the GPU, unless a `logits_hook` asks to see
(and edit) each step's logits.
"""

import contextlib
import secrets
import struct
import sys
import time
import warnings

from collections import deque

from ..kernels import Kernels
from . import arch_for
from .layout import Layout, layouts, resolve
from .plan import PIPELINE, Plan
from .weights import Weights, released_error


class Model:
    """A causal language model resident on one GPU device. Made by `webgpt.load`.

    `Model(spec, device, tokenizer, layout)` checks that the model fits the device (raising a
    sentence if not) and plans its weights; `await upload(progress)` streams them in and builds
    the plan. `GPT2` is the same class under its first name.
    """

    def __init__(self, spec, device, tokenizer, layout=None, arch=None):
        self.spec = spec
        self.config = spec.config
        self.device = device
        self.tokenizer = tokenizer
        self.arch = arch or arch_for(self.config)
        self.kernels = Kernels(device)
        base = Layout.of(layout) if layout is not None else layouts(device)
        fit = getattr(self.arch, "context", None)
        if fit is not None and not self.config.context:
            # The context kept (the KV cache's length), where the model allows far more.
            self.config.context = fit(self.config, device, base)
        d = self.arch.dims(self.config)
        self.C, self.V, self.n_ctx = d["C"], d["V"], d["n_ctx"]
        self.layout = resolve(base, device, d, getattr(spec, "quantization", None) is not None)
        for name, ref in spec.tensors.items():
            group = {8: 16, 4: 32}.get(getattr(ref, "bits", None))
            if group and ref.K % group:  # the kernels read quantized rows in 16-byte groups
                from ..errors import ModelFolderError
                raise ModelFolderError(
                    f"{spec.source.where(ref.qweight.file)}: tensor {name!r} has {ref.bits}-bit "
                    f"rows of {ref.K} values; the kernels need a multiple of {group}")
        self.weight_store = Weights(spec, device, self.kernels, self.layout, self.arch,
                                    oom_note=self._oom_note)
        self.plan = None
        self.stats = {}
        self.released = False  # release() was called: every method raises
        self.pos = 0  # tokens held in the KV cache
        # The token ids whose keys and values the KV cache holds at positions 0.. (what a chat
        # turn may reuse), and the ids that end generation (set by webgpt.load from the
        # tokenizer and generation_config.json; the tokenizer's eot_id where unset).
        self.cached_ids = []
        self.stop_ids = None

    # ------------------------------------------------------------ what the model holds

    @property
    def weights(self):
        """How the GPU holds the matrices: "f32", "f16", "q8" or "q4"."""
        return self.weight_store.format

    @property
    def uses_f16(self):
        return self.weight_store.uses_f16

    @property
    def params(self):
        return self.weight_store.params

    @property
    def mats(self):
        return self.weight_store.mats

    def weight_bytes(self):
        """Bytes of GPU memory the weights take."""
        return self.weight_store.bytes()

    def planned_bytes(self):
        """(weights, total): GPU bytes this model takes once loaded, weights and in all
        (activations sized for the whole context and the KV cache included)."""
        weights = self.weight_store.planned_bytes()
        return weights, weights + Plan.planned_bytes(self.arch, self.config, self.layout)

    def buffers(self):
        """Every live GPU buffer of this model (weights, activations, caches)."""
        return self.weight_store.buffers() + (self.plan.buffers() if self.plan else [])

    def _oom_note(self):
        weights, total = self.planned_bytes()
        return (f". This model needs about {total / 2**20:.0f} MiB of GPU memory in all "
                f"({weights / 2**20:.0f} MiB of {self.weights} weights); smaller weights fit "
                f"in less: f16 (half of f32), or 8 or 4 bits (python build.py quantize)")

    # ------------------------------------------------------------ loading, rebuilding

    async def upload(self, progress=None):
        """Stream every tensor into GPU memory, then build the plan over it."""
        await self.weight_store.upload(progress)
        self.plan = Plan(self.arch, self.config, self.weight_store, self.layout, self.kernels,
                         self.device)

    def rebuild(self):
        """Compile the pipelines again from the current WGSL (the files, or the texts in
        `kernels.sources`) and remake the activations and bind groups; the weights stay
        where they are. For edited shaders (the page's editor)."""
        self._check_usable()
        if self.plan is not None:
            self.plan.release()
            self.plan = None
        self.kernels.clear()
        self.plan = Plan(self.arch, self.config, self.weight_store, self.layout, self.kernels,
                         self.device)
        self.pos = 0
        self.cached_ids = []

    @classmethod
    def adopt(cls, old):
        """This class's model over `old`'s uploaded weights: the editor's reload after a module
        edit. The package was imported again, so `cls` (and the plan and architecture modules
        it uses) may be edited code; the weights stay on the GPU as they are, the old plan is
        released and a new one is built from the current code. `old` is spent afterwards."""
        old._check_usable()
        new = cls.__new__(cls)
        new.spec, new.config, new.device = old.spec, old.config, old.device
        new.tokenizer = old.tokenizer
        new.arch = sys.modules.get(f"{__package__}.{old.arch.__name__.rsplit('.', 1)[-1]}",
                                   old.arch)
        new.kernels = Kernels(old.device)
        new.kernels.sources.update(old.kernels.sources)
        new.C, new.V, new.n_ctx = old.C, old.V, old.n_ctx
        new.layout = Layout.of(old.layout.as_dict())
        new.weight_store = old.weight_store
        new.weight_store.kernels = new.kernels
        new.weight_store.alloc.oom_note = new._oom_note
        new.stats, new.released, new.pos = dict(old.stats), False, 0
        new.cached_ids, new.stop_ids = [], old.stop_ids
        if old.plan is not None:
            old.plan.release()
        old.plan, old.released = None, True  # its weights now belong to `new`
        new.plan = None
        new.plan = Plan(new.arch, new.config, new.weight_store, new.layout, new.kernels,
                        new.device)
        return new

    def release(self):
        """Destroy every GPU buffer of this model. Idempotent, and safe after a load that
        failed part way; afterwards every method raises GPUError saying to load it again."""
        if self.released:
            return
        self.released = True
        if self.plan is not None:
            self.plan.release()
        self.weight_store.release()

    async def close(self):
        """release(), for `await model.close()` beside the async API."""
        self.release()

    def _check_usable(self):
        if self.released:
            raise released_error()

    # ------------------------------------------------------------ forward

    def _check_ids(self, ids):
        V = self.V
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < V:
                raise ValueError(f"token ids must be whole numbers in [0, {V}), got {i!r}")

    def _submit(self, ids, pos0, choose, slot=None):
        """Queue a forward pass at positions pos0.. that computes the last row's logits and,
        with `choose` ("argmax" or "sample"), picks the next token into ids[0].

        `ids` are written to the GPU first; None means the one token the previous pass left
        in ids[0]. With `slot`, the chosen token is copied there for map_read.
        """
        dev, plan = self.device, self.plan
        if ids is not None:
            dev.write(plan.buf["ids"], 0, struct.pack(f"<{len(ids)}I", *ids))
        T = 1 if ids is None else len(ids)
        assert 0 < T and pos0 + T <= self.n_ctx
        plan.write_params(T, pos0, T - 1, 1)
        enc = dev.encoder()
        plan.encode(enc, "decode" if T == 1 else "prompt", T, 1)
        if choose is not None:
            plan.encode(enc, choose)
        if slot is not None:
            enc.copy(plan.buf["ids"], 0, slot, 0, 4)
        enc.submit()
        self.pos = pos0 + T

    async def sync(self):
        """Wait until all queued GPU work of this model is done."""
        self._check_usable()
        await self.device.read(self.plan.buf["ids"], 0, 4)

    async def logits(self, ids):
        """Full forward of `ids` from position 0, no cache reuse: float32 logits (T, V)."""
        self._check_usable()
        ids = list(ids)
        self._check_ids(ids)
        T, V = len(ids), self.V
        if not 0 < T <= self.n_ctx:
            raise ValueError(f"logits() takes 1 to {self.n_ctx} token ids (n_positions), got {T}")
        dev, plan = self.device, self.plan
        dev.write(plan.buf["ids"], 0, struct.pack(f"<{T}I", *ids))
        out = bytearray()
        for row0 in range(0, T, plan.logit_rows):
            rows = min(plan.logit_rows, T - row0)
            plan.write_params(T, 0, row0, rows)
            enc = dev.encoder()
            if row0 == 0:
                plan.encode(enc, "decode" if T == 1 else "prompt", T, rows)
            else:
                plan.encode(enc, "lm_head", T, rows)  # the final norm's output is still there
            enc.submit()
            out += await dev.read(plan.buf["logits"], 0, rows * V * 4)
        self.pos = T
        self.cached_ids = ids
        return memoryview(bytes(out)).cast("f", (T, V))

    # ------------------------------------------------------------ generation

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

    def stopping_ids(self):
        """The ids that end generation: stop_ids, else the tokenizer's end-of-text id."""
        if self.stop_ids is not None:
            return frozenset(self.stop_ids)
        eot = getattr(self.tokenizer, "eot_id", None)
        return frozenset() if eot is None else frozenset([eot])

    async def generate_ids(self, ids, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                           seed=None, stop_at_eot=True, logits_hook=None, cached=0):
        """Generate token ids after `ids`; returns the new ids only."""
        out = []
        async for token in self.stream_ids(ids, max_new_tokens, temperature, top_k, top_p, seed,
                                           stop_at_eot, logits_hook, cached):
            out.append(token)
        return out

    async def stream_ids(self, ids, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                         seed=None, stop_at_eot=True, logits_hook=None, cached=0):
        """Yield new token ids one by one: the prompt in one pass, then one pass per token.

        Every pass ends with the choice of the next token on the GPU (argmax at temperature 0,
        else the sampling kernel seeded with `seed` and the token's index), so up to PIPELINE
        passes are queued ahead of the token being read back. When the context (n_positions)
        is full, the window slides: the last 3/4 of it is run again as a new prompt, and a
        UserWarning says so.

        `cached`: how many leading ids the KV cache already holds (they must be
        `cached_ids[:cached]`): only the rest runs as the prompt (a chat's next turn).

        `logits_hook(logits, ids)`, if given, sees each step's logits before the choice: a
        writable float32 memoryview of vocab_size values (numpy.asarray gives an array over
        it), and the ids so far (prompt and generated). It may edit them in place or return
        new values (a sequence of vocab_size numbers). Each step then reads the logits back
        and writes them again, one step at a time: slower than without a hook, but far faster
        than a full `logits()` per token.
        """
        from ..sampling import check_params

        self._check_usable()
        ids = list(ids)
        self._check_ids(ids)
        check_params(max_new_tokens, temperature, top_k, top_p, seed)
        if not ids:
            raise ValueError("generation needs at least one prompt token")
        if logits_hook is not None and not callable(logits_hook):
            raise ValueError(f"logits_hook must be a function (logits, ids), got "
                             f"{type(logits_hook).__name__}")
        if cached and (not 0 <= cached < len(ids) <= self.n_ctx
                       or self.cached_ids[:cached] != ids[:cached]):
            raise ValueError(f"cached={cached}: the KV cache does not hold those {cached} ids, "
                             f"or nothing would be left to run")
        n_ctx, dev, plan = self.n_ctx, self.device, self.plan
        choose = "argmax" if temperature == 0 else "sample"
        if seed is None:
            seed = secrets.randbits(32)  # recorded in stats, so the run can be repeated
        stops = self.stopping_ids() if stop_at_eot else frozenset()
        stats = self.stats = {"load_s": self.stats.get("load_s"), "prefill_tokens": 0,
                              "prefill_s": 0.0, "first_token_s": None, "decode_tokens": 0,
                              "decode_s": 0.0, "window_slides": 0, "seed": seed}
        if len(ids) > n_ctx:
            warnings.warn(f"the prompt has {len(ids)} tokens, more than the model's context of "
                          f"{n_ctx}; only the last {n_ctx} are used", UserWarning, stacklevel=2)
        if max_new_tokens == 0:
            return
        history = list(ids)
        window = ids[-n_ctx:] if not cached else ids[cached:]  # tokens the next pass writes
        #                        (None: the one token the previous pass left in ids[0])
        pos = cached           # positions queued into the KV cache
        # What the KV cache holds: known ids, then ("gen", k) for generated token k fed by a
        # pass queued before it was read back (resolved when generation ends).
        fed = list(ids[:cached])
        generated = []
        submitted = 0          # passes queued, one per new token
        inflight = deque()     # read-back slots of queued passes, oldest first
        sampler = (float(temperature), top_k or 0, 1.0 if top_p is None else float(top_p),
                   seed % 2**32)
        depth = 1 if logits_hook is not None else PIPELINE

        async def submit():
            nonlocal window, pos, submitted
            if window is None:
                fed.append(("gen", submitted - 1))
            else:
                del fed[pos:]
                fed.extend(window)
            if choose == "sample":
                dev.write(plan.buf["sampler"], 0, struct.pack("<fIfII", *sampler, submitted))
            slot = plan.slots[submitted % PIPELINE]
            if logits_hook is None:
                self._submit(window, pos, choose, slot)
            else:
                self._submit(window, pos, None)
                await self._apply_hook(logits_hook, history)
                enc = dev.encoder()
                plan.encode(enc, choose)
                enc.copy(plan.buf["ids"], 0, slot, 0, 4)
                enc.submit()
            inflight.append(slot)
            pos += 1 if window is None else len(window)
            window, submitted = None, submitted + 1

        t0 = time.perf_counter()
        t_first = None
        try:
            for produced in range(max_new_tokens):
                self._check_usable()  # released while this generator was suspended
                if submitted == produced:  # this token's pass is not queued yet
                    if window is None and pos + 1 > n_ctx:
                        keep = max(1, n_ctx * 3 // 4)
                        warnings.warn(f"the context of {n_ctx} tokens is full: sliding the "
                                      f"window to the last {keep} tokens", UserWarning,
                                      stacklevel=2)
                        stats["window_slides"] += 1
                        window, pos = history[-keep:], 0
                    if produced == 0:
                        stats["prefill_tokens"] = len(window)
                    await submit()
                # Queue the next passes before reading this token (their input is on the GPU),
                # so the GPU works while the CPU waits for the read-back.
                while submitted < max_new_tokens and pos + 1 <= n_ctx and len(inflight) < depth:
                    await submit()
                token = struct.unpack("<I", await dev.map_read(inflight.popleft(), 4))[0]
                now = time.perf_counter()
                if produced == 0:
                    t_first = now
                    stats["first_token_s"] = stats["prefill_s"] = now - t0
                else:
                    stats["decode_tokens"] = produced
                    stats["decode_s"] = now - t_first
                history.append(token)
                generated.append(token)
                yield token
                if token in stops:
                    return
        finally:
            known = []
            for f in fed:  # the cache's ids, up to the first one that was never read back
                if isinstance(f, tuple):
                    if f[1] >= len(generated):
                        break
                    f = generated[f[1]]
                known.append(f)
            self.cached_ids = known

    async def _apply_hook(self, hook, history):
        """Read row 0 of the logits, let `hook` edit them, write them back."""
        dev, V = self.device, self.V
        buf = self.plan.buf["logits"]
        data = bytearray(await dev.read(buf, 0, V * 4))
        logits = memoryview(data).cast("f")
        got = hook(logits, list(history))
        if got is not None and got is not logits:
            values = list(got)
            if len(values) != V:
                raise ValueError(f"logits_hook returned {len(values)} values; the model has "
                                 f"{V} (vocab_size)")
            data = struct.pack(f"<{V}f", *values)
        dev.write(buf, 0, data)

    async def stream(self, prompt, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                     seed=None, stop_at_eot=True, logits_hook=None):
        """Yield text pieces of the continuation of `prompt` as tokens are produced."""
        from ..tokenizer import StreamDecoder

        decoder = StreamDecoder(self.tokenizer)
        async with contextlib.aclosing(self.stream_ids(
                self.encode_prompt(prompt), max_new_tokens, temperature, top_k, top_p, seed,
                stop_at_eot, logits_hook)) as tokens:
            async for token in tokens:
                piece = decoder.push(token)
                if piece:
                    yield piece
        rest = decoder.flush()
        if rest:
            yield rest

    async def generate(self, prompt, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                       seed=None, stop_at_eot=True, logits_hook=None):
        """The continuation of `prompt` as one string (temperature 0 is greedy)."""
        pieces = []
        async for piece in self.stream(prompt, max_new_tokens, temperature, top_k, top_p, seed,
                                       stop_at_eot, logits_hook):
            pieces.append(piece)
        return "".join(pieces)

    async def chat_stream(self, messages, max_new_tokens=256, temperature=1.0, top_k=None,
                          top_p=None, seed=None, stop=None, logits_hook=None):
        """Yield the pieces of the assistant's reply to `messages` ([{"role", "content"}], as
        in transformers), rendered by the model's chat template. The conversation stays in
        the KV cache: a later turn runs only what is new (model/chat.py). `stop`: strings
        that end the reply (not part of it)."""
        from .chat import chat_stream

        self._check_usable()
        async with contextlib.aclosing(chat_stream(self, messages, max_new_tokens, temperature,
                                                   top_k, top_p, seed, stop,
                                                   logits_hook)) as pieces:
            async for piece in pieces:
                yield piece

    async def chat(self, messages, max_new_tokens=256, temperature=1.0, top_k=None, top_p=None,
                   seed=None, stop=None, logits_hook=None):
        """The assistant's reply to `messages` as one string (see chat_stream)."""
        pieces = []
        async for piece in self.chat_stream(messages, max_new_tokens, temperature, top_k, top_p,
                                            seed, stop, logits_hook):
            pieces.append(piece)
        return "".join(pieces)


GPT2 = Model
