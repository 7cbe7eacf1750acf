"""Greedy vs sampled: the same prompt, continued three ways.

Greedy decoding (temperature 0) takes the most likely token every time, so every run gives
the same text. Sampling draws each token at random from the model's probabilities, made
sharper or flatter by the temperature and cut to the 40 likeliest by top-k: one seed always
draws the same text, another seed other text. The calls are OpenAI's completions API
(`webgpt.Client`); `n=2` asks for two sampled choices in one request, each drawn with its own
seed (seed, seed + 1), so the pair is the same on every run.
"""

prompt = params.prompt
n = 60  # new tokens for each continuation

client = webgpt.Client(model)
greedy = await client.completions.create(prompt=prompt, max_tokens=n, temperature=0)
print("Greedy (temperature 0):")
print(prompt + greedy.choices[0].text)

sampled = await client.completions.create(prompt=prompt, max_tokens=n, temperature=0.8,
                                          top_k=40, seed=1, n=2)
for choice in sampled.choices:
    print(f"\nSampled (temperature 0.8, top-k 40, seed 1, choice {choice.index}):")
    print(prompt + choice.text)
print(f"\n{sampled.usage.completion_tokens} tokens sampled, finish reasons: "
      f"{', '.join(c.finish_reason for c in sampled.choices)}")
