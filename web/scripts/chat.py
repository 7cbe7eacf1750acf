"""Chat: the script the chat view runs for each reply (Send, Regenerate).

`params.messages` is the conversation so far ({"role", "content"} dicts as in transformers:
the system prompt first if there is one, the user's last message at the end). The model's chat
template turns it into tokens, and `model.chat_stream` streams the assistant's reply. The
conversation stays in the KV cache between replies, so only what is new since the last one runs
as the prompt (`model.stats["prefill_tokens"]`, shown under the reply). `page.output` appends
to the reply in the chat; `page.note` shows a line under it, here the warning that the oldest
turns were dropped when the conversation outgrows the model's context.
"""
import warnings

with warnings.catch_warnings(record=True) as notes:
    warnings.simplefilter("always")
    async for piece in model.chat_stream(
        params.messages,
        max_new_tokens=params.max_new_tokens,
        temperature=params.temperature,  # 0: greedy
        top_k=params.top_k,
        top_p=params.top_p,
        seed=params.seed,
    ):
        page.output(piece)
        if page.stop_requested():    # the Stop button: the reply ends here and stays as it is
            break
for note in notes:
    page.note(str(note.message))
