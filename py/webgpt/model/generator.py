"""The model object `webgpt.load` returns: full logits, generation, the text API.

It owns three parts: the uploaded weights (weights.Weights), the plan over them (plan.Plan:
activations, bind groups, launch lists), and its architecture (webgpt.arch: the forward pass,
bound to the config and the context kept). Every buffer is created at load: the KV cache
sized for the whole context, the activations for one chunk of a prompt (plan.prompt_chunk);
a forward pass is one command encoder and one submit.

`logits(ids)` runs the whole sequence from position 0; generation (model/decode.py) runs the
prompt in batched passes (one per chunk, through the same KV cache) and then one token per
pass through the KV cache, choosing each token on the GPU and reading back only its id.
`cache` (a decode.KVCache) says which tokens the KV cache holds, so a chat's next turn runs
only what is new (model/chat.py).
"""

import contextlib
import re
import struct
import warnings

from ..arch import arch_for
from ..errors import ModelFolderError
from ..kernels import Kernels
from .decode import Generation, KVCache, check_request, controls_from
from .layout import Layout, layouts, resolve
from .plan import Plan, prompt_chunk
from .weights import Weights, released_error


class Model:
    """A causal language model resident on one GPU device. Made by `webgpt.load`.

    `Model(spec, device, tokenizer, layout)` checks that the model fits the device (raising a
    sentence if not) and plans its weights; `await upload(progress)` streams them in and builds
    the plan. `weights=` gives it weights already uploaded (`adopt`). `prefill_chunk`: the most
    prompt tokens one forward pass runs (None: plan.prompt_chunk's rule, from the adapter's
    binding size and a memory budget). `GPT2` is the same class under its first name.
    """

    def __init__(self, spec, device, tokenizer=None, layout=None, weights=None,
                 prefill_chunk=None):
        self.spec = spec
        self.config = spec.config
        self.device = device
        self.tokenizer = tokenizer if tokenizer is not None else spec.tokenizer
        self.name = model_name(spec)   # the API's and the server's name (settable)
        self.stop_ids = spec.stop_ids   # generation_config.json's eos ids (see stopping_ids)
        self.kernels = Kernels(device)
        base = Layout.of(layout) if layout is not None else layouts(device)
        arch = arch_for(spec.config)
        # The context kept (the KV cache's length), where the model allows far more, or where
        # the KV cache would not fit a binding.
        self.arch = fit_context(arch.with_context(arch.context(device, base)), device)
        self.dims = self.arch.dims
        self.layout = resolve(base, device, self.dims, spec.quantization is not None)
        self.prefill_chunk = min(prefill_chunk or prompt_chunk(self.arch, self.layout,
                                                               device.max_binding), self.n_ctx)
        _check_quantized_rows(spec)
        if weights is None:
            weights = Weights(spec, device, self.kernels, self.layout, self.arch)
        else:  # adopted: the same buffers, this model's pipelines and messages
            weights.kernels = self.kernels
        weights.alloc.oom_note = self._oom_note
        self.weight_store = weights
        self.plan = None
        self.stats = {}
        self.released = False  # release() was called: every method raises
        self.cache = KVCache()

    @property
    def V(self):
        return self.dims.V

    @property
    def n_ctx(self):
        """The context kept: the KV cache's length in tokens."""
        return self.dims.n_ctx

    @property
    def cached_ids(self):
        """The token ids whose keys and values the KV cache holds at positions 0.. (what a
        chat turn may reuse). Assign [] to forget them."""
        return self.cache.ids

    @cached_ids.setter
    def cached_ids(self, ids):
        self.cache = KVCache(ids)

    # ------------------------------------------------------------ what the model holds

    @property
    def weights(self):
        """How the GPU holds the matrices: "f32", "f16", "q8" or "q4"."""
        return self.weight_store.format

    @property
    def uses_f16(self):
        return self.weight_store.uses_f16

    def weight_bytes(self):
        """Bytes of GPU memory the weights take."""
        return self.weight_store.bytes()

    def planned_bytes(self):
        """(weights, total): GPU bytes this model takes once loaded, weights and in all
        (the KV cache for the whole context and the activations for one prompt chunk
        included)."""
        weights = self.weight_store.planned_bytes()
        return weights, weights + Plan.planned_bytes(self.arch, self.layout, self.prefill_chunk,
                                                     self.device.max_binding)

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
        self.plan = self._plan()

    def _plan(self):
        return Plan(self.arch, self.weight_store, self.layout, self.kernels, self.device,
                    self.prefill_chunk)

    def rebuild(self):
        """Compile the pipelines again from the current WGSL (the files, or the texts in
        `kernels.sources`) and remake the activations and bind groups; the weights stay
        where they are. For edited shaders (the page's editor)."""
        self._check_usable()
        if self.plan is not None:
            self.plan.release()
            self.plan = None
        self.kernels.clear()
        self.plan = self._plan()
        self.cached_ids = []

    @classmethod
    def adopt(cls, old):
        """This class's model over `old`'s uploaded weights: the editor's reload after a module
        edit. The package was imported again, so `cls` (and the plan and architecture modules
        it uses) may be edited code; the weights stay on the GPU as they are, the old plan is
        released and a new one is built from the current code. `old` is spent afterwards."""
        old._check_usable()
        new = cls(old.spec, old.device, old.tokenizer, old.layout, weights=old.weight_store,
                  prefill_chunk=getattr(old, "prefill_chunk", None))
        new.kernels.sources.update(old.kernels.sources)
        new.stop_ids, new.stats, new.name = old.stop_ids, dict(old.stats), old.name
        if old.plan is not None:
            old.plan.release()
        old.plan, old.released = None, True  # its weights now belong to `new`
        new.plan = new._plan()
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

    def check_ids(self, ids):
        V = self.V
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < V:
                raise ValueError(f"token ids must be whole numbers in [0, {V}), got {i!r}")

    async def sync(self):
        """Wait until all queued GPU work of this model is done."""
        self._check_usable()
        await self.device.read(self.plan.buf["ids"], 0, 4)

    async def logits(self, ids):
        """Full forward of `ids` from position 0, no cache reuse: float32 logits (T, V)."""
        self._check_usable()
        ids = list(ids)
        self.check_ids(ids)
        T, V = len(ids), self.V
        if not 0 < T <= self.n_ctx:
            raise ValueError(f"logits() takes 1 to {self.n_ctx} token ids (the context kept), "
                             f"got {T}")
        out = await _forward_rows(self.device, self.plan, ids)
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
        """The ids that end generation: stop_ids (generation_config.json's eos_token_id) and
        the tokenizer's end-of-text id."""
        eot = getattr(self.tokenizer, "eot_id", None)
        return frozenset(self.stop_ids or ()) | (frozenset() if eot is None else {eot})

    async def generate_ids(self, ids, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                           seed=None, stop_at_eot=True, logits_hook=None, cached=0, **controls):
        """Generate token ids after `ids`; returns the new ids only."""
        return [token async for token in self.stream_ids(
            ids, max_new_tokens, temperature, top_k, top_p, seed, stop_at_eot, logits_hook, cached,
            **controls)]

    async def stream_ids(self, ids, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                         seed=None, stop_at_eot=True, logits_hook=None, cached=0, **controls):
        """Yield new token ids one by one (stream_steps' tokens)."""
        async with contextlib.aclosing(self.stream_steps(
                ids, max_new_tokens, temperature, top_k, top_p, seed, stop_at_eot, logits_hook,
                cached, **controls)) as steps:
            async for step in steps:
                yield step.token

    async def stream_steps(self, ids, max_new_tokens=50, temperature=1.0, top_k=None,
                           top_p=None, seed=None, stop_at_eot=True, logits_hook=None, cached=0,
                           **controls):
        """Yield a Step (token, logprob, top) per new token: the prompt in passes of at most
        prefill_chunk tokens, then one pass per token, each chosen on the GPU (argmax at
        temperature 0, else sampled with `seed` and the token's index) with passes queued
        ahead of the token read back (model/decode.py's Generation: submit, next_token, slide,
        finish). When the context is full, the window slides: its last 3/4 runs again as a
        new prompt, and a UserWarning says so.

        `controls`, keywords of decode.Controls: min_p, repetition_penalty, frequency_penalty,
        presence_penalty, logit_bias ({token id: bias}), logprobs (None, or how many top
        alternatives to read back with each token's log-probability), all on the GPU.

        `cached`: how many leading ids the KV cache already holds (they must be
        `cached_ids[:cached]`): only the rest runs as the prompt (a chat's next turn).

        `logits_hook(logits, ids)`, if given, sees each step's logits before the choice: a
        writable float32 memoryview of vocab_size values (numpy.asarray gives an array over
        it), and the ids so far (prompt and generated). It may edit them in place or return
        new values (a sequence of vocab_size numbers). Each step then reads the logits back
        and writes them again, one step at a time: slower than without a hook, but far faster
        than a full `logits()` per token.
        """
        self._check_usable()
        ids = list(ids)
        check_request(self, ids, max_new_tokens, temperature, top_k, top_p, seed, logits_hook,
                      cached)
        run = Generation(self, ids, max_new_tokens, temperature, top_k, top_p, seed,
                         logits_hook, cached, controls_from(self.V, **controls))
        self.stats = run.stats
        stops = self.stopping_ids() if stop_at_eot else frozenset()
        try:
            for _ in range(max_new_tokens):
                self._check_usable()  # released while this generator was suspended
                step = await run.next_token()
                yield step
                if step.token in stops:
                    return
        finally:
            run.finish()

    async def stream(self, prompt, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                     seed=None, stop_at_eot=True, logits_hook=None, **controls):
        """Yield text pieces of the continuation of `prompt` as tokens are produced
        (`controls`: as stream_steps takes them)."""
        from ..tokenizer import StreamDecoder

        decoder = StreamDecoder(self.tokenizer)
        async with contextlib.aclosing(self.stream_ids(
                self.encode_prompt(prompt), max_new_tokens, temperature, top_k, top_p, seed,
                stop_at_eot, logits_hook, **controls)) as tokens:
            async for token in tokens:
                piece = decoder.push(token)
                if piece:
                    yield piece
        rest = decoder.flush()
        if rest:
            yield rest

    async def generate(self, prompt, max_new_tokens=50, temperature=1.0, top_k=None, top_p=None,
                       seed=None, stop_at_eot=True, logits_hook=None, **controls):
        """The continuation of `prompt` as one string (temperature 0 is greedy)."""
        return "".join([piece async for piece in self.stream(
            prompt, max_new_tokens, temperature, top_k, top_p, seed, stop_at_eot, logits_hook,
            **controls)])

    def chat_stream(self, messages, max_new_tokens=256, temperature=1.0, top_k=None,
                    top_p=None, seed=None, stop=None, logits_hook=None, **controls):
        """Yield the pieces of the assistant's reply to `messages` ([{"role", "content"}], as
        in transformers), rendered by the model's chat template. The conversation stays in
        the KV cache: a later turn runs only what is new (model/chat.py). `stop`: strings
        that end the reply (not part of it)."""
        from .chat import chat_stream

        self._check_usable()
        return chat_stream(self, messages, max_new_tokens, temperature, top_k, top_p, seed, stop,
                           logits_hook, **controls)

    async def chat(self, messages, max_new_tokens=256, temperature=1.0, top_k=None, top_p=None,
                   seed=None, stop=None, logits_hook=None, **controls):
        """The assistant's reply to `messages` as one string (see chat_stream)."""
        return "".join([piece async for piece in self.chat_stream(
            messages, max_new_tokens, temperature, top_k, top_p, seed, stop, logits_hook,
            **controls)])


