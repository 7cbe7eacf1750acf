"""Generation through the KV cache, in steps: what the cache holds (KVCache), and one run of
`Model.stream_ids` (Generation): queue the prompt's pass, queue one pass per new token ahead of
the token being read back, read each token back, slide the window when the context is full.

Decoding stays on the GPU: every pass ends with the choice of the next token (argmax at
temperature 0, else the sampling kernel seeded with the seed and the token's index), written
where the next pass reads its input. So up to PIPELINE passes are queued before token n is read
back, and the read-back latency hides behind compute; only token ids leave the GPU, unless a
logits hook asks to see (and edit) each step's logits, which runs one pass at a time.
"""

import collections
import secrets
import struct
import time
import warnings

from .plan import PIPELINE

# A position whose token was generated on the GPU and fed to the next pass before the CPU read
# it back: generated token k.
Pending = collections.namedtuple("Pending", "k")


class KVCache:
    """The token at each position of the KV cache, as far as the CPU knows it (the keys and
    values themselves are the plan's k_cache.N / v_cache.N buffers).

    While a generation runs, positions past the prompt may hold Pending(k) entries: generated
    token k, fed to the next pass before it was read back. `settle(generated)` resolves them
    once generation ends and keeps the known prefix, which a chat's next turn may reuse.
    """

    def __init__(self, ids=()):
        self.entries = list(ids)

    @property
    def ids(self):
        """The known tokens at positions 0.. (settled: no Pending entries)."""
        return self.entries

    def holds(self, ids, n):
        """Whether the cache holds ids[:n] at positions 0..n-1."""
        return self.entries[:n] == list(ids[:n])

    def write(self, pos, ids):
        """A pass wrote `ids` at positions pos..: whatever was after pos is gone."""
        del self.entries[pos:]
        self.entries.extend(ids)

    def write_pending(self, k):
        """A pass wrote generated token k, not yet read back, at the next position."""
        self.entries.append(Pending(k))

    def settle(self, generated):
        """Resolve Pending entries with the tokens read back, up to the first never read."""
        known = []
        for e in self.entries:
            if isinstance(e, Pending):
                if e.k >= len(generated):
                    break
                e = generated[e.k]
            known.append(e)
        self.entries = known


def check_request(model, ids, max_new_tokens, temperature, top_k, top_p, seed, logits_hook,
                  cached):
    """Validate stream_ids' arguments; raise ValueError with a sentence saying what is wrong."""
    from ..sampling import check_params

    model.check_ids(ids)
    check_params(max_new_tokens, temperature, top_k, top_p, seed)
    if not ids:
        raise ValueError("generation needs at least one prompt token")
    if logits_hook is not None and not callable(logits_hook):
        raise ValueError(f"logits_hook must be a function (logits, ids), got "
                         f"{type(logits_hook).__name__}")
    if cached and (not 0 <= cached < len(ids) <= model.n_ctx
                   or not model.cache.holds(ids, cached)):
        raise ValueError(f"cached={cached}: the KV cache does not hold those {cached} ids, "
                         f"or nothing would be left to run")


