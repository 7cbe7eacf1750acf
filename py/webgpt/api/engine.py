"""Running a checked Request (params.py) on a model: OpenAI's response objects, whole or as the
chunks of a stream, as plain JSON dicts (objects.py wraps them).

Every choice is one model/chat.py Reply: the prompt (a chat's conversation rendered by its
template, fitted to the context; a completion's text or token ids), generated through the KV
cache (a choice after the first, and a chat's next turn, reuse the prompt already there), cut
at the model's stop ids and the request's stop strings, with each token's log-probs where asked
for. The n choices of a request run one after another; a stream gives each choice's chunks in
turn, each chunk naming its choice's index, as OpenAI's chunks do.

A request that says what its output must be (response_format's JSON, regex, grammar) or that
may call tools gives each choice a constraint (webgpt.constrain; api/tools.py), compiled once
per request (and cached across requests with the same schema). Tool calls are parsed from the
whole reply, so a stream with tools sends its text and its tool_calls when the reply is done.
"""

import secrets
import time

from .. import constrain
from ..errors import ConstraintError, RequestError
from ..model.chat import Reply, common_prefix, prepare
from ..model.decode import controls_from
from .params import PARAMS
from .tools import (parse_calls, renders_tools, template_messages, template_tools,
                    tool_constraint, tool_format)


def _id(prefix):
    return f"{prefix}-{secrets.token_hex(12)}"


class Run:
    """One request on one model: its prompts and choices, the usage so far."""

    def __init__(self, model, name, request):
        self.model, self.name, self.r = model, name, request
        self.id = _id("chatcmpl" if request.kind == "chat" else "cmpl")
        self.created = int(time.time())
        self.prompt_tokens = 0
        self.completion_tokens = 0
        try:   # the checks that need the vocabulary, before any work
            controls_from(model.V, **request.sampling_controls())
        except ValueError as e:
            param = str(e).split(" ", 1)[0]
            raise RequestError(str(e), param=param if param in PARAMS else None) from None
        self.calls = request.tools is not None and request.tool_choice != "none"
        self.constraint = self._constraint()

    def _constraint(self):
        """The constraint of the first choice (the others take a fresh() one), or None."""
        r, model = self.r, self.model
        try:
            if self.calls:
                return tool_constraint(model, r.tools, r.tool_choice, r.parallel_tool_calls)
            if r.output is None:
                return None
            kind = r.output[0]
            if kind == "json_object":
                return constrain.json_object(model)
            if kind == "json_schema":
                return constrain.json_schema(model, r.output[1])
            return (constrain.regex if kind == "regex" else constrain.grammar)(model,
                                                                               r.output[1])
        except ConstraintError as e:
            param = "tools" if self.calls else (
                "response_format" if r.output[0].startswith("json") else r.output[0])
            raise RequestError(f"{param}: {e}", param=param) from None

    def usage(self):
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def choices(self):
        """[(index, prompt ids, prompt text)]: what each choice runs, in order. A chat's
        prompt is made when its choice runs (the KV cache then holds more of it): None."""
        r = self.r
        if r.kind == "chat":
            return [(i, None, None) for i in range(r.n)]
        out = []
        for p, prompt in enumerate(r.prompts):
            ids, text = self._encode(prompt)
            self.prompt_tokens += len(ids)
            out += [(p * r.n + i, ids, text) for i in range(r.n)]
        return out

    def _encode(self, prompt):
        model = self.model
        try:
            if isinstance(prompt, str):
                ids, text = model.encode_prompt(prompt), prompt
            else:
                model.check_ids(prompt)
                ids, text = list(prompt), model.tokenizer.decode(prompt)
        except ValueError as e:
            raise RequestError(f"prompt: {e}", param="prompt") from None
        if len(ids) >= model.n_ctx:
            raise RequestError(f"prompt: it is {len(ids)} tokens; the model's context is "
                               f"{model.n_ctx}, which must leave room for the completion",
                               param="prompt", code="context_length_exceeded")
        return ids, text

    def reply(self, index, ids):
        """The Reply of choice `index` after `ids` (a chat's made here)."""
        model, r = self.model, self.r
        want = r.max_tokens or model.n_ctx   # None: what the context leaves
        if ids is None:
            try:   # without max_tokens, keep as much of the conversation as fits
                ids, cached = prepare(*self._chat(), r.max_tokens or 1)
            except ValueError as e:   # the template refused, or the last message is too long
                raise RequestError(f"messages: {e}", param="messages") from None
            self.prompt_tokens = len(ids)
        else:
            cached = max(0, min(common_prefix(model.cached_ids, ids), len(ids) - 1))
        sampling = r.sampling()
        if r.seed is not None:
            sampling["seed"] = r.seed + index  # each choice its own draws, all repeatable
        if self.constraint is not None:
            sampling["constraint"], self.constraint = self.constraint, self.constraint.fresh()
        try:
            return Reply(model, ids, want, r.stop, cached, **sampling)
        except ValueError as e:
            raise RequestError(str(e)) from None

    def _chat(self):
        """(model, messages) for the chat template: with tools, the model seen through a
        template given `tools=` and the messages as the tool-call format writes them."""
        r, model = self.r, self.model
        if r.tools is None and not any(m.get("tool_calls") for m in r.messages):
            return model, r.messages
        rendered = renders_tools(model.tokenizer)
        messages = template_messages(r.messages, r.tools or {}, tool_format(model.tokenizer),
                                     rendered)
        if r.tools is None or not rendered:
            return model, messages
        return _Templated(model, tools=template_tools(r.tools)), messages

    def message(self, finish_reason, text, tokens):
        """(the assistant message, finish_reason) of a chat choice's reply (its text, the
        tokens generated): with tools, its calls parsed from the raw text (special tokens
        kept)."""
        message = {"role": "assistant", "content": text, "refusal": None}
        if not self.calls:
            return message, finish_reason
        raw = self.model.tokenizer.decode(tokens)
        content, calls = parse_calls(raw, tool_format(self.model.tokenizer), self.r.tools)
        if not calls:
            return message, finish_reason
        return dict(message, content=content, tool_calls=calls), "tool_calls"


