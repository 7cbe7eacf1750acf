"""Train the character-level GPT-2 of this folder (PyTorch, one CUDA GPU; CPU works for a smoke test).

    python weights/shakespeare-char/prepare.py --out .train
    python weights/shakespeare-char/train.py --data .train --out .train/run

The defaults are the shipped model's recipe (5000 iterations of 128 x 512 bytes, about 2.5 minutes
on one H100/H200).

The network is GPT-2's (Hugging Face GPT2LMHeadModel math: pre-LayerNorm blocks, eps 1e-5, tanh
GELU 'gelu_new', learned positions, lm_head tied to wte), written as a small torch module whose
parameter names are GPT2LMHeadModel's, so export is a rename-free copy with the Conv1D weights
transposed to [in, out]. Tokens are bytes: id = byte value (vocab 256).

Training: random windows of --block bytes from train.txt, AdamW (betas 0.9/0.99, weight decay 0.1
on matrices and embeddings), linear warm-up then cosine decay to lr/10, bf16 autocast, gradient
clipping at 1.0, dropout in the embedding, attention and residual paths, torch.compile.

--max-iters 0 sizes the run to --time-limit instead: after the warm-up it measures the iteration
and evaluation speed and fixes max_iters so that the cosine schedule ends inside the limit (the
number it chose is printed and stored in metrics.json; pass it back as --max-iters to repeat the
schedule). With a fixed --max-iters, --time-limit is only a safety stop that still exports the
model (before the schedule has ended, which metrics.json records). Runs are seeded (--seed: weights, batches, dropout), but
GPU kernels (atomics in backward, autotuned reductions) are not bitwise deterministic, so a rerun
lands close to, not exactly on, the same loss.

Every --eval-interval iterations it scores the validation text (Hamlet, never trained on) with
evaluate.py's sliding window, in bf16 on the GPU, and a fixed sample of training text, and
appends both to metrics.json (the loss curve). At the end, --out/final is a Hugging Face folder:
config.json and f16 safetensors shards under 15 MB each (with an index), loadable by
GPT2LMHeadModel.from_pretrained; the tokenizer files are written by export_tokenizer.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluate import total_nll  # noqa: E402


class Attention(nn.Module):
    def __init__(self, C, n_head, dropout):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(C, 3 * C)   # x -> q, k, v (in that order, as GPT-2)
        self.c_proj = nn.Linear(C, C)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):                    # (B, T, C)
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)                          # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,       # (B, nh, T, hd)
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, C, dropout):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        # tanh GELU == transformers' 'gelu_new'
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, C, n_head, dropout, eps):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = Attention(C, n_head, dropout)
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = MLP(C, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT2LMHeadModel's math and parameter names (Linear instead of Conv1D: weights transposed)."""

    def __init__(self, vocab_size, n_positions, n_embd, n_layer, n_head, dropout, eps=1e-5):
        super().__init__()
        self.n_positions = n_positions
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(n_positions, n_embd),
            drop=nn.Dropout(dropout),
            h=nn.ModuleList(Block(n_embd, n_head, dropout, eps) for _ in range(n_layer)),
            ln_f=nn.LayerNorm(n_embd, eps=eps),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as GPT-2
        # GPT-2 init: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer), zero biases.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx):                  # (B, T) int64 -> (B, T, V) logits
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def n_params(model):
    return sum(p.numel() for p in model.parameters())  # tied wte/lm_head counted once


def hf_config(args):
    from transformers import GPT2Config
    return GPT2Config(vocab_size=256, n_positions=args.block, n_embd=args.n_embd, n_layer=args.n_layer,
                      n_head=args.n_head, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                      resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout,
                      tie_word_embeddings=True, bos_token_id=None, eos_token_id=None, pad_token_id=None)


