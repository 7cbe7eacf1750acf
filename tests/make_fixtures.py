"""Dump reference outputs of Hugging Face transformers for tests/test_model.py.

    python tests/make_fixtures.py            # from the repository root; needs torch + transformers

Writes tests/fixtures/ (about 3 MB, committed). The tests themselves need neither torch nor
transformers: they rebuild each model folder from its seed with tests/refmodels.py.

For each fixture below: build weights with refmodels.make_weights, write the folder with
refmodels.write_folder, load it with transformers' own `GPT2LMHeadModel.from_pretrained` (float32,
eval mode, eager attention) and store in <name>.npz + <name>.json:

    ids, logits            seeded random token ids (T, ) and HF's logits (T, V), float32
    full_ids, full_logits  the same for T = n_positions (where "full" is set)
    rows                   the positions kept in `logits` (the 50257-vocabulary fixture keeps a few)
    prompt, greedy         a short prompt and HF's greedy `generate` (32 new tokens, ids only)
    long_prompt, long_greedy   (where "long" is set) a longer prompt and HF's greedy tokens up to
                           n_positions: the test goes on past it, where HF cannot

Greedy prompts are chosen (seeded, first that fits) so that at every step the top logit leads the
runner-up by at least GAP x max|logits| (10x the tests' tolerance; a correct implementation cannot
flip a token) and the run has at least DISTINCT different tokens.

Also hf_tiny/: the "tiny" model as HF's own `save_pretrained` writes it, plus the tokenizer
files, and hf_tiny.json: a prompt and HF's greedy 20-token continuation, decoded by HF's
GPT2Tokenizer, for the command line test.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file
from transformers import GPT2LMHeadModel, GPT2Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refmodels  # noqa: E402

NEW_TOKENS = 32  # greedy tokens per fixture
CLI_NEW_TOKENS = 20  # tokens in the command line test (-n 20)
GAP = 1e-3  # least top-1 / top-2 logit gap along a greedy run, relative to max|logits|
DISTINCT = 8  # least distinct tokens in a greedy run (a run that repeats one token tests little)

# name: config, seed, weight dtype in the file, T of the random ids, prompt length, options.
FIXTURES = {
    "tiny": dict(config="tiny", seed=1, dtype="float32", T=23, prompt=6, full=True),
    "tiny_f16": dict(config="tiny", seed=1, dtype="float16", T=23, prompt=6),
    # prompt 8 + 32 new = 40 = n_positions: HF cannot go further; long: 30 + 10 new
    "ctx40": dict(config="ctx40", seed=2, dtype="float32", T=37, prompt=8, full=True, long=30),
    "mini": dict(config="mini", seed=3, dtype="float32", T=11, prompt=5),
    # 6 rows of 50257 logits keep the file small
    "gpt2_2l": dict(config="gpt2_2l", seed=4, dtype="float32", T=16, prompt=7,
                    rows=[0, 1, 5, 9, 14, 15]),
}

CLI_PROMPTS = [
    "Hello world, the quick brown fox",
    "Once upon a time",
    "The meaning of life is",
    "To be or not to be",
    "In the beginning",
    "It was a dark and stormy night",
    "Call me Ishmael",
    "All happy families are alike",
    "The sky above the port",
    "We hold these truths",
]


def load_hf(folder):
    model = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


@torch.no_grad()
def hf_logits(model, ids):
    out = model(torch.tensor([ids], dtype=torch.long))
    return out.logits[0].float().numpy()


@torch.no_grad()
def hf_greedy(model, prompt, n, pad_token_id=0):
    """HF's greedy generate, new ids only, and the least top-1/top-2 gap over its steps (from one
    full forward over prompt + generated: logits at position t decide token t+1)."""
    inp = torch.tensor([prompt], dtype=torch.long)
    out = model.generate(inp, attention_mask=torch.ones_like(inp), do_sample=False,
                         max_new_tokens=n, pad_token_id=pad_token_id)
    new = out[0, len(prompt):].tolist()
    assert len(new) == n, f"generate stopped after {len(new)} of {n} tokens"
    logits = hf_logits(model, prompt + new[:-1])[len(prompt) - 1:]
    assert logits.argmax(-1).tolist() == new, "HF generate differs from argmax of its full forward"
    top2 = np.sort(logits, axis=-1)[:, -2:]
    gap = float((top2[:, 1] - top2[:, 0]).min())
    return new, gap, float(np.abs(logits).max())


def check_weights(model, weights, dtype):
    """The weights HF loaded are make_weights' bytes (through the file's dtype), lm_head tied."""
    sd = model.state_dict()
    for name, w in weights.items():
        want = w.astype(dtype).astype(np.float32)
        got = sd[name].numpy()
        assert got.dtype == np.float32 and got.tobytes() == want.tobytes(), f"{name} differs"
    assert torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"]), "lm_head is not tied"


def make_fixture(name, spec, out_dir, vocab_dir):
    cfg = refmodels.CONFIGS[spec["config"]]
    V, P = cfg["vocab_size"], cfg["n_positions"]
    weights = refmodels.make_weights(cfg, spec["seed"])
    again = refmodels.make_weights(cfg, spec["seed"])
    assert all(weights[k].tobytes() == again[k].tobytes() for k in weights), "not deterministic"
    rng = np.random.default_rng(1000 + spec["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = refmodels.write_folder(os.path.join(tmp, name), cfg, weights, spec["dtype"],
                                        vocab_dir=vocab_dir)
        model = load_hf(folder)
        check_weights(model, weights, spec["dtype"])

        arrays = {}
        ids = rng.integers(0, V, spec["T"]).tolist()
        logits = hf_logits(model, ids)
        rows = spec.get("rows", list(range(len(ids))))
        arrays.update(ids=np.array(ids, np.int32), logits=logits[rows],
                      rows=np.array(rows, np.int32))
        scale = float(np.abs(logits).max())
        meta_full = None
        if spec.get("full"):
            full_ids = rng.integers(0, V, P).tolist()
            full_logits = hf_logits(model, full_ids)
            arrays.update(full_ids=np.array(full_ids, np.int32), full_logits=full_logits)
            meta_full = dict(T=P, max_abs=float(np.abs(full_logits).max()))

        # a prompt whose greedy run has no near-ties
        for attempt in range(100):
            prompt = rng.integers(0, V, spec["prompt"]).tolist()
            greedy, gap, gscale = hf_greedy(model, prompt, NEW_TOKENS)
            if gap >= GAP * max(1.0, gscale) and len(set(greedy)) >= DISTINCT:
                break
        else:
            raise RuntimeError(f"{name}: no prompt with a clear greedy run")
        arrays.update(prompt=np.array(prompt, np.int32), greedy=np.array(greedy, np.int32))
        meta_long = None
        if spec.get("long"):
            for long_attempt in range(100):
                long_prompt = rng.integers(0, V, spec["long"]).tolist()
                long_greedy, long_gap, lscale = hf_greedy(model, long_prompt, P - len(long_prompt))
                if long_gap >= GAP * max(1.0, lscale):
                    break
            else:
                raise RuntimeError(f"{name}: no long prompt with a clear greedy run")
            arrays.update(long_prompt=np.array(long_prompt, np.int32),
                          long_greedy=np.array(long_greedy, np.int32))
            meta_long = dict(prompt_len=len(long_prompt), new_tokens=len(long_greedy), min_gap=long_gap)

    meta = {
        "name": name,
        "config": cfg,
        "seed": spec["seed"],
        "dtype": spec["dtype"],
        "weights_sha256": refmodels.weights_digest(weights, spec["dtype"]),
        "T": len(ids),
        "logits_max_abs": scale,
        "full": meta_full,
        "greedy": dict(prompt_len=len(prompt), new_tokens=NEW_TOKENS, min_gap=gap, max_abs=gscale,
                       prompt_attempts=attempt + 1),
        "long": meta_long,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    np.savez_compressed(os.path.join(out_dir, name + ".npz"), **arrays)
    with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{name}: T={len(ids)} max|logits|={scale:.3f} greedy: {len(set(greedy))} distinct, "
          f"gap {gap:.4f} (prompt try {attempt + 1})")


def byte_decoder():
    """GPT-2's byte symbol -> byte map (the inverse of its bytes_to_unicode)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def make_hf_tiny(out_dir, vocab_dir):
    """tests/fixtures/hf_tiny/ as transformers saves it, and hf_tiny.json for the CLI test."""
    spec = FIXTURES["tiny"]
    cfg = refmodels.CONFIGS[spec["config"]]
    weights = refmodels.make_weights(cfg, spec["seed"])
    target = os.path.join(out_dir, "hf_tiny")
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = refmodels.write_folder(os.path.join(tmp, "tiny"), cfg, weights, vocab_dir=vocab_dir)
        model = load_hf(src)
        tok = GPT2Tokenizer.from_pretrained(src)
        model.save_pretrained(target)
        tok.save_pretrained(target)  # tokenizer.json + tokenizer_config.json (transformers 5)
        for f in ("vocab.json", "merges.txt"):  # and the files they came from, as hub folders have
            shutil.copy(os.path.join(src, f), os.path.join(target, f))

    saved = load_file(os.path.join(target, "model.safetensors"))
    assert sorted(saved) == sorted(weights), sorted(set(saved) ^ set(weights))
    assert all(saved[k].tobytes() == weights[k].tobytes() for k in weights), "saved weights differ"

    model = load_hf(target)
    tok = GPT2Tokenizer.from_pretrained(target)
    decoder = vocab_inverse(target)
    bytemap = byte_decoder()
    for prompt in CLI_PROMPTS:
        ids = tok.encode(prompt)
        assert tok.decode(ids) == prompt and max(ids) < cfg["vocab_size"], prompt
        new, gap, gscale = hf_greedy(model, ids, CLI_NEW_TOKENS)
        text = tok.decode(new, clean_up_tokenization_spaces=False)
        # HF's text is the plain byte decoding of the tokens (no clean-up, no replacement)
        raw = bytes(bytemap[ch] for i in new for ch in decoder[i])
        ok = (raw.isascii() and raw.decode() == text and text.isprintable() and text.strip()
              and gap >= GAP * max(1.0, gscale) and len(set(new)) >= DISTINCT)
        if ok:
            break
    else:
        raise RuntimeError("no CLI prompt gives a printable ASCII greedy continuation")
    meta = {
        "folder": "tests/fixtures/hf_tiny",
        "fixture": "tiny",
        "prompt": prompt,
        "prompt_ids": ids,
        "new_tokens": CLI_NEW_TOKENS,
        "ids": new,
        "continuation": text,
        "min_gap": gap,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(out_dir, "hf_tiny.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"hf_tiny: {prompt!r} -> {text!r}")


def vocab_inverse(folder):
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        return {i: s for s, i in json.load(f).items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=refmodels.FIXTURES, help="output folder (default tests/fixtures)")
    ap.add_argument("--vocab-dir", default=refmodels.VOCAB_DIR,
                    help="folder with GPT-2's vocab.json + merges.txt (default py/webgpt/data)")
    ap.add_argument("names", nargs="*", help="fixtures to make (default all, and hf_tiny)")
    args = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    names = args.names or list(FIXTURES) + ["hf_tiny"]
    for name in names:
        if name == "hf_tiny":
            make_hf_tiny(args.out, args.vocab_dir)
        else:
            make_fixture(name, FIXTURES[name], args.out, args.vocab_dir)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