class _Templated:
    """A model whose tokenizer renders its chat template with extra variables (tools=...):
    what model/chat.py's prepare() reads (tokenizer, n_ctx, cached_ids) for a turn with
    tools."""

    def __init__(self, model, **extra):
        self._model = model
        self.tokenizer = _TemplatedTokenizer(model.tokenizer, extra)

    def __getattr__(self, name):
        return getattr(self._model, name)


class _TemplatedTokenizer:
    def __init__(self, tokenizer, extra):
        self._tokenizer, self._extra = tokenizer, extra

    def apply_chat_template(self, messages, **kwargs):
        return self._tokenizer.apply_chat_template(messages, **self._extra, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


# ---------------------------------------------------------------- log-probs

def _token(tokenizer, token, logprob):
    raw = tokenizer.token_bytes(token)
    return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob,
            "bytes": list(raw)}


def chat_logprobs(tokenizer, steps):
    """OpenAI's chat log-probs entries of `steps`: token, logprob, bytes, top_logprobs."""
    return [dict(_token(tokenizer, s.token, s.logprob),
                 top_logprobs=[_token(tokenizer, t, lp) for t, lp in s.top]) for s in steps]


class CompletionLogprobs:
    """The (legacy) completions' log-probs: tokens, token_logprobs, top_logprobs (token text
    -> logprob) and text_offset, the character where each token's text starts."""

    def __init__(self, tokenizer, offset=0):
        self.tokenizer, self.offset = tokenizer, offset

    def of(self, steps):
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for s in steps:
            text = _token(self.tokenizer, s.token, s.logprob)["token"]
            out["tokens"].append(text)
            out["token_logprobs"].append(s.logprob)
            out["top_logprobs"].append({_token(self.tokenizer, t, lp)["token"]: lp
                                        for t, lp in s.top})
            out["text_offset"].append(self.offset)
            self.offset += len(text)
        return out


