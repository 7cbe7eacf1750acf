"""Greedy vs sampled: the same prompt, continued three ways.

Greedy decoding (temperature 0) takes the most likely token every time, so every run gives
the same text. Sampling draws each token at random from the model's probabilities, made
sharper or flatter by the temperature and cut to the 40 likeliest by top-k: one seed always
draws the same text, another seed other text.
"""

prompt = params.prompt
n = 60  # new tokens for each continuation

print("Greedy (temperature 0):")
print(prompt + await model.generate(prompt, max_new_tokens=n, temperature=0))

for seed in (1, 2):
    text = await model.generate(prompt, max_new_tokens=n, temperature=0.8, top_k=40, seed=seed)
    print(f"\nSampled (temperature 0.8, top-k 40, seed {seed}):")
    print(prompt + text)
    if page.stop_requested():
        break
