"""Chat loop: a few turns with an instruct model, each reply streamed, with what it prefilled.

`model.chat_stream(messages, ...)` renders the conversation (a list of {"role", "content"}, as
in transformers) with the model's chat template and streams the assistant's reply. The KV cache
keeps the conversation between turns: a turn runs as its prompt only the tokens that are new
since the last reply (the end of that reply and the new question), so the prefill stays small
while the conversation grows. It needs a model with a chat template (an instruct model, such as
SmolLM2-Instruct or Qwen2.5-Instruct); GPT-2 has none.
"""

SYSTEM = "You are a helpful assistant. Answer in one or two sentences."
QUESTIONS = ["Who is Romeo?", "And Juliet?", "How does their story end?"]

tok = model.tokenizer
if getattr(tok, "chat_template", None) is None:
    print("This model has no chat template, so it cannot chat: pick an instruct model.")
else:
    messages = [{"role": "system", "content": SYSTEM}]
    for question in QUESTIONS:
        messages.append({"role": "user", "content": question})
        print(f"> {question}")
        reply = ""
        async for piece in model.chat_stream(messages, max_new_tokens=params.max_new_tokens,
                                             temperature=params.temperature, top_k=params.top_k,
                                             top_p=params.top_p, seed=params.seed):
            print(piece, end="")
            reply += piece
            if page.stop_requested():
                break
        print()
        s = model.stats
        whole = len(tok.apply_chat_template(messages, add_generation_prompt=True))
        ms = s["decode_s"] / s["decode_tokens"] * 1000 if s["decode_tokens"] else float("nan")
        print(f"  [prefill: {s['prefill_tokens']} new tokens of the {whole} the conversation "
              f"is now, {s['prefill_s'] * 1000:.0f} ms; reply: {ms:.1f} ms/token]\n")
        messages.append({"role": "assistant", "content": reply})
        if page.stop_requested():
            break
