"""The check tests/test_gemma.py, test_phi3.py and test_mistral.py run on each family: a tiny
model written by transformers itself (random weights from a seed, every norm weight random too:
hfmodels.family_model), saved as f32, f16 or bf16, against transformers running the saved
weights in float32 (eager attention):

- the prompt's logits within RTOL of the logit scale (max |ours - HF| <= 1e-4 max(1, max |HF|));
- 32 greedy tokens identical to transformers' generate(do_sample=False), the prompt chosen
  from a few fixed texts so that HF's top-1 logit leads by 10x the tolerance at every step;
- through the KV cache: every decoded step's logits within the tolerance of HF's scores for
  that step, and of our own full forward of the sequence (no cache) at a few steps;
- both kernel layouts: "cpu" (no barriers, the page's on SwiftShader) and "gpu" (norms fused
  into the products, prompts through matmul, a decoded token's attention cut into chunks of 4
  keys combined by the product after it, so a short test runs several chunks).

The prompts are longer than the test models' sliding windows, so the windows cut in at the
prompt and at every decoded step.
"""

import asyncio
import collections
import os

import numpy as np
import torch
import transformers

import hfmodels
import webgpt

RTOL = 1e-4
STEPS = 32
# Candidate prompts (14 to 30 tokens of the tests' 300-token BPE).
TEXTS = ["ROMEO: But soft, what light through yonder window breaks? It is the east",
         "The quick brown fox jumps over the lazy dog; 0123456789 times, said she.",
         "It is the east, said the lazy fox; what light through yonder dog",
         "0123456789 times the quick brown window breaks, said ROMEO: soft"]

Made = collections.namedtuple("Made", "path ids logits greedy scores tol")


def reference(model, tok, tol=None):
    """Made's fields past the path: the first candidate prompt with a clear greedy path."""
    for text in TEXTS:
        ids = tok.encode(text).ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].numpy().astype(np.float64)
            out = model.generate(torch.tensor([ids]), max_new_tokens=STEPS, do_sample=False,
                                 output_scores=True, return_dict_in_generate=True,
                                 pad_token_id=None, eos_token_id=None)
        scores = [s[0].numpy().astype(np.float64) for s in out.scores]
        t = tol or RTOL * max(1.0, float(np.abs(logits).max()),
                              max(float(np.abs(s).max()) for s in scores))
        lead = min(float(np.diff(np.sort(s)[-2:])[0]) for s in scores)
        if lead >= 10 * t:
            return ids, logits, out.sequences[0, len(ids):].tolist(), scores, t
    raise AssertionError(f"no candidate prompt has a clear greedy path (lead {lead:.3g})")


def make(path, cls, keys, dtype="float32", seed=0):
    """A family's folder at `path` as save_pretrained writes it, and transformers' answers."""
    os.makedirs(path, exist_ok=True)
    tok = hfmodels.write_tokenizer(path)
    hfmodels.family_model(cls, keys, seed).to(getattr(torch, dtype)).save_pretrained(path)
    # The saved (rounded) weights in f32 arithmetic, loaded as a user would.
    model = getattr(transformers, cls).from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()
    return Made(str(path), *reference(model, tok))


async def _load(path, layout):
    if layout == "cpu":
        return await webgpt.load(path, layout="cpu")
    from webgpt import gpu
    from webgpt.model import Model, layouts

    spec = await webgpt.open_folder(path)
    device = await gpu.request_device()
    model = Model(spec, device, layout=layouts(device, "gpu").replace(attention_chunk=4))
    await model.upload()
    return model


def check(made, layout, name):
    """The checks of the module docstring on one layout; returns the largest errors."""
    async def go():
        model = await _load(made.path, layout)
        try:
            logits = np.asarray(await model.logits(made.ids))
            steps = []
            tokens = await model.generate_ids(
                made.ids, max_new_tokens=STEPS, temperature=0, stop_at_eot=False,
                logits_hook=lambda row, hist: steps.append(np.array(row, dtype=np.float64)))
            full = {}
            for k in (0, STEPS // 2, STEPS - 1):
                seq = list(made.ids) + list(made.greedy[:k])
                full[k] = np.asarray(await model.logits(seq))[-1].astype(np.float64)
            return logits, tokens, steps, full
        finally:
            model.release()

    logits, tokens, steps, full = asyncio.run(go())
    err = float(np.abs(logits.astype(np.float64) - made.logits).max())
    step_err = max(float(np.abs(s - r).max()) for s, r in zip(steps, made.scores))
    cache_err = max(float(np.abs(steps[k] - f).max()) for k, f in full.items())
    print(f"{name} ({layout}): prompt of {len(made.ids)} tokens, max |ours - HF| = {err:.3g}; "
          f"decoded steps vs HF's scores {step_err:.3g}; cache vs full forward {cache_err:.3g}; "
          f"tolerance {made.tol:.3g}")
    assert err <= made.tol
    assert tokens == made.greedy, f"{name}: ours {tokens} vs HF {made.greedy}"
    assert len(steps) == STEPS and step_err <= made.tol and cache_err <= made.tol
    return err, step_err, cache_err


CHAT = [{"role": "system", "content": "Be terse."},
        {"role": "user", "content": "What light through yonder window breaks? 🌞"},
        {"role": "assistant", "content": "  The east.  "},
        {"role": "user", "content": "<b>And Juliet</b> is the sun?"}]


def check_template(tmp_path, name, **tokens):
    """A real chat template (tests/fixtures/chat_templates/`name`) renders as transformers
    renders it with the same special tokens (`tokens`: bos_token, eos_token), for a chat with
    and without a system message and a first turn alone, with and without the generation
    prompt."""
    from webgpt.chat_template import render_chat_template

    with open(os.path.join(os.path.dirname(__file__), "fixtures", "chat_templates", name),
              encoding="utf-8", newline="") as f:
        template = f.read()
    hfmodels.write_tokenizer(str(tmp_path))
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(tmp_path, "tokenizer.json"), chat_template=template,
        **tokens)
    for messages in (CHAT, CHAT[1:], CHAT[:2]):
        for gen in (True, False):
            want = tok.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
            assert render_chat_template(template, messages, add_generation_prompt=gen,
                                        **tokens) == want
