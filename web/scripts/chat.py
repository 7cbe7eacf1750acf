"""Chat: the script the chat view runs for each reply (Send, Regenerate).

`params.messages` is the conversation so far ({"role", "content"} dicts as in OpenAI's API and
transformers: the system prompt first if there is one, the user's last message at the end).
`webgpt.Client(model)` is an OpenAI-shaped client over the loaded model: with stream=True,
`client.chat.completions.create` renders the conversation with the model's chat template and
streams the assistant's reply as OpenAI's chunks (`chunk.choices[0].delta.content`). The
conversation stays in the KV cache between replies, so only what is new since the last one
runs as the prompt (`model.stats["prefill_tokens"]`, shown under the reply). `page.output`
appends to the reply in the chat; `page.note` shows a line under it, here the warning that the
oldest turns were dropped when the conversation outgrows the model's context.
"""
import warnings

client = webgpt.Client(model)
with warnings.catch_warnings(record=True) as notes:
    warnings.simplefilter("always")
    stream = await client.chat.completions.create(
        messages=params.messages,
        max_tokens=params.max_new_tokens,
        temperature=params.temperature,  # 0: greedy
        top_k=params.top_k,
        top_p=params.top_p,
        seed=params.seed,
        stream=True,
    )
    async for chunk in stream:
        text = chunk.choices[0].delta.content   # the first chunk: the role; the last: none
        if text:
            page.output(text)
        if page.stop_requested():    # the Stop button: the reply ends here and keeps what came
            await stream.close()     # ends the generation now, not when the stream is dropped
            break
for note in notes:
    page.note(str(note.message))
