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

import collections
import contextlib
import warnings
from collections.abc import Mapping

# Room kept for the reply when the conversation is cut to fit the context: max_new_tokens, but
# never more than this share of the context (a long max_new_tokens must not empty the chat).
REPLY_SHARE = 2


def fit(tokenizer, messages, n_ctx, max_new_tokens):
    """(ids, dropped): the rendered conversation, with the oldest messages after a leading
    system message dropped (`dropped` of them) until it leaves room for the reply.

    Encoding all of it again for each dropped turn would cost a long chat hundreds of times
    the text it keeps. Instead each message's own tokens are counted, newest first and only
    until they pass the context; the template's cost (tokens per message, and around them) is
    measured on the last one or two turns; the start that this predicts is rendered and encoded
    once, and taken if it fits. Should it not, the next start is predicted from that render. So
    a reply costs about two encodes of what is kept. (Where the template leaves out part of a
    message, such as past reasoning, the prediction errs on the side of dropping more.)
    """
    room = min(max_new_tokens, n_ctx // REPLY_SHARE)
    budget = n_ctx - room
    messages = list(messages)
    first = 1 if messages and _role(messages[0]) == "system" else 0
    # Where the kept part may start: the first message after the system one, a user message
    # (dropping a turn drops a user message and the replies after it), or the last message.
    starts = [k for k in range(first, len(messages))
              if k == first or k == len(messages) - 1 or _role(messages[k]) == "user"]
    if not starts:      # nothing but a system message (or nothing: the template says so)
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True), 0
    # own[k]: the tokens of messages k.. and of the system message, each counted alone; down
    # to the first k at which they pass the budget.
    own = {len(messages): _own_tokens(tokenizer, messages[0], budget) if first else 0}
    for k in range(len(messages) - 1, first - 1, -1):
        own[k] = own[k + 1] + _own_tokens(tokenizer, messages[k], budget)
        if own[k] > budget:
            break
    if own[starts[-1]] > budget:
        raise _too_long(f"{own[starts[-1]]} tokens or more", room, n_ctx)
    rendered = {}

    def render(start):
        ids = rendered[start] = tokenizer.apply_chat_template(
            messages[:first] + messages[start:], add_generation_prompt=True)
        return len(ids)

    def count(start):      # the messages the template renders from `start` on
        return len(messages) - start + first

    # The template's tokens: `fixed` around the messages and `each` per message.
    fixed, each = render(starts[-1]) - own[starts[-1]], 0.0
    if len(starts) > 1 and own.get(starts[-2], budget + 1) <= budget:
        each = (render(starts[-2]) - own[starts[-2]] - fixed) / (count(starts[-2]) - count(
            starts[-1]))
        fixed -= each * count(starts[-1])
    at = 0
    while True:
        at = next((p for p in range(at, len(starts)) if starts[p] in own
                   and own[starts[p]] + fixed + each * count(starts[p]) <= budget),
                  len(starts) - 1)
        start = starts[at]
        size = len(rendered[start]) if start in rendered else render(start)
        if size <= budget:
            return rendered[start], start - first
        if at == len(starts) - 1:
            raise _too_long(f"{size} tokens with the template", room, n_ctx)
        each = (size - own[start] - fixed) / count(start)
        at += 1


# A message's text is counted in pieces of this many characters, so that a huge one is known
# to be too long without encoding all of it.
COUNT_PIECE = 1 << 16


def _own_tokens(tokenizer, message, budget):
    """The tokens of a message's content alone; once more than `budget`, counting stops."""
    text = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(text, str):
        return 0        # the template says what is wrong with it
    count = 0
    for at in range(0, len(text), COUNT_PIECE):
        count += len(tokenizer.encode(text[at:at + COUNT_PIECE], add_special_tokens=False))
        if count > budget:
            break
    return count


def _role(message):
    return message.get("role") if isinstance(message, Mapping) else None


