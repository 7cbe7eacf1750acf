"""webgpt.load(folder, quantize="q8" | "q4"): float weights quantized on the GPU as they stream in
(shaders/quantize.wgsl) are bit for bit what `build.py quantize` (webgpt.tools.quantize, numpy)
writes: every matrix buffer of the model loaded with quantize= equals, byte for byte, the one
loaded from the folder quantize_folder wrote, and so do the logits. f32, f16 and bf16 files; a
GPT-2 (Conv1D matrices, transposed on the way) and a Llama (rows); rows with an odd number of
blocks; windows of rows (a staging buffer smaller than the matrix).
"""

import asyncio
import os

import numpy as np
import pytest

import hfmodels
from refmodels import tokenizer_files

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import webgpt  # noqa: E402
from webgpt.errors import ModelFolderError  # noqa: E402
from webgpt.model import weights as weights_module  # noqa: E402
from webgpt.tools.quantize import quantize_folder  # noqa: E402


def run(coro):
    return asyncio.run(coro)


async def _buffers(model):
    out = {}
    for name, m in sorted({**model.weight_store.mats, **model.weight_store.member_mats}.items()):
        for k, part in enumerate(m.parts):
            out[(name, k)] = bytes(await model.device.read(part[0], 0, part[0].size))
    return out


def gpt2_folder(path, dtype):
    cfg = transformers.GPT2Config(vocab_size=300, n_positions=64, n_embd=96, n_layer=2,
                                  n_head=3, initializer_range=0.2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).to(getattr(torch, dtype))
    model.save_pretrained(path)
    vocab, merges = tokenizer_files(300)
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(vocab)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write(merges)
    return str(path)


CASES = {
    # name -> (maker, dtype, bits, block)
    "gpt2 f32 q8": ("gpt2", "float32", 8, 32),
    "gpt2 f16 q4 (block 16)": ("gpt2", "float16", 4, 16),
    "llama bf16 q4": ("llama", "bfloat16", 4, 32),
    "llama f32 q8 (3 blocks a row)": ("llama", "float32", 8, 32),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bit_identical_to_build_py_quantize(gpu_device, tmp_path, monkeypatch, case):
    maker, dtype, bits, block = CASES[case]
    src = str(tmp_path / "src")
    if maker == "gpt2":
        gpt2_folder(src, dtype)
    else:
        keys = dict(hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                    num_attention_heads=3, num_key_value_heads=1, head_dim=32,
                    tie_word_embeddings=False)
        hfmodels.write_folder(src, "LlamaForCausalLM", keys, dtype)
    dst = str(tmp_path / "q")
    quantize_folder(src, dst, bits, block)
    # Windows of a few rows, so that the row-window path runs more than once per matrix.
    monkeypatch.setattr(weights_module, "STAGING", 4096)
    ids = [1, 5, 9, 200, 33, 7]

    async def go():
        a = await webgpt.load(src, device=gpu_device, quantize=(bits, block), layout="gpu")
        b = await webgpt.load(dst, device=gpu_device, layout="gpu")
        try:
            assert a.weights == b.weights == f"q{bits}"
            return (await _buffers(a), await _buffers(b), np.asarray(await a.logits(ids)),
                    np.asarray(await b.logits(ids)))
        finally:
            a.release()
            b.release()

    mine, theirs, la, lb = run(go())
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key] == theirs[key], key
    assert np.array_equal(la, lb)
    print(f"{case}: {len(mine)} matrix buffers identical, logits identical")


def test_refusals(tmp_path):
    src = str(tmp_path / "src")
    keys = dict(hidden_size=40, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, head_dim=20)
    hfmodels.write_folder(src, "LlamaForCausalLM", keys, "float32")
    with pytest.raises(ModelFolderError, match="rows of 40 values"):
        run(webgpt.load(src, quantize="q4"))
    with pytest.raises(ValueError, match="quantize must be 'q8' or 'q4'"):
        run(webgpt.load(src, quantize="q3"))


def test_cli_quantize_flag_gives_the_quantized_folders_text(adapter):
    """`generate --quantize q4` on the shipped f16 model prints what its shipped q4 copy (made
    by build.py quantize) prints."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def generate(*args):
        r = subprocess.run([sys.executable, "-m", "webgpt", "generate", "--prompt", "ROMEO:",
                            "-n", "24", "--temperature", "0", *args], capture_output=True,
                           text=True, cwd=os.path.join(repo, "py"), timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout

    weights = os.path.join(repo, "weights")
    assert generate("--model", os.path.join(weights, "shakespeare-char"), "--quantize", "q4") == \
        generate("--model", os.path.join(weights, "shakespeare-char-q4"))