def _merge(total, part):
    for key, values in part.items():
        total[key].extend(values)


# ---------------------------------------------------------------- whole responses

async def create(model, name, request):
    """The response (a JSON dict) of a request that does not stream."""
    run = Run(model, name, request)
    chat = request.kind == "chat"
    choices = []
    for index, ids, text in run.choices():
        reply = run.reply(index, ids)
        texts, logprobs = [], None
        if request.logprobs:
            logprobs = ({"content": [], "refusal": None} if chat else
                        {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                         "text_offset": []})
            offsets = CompletionLogprobs(model.tokenizer, len(text) if request.echo else 0)
        if request.echo:
            texts.append(text)
        tokens = []
        async for piece in reply.pieces():
            texts.append(piece.text)
            tokens += [s.token for s in piece.steps]
            if request.logprobs:
                if chat:
                    logprobs["content"] += chat_logprobs(model.tokenizer, piece.steps)
                else:
                    _merge(logprobs, offsets.of(piece.steps))
        run.completion_tokens += reply.tokens
        finish_reason = reply.finish_reason
        if chat:
            message, finish_reason = run.message(finish_reason, "".join(texts), tokens)
            body = {"message": message}
        else:
            body = {"text": "".join(texts)}
        choices.append({"index": index, **body, "logprobs": logprobs,
                        "finish_reason": finish_reason})
    return {"id": run.id, "object": "chat.completion" if chat else "text_completion",
            "created": run.created, "model": name, "system_fingerprint": None,
            "choices": choices, "usage": run.usage()}


# ---------------------------------------------------------------- streams

async def stream(model, name, request):
    """The chunks (JSON dicts) of a streamed response, as they are made."""
    run = Run(model, name, request)
    chat = request.kind == "chat"
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(index, finish_reason=None, logprobs=None, **delta):
        body = {"delta": delta} if chat else {"text": delta.get("content", "")}
        c = {"id": run.id, "object": kind, "created": run.created, "model": name,
             "system_fingerprint": None,
             "choices": [{"index": index, **body, "logprobs": logprobs,
                          "finish_reason": finish_reason}]}
        if request.include_usage:
            c["usage"] = None
        return c

    for index, ids, text in run.choices():
        reply = run.reply(index, ids)
        offsets = CompletionLogprobs(model.tokenizer, len(text) if request.echo else 0)
        if chat:
            yield chunk(index, role="assistant", content="")
        elif request.echo:
            yield chunk(index, content=text)
        tokens, held, held_logprobs = [], [], []
        async for piece in reply.pieces():
            tokens += [s.token for s in piece.steps]
            logprobs = None
            if request.logprobs:
                logprobs = ({"content": chat_logprobs(model.tokenizer, piece.steps),
                             "refusal": None} if chat else offsets.of(piece.steps))
            if run.calls:       # sent when the reply is whole: its calls are parsed then
                held.append(piece.text)
                held_logprobs += logprobs["content"] if logprobs else []
            elif piece.text or logprobs:
                yield chunk(index, logprobs=logprobs, content=piece.text)
        run.completion_tokens += reply.tokens
        finish_reason = reply.finish_reason
        if run.calls:
            message, finish_reason = run.message(finish_reason, "".join(held), tokens)
            if message["content"] or held_logprobs:
                yield chunk(index, content=message["content"] or "", logprobs={
                    "content": held_logprobs, "refusal": None} if request.logprobs else None)
            if message.get("tool_calls"):
                yield chunk(index, tool_calls=[dict(call, index=k) for k, call in
                                               enumerate(message["tool_calls"])])
        yield chunk(index, finish_reason=finish_reason)
    if request.include_usage:
        yield {"id": run.id, "object": kind, "created": run.created, "model": name,
               "system_fingerprint": None, "choices": [], "usage": run.usage()}
