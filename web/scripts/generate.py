"""Generate: the script the Generate button runs (and Run, or Ctrl+Enter, here).

`model` is the loaded model, `params` holds the form's values and `page.output` appends to
the text under the prompt; print() writes to the console below. Edit it and press Run or
Generate: the model stays loaded. Examples in the menu show more of the API, and "How it
works" walks through what `model.stream` does for each token.
"""

async for piece in model.stream(
    params.prompt,
    max_new_tokens=params.max_new_tokens,
    temperature=params.temperature,  # 0: greedy, the most likely token every time
    top_k=params.top_k,              # None: no top-k cut
    top_p=params.top_p,              # None: no nucleus (top-p) cut
    seed=params.seed,                # the same seed draws the same text
):
    page.output(piece)               # a piece of text: one token, or a few bytes of one
    if page.stop_requested():        # the Stop button: end after this token
        break