async def _forward_rows(dev, plan, ids):
    """The logits of every row of `ids` from position 0 as bytes: passes of at most plan.chunk
    tokens one after another through the KV cache, each pass's logits read in blocks of
    plan.logit_rows rows."""
    V, out = plan.dims.V, bytearray()
    for start in range(0, len(ids), plan.chunk):
        part = ids[start:start + plan.chunk]
        n = len(part)
        dev.write(plan.buf["ids"], 0, struct.pack(f"<{n}I", *part))
        for row0 in range(0, n, plan.logit_rows):
            rows = min(plan.logit_rows, n - row0)
            plan.write_params(n, start, row0, rows)
            enc = dev.encoder()
            if row0 == 0:
                plan.encode(enc, "decode" if n == 1 else "prompt", n, rows)
            else:  # the final norm's output is still there
                plan.encode(enc, "lm_head", n, rows)
            enc.submit()
            out += await dev.read(plan.buf["logits"], 0, rows * V * 4)
    return out


def fit_context(arch, device):
    """`arch`, keeping a shorter context where a buffer sized by it (one layer's keys or
    values, a table of positions) would not fit one storage binding of `device`, with a
    UserWarning saying so; MemoryError where not even one position fits."""
    limit = device.max_binding
    n = arch.binding_context(limit)
    if n >= arch.n_ctx:
        return arch
    if n < 1:
        raise MemoryError(f"one position of the KV cache needs more than one storage binding "
                          f"of this adapter ({device.describe()}: {limit / 2**20:.2f} MiB); "
                          f"use a smaller model")
    warnings.warn(f"this adapter ({device.describe()}) allows {limit / 2**20:.1f} MiB in one "
                  f"storage binding: one layer's KV cache fits {n} positions there, so the "
                  f"model keeps a context of {n} tokens rather than {arch.n_ctx}",
                  UserWarning, stacklevel=3)
    return arch.with_context(n)


def model_name(spec):
    """A model's name: its folder's (the last part of its path or URL), or for a GGUF file
    the file's, less ".gguf" and a split file's "-0000k-of-0000n"."""
    if spec.gguf:
        return re.sub(r"(-\d{5}-of-\d{5})?\.gguf$", "", spec.gguf["files"][0])
    return re.split(r"[/\\]", spec.source.where("").rstrip("/\\"))[-1] or "model"


def _check_quantized_rows(spec):
    """The kernels read quantized rows in 16-byte groups: 16 values of 8 bits, 32 of 4."""
    for name, ref in spec.tensors.items():
        group = {8: 16, 4: 32}.get(getattr(ref, "bits", None))
        if group and ref.K % group:
            raise ModelFolderError(
                f"{spec.source.where(ref.qweight.file)}: tensor {name!r} has {ref.bits}-bit "
                f"rows of {ref.K} values; the kernels need a multiple of {group}")


GPT2 = Model
