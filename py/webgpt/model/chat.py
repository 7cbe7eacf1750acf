"""Chat: a conversation rendered by the model's chat template, answered through the KV cache.

Each turn renders the whole conversation with the template (tokenizer.apply_chat_template, as
transformers does) and compares its ids with those the KV cache already holds: only the ids
after the first difference run as the prompt, so a second turn prefills just the new user
message (and the template's text around it), not the conversation again. Where the template
renders earlier turns differently (some drop past reasoning), the cache is reused up to the
first differing id.

A reply ends at an end-of-turn id (generation_config.json's eos_token_id, an int or a list, and
the tokenizer's eos), at a stop string, or after max_new_tokens; none of these is part of the
reply. When the conversation no longer fits the context with room for the reply, the oldest
messages after the system message are dropped (a UserWarning says how many) and the turn goes on.
"""

import contextlib
import warnings

# Room kept for the reply when the conversation is cut to fit the context: max_new_tokens, but
# never more than this share of the context (a long max_new_tokens must not empty the chat).
REPLY_SHARE = 2


def fit(tokenizer, messages, n_ctx, max_new_tokens):
    """(ids, dropped): the rendered conversation, with the oldest messages after a leading
    system message dropped (`dropped` of them) until it leaves room for the reply."""
    room = min(max_new_tokens, n_ctx // REPLY_SHARE)
    messages = list(messages)
    first = 1 if messages and messages[0].get("role") == "system" else 0
    dropped = 0
    while True:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        if len(ids) + room <= n_ctx:
            return ids, dropped
        if len(messages) - first <= 1:
            raise ValueError(
                f"the last message alone is {len(ids)} tokens with the template; with "
                f"{room} tokens for the reply that is more than the model's context of {n_ctx}: "
                f"shorten it, or ask for fewer new tokens")
        # Drop the oldest turn: a user message and the replies that follow it.
        del messages[first]
        dropped += 1
        while len(messages) - first > 1 and messages[first].get("role") != "user":
            del messages[first]
            dropped += 1


def common_prefix(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class _StopText:
    """Holds back text that may be the start of a stop string; says when one appeared."""

    def __init__(self, stops):
        self.stops = [s for s in stops or () if s]
        self.pending = ""
        self.stopped = False

    def push(self, piece):
        """The text that is safe to show now ('' while it may still become a stop string)."""
        if not self.stops:
            return piece
        text = self.pending + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self.pending = True, ""
            return text[:cut]
        # Keep the longest tail that is a prefix of a stop string.
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    keep = max(keep, k)
                    break
        self.pending = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def flush(self):
        rest, self.pending = self.pending, ""
        return rest


async def chat_stream(model, messages, max_new_tokens=256, temperature=1.0, top_k=None,
                      top_p=None, seed=None, stop=None, logits_hook=None):
    """Yield the pieces of the assistant's reply to `messages` (see the module docstring)."""
    from ..sampling import check_params

    check_params(max_new_tokens, temperature, top_k, top_p, seed)
    if stop is not None and (isinstance(stop, str) or not all(isinstance(s, str) for s in stop)):
        raise ValueError("stop must be a list of strings")
    tok = model.tokenizer
    ids, dropped = fit(tok, messages, model.n_ctx, max_new_tokens)
    if dropped:
        warnings.warn(f"the conversation is longer than the model's context of {model.n_ctx} "
                      f"tokens: dropped the {dropped} oldest message"
                      f"{'s' if dropped > 1 else ''} (the system message stays)", UserWarning,
                      stacklevel=3)
    cached = min(common_prefix(model.cached_ids, ids), len(ids) - 1)
    max_new_tokens = min(max_new_tokens, model.n_ctx - len(ids))
    decoder = tok.stream_decoder(skip_special_tokens=True)
    stops = model.stopping_ids()
    text = _StopText(stop)
    # Closed on leaving (a stop, or the caller's break), not when garbage-collected: its
    # cleanup records what the KV cache holds, which the next turn reuses.
    async with contextlib.aclosing(model.stream_ids(
            ids, max_new_tokens, temperature, top_k, top_p, seed, stop_at_eot=True,
            logits_hook=logits_hook, cached=cached)) as tokens:
        async for token in tokens:
            if token in stops:
                break
            piece = text.push(decoder.push(token))
            if piece:
                yield piece
            if text.stopped:
                return
    rest = text.push(decoder.flush()) + text.flush()
    if rest:
        yield rest
