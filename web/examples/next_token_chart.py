"""Next-token distribution: the model's likeliest next tokens, as a bar chart.

One forward pass over the prompt gives a row of scores (logits) for every position; the
last row scores each token of the vocabulary as the one that comes next. A softmax turns
those scores into probabilities. Change `temperature` and run again: below 1 the chart gets
sharper, above 1 flatter (temperature divides the scores before the softmax).
"""
import math

temperature = 1.0
top = 12  # bars

ids = model.tokenizer.encode(params.prompt)
logits = await model.logits(ids)        # (T, V) float32: one row per position
row = logits.tolist()[-1]               # the last position's V scores

m = max(row)                            # subtract the largest score: exp() cannot overflow
weights = [math.exp((x - m) / temperature) for x in row]
total = sum(weights)
probs = [w / total for w in weights]

best = sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:top]
labels = [repr(model.tokenizer.decode([i])) for i in best]
page.bar_chart(labels, [probs[i] for i in best],
               title=f"After {params.prompt!r} ({len(ids)} tokens), at temperature {temperature}")

print(f"{'token':>8}  {'id':>6}  probability")
for i, label in zip(best, labels):
    print(f"{label:>8}  {i:>6}  {probs[i]:.2%}")