def export_hf(model, args, out_dir: Path):
    """Copy the weights into GPT2LMHeadModel, check its logits against ours, save f16 safetensors."""
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel(hf_config(args)).eval()
    ours = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    sd = {}
    for k, v in ours.items():
        if k == "lm_head.weight":
            continue  # tied to transformer.wte.weight
        if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t().contiguous()           # nn.Linear [out, in] -> Conv1D [in, out]
        sd[k] = v
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(".attn.bias")]
    assert not missing and not unexpected, (missing, unexpected)
    # Same function: compare on CPU in float32.
    ref = GPT(256, args.block, args.n_embd, args.n_layer, args.n_head, 0.0).eval()
    ref.load_state_dict(ours)
    x = torch.randint(0, 256, (2, args.block), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (hf(input_ids=x).logits - ref(x)).abs().max().item()
    assert err < 1e-3, f"exported model differs from the trained one: max |dlogit| {err}"
    hf.half().save_pretrained(out_dir, safe_serialization=True, max_shard_size="15MB")
    (out_dir / "generation_config.json").unlink(missing_ok=True)  # defaults only; not needed
    return err


def export_tokenizer(out_dir: Path):
    """Byte-level GPT-2 BPE with no merges: vocab.json maps bytes_to_unicode(byte) -> byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    symbol = dict(zip(bs, (chr(c) for c in cs)))          # GPT-2's bytes_to_unicode
    vocab = {symbol[b]: b for b in range(256)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=".train", help="folder with train.txt and val.txt (prepare.py)")
    ap.add_argument("--out", default=".train/run", help="run folder: metrics.json, final/")
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-head", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=384)
    ap.add_argument("--block", type=int, default=512, help="context length = n_positions")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup-iters", type=int, default=200)
    ap.add_argument("--max-iters", type=int, default=5000, help="0: choose from --time-limit")
    ap.add_argument("--time-limit", type=float, default=3600.0, help="seconds for the whole script")
    ap.add_argument("--reserve", type=float, default=25.0, help="seconds kept for the final eval and export")
    ap.add_argument("--eval-interval", type=int, default=250)
    ap.add_argument("--log-interval", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    t_start = time.time()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    amp = torch.autocast(device_type=device, dtype=torch.bfloat16)

    train_bytes = (Path(args.data) / "train.txt").read_bytes()
    val_text = (Path(args.data) / "val.txt").read_text(encoding="utf-8")
    data = torch.frombuffer(bytearray(train_bytes), dtype=torch.uint8).to(device)
    T, B = args.block, args.batch_size
    gen = torch.Generator().manual_seed(args.seed)          # batch positions: CPU RNG, seeded
    offs = torch.arange(T + 1, device=device)

    def get_batch(g):
        ix = torch.randint(0, len(data) - T - 1, (B,), generator=g).to(device)
        chunk = data[ix[:, None] + offs].long()              # (B, T+1)
        return chunk[:, :-1], chunk[:, 1:]

    # A fixed sample of training windows, scored like the validation text (no dropout).
    train_probe = train_bytes[len(train_bytes) // 3: len(train_bytes) // 3 + 200_000]

    model = GPT(256, T, args.n_embd, args.n_layer, args.n_head, args.dropout).to(device)
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, params {n_params(model):,}, train {len(train_bytes):,} bytes, "
          f"val {len(val_text):,} chars", flush=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.99), fused=(device == "cuda"))
    step_model = model if args.no_compile else torch.compile(model)

    def evaluate():
        model.eval()
        with amp:
            val = total_nll(model, val_text.encode("utf-8"), T, batch_size=64, device=device) / len(val_text)
            tr = total_nll(model, train_probe, T, batch_size=64, device=device) / len(train_probe)
        model.train()
        return val, tr

    metrics = {"args": vars(args), "params": n_params(model), "train_bytes": len(train_bytes),
               "val_chars": len(val_text), "evals": [], "train": []}

    def save_metrics():
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")

    def log_eval(it, train_loss=None):
        t0 = time.time()
        val, tr = evaluate()
        dt = time.time() - t0
        metrics["evals"].append({"iter": it, "tokens": it * B * T, "elapsed_s": round(time.time() - t_start, 1),
                                 "val_nats_per_char": val, "train_probe_nats_per_char": tr})
        save_metrics()
        print(f"eval iter {it}: val (Hamlet) {val:.4f} nats/char, train probe {tr:.4f} ({dt:.1f} s)", flush=True)
        return dt

    max_iters = args.max_iters
    eval_time = log_eval(0)
    it, t_rate, loss_acc, n_acc = 0, None, 0.0, 0
    t_log = time.time()

    def lr_at(i):
        if i < args.warmup_iters:
            return args.lr * (i + 1) / args.warmup_iters
        if not max_iters:
            return args.lr
        p = min(1.0, (i - args.warmup_iters) / max(1, max_iters - args.warmup_iters))
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * p))

    stopped_by_time = False
    while True:
        if max_iters and it >= max_iters:
            break
        if time.time() - t_start > args.time_limit - args.reserve:
            stopped_by_time = True
            print(f"time limit reached at iter {it}", flush=True)
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        x, y = get_batch(gen)
        with amp:
            try:
                logits = step_model(x)
            except Exception as e:  # torch.compile unavailable here: train eagerly, same math
                if step_model is model:
                    raise
                print(f"torch.compile failed ({type(e).__name__}: {e}); training without it", flush=True)
                step_model = model
                logits = model(x)
            loss = F.cross_entropy(logits.float().view(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        it += 1
        loss_acc += loss.detach()
        n_acc += 1

        # Size the run to the time limit once compilation is over and the speed is steady.
        if it == 50 and device == "cuda":
            torch.cuda.synchronize()
            t_rate = time.time()
        if not max_iters and it == args.warmup_iters:
            if device == "cuda":
                torch.cuda.synchronize()
            sec_per_iter = (time.time() - t_rate) / (it - 50) if t_rate else 1.0
            left = args.time_limit - args.reserve - (time.time() - t_start) - 5.0
            per_iter = sec_per_iter + eval_time / args.eval_interval
            max_iters = it + int(left / per_iter)
            metrics["max_iters_auto"] = max_iters
            metrics["sec_per_iter"] = sec_per_iter
            print(f"{sec_per_iter * 1e3:.1f} ms/iter ({B * T / sec_per_iter / 1e6:.2f} M tokens/s), "
                  f"eval {eval_time:.1f} s -> max_iters {max_iters} "
                  f"({max_iters * B * T / 1e6:.0f} M tokens, {max_iters * B * T / len(train_bytes):.1f} epochs)",
                  flush=True)

        if it % args.log_interval == 0:
            l = (loss_acc / n_acc).item()
            dt = (time.time() - t_log) / n_acc
            metrics["train"].append({"iter": it, "loss": l, "lr": lr_at(it - 1)})
            print(f"iter {it}: loss {l:.4f}, lr {lr_at(it - 1):.2e}, {dt * 1e3:.1f} ms/iter", flush=True)
            loss_acc, n_acc, t_log = 0.0, 0, time.time()
        if it % args.eval_interval == 0:
            eval_time = log_eval(it)

    if not metrics["evals"] or metrics["evals"][-1]["iter"] != it:
        log_eval(it)
    metrics.update(final_iter=it, max_iters=max_iters, stopped_by_time=stopped_by_time,
                   train_seconds=round(time.time() - t_start, 1),
                   device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
                   torch=torch.__version__)
    final = out / "final"
    err = export_hf(model, args, final)
    export_tokenizer(final)
    metrics["export_max_abs_logit_diff"] = err
    save_metrics()
    print(f"done: {it} iters in {time.time() - t_start:.0f} s; "
          f"val {metrics['evals'][-1]['val_nats_per_char']:.4f} nats/char; exported to {final} "
          f"(max |dlogit| vs HF {err:.2e})", flush=True)


if __name__ == "__main__":
    main()