class Generation:
    """One run of Model.stream_ids over `ids` (see the module docstring).

    Its state: `window`, the tokens the next pass writes (None: the one token the previous pass
    left in ids[0]); `pos`, positions queued into the KV cache; `submitted`, passes queued (one
    per new token); `inflight`, the read-back slots of queued passes, oldest first; `history`,
    prompt and tokens read back so far.
    """

    def __init__(self, model, ids, max_new_tokens, temperature, top_k, top_p, seed,
                 logits_hook=None, cached=0):
        self.model, self.plan = model, model.plan
        self.max_new_tokens = max_new_tokens
        self.logits_hook = logits_hook
        self.choose = "argmax" if temperature == 0 else "sample"
        if seed is None:
            seed = secrets.randbits(32)  # recorded in stats, so the run can be repeated
        self.sampler = (float(temperature), top_k or 0, 1.0 if top_p is None else float(top_p),
                        seed % 2**32)
        self.depth = 1 if logits_hook is not None else PIPELINE
        n_ctx = model.n_ctx
        self.history = list(ids)
        self.window = ids[-n_ctx:] if not cached else ids[cached:]
        self.pos = cached
        self.submitted = 0
        self.inflight = collections.deque()
        self.generated = []
        self.stats = {"load_s": model.stats.get("load_s"), "prefill_tokens": 0,
                      "prefill_s": 0.0, "first_token_s": None, "decode_tokens": 0,
                      "decode_s": 0.0, "window_slides": 0, "seed": seed}
        self.t0 = time.perf_counter()
        self.t_first = None
        if len(ids) > n_ctx:
            warnings.warn(f"the prompt has {len(ids)} tokens, more than the model's context of "
                          f"{n_ctx}; only the last {n_ctx} are used", UserWarning,
                          stacklevel=3)  # stream_ids' caller

    async def next_token(self):
        """The next new token: its pass queued (the window slid first if the context is
        full), the passes after it queued up to the pipeline's depth, then read back."""
        model, n_ctx = self.model, self.model.n_ctx
        produced = len(self.generated)
        if self.submitted == produced:  # this token's pass is not queued yet
            if self.window is None and self.pos + 1 > n_ctx:
                self.slide()
            if produced == 0:
                self.stats["prefill_tokens"] = len(self.window)
            await self.submit()
        # Queue the next passes before reading this token (their input is on the GPU), so the
        # GPU works while the CPU waits for the read-back.
        while (self.submitted < self.max_new_tokens and self.pos + 1 <= n_ctx
               and len(self.inflight) < self.depth):
            await self.submit()
        data = await model.device.map_read(self.inflight.popleft(), 4)
        token = struct.unpack("<I", data)[0]
        self.record_time(produced)
        self.history.append(token)
        self.generated.append(token)
        return token

    def slide(self):
        """The context is full: run its last 3/4 again as a new prompt from position 0."""
        n_ctx = self.model.n_ctx
        keep = max(1, n_ctx * 3 // 4)
        warnings.warn(f"the context of {n_ctx} tokens is full: sliding the window to the last "
                      f"{keep} tokens", UserWarning, stacklevel=4)  # stream_ids' caller
        self.stats["window_slides"] += 1
        self.window, self.pos = self.history[-keep:], 0

    async def submit(self):
        """Queue the pass of the next token: the window (a prompt) or the one token the
        previous pass left on the GPU, ending with the choice of the token after it."""
        model, plan, k = self.model, self.plan, self.submitted
        if self.window is None:
            model.cache.write_pending(k - 1)
        else:
            model.cache.write(self.pos, self.window)
        if self.choose == "sample":
            model.device.write(plan.buf["sampler"], 0, struct.pack("<fIfII", *self.sampler, k))
        slot = plan.slots[k % PIPELINE]
        if self.logits_hook is None:
            plan.queue(self.window, self.pos, self.choose, slot)
        else:
            plan.queue(self.window, self.pos, None)
            await apply_hook(model, self.logits_hook, self.history)
            enc = model.device.encoder()
            plan.encode(enc, self.choose)
            enc.copy(plan.buf["ids"], 0, slot, 0, 4)
            enc.submit()
        self.inflight.append(slot)
        self.pos += 1 if self.window is None else len(self.window)
        self.window, self.submitted = None, k + 1

    def record_time(self, produced):
        now = time.perf_counter()
        if produced == 0:
            self.t_first = now
            self.stats["first_token_s"] = self.stats["prefill_s"] = now - self.t0
        else:
            self.stats["decode_tokens"] = produced
            self.stats["decode_s"] = now - self.t_first

    def finish(self):
        """Generation ended (a stop token, max_new_tokens, or the caller left): record what
        the KV cache holds."""
        self.model.cache.settle(self.generated)


async def apply_hook(model, hook, history):
    """Read row 0 of the logits, let `hook(logits, ids)` edit them (or return new values),
    write them back."""
    dev, V = model.device, model.V
    buf = model.plan.buf["logits"]
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
