"""Generation through the KV cache, in steps: what the cache holds (KVCache), and one run of
`Model.stream_ids` (Generation): queue the prompt's passes (Plan.queue runs a prompt longer than
the plan's chunk as several, one after another through the KV cache), queue one pass per new
token ahead of the token being read back, read each token back, slide the window when the
context is full.

Decoding stays on the GPU: every pass ends with the choice of the next token (argmax at
temperature 0, else the sampling kernel seeded with the seed and the token's index), written
where the next pass reads its input. So up to PIPELINE passes are queued before token n is read
back, and the read-back latency hides behind compute; only token ids leave the GPU, unless a
logits hook asks to see (and edit) each step's logits, which runs one pass at a time.
"""

import array
import collections
import dataclasses
import secrets
import struct
import time
import warnings

from .plan import PIPELINE

# A position whose token was generated on the GPU and fed to the next pass before the CPU read
# it back: generated token k.
Pending = collections.namedtuple("Pending", "k")
# One generated token as read back: its id, and where log-probs were asked for, its raw
# log-probability and the top alternatives [(id, logprob)], most likely first (else None).
Step = collections.namedtuple("Step", "token logprob top")
SEEN_IN_PROMPT = 0x80000000  # penalize.wgsl's flag in a token's count


@dataclasses.dataclass(frozen=True)
class Controls:
    """The logits processors and log-probs of a request, beyond temperature, top-k and top-p
    (checked by webgpt.sampling.check_controls). Applied on the GPU in this order: logit_bias
    ({token id: bias}), repetition_penalty (transformers' processor, over the prompt and the
    generated tokens), frequency_penalty and presence_penalty (OpenAI's formula, over the
    generated tokens), then temperature, top-k, top-p and min_p. `logprobs`: None, or how many
    top alternatives to read back with each token's raw log-probability (0 to 20).
    `constraint`: None, or an object whose `mask(ids)` gives, for the token after `ids`, the
    allowed tokens as bits (bytes, bit i of byte i // 8 for token i, ceil(V / 32) * 4 of them;
    structured output): the others get probability 0. It runs on the CPU at every step while
    the GPU computes the step's logits, so passes are not queued ahead."""
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict = dataclasses.field(default_factory=dict)
    logprobs: int = None
    constraint: object = None

    @property
    def penalize(self):
        return (self.repetition_penalty != 1 or self.frequency_penalty != 0
                or self.presence_penalty != 0)


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


def controls_from(vocab_size, min_p=None, repetition_penalty=None, frequency_penalty=None,
                  presence_penalty=None, logit_bias=None, logprobs=None, constraint=None):
    """Controls from a request's keywords, checked (a bad value is a ValueError naming it)."""
    from ..sampling import check_controls

    bias = check_controls(vocab_size, min_p, repetition_penalty, frequency_penalty,
                          presence_penalty, logit_bias, logprobs)
    if constraint is not None and not callable(getattr(constraint, "mask", None)):
        raise ValueError("constraint must have a mask(ids) method giving the allowed tokens")
    return Controls(min_p=float(min_p or 0), repetition_penalty=float(repetition_penalty or 1),
                    frequency_penalty=float(frequency_penalty or 0),
                    presence_penalty=float(presence_penalty or 0), logit_bias=bias,
                    logprobs=logprobs, constraint=constraint)


class Generation:
    """One run of Model.stream_ids over `ids` (see the module docstring).

    Its state: `window`, the tokens the next pass writes (None: the one token the previous pass
    left in ids[0]); `pos`, positions queued into the KV cache; `submitted`, passes queued (one
    per new token); `inflight`, the read-back slots of queued passes, oldest first; `history`,
    prompt and tokens read back so far.
    """

    def __init__(self, model, ids, max_new_tokens, temperature, top_k, top_p, seed,
                 logits_hook=None, cached=0, controls=None):
        self.model, self.plan = model, model.plan
        self.max_new_tokens = max_new_tokens
        self.logits_hook = logits_hook
        c = self.controls = controls or Controls()
        self.greedy = temperature == 0
        self.choose = self.plan.chooser(self.greedy, c.penalize, bool(c.logit_bias), c.logprobs,
                                        mask=c.constraint is not None)
        if seed is None:
            seed = secrets.randbits(32)  # recorded in stats, so the run can be repeated
        self.sampler = (float(temperature), top_k or 0, 1.0 if top_p is None else float(top_p),
                        seed % 2**32)
        if c.penalize or c.logit_bias:
            self.write_controls(ids)
        self.depth = 1 if logits_hook is not None or c.constraint is not None else PIPELINE
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

    def write_controls(self, ids):
        """The processors' inputs on the GPU: the prompt's tokens flagged in the counts (for
        the repetition penalty), the bias row, the penalties."""
        dev, buf, V = self.model.device, self.plan.buf, self.model.V
        c = self.controls
        counts = array.array("I", bytes(4 * V))
        for i in set(ids):
            counts[i] = SEEN_IN_PROMPT
        dev.write(buf["counts"], 0, counts.tobytes())
        if c.logit_bias:
            bias = array.array("f", bytes(4 * V))
            for i, v in c.logit_bias.items():
                bias[i] = v
            dev.write(buf["bias"], 0, bias.tobytes())
        dev.write(buf["pen"], 0, struct.pack("<3f", c.repetition_penalty, c.frequency_penalty,
                                              c.presence_penalty))

    async def next_token(self):
        """The next new token's Step: its pass queued (the window slid first if the context
        is full), the passes after it queued up to the pipeline's depth, then read back."""
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
        step = self.read(await model.device.map_read(self.inflight.popleft(),
                                                     self.choose.nbytes))
        self.record_time(produced)
        self.history.append(step.token)
        self.generated.append(step.token)
        return step

    def read(self, data):
        """The Step a read-back slot holds: a token id, or rec (record.wgsl): [token,
        logprob, lse, -, then (id, logprob) of each top alternative]."""
        if self.choose.src == "ids":
            return Step(struct.unpack_from("<I", data)[0], None, None)
        k = self.controls.logprobs
        token, logprob = struct.unpack_from("<If", data)
        top = struct.unpack_from("<" + "If" * k, data, 16)
        return Step(token, logprob, [(top[2 * j], top[2 * j + 1]) for j in range(k)])

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
        if not self.greedy:
            model.device.write(plan.buf["sampler"], 0, struct.pack(
                "<fIfIIf", *self.sampler, k, self.controls.min_p))
        slot = plan.slots[k % PIPELINE]
        constraint = self.controls.constraint
        if self.logits_hook is None and constraint is None:
            plan.queue(self.window, self.pos, self.choose, slot)
        else:
            plan.queue(self.window, self.pos, None)
            if self.logits_hook is not None:
                await apply_hook(model, self.logits_hook, self.history)
            if constraint is not None:   # computed while the GPU runs the pass
                model.device.write(plan.buf["mask"], 0, constraint.mask(self.history))
            enc = model.device.encoder()
            plan.encode_choice(enc, self.choose, slot)
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
