"""Ban a word: a custom logits rule, in a generation loop written out.

Generation is a loop: run the model, take the scores (logits) of the next token, pick one,
append it, repeat. Here that loop is spelled out, with one more step: before picking, every
token that would complete the banned word gets a score of minus infinity, so it is never
picked and the model has to go on another way. Both continuations are greedy (the likeliest
token each time), so they match up to where the rule steps in. model.logits runs the whole
text at every step, without the KV cache model.generate uses: slower, but every step is plain.
"""
import math

from webgpt.tokenizer import StreamDecoder

BANNED = "the"  # any text: a word, a name, a letter (compared in lower case)
n = 40          # new tokens

tok = model.tokenizer
V = model.config.vocab_size
texts = [tok.decode([i]).lower() for i in range(V)]  # each token's text


def completes_banned(text, token):
    """True when writing `token` after `text` makes BANNED appear."""
    tail = text[len(text) - len(BANNED) + 1:] if len(BANNED) > 1 else ""
    return BANNED in tail + texts[token]


plain = await model.generate(params.prompt, max_new_tokens=n, temperature=0)
print(f"Without the rule ({(params.prompt + plain).lower().count(BANNED)} times {BANNED!r}):")
print(params.prompt + plain + "\n")

print(f"With the rule, {BANNED!r} banned:")
print(params.prompt, end="")
ids = tok.encode(params.prompt)
text = params.prompt.lower()
decoder = StreamDecoder(tok)  # token ids -> text, whole characters at a time
for _ in range(n):
    logits = await model.logits(ids[-model.config.n_positions:])  # (T, V)
    row = logits.cast("B").cast("f")[-V:].tolist()  # the last row: the next token's scores
    for token in range(V):
        if completes_banned(text, token):
            row[token] = -math.inf  # the rule
    token = max(range(V), key=row.__getitem__)  # greedy: the likeliest token left
    ids.append(token)
    text += texts[token]
    print(decoder.push(token), end="")
    if token == tok.eot_id or page.stop_requested():
        break
print(decoder.flush())
