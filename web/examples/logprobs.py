"""Log-probs: how sure the model was of each token it wrote, and what else it considered.

Ask the OpenAI-shaped API for `logprobs` and every generated token comes with its
log-probability (the log of the probability the model gave it, before temperature and the
other sampling controls change the odds) and the likeliest alternatives at that step. Only
these few numbers leave the GPU, not the whole distribution. `page.logprobs` colours each token
by its probability, from green (sure) to red (a long shot); hover over one, or focus it with
Tab, for the alternatives. Sampling sometimes takes an unlikely token: run it again with
another seed and watch the text branch where the colours turn red.

An instruct model (one with a chat template) answers the prompt as a chat message, through
`client.chat.completions.create`; any other model continues it, through
`client.completions.create`, whose log-probs come in OpenAI's older form. page.logprobs takes
either.
"""
import math

n = 40             # new tokens
top = 5            # alternatives per token (chat: up to 20; completions: up to 5)
temperature = 0.8  # 0: greedy, the likeliest token every time

client = webgpt.Client(model)
if model.tokenizer.chat_template is not None:
    resp = await client.chat.completions.create(
        messages=[{"role": "user", "content": params.prompt}], max_tokens=n,
        temperature=temperature, seed=params.seed, logprobs=True, top_logprobs=top)
    choice = resp.choices[0]
    text = choice.message.content
    tokens = [(t.token, t.logprob) for t in choice.logprobs.content]
else:
    resp = await client.completions.create(
        prompt=params.prompt, max_tokens=n, temperature=temperature, seed=params.seed,
        logprobs=top)
    choice = resp.choices[0]
    text = choice.text
    tokens = list(zip(choice.logprobs.tokens, choice.logprobs.token_logprobs))

page.logprobs(choice.logprobs, title=f"{len(tokens)} tokens after {params.prompt!r}, each "
                                     f"coloured by its probability (hover for the alternatives)")

# Perplexity: e to the mean surprise (-logprob) of the tokens: how many equally likely choices
# the model was, on average, torn between.
surprise = -sum(lp for _, lp in tokens) / max(len(tokens), 1)
print(text)
print(f"\ntokens: {len(tokens)}, finish_reason: {choice.finish_reason}, "
      f"perplexity: {math.exp(surprise):.2f}")
least = sorted(tokens, key=lambda t: t[1])[:3]
print("least likely:", ", ".join(f"{token!r} ({math.exp(lp):.1%})" for token, lp in least))
