"""`build.py import`: nanoGPT checkpoints and original WebGPT weight folders into model folders.

The sources are made here, in their own formats:

- nanoGPT: a GPT module written as nanoGPT's model.py writes it (nn.Linear [out, in], LayerNorm
  with optional bias, the lm_head tied to wte), one AdamW step so the checkpoint carries real
  optimizer state, then torch.save of train.py's dict (model, optimizer, model_args, iter_num,
  best_val_loss, config), the state dict's names with torch.compile's `_orig_mod.` prefix.
  "Before" is that module's forward in torch; "after" is webgpt on the converted folder. The
  module's MLP uses the tanh GELU here so that the two compute the same function (nanoGPT's own
  nn.GELU() is exact: that difference is measured separately and printed).
- WebGPT: params_gpt.json + one float32 <name>_gpt.bin per tensor, matrices [out, in], as its
  conversion script dumps a state dict. "Before" is numpy's GPT-2 forward (tests/npref.py) on the
  weights the folder was made from.

Tolerance on logits: max |after - before| <= 1e-4 * max(1, max |before|) (f32 on both sides, as in
test_model.py); the max error is printed.
"""

import asyncio
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import npref
import refmodels
from conftest import missing

import webgpt
from webgpt.tools import importers
from webgpt.tokenizer import Tokenizer

try:
    import torch
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("torch is not installed (pip install -r requirements-test.txt)",
                allow_module_level=True)
nn, F = torch.nn, torch.nn.functional

