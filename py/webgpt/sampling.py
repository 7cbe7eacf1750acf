"""Choosing the next token from a row of logits: temperature, top-k, top-p, seeded.

Pure Python (the browser has no numpy). The order of the filters is the one Hugging Face's
`generate` applies: divide by the temperature, keep the top k, then keep the smallest set of
most likely tokens whose probability reaches top_p. Temperature 0 means greedy (argmax), which
the model does on the GPU instead, reading back one token id.
"""

import heapq
import math
import random


def check_params(max_new_tokens, temperature, top_k, top_p, seed):
    """Validate sampling parameters; raise ValueError with a sentence saying what is wrong."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a whole number >= 0, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"top_k must be a whole number >= 0 (0 turns it off), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1] (1 turns it off), got {top_p!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be a whole number, got {seed!r}")


def candidates(logits, temperature, top_k=None, top_p=None):
    """Return [(token_id, probability)] of the tokens that may be drawn, most likely first.

    `logits` is a sequence of floats (one row). Probabilities are renormalised over the
    survivors of top-k and top-p.
    """
    V = len(logits)
    if top_k and top_k < V:
        ids = heapq.nlargest(top_k, range(V), key=logits.__getitem__)
    else:
        ids = sorted(range(V), key=logits.__getitem__, reverse=True)
    m = logits[ids[0]]
    weights = [math.exp((logits[i] - m) / temperature) for i in ids]
    total = math.fsum(weights)
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
    return list(zip(ids, probs))


def sample(logits, temperature, top_k=None, top_p=None, rng=None):
    """Draw one token id from a row of logits."""
    rng = rng or random.Random()
    if temperature == 0:
        return max(range(len(logits)), key=logits.__getitem__)
    r = rng.random()
    acc = 0.0
    cands = candidates(logits, temperature, top_k, top_p)
    for token, p in cands:
        acc += p
        if r < acc:
            return token
    return cands[-1][0]  # r landed in the rounding error at the very end