def _too_long(size, room, n_ctx):
    return ValueError(f"the last message alone is {size}; with {room} tokens for the reply "
                      f"that is more than the model's context of {n_ctx}: shorten it, or ask "
                      f"for fewer new tokens")


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


# Text of a reply as it becomes safe to show, and the model's Steps whose text it completes.
Piece = collections.namedtuple("Piece", "text steps")


class Reply:
    """One reply generated after `ids` (a rendered conversation, or a completion's prompt),
    cut at the model's stop ids and at the `stop` strings, none of which is part of it.

    `async for piece in reply.pieces()` gives Piece(text, steps): text as it becomes safe to
    show (held back while it may still become a stop string), and the model's Steps whose text
    it completes (each with its log-probs where asked for). Afterwards `finish_reason` is
    "stop" (a stop id or string) or "length" (max_new_tokens, or the context full), and
    `tokens` the number of tokens generated.
    """

    def __init__(self, model, ids, max_new_tokens, stop=None, cached=0, **sampling):
        if stop is not None and (isinstance(stop, str)
                                 or not all(isinstance(s, str) for s in stop)):
            raise ValueError("stop must be a list of strings")
        self.model, self.ids, self.cached, self.sampling = model, ids, cached, sampling
        # Within the context: generation never slides the window in a reply.
        self.max_new_tokens = min(max_new_tokens, model.n_ctx - len(ids))
        self.text = _StopText(stop)
        self.finish_reason = None
        self.tokens = 0

    async def pieces(self):
        model = self.model
        decoder = model.tokenizer.stream_decoder(skip_special_tokens=True)
        stops = model.stopping_ids()
        held = []   # Steps whose text is held back (a possible stop string)
        self.finish_reason = "length"
        # Closed on leaving (a stop, or the caller's break), not when garbage-collected: its
        # cleanup records what the KV cache holds, which the next turn reuses.
        async with contextlib.aclosing(model.stream_steps(
                self.ids, self.max_new_tokens, stop_at_eot=True, cached=self.cached,
                **self.sampling)) as steps:
            async for step in steps:
                self.tokens += 1
                if step.token in stops:
                    self.finish_reason = "stop"
                    break
                held.append(step)
                text = self.text.push(decoder.push(step.token))
                if text or self.text.stopped:
                    yield Piece(text, held)
                    held = []
                if self.text.stopped:
                    self.finish_reason = "stop"
                    return
        rest = self.text.push(decoder.flush()) + self.text.flush()
        if rest or held:
            yield Piece(rest, held)



async def chat_stream(model, messages, max_new_tokens=256, temperature=1.0, top_k=None,
                      top_p=None, seed=None, stop=None, logits_hook=None, **controls):
    """Yield the pieces of the assistant's reply to `messages` (see the module docstring)."""
    from ..sampling import check_params

    check_params(max_new_tokens, temperature, top_k, top_p, seed)
    ids, cached = prepare(model, messages, max_new_tokens)
    reply = Reply(model, ids, max_new_tokens, stop, cached, temperature=temperature,
                  top_k=top_k, top_p=top_p, seed=seed, logits_hook=logits_hook, **controls)
    async with contextlib.aclosing(reply.pieces()) as pieces:
        async for piece in pieces:
            if piece.text:
                yield piece.text


def prepare(model, messages, max_new_tokens):
    """(ids, cached) of a chat turn: the conversation rendered to fit the context (a
    UserWarning says how many old messages were dropped), and how many of its first ids the
    KV cache already holds."""
    ids, dropped = fit(model.tokenizer, messages, model.n_ctx, max_new_tokens)
    if dropped:
        warnings.warn(f"the conversation is longer than the model's context of {model.n_ctx} "
                      f"tokens: dropped the {dropped} oldest message"
                      f"{'s' if dropped > 1 else ''} (the system message stays)", UserWarning,
                      stacklevel=3)  # the caller of chat_stream
    return ids, min(common_prefix(model.cached_ids, ids), len(ids) - 1)
