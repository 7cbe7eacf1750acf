"""Sampling parameters, checked at the boundary, and `candidates`, the reference of what the
GPU's sampling kernel (shaders/sample.wgsl) draws from.

The model chooses tokens on the GPU, reading back one id per token. `candidates` says the same
in pure Python (the browser has no numpy), for tests and for code that shows a distribution:
the order of the filters is the one Hugging Face's `generate` applies: divide by the
temperature, keep the top k, then the smallest set of most likely tokens whose probability
reaches top_p, then those at least min_p times as likely as the most likely. Temperature 0
means greedy (argmax). `check_controls` checks the other logits processors an API request may
add (model/decode.py's Controls: logit bias, repetition, frequency and presence penalties,
log-probs).
"""

import heapq
import math

from .errors import short_repr

# More new tokens than anyone waits for: a bigger number is a typo (or a URL that was edited
# by hand), refused with a sentence rather than run for days.
MAX_NEW_TOKENS = 1_000_000
# The other parameters go to the GPU as f32 and u32 (sample.wgsl): these bounds keep them
# representable there, far beyond any useful value (a temperature of 1e-6 is greedy, of 1e6
# uniform; top_k above the vocabulary size keeps every token).
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-6, 1e6
MIN_TOP_P = 1e-6
MAX_TOP_K = 1_000_000_000

# The sampling parameters with the values that turn each one off, as the page and the URL
# name them (index.html?max_new_tokens=N&temperature=T&top_k=K&top_p=P&seed=S).
DEFAULTS = {"max_new_tokens": 50, "temperature": 1.0, "top_k": None, "top_p": None, "seed": None}

# The most of a bad value a message shows (a URL may carry a thousand digits).
SHOWN_CHARS = 40


def _whole(v):
    # bool is an int in Python, but True is never a count. Python ints only (not numpy's),
    # so every accepted value packs into the GPU's parameters the same way.
    return isinstance(v, int) and not isinstance(v, bool)


def _real(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_params(max_new_tokens, temperature, top_k, top_p, seed):
    """Validate sampling parameters; raise ValueError with a sentence saying what is wrong."""
    if not _whole(max_new_tokens) or not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be a whole number from 0 to {MAX_NEW_TOKENS}, "
                         f"got {short_repr(max_new_tokens, SHOWN_CHARS)}")
    # math.isfinite would overflow on a huge int: _finite says False instead.
    if not _real(temperature) or not _finite(temperature) or not (
            temperature == 0 or MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE):
        raise ValueError(f"temperature must be 0 (greedy) or a number from {MIN_TEMPERATURE:g} "
                         f"to {MAX_TEMPERATURE:g}, got {short_repr(temperature, SHOWN_CHARS)}")
    if top_k is not None and (not _whole(top_k) or not 0 <= top_k <= MAX_TOP_K):
        raise ValueError(f"top_k must be a whole number from 0 (off) to {MAX_TOP_K}, "
                         f"got {short_repr(top_k, SHOWN_CHARS)}")
    if top_p is not None and (not _real(top_p) or not MIN_TOP_P <= top_p <= 1):
        raise ValueError(f"top_p must be a number from {MIN_TOP_P:g} to 1 (1 turns it off), "
                         f"got {short_repr(top_p, SHOWN_CHARS)}")
    if seed is not None and not _whole(seed):
        raise ValueError(f"seed must be a whole number, got {short_repr(seed, SHOWN_CHARS)}")


# The logits processors an API request may add (OpenAI's ranges where it defines them).
MAX_PENALTY = 2.0           # frequency_penalty, presence_penalty: [-2, 2]
MAX_BIAS = 100.0            # logit_bias values: [-100, 100]
MAX_REPETITION = 1e6        # repetition_penalty: (0, 1e6]; 1 is off
MAX_TOP_LOGPROBS = 20


def check_controls(vocab_size, min_p=None, repetition_penalty=None, frequency_penalty=None,
                   presence_penalty=None, logit_bias=None, logprobs=None):
    """Validate the logits processors and log-probs of a request; raise ValueError with a
    sentence naming the parameter. Returns logit_bias as {token id: float} (JSON gives its
    keys as strings)."""
    if min_p is not None and (not _real(min_p) or not 0 <= min_p <= 1):
        raise ValueError(f"min_p must be a number from 0 to 1 (0 turns it off), got "
                         f"{short_repr(min_p, SHOWN_CHARS)}")
    if repetition_penalty is not None and (not _real(repetition_penalty) or not _finite(
            repetition_penalty) or not 0 < repetition_penalty <= MAX_REPETITION):
        raise ValueError(f"repetition_penalty must be a number above 0 and at most "
                         f"{MAX_REPETITION:g} (1 turns it off), got "
                         f"{short_repr(repetition_penalty, SHOWN_CHARS)}")
    for name, v in (("frequency_penalty", frequency_penalty),
                    ("presence_penalty", presence_penalty)):
        if v is not None and (not _real(v) or not -MAX_PENALTY <= v <= MAX_PENALTY):
            raise ValueError(f"{name} must be a number from -2 to 2, got "
                             f"{short_repr(v, SHOWN_CHARS)}")
    if logprobs is not None and (not _whole(logprobs) or not 0 <= logprobs <= MAX_TOP_LOGPROBS):
        raise ValueError(f"top_logprobs must be a whole number from 0 to {MAX_TOP_LOGPROBS}, "
                         f"got {short_repr(logprobs, SHOWN_CHARS)}")
    return _logit_bias(logit_bias, vocab_size)


