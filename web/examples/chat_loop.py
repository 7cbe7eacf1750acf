"""Chat loop: a few turns with an instruct model, each reply streamed, with what it prefilled.

`webgpt.Client(model)` speaks OpenAI's API: `client.chat.completions.create(messages=...,
stream=True)` renders the conversation (a list of {"role", "content"}) with the model's chat
template and streams the assistant's reply as chunks, the last with the usage when
stream_options asks for it. The KV cache keeps the conversation between turns: a turn runs as
its prompt only the tokens that are new since the last reply (the end of that reply and the
new question), so the prefill stays small while the conversation grows. It needs a model with
a chat template (an instruct model, such as SmolLM2-Instruct or Qwen2.5-Instruct); GPT-2 has
none.
"""

SYSTEM = "You are a helpful assistant. Answer in one or two sentences."
QUESTIONS = ["Who is Romeo?", "And Juliet?", "How does their story end?"]

if model.tokenizer.chat_template is None:
    print("This model has no chat template, so it cannot chat: pick an instruct model.")
else:
    client = webgpt.Client(model)
    messages = [{"role": "system", "content": SYSTEM}]
    for question in QUESTIONS:
        messages.append({"role": "user", "content": question})
        print(f"> {question}")
        stream = await client.chat.completions.create(
            messages=messages, max_tokens=params.max_new_tokens, temperature=params.temperature,
            top_k=params.top_k, top_p=params.top_p, seed=params.seed, stream=True,
            stream_options={"include_usage": True})
        reply, usage = "", None
        async for chunk in stream:
            if chunk.usage:                   # the last chunk: no choices, the usage
                usage = chunk.usage
            for choice in chunk.choices:
                print(choice.delta.content or "", end="")
                reply += choice.delta.content or ""
            if page.stop_requested():
                await stream.close()          # ends the generation at once
                break
        print()
        if usage:
            s = model.stats
            ms = s["decode_s"] / s["decode_tokens"] * 1000 if s["decode_tokens"] else float("nan")
            print(f"  [prefill: {s['prefill_tokens']} new tokens of the {usage.prompt_tokens} "
                  f"the conversation is now, {s['prefill_s'] * 1000:.0f} ms; reply: "
                  f"{usage.completion_tokens} tokens, {ms:.1f} ms/token]\n")
        messages.append({"role": "assistant", "content": reply})
        if page.stop_requested():
            break