RTOL = 1e-4
# The 65 characters of nanoGPT's shakespeare_char.
CHARS = sorted(set("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


@pytest.fixture(scope="module")
def adapter():
    try:
        return asyncio.run(webgpt.gpu.request_device()).describe()
    except (ImportError, webgpt.gpu.GPUError) as e:
        missing(f"no WebGPU adapter through wgpu: {e}")


def check_close(label, after, before):
    after = np.asarray(after, np.float64)
    assert after.shape == before.shape, f"{label}: shape {after.shape}, before {before.shape}"
    err = float(np.abs(after - before).max())
    scale = float(np.abs(before).max())
    tol = RTOL * max(1.0, scale)
    print(f"{label}: max |after - before| = {err:.3g}, max |before| = {scale:.3g}, tolerance {tol:.3g}")
    assert err <= tol, f"{label}: max |after - before| = {err:.3g} > {tol:.3g}"
    return err


def webgpt_logits(folder, ids):
    async def run():
        model = await webgpt.load(str(folder))
        return np.asarray(await model.logits(list(ids))), model.tokenizer
    return asyncio.run(run())


# ---------------------------------------------------------------- nanoGPT, as its model.py has it


class LayerNorm(nn.Module):
    def __init__(self, n, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, a, mask_buffer):
        super().__init__()
        self.c_attn = nn.Linear(a["n_embd"], 3 * a["n_embd"], bias=a["bias"])
        self.c_proj = nn.Linear(a["n_embd"], a["n_embd"], bias=a["bias"])
        self.n_head, self.n_embd = a["n_head"], a["n_embd"]
        if mask_buffer:  # nanoGPT without flash attention keeps its causal mask as a buffer
            P = a["block_size"]
            self.register_buffer("bias", torch.tril(torch.ones(P, P)).view(1, 1, P, P))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, a, gelu):
        super().__init__()
        self.c_fc = nn.Linear(a["n_embd"], 4 * a["n_embd"], bias=a["bias"])
        self.gelu = nn.GELU(approximate=gelu)
        self.c_proj = nn.Linear(4 * a["n_embd"], a["n_embd"], bias=a["bias"])

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, a, gelu, mask_buffer):
        super().__init__()
        self.ln_1 = LayerNorm(a["n_embd"], a["bias"])
        self.attn = CausalSelfAttention(a, mask_buffer)
        self.ln_2 = LayerNorm(a["n_embd"], a["bias"])
        self.mlp = MLP(a, gelu)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, a, gelu="tanh", mask_buffer=False):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(a["vocab_size"], a["n_embd"]),
            wpe=nn.Embedding(a["block_size"], a["n_embd"]),
            drop=nn.Dropout(0.0),
            h=nn.ModuleList([Block(a, gelu, mask_buffer) for _ in range(a["n_layer"])]),
            ln_f=LayerNorm(a["n_embd"], a["bias"]),
        ))
        self.lm_head = nn.Linear(a["n_embd"], a["vocab_size"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT does

    def forward(self, idx):
        t = self.transformer
        x = t.drop(t.wte(idx) + t.wpe(torch.arange(idx.size(1))))
        for block in t.h:
            x = block(x)
        return self.lm_head(t.ln_f(x))


def nanogpt_args(cfg, bias=True):
    return dict(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                block_size=cfg["n_positions"], bias=bias, vocab_size=cfg["vocab_size"], dropout=0.0)


def make_nanogpt(path, cfg, seed, bias=True, compiled=True, mask_buffer=False, dataset="openwebtext"):
    """Train one AdamW step from refmodels' seeded weights and torch.save a train.py checkpoint.
    Returns (the module, model_args)."""
    torch.manual_seed(seed)
    args = nanogpt_args(cfg, bias)
    model = GPT(args, mask_buffer=mask_buffer)
    w = refmodels.make_weights(cfg, seed)
    sd = {}
    for name, a in w.items():
        base = name.rsplit(".", 1)[0]
        if base.rsplit(".", 1)[-1] in ("c_attn", "c_proj", "c_fc") and name.endswith(".weight"):
            a = a.T  # GPT-2's Conv1D [in, out] -> nn.Linear [out, in]
        if bias or not name.endswith(".bias"):
            sd[name] = torch.from_numpy(np.ascontiguousarray(a))
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict(sd, strict=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    x = torch.randint(0, cfg["vocab_size"], (2, 8))
    loss = F.cross_entropy(model(x).view(-1, cfg["vocab_size"]), x.roll(-1, 1).view(-1))
    loss.backward()
    opt.step()
    state = model.state_dict()
    if compiled:  # what torch.compile'd models save
        state = {"_orig_mod." + k: v for k, v in state.items()}
    torch.save({"model": state, "optimizer": opt.state_dict(), "model_args": args, "iter_num": 1,
                "best_val_loss": loss.detach(), "config": {"dataset": dataset, "dtype": "bfloat16",
                                                           "compile": compiled}}, path)
    return model.eval(), args


def torch_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([list(ids)])).double().numpy()[0]


@pytest.fixture(scope="module")
def gpt2_vocab_ckpt(tmp_path_factory):
    """GPT-2 BPE with nanoGPT's padded vocabulary (50304), bias=False, compiled, the mask buffer
    saved."""
    cfg = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=50304, n_positions=48)
    path = str(tmp_path_factory.mktemp("nanogpt") / "ckpt.pt")
    model, _ = make_nanogpt(path, cfg, 11, bias=False, mask_buffer=True)
    return path, model


@pytest.fixture(scope="module")
def char_ckpt(tmp_path_factory):
    """A character-level model: out/ckpt.pt and data/shakespeare_char/meta.pkl, as nanoGPT lays
    them out."""
    cfg = dict(refmodels.CONFIGS["tiny"], vocab_size=len(CHARS))
    root = tmp_path_factory.mktemp("nanoGPT")
    os.makedirs(root / "out")
    os.makedirs(root / "data" / "shakespeare_char")
    path = str(root / "out" / "ckpt.pt")
    model, _ = make_nanogpt(path, cfg, 12, dataset="shakespeare_char")
    meta = {"vocab_size": len(CHARS), "itos": dict(enumerate(CHARS)),
            "stoi": {c: i for i, c in enumerate(CHARS)}}
    with open(root / "data" / "shakespeare_char" / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    return path, model, str(root)


def test_reads_torch_save_without_torch(char_ckpt, tmp_path):
    """The reader gives torch.load's tensors; a conversion runs with torch not importable."""
    path, model, root = char_ckpt
    ckpt = importers.read_torch_checkpoint(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["model_args"] == ref["model_args"] and ckpt["iter_num"] == 1
    assert set(ckpt["model"]) == set(ref["model"])
    for name, t in ref["model"].items():
        np.testing.assert_array_equal(ckpt["model"][name].numpy(), t.numpy(), err_msg=name)
    assert float(ckpt["best_val_loss"].numpy()) == float(ref["best_val_loss"])

    code = ("import sys; sys.modules['torch'] = None\n"
            "from webgpt.tools.importers import import_nanogpt\n"
            f"print(import_nanogpt({path!r}, {str(tmp_path / 'out')!r})[0])\n"
            "assert sys.modules['torch'] is None\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(refmodels.REPO, "py")))
    assert r.returncode == 0, r.stderr
    assert "vocab 65 (character-level, from" in r.stdout, r.stdout


def test_nanogpt_gpt2_vocab(adapter, gpt2_vocab_ckpt, tmp_path):
    path, model = gpt2_vocab_ckpt
    out = tmp_path / "out"
    summary, notes = importers.import_nanogpt(path, str(out))
    print(summary, *notes, sep="\n")
    assert "vocab 50257 (GPT-2 BPE)" in summary
    assert any("dropped embedding rows 50257..50303" in n for n in notes)
    assert any("bias=False" in n for n in notes) and any("exact GELU" in n for n in notes)
    with open(out / "vocab.json", "rb") as a, open(os.path.join(importers.DATA, "vocab.json"), "rb") as b:
        assert a.read() == b.read()

    tok = Tokenizer.gpt2()
    ids = tok.encode("Hello world, this is webgpt importing nanoGPT.")
    after, tokenizer = webgpt_logits(out, ids)
    before = torch_logits(model, ids)
    check_close("nanoGPT GPT-2 vocab (padding dropped)", after, before[:, :50257])
    assert tokenizer.encode("Hello world") == tok.encode("Hello world")


def test_nanogpt_char_level(adapter, char_ckpt, tmp_path):
    """meta.pkl found where nanoGPT's sample.py looks (data/<dataset>/ beside out/); the folder's
    tokenizer encodes text to nanoGPT's character ids; logits match, in f32 and f16."""
    path, model, root = char_ckpt
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the checkpoint's parent folder is searched too, not just the cwd
    try:
        summary, notes = importers.import_nanogpt(path, str(tmp_path / "f32"))
        summary16, _ = importers.import_nanogpt(path, str(tmp_path / "f16"), dtype="float16")
    finally:
        os.chdir(cwd)
    print(summary, summary16, *notes, sep="\n")
    assert "vocab 65 (character-level, from" in summary and "float16" in summary16

    text = "ROMEO:\nWhat, is Caesar's cafe here?"
    stoi = {c: i for i, c in enumerate(CHARS)}
    ids = [stoi[c] for c in text]
    after, tokenizer = webgpt_logits(tmp_path / "f32", ids)
    assert tokenizer.encode(text) == ids
    assert tokenizer.decode(ids) == text
    before = torch_logits(model, ids)
    check_close("nanoGPT char-level f32", after, before)

    # f16 weights: "before" is the module with its weights rounded to f16.
    model16 = GPT(nanogpt_args(dict(refmodels.CONFIGS["tiny"], vocab_size=len(CHARS)))).eval()
    model16.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    after16, _ = webgpt_logits(tmp_path / "f16", ids)
    check_close("nanoGPT char-level f16", after16, torch_logits(model16, ids))

    # nanoGPT itself runs exact GELU: how far that is from what the folder computes.
    exact = GPT(nanogpt_args(dict(refmodels.CONFIGS["tiny"], vocab_size=len(CHARS))), gelu="none")
    exact.load_state_dict(model.state_dict())
    before_exact = torch_logits(exact.eval(), ids)
    err = float(np.abs(after - before_exact).max())
    scale = float(np.abs(before_exact).max())
    print(f"exact GELU (nanoGPT's) vs tanh GELU: max |diff| = {err:.3g}, max |logit| = {scale:.3g}")
    assert err <= 2e-3 * max(1.0, scale)


def test_nanogpt_errors(char_ckpt, tmp_path):
    path, model, root = char_ckpt
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    args = nanogpt_args(dict(refmodels.CONFIGS["tiny"], vocab_size=len(CHARS)))

    def save(name, state, **extra):
        p = str(tmp_path / name)
        torch.save({"model": state, "model_args": args, **extra}, p)
        return p

    meta = os.path.join(root, "data", "shakespeare_char", "meta.pkl")
    untied = dict(sd, **{"lm_head.weight": sd["lm_head.weight"] + 1})
    with pytest.raises(importers.ConversionError, match="lm_head.weight is not tied"):
        importers.import_nanogpt(save("untied.pt", untied), str(tmp_path / "o1"), meta_path=meta)
    turned = dict(sd, **{"transformer.h.0.attn.c_attn.weight": sd["transformer.h.0.attn.c_attn.weight"].T})
    with pytest.raises(importers.ConversionError, match=r"c_attn.weight has shape \[96, 288\], "
                                                        r"expected \[288, 96\] \(it looks transposed"):
        importers.import_nanogpt(save("turned.pt", turned), str(tmp_path / "o2"), meta_path=meta)
    with pytest.raises(importers.ConversionError, match="vocab_size 65 is not GPT-2's, and no meta.pkl"):
        importers.import_nanogpt(save("nometa.pt", sd), str(tmp_path / "o3"))
    extra = dict(sd, **{"transformer.h.0.attn.rotary.freqs": torch.zeros(4)})
    with pytest.raises(importers.ConversionError, match="rotary.freqs is not a nanoGPT GPT weight"):
        importers.import_nanogpt(save("extra.pt", extra), str(tmp_path / "o4"), meta_path=meta)
    legacy = str(tmp_path / "legacy.pt")
    torch.save({"model": sd, "model_args": args}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(importers.ConversionError, match="not a zip-format torch checkpoint"):
        importers.import_nanogpt(legacy, str(tmp_path / "o5"))
    bare = str(tmp_path / "bare.pt")
    torch.save(sd, bare)
    with pytest.raises(importers.ConversionError, match="not a nanoGPT checkpoint"):
        importers.import_nanogpt(bare, str(tmp_path / "o6"))
    wide = {"itos": {0: "a", 1: "æ", 2: "€"}}
    with open(tmp_path / "wide.pkl", "wb") as f:
        pickle.dump(wide, f)
    with pytest.raises(importers.ConversionError, match=r"'æ' \(U\+00E6\), '€' \(U\+20AC\) are "
                                                        r"not ASCII; .* only when every character "
                                                        r"is a single byte"):
        importers.import_nanogpt(path, str(tmp_path / "o7"), meta_path=str(tmp_path / "wide.pkl"))
    os.makedirs(tmp_path / "full")
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(importers.ConversionError, match="is not empty"):
        importers.import_nanogpt(path, str(tmp_path / "full"), meta_path=meta)


# ---------------------------------------------------------------- the original WebGPT


def write_webgpt(folder, cfg, w, bias=True):
    """A WebGPT weight folder as its conversion script writes one: params_gpt.json (nanoGPT's
    model_args) and <state-dict name>_gpt.bin, float32, matrices [out, in], lm_head included."""
    os.makedirs(folder)
    with open(os.path.join(folder, "params_gpt.json"), "w") as f:
        json.dump(nanogpt_args(cfg, bias), f, indent=4)
    for name, a in w.items():
        base = name.rsplit(".", 1)[0]
        if base.rsplit(".", 1)[-1] in ("c_attn", "c_proj", "c_fc") and name.endswith(".weight"):
            a = a.T
        if bias or not name.endswith(".bias"):
            np.ascontiguousarray(a, "<f4").tofile(os.path.join(folder, f"{name}_gpt.bin"))
    w["transformer.wte.weight"].astype("<f4").tofile(os.path.join(folder, "lm_head.weight_gpt.bin"))


def test_webgpt_gpt2(adapter, tmp_path):
    cfg = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=50257, n_positions=40)
    w = refmodels.make_weights(cfg, 21)
    write_webgpt(str(tmp_path / "gpt2"), cfg, w)
    summary, notes = importers.import_webgpt(str(tmp_path / "gpt2"), str(tmp_path / "out"))
    print(summary, *notes, sep="\n")
    assert "vocab 50257 (GPT-2 BPE)" in summary and not notes
    ids = Tokenizer.gpt2().encode("What is the answer to life, the universe, and everything?\n")
    after, _ = webgpt_logits(tmp_path / "out", ids)
    check_close("WebGPT gpt2", after, npref.forward(w, cfg, ids))


def test_webgpt_char_level(adapter, tmp_path):
    """WebGPT's shakespeare layout: weights/<model>/ and weights/tokenization/simple_tokens.json
    ({character: id}); bias=false (no bias files) gives zero biases."""
    cfg = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=len(CHARS), n_positions=64)
    w = refmodels.make_weights(cfg, 22)
    weights = tmp_path / "weights"
    write_webgpt(str(weights / "better_shakespeare"), cfg, w, bias=False)
    os.makedirs(weights / "tokenization")
    with open(weights / "tokenization" / "simple_tokens.json", "w", encoding="utf-8") as f:
        json.dump({c: i for i, c in enumerate(CHARS)}, f, ensure_ascii=False)
    summary, notes = importers.import_webgpt(str(weights / "better_shakespeare"), str(tmp_path / "out"))
    print(summary, *notes, sep="\n")
    assert "vocab 65 (character-level, from" in summary and any("zero biases" in n for n in notes)

    text = "WILL:\nAh, how dare you challenge me?\n"
    ids = char_ids(text)
    after, tokenizer = webgpt_logits(tmp_path / "out", ids)
    assert tokenizer.encode(text) == ids
    w0 = {k: (np.zeros_like(v) if k.endswith(".bias") else v) for k, v in w.items()}
    check_close("WebGPT char-level", after, npref.forward(w0, cfg, ids))


def char_ids(text):
    stoi = {c: i for i, c in enumerate(CHARS)}
    return [stoi[c] for c in text]


def test_webgpt_errors(tmp_path):
    cfg = dict(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, n_positions=16)
    src = str(tmp_path / "gpt2")
    write_webgpt(src, cfg, refmodels.make_weights(cfg, 23))
    pointer = os.path.join(src, "transformer.h.0.mlp.c_fc.weight_gpt.bin")
    with open(pointer, "w") as f:
        f.write("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 524288\n")
    with pytest.raises(importers.ConversionError, match="c_fc.weight_gpt.bin is a Git LFS pointer"):
        importers.import_webgpt(src, str(tmp_path / "o1"))
    with open(pointer, "wb") as f:
        f.write(b"\0" * 100)
    with pytest.raises(importers.ConversionError, match=r"c_fc.weight_gpt.bin has 100 bytes; 4096 "
                                                        r"float32 values \(16384 bytes\) were expected"):
        importers.import_webgpt(src, str(tmp_path / "o2"))
    os.remove(pointer)
    with pytest.raises(importers.ConversionError, match="h.0.mlp.c_fc.weight is missing"):
        importers.import_webgpt(src, str(tmp_path / "o3"))
    with pytest.raises(importers.ConversionError, match="params_gpt.json is missing"):
        importers.import_webgpt(str(tmp_path), str(tmp_path / "o4"))


# ---------------------------------------------------------------- the command line


def run_build(*args):
    env = dict(os.environ, WEBGPT_NO_VENV="1")
    return subprocess.run([sys.executable, "build.py", "import", *args], cwd=refmodels.REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_cli(char_ckpt, tmp_path):
    path, _, root = char_ckpt
    meta = os.path.join(root, "data", "shakespeare_char", "meta.pkl")
    r = run_build("nanogpt", path, str(tmp_path / "a"), "--meta", meta, "--dtype", "float16")
    assert r.returncode == 0, r.stderr
    assert "nanoGPT" in r.stdout and "float16" in r.stdout, r.stdout
    assert "warning: nanoGPT's MLP uses exact GELU" in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path / "a")) == ["config.json", "merges.txt", "model.safetensors",
                                                  "vocab.json"]

    r = run_build("nanogpt", path, str(tmp_path / "a"))
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "is not empty" in r.stderr, r.stderr
    r = run_build("webgpt", str(tmp_path / "nowhere"), str(tmp_path / "b"))
    assert r.returncode == 1 and r.stderr.startswith("build.py: import: "), r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


def test_torch_reader_dtypes_and_views(tmp_path):
    """bf16, f16, integer and bool storages; views with an offset and strides; a storage shared
    by two tensors; 0-d and empty tensors: as torch.load gives them."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    obj = {"bf16": base.to(torch.bfloat16), "f16": base.half(), "i64": torch.arange(5),
           "bool": torch.tensor([True, False, True]), "t": base.t(), "rows": base[1:3],
           "cols": base[:, 2:5], "same": base, "scalar": torch.tensor(2.5),
           "empty": torch.zeros(0, 3), "nested": [{"x": base[3]}], "text": "ok", "n": 3}
    path = str(tmp_path / "t.pt")
    torch.save(obj, path)
    got = importers.read_torch_checkpoint(path)
    for key, want in obj.items():
        if isinstance(want, torch.Tensor):
            want = want.float() if want.dtype == torch.bfloat16 else want
            np.testing.assert_array_equal(got[key].numpy(), want.numpy(), err_msg=key)
    np.testing.assert_array_equal(got["nested"][0]["x"].numpy(), base[3].numpy())
    assert got["text"] == "ok" and got["n"] == 3
    assert got["same"].storage is got["t"].storage  # one storage, read once