def _logit_bias(logit_bias, vocab_size):
    if logit_bias is None:
        return {}
    if not isinstance(logit_bias, dict):
        raise ValueError(f"logit_bias must map token ids to numbers from -100 to 100, got "
                         f"{short_repr(logit_bias, SHOWN_CHARS)}")
    if len(logit_bias) > vocab_size:
        raise ValueError(f"logit_bias has {len(logit_bias)} entries; the vocabulary has "
                         f"{vocab_size} tokens")
    out = {}
    for key, v in logit_bias.items():
        token = key
        if isinstance(key, str) and key.strip().isdigit() and len(key) < 12:
            token = int(key)
        if not _whole(token) or not 0 <= token < vocab_size:
            raise ValueError(f"logit_bias names token {short_repr(key, SHOWN_CHARS)}; token "
                             f"ids are whole numbers from 0 to {vocab_size - 1}")
        if not _real(v) or not -MAX_BIAS <= v <= MAX_BIAS:
            raise ValueError(f"logit_bias[{token}] must be a number from -100 to 100, got "
                             f"{short_repr(v, SHOWN_CHARS)}")
        out[token] = float(v)
    return out


def _finite(x):
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def params_from_strings(values):
    """Sampling parameters from text: a page's URL parameters or form fields.

    `values` maps names (max_new_tokens, temperature, top_k, top_p, seed) to strings (or
    numbers); other names are ignored, and a missing or empty value takes its default
    (DEFAULTS). Returns a dict of the five, checked by check_params; a value that is not a
    number raises ValueError naming the parameter and showing a good one.
    """
    out = dict(DEFAULTS)
    examples = {"max_new_tokens": "100", "temperature": "0.8", "top_k": "40", "top_p": "0.9",
                "seed": "1"}
    for name in DEFAULTS:
        raw = values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        if not isinstance(raw, str):
            out[name] = raw
            continue
        text = raw.strip()
        whole = name in ("max_new_tokens", "top_k", "seed")
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise ValueError(f"{name}={raw[:40]!r} is not {kind}; write it like "
                             f"{name}={examples[name]}") from None
        out[name] = value
    if out["top_k"] == 0:
        out["top_k"] = None     # 0 turns top-k off, as on the page
    check_params(**out)
    return out


def candidates(logits, temperature, top_k=None, top_p=None, min_p=None):
    """Return [(token_id, probability)] of the tokens that may be drawn, most likely first.

    `logits` is a sequence of floats (one row). Probabilities are renormalised over the
    survivors of top-k, top-p and min-p (a token stays if its probability is at least min_p
    times the most likely one's), applied in that order.
    """
    V = len(logits)
    if any(map(math.isnan, logits)):    # NaN compares false to everything: no order to sort
        raise _broken_logits()
    if top_k and top_k < V:
        ids = heapq.nlargest(top_k, range(V), key=logits.__getitem__)
    else:
        ids = sorted(range(V), key=logits.__getitem__, reverse=True)
    m = logits[ids[0]]
    weights = [math.exp((logits[i] - m) / temperature) for i in ids]
    total = math.fsum(weights)
    if not 0 < total < math.inf:    # the largest logit is +inf or -inf
        raise _broken_logits()
    probs = [w / total for w in weights]
    if top_p is not None and top_p < 1.0:
        # Keep tokens while the probability mass before them is below top_p (at least one).
        kept, mass = 0, 0.0
        for p in probs:
            if kept > 0 and mass >= top_p:
                break
            mass += p
            kept += 1
        ids, probs = ids[:kept], probs[:kept]
        total = math.fsum(probs)
        probs = [p / total for p in probs]
    if min_p:
        kept = [(i, p) for i, p in zip(ids, probs) if p >= min_p * probs[0]]
        total = math.fsum(p for _, p in kept)
        return [(i, p / total) for i, p in kept]
    return list(zip(ids, probs))


def _broken_logits():
    return ValueError("the model's logits are NaN or infinite, so no token can be drawn: its "
                      "weights or the GPU computation are broken (load the model again)")
