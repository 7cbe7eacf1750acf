"""Ban a word: a custom logits rule, run inside generation at decoding speed.

Generation is a loop: run the model, take the scores (logits) of the next token, pick one,
append it, repeat. `model.stream` takes a `logits_hook`: a function that sees each step's
logits (a float32 array of vocab_size scores, and the ids so far) before the pick, and may
change them. Here every token that would complete the banned word gets a score of minus
infinity, so it is never picked and the model has to go on another way. The KV cache keeps
working: each step still runs one token through the model, not the whole text again. Both
continuations are greedy (the likeliest token each time), so they match up to where the rule
steps in. (A fixed set of tokens can be banned without a hook, on the GPU: the API's
`logit_bias={token_id: -100, ...}`; a rule that looks at the text so far needs the hook.)
"""
import math

BANNED = "the"  # any text: a word, a name, a letter (compared in lower case)
n = 40          # new tokens

tok = model.tokenizer
V = model.config.vocab_size
texts = [tok.decode([i]).lower() for i in range(V)]  # each token's text
prompt_ids = tok.encode(params.prompt)


def ban(logits, ids):
    """The rule: no token may make BANNED appear after the text so far."""
    text = params.prompt.lower() + "".join(texts[i] for i in ids[len(prompt_ids):])
    tail = text[len(text) - len(BANNED) + 1:] if len(BANNED) > 1 else ""
    for token in range(V):
        if BANNED in tail + texts[token]:
            logits[token] = -math.inf


plain = await model.generate(params.prompt, max_new_tokens=n, temperature=0)
print(f"Without the rule ({(params.prompt + plain).lower().count(BANNED)} times {BANNED!r}):")
print(params.prompt + plain + "\n")

print(f"With the rule, {BANNED!r} banned:")
print(params.prompt, end="")
async for piece in model.stream(params.prompt, max_new_tokens=n, temperature=0,
                                logits_hook=ban):
    print(piece, end="")
    if page.stop_requested():
        break
print()
