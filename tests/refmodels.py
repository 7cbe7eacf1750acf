"""Reference GPT-2 models for the tests: seeded weights and Hugging Face style model folders.

Needs numpy and safetensors only (no torch, no transformers), so CI can rebuild, from a seed,
the very folders that tests/make_fixtures.py fed to transformers.

    weights = make_weights(cfg, seed)              # {HF tensor name: np.ndarray}, float32
    write_folder(folder, cfg, weights)             # config.json, model.safetensors, vocab.json, merges.txt

`cfg` is a dict with the GPT2Config keys n_layer, n_head, n_embd, vocab_size, n_positions.
"""

import hashlib
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")

# The GPT-2 vocabulary as vendored in the package (encoder.json / vocab.bpe bytes under their
# Hugging Face names).
VOCAB_DIR = os.path.join(REPO, "py", "webgpt", "data")
GPT2_VOCAB_SIZE = 50257  # 256 byte symbols + 50000 merges + <|endoftext|>

# The model configurations the fixtures cover. Sizes are deliberately not multiples of the
# usual workgroup sizes (64, 256): C = 96 with 3 heads of 32, V = 1000, 517, 77.
CONFIGS = {
    # (a) tiny and odd; also the CLI folder (hf_tiny) and a full-context (T = n_positions) case
    "tiny": dict(n_layer=2, n_head=3, n_embd=96, vocab_size=1000, n_positions=64),
    # (b) short context: generating past n_positions must warn, not crash
    "ctx40": dict(n_layer=3, n_head=4, n_embd=128, vocab_size=517, n_positions=40),
    # (c) one layer, one head, C = 20, V = 77 (fewer tokens than the 256 byte symbols)
    "mini": dict(n_layer=1, n_head=1, n_embd=20, vocab_size=77, n_positions=48),
    # (d) GPT-2 124M's shape (C = 768, 12 heads, full vocabulary and context), 2 layers
    "gpt2_2l": dict(n_layer=2, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024),
}


def make_weights(cfg, seed):
    """Every tensor GPT2LMHeadModel saves, float32, from numpy's default_rng(seed).

    Not HF's init, whose zero biases and unit layernorms would hide bugs, and not its 0.02 for
    every matrix either: with that, attention scores are ~0.02^2 C (uniform attention hides a
    wrong mask or scale), GELU inputs ~0.2 (GELU near linear), and each token's own embedding
    dominates the residual, so through the tied lm_head a greedy run repeats one token forever
    (the cache would hardly be tested). Here:

        matrices (c_attn, c_proj, c_fc)   N(0, 1/fan_in)   outputs O(1): peaked attention, real GELU
        wte                               N(0, 0.1)        logits O(1-10)
        wpe                               N(0, 0.4)        greedy runs of 32 tokens vary (~15-20
                                                           distinct tokens) and depend on the prompt
        biases N(0, 0.02); layernorm weights 1 + N(0, 0.1), biases N(0, 0.05)

    lm_head.weight is tied to wte and, as in HF's own files, not stored. Conv1D weights are
    [in, out] as HF stores them. The draw order is fixed (the order of the dict), so the same
    seed gives the same bytes on every machine (numpy's Generator streams are stable).
    """
    rng = np.random.default_rng(seed)
    C, V, P, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"], cfg["n_layer"]
    assert C % cfg["n_head"] == 0, "n_embd must be a multiple of n_head"
    w = {}

    def normal(name, shape, std, mean=0.0):
        w[name] = (mean + std * rng.standard_normal(shape)).astype(np.float32)

    normal("transformer.wte.weight", (V, C), 0.1)
    normal("transformer.wpe.weight", (P, C), 0.4)
    for i in range(L):
        h = f"transformer.h.{i}."
        normal(h + "ln_1.weight", (C,), 0.1, mean=1.0)
        normal(h + "ln_1.bias", (C,), 0.05)
        normal(h + "attn.c_attn.weight", (C, 3 * C), C**-0.5)
        normal(h + "attn.c_attn.bias", (3 * C,), 0.02)
        normal(h + "attn.c_proj.weight", (C, C), C**-0.5)
        normal(h + "attn.c_proj.bias", (C,), 0.02)
        normal(h + "ln_2.weight", (C,), 0.1, mean=1.0)
        normal(h + "ln_2.bias", (C,), 0.05)
        normal(h + "mlp.c_fc.weight", (C, 4 * C), C**-0.5)
        normal(h + "mlp.c_fc.bias", (4 * C,), 0.02)
        normal(h + "mlp.c_proj.weight", (4 * C, C), (4 * C) ** -0.5)
        normal(h + "mlp.c_proj.bias", (C,), 0.02)
    normal("transformer.ln_f.weight", (C,), 0.1, mean=1.0)
    normal("transformer.ln_f.bias", (C,), 0.05)
    return w


def weights_digest(weights, dtype="float32"):
    """sha256 over names, shapes and bytes (after casting to dtype), in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(weights):
        a = np.ascontiguousarray(weights[name].astype(dtype))
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def config_dict(cfg):
    """config.json as transformers writes a GPT2LMHeadModel's GPT2Config (5.x keys), plus n_ctx,
    which older transformers wrote and many folders on the hub still carry."""
    V = cfg["vocab_size"]
    # GPT-2's <|endoftext|> is id 50256; a truncated vocabulary does not have it, and
    # transformers warns about an eos/bos id outside the vocabulary, so leave them unset there.
    eos = 50256 if V > 50256 else None
    return {
        "activation_function": "gelu_new",
        "add_cross_attention": False,
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": eos,
        "dtype": "float32",
        "embd_pdrop": 0.1,
        "eos_token_id": eos,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": cfg["n_positions"],
        "n_embd": cfg["n_embd"],
        "n_head": cfg["n_head"],
        "n_inner": None,
        "n_layer": cfg["n_layer"],
        "n_positions": cfg["n_positions"],
        "pad_token_id": None,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "tie_word_embeddings": True,
        "transformers_version": "5.24.0",
        "use_cache": True,
        "vocab_size": V,
    }


def tokenizer_files(vocab_size, vocab_dir=None):
    """(vocab.json text, merges.txt text) for a GPT-2 vocabulary cut to vocab_size tokens.

    GPT-2's ids 0..255 are the byte symbols and id 256+i is the result of merge i, so the first
    V ids and the first V-256 merges form a consistent BPE vocabulary (below 256, the first V byte
    symbols and no merges: bytes beyond them cannot be encoded). The full size is the files as
    they are.
    """
    vocab_dir = vocab_dir or VOCAB_DIR
    with open(os.path.join(vocab_dir, "vocab.json"), encoding="utf-8") as f:
        vocab_text = f.read()
    with open(os.path.join(vocab_dir, "merges.txt"), encoding="utf-8") as f:
        merges_text = f.read()
    if vocab_size == GPT2_VOCAB_SIZE:
        return vocab_text, merges_text
    if vocab_size > GPT2_VOCAB_SIZE:
        raise ValueError(f"vocab_size {vocab_size} is larger than GPT-2's {GPT2_VOCAB_SIZE}")
    by_id = sorted(json.loads(vocab_text).items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id[:GPT2_VOCAB_SIZE]] == list(range(GPT2_VOCAB_SIZE))
    vocab = dict(by_id[:vocab_size])
    lines = merges_text.split("\n")
    assert lines[0].startswith("#version"), "merges.txt should start with its #version line"
    merges = [line for line in lines[1:] if line]
    n_merges = max(0, vocab_size - 256)
    for i, line in enumerate(merges[:n_merges]):
        a, b = line.split(" ")
        assert by_id[256 + i][0] == a + b, f"merge {i} ({line!r}) is not token {256 + i}"
    kept = [lines[0]] + merges[:n_merges]
    return json.dumps(vocab, ensure_ascii=False), "\n".join(kept) + "\n"


def write_folder(folder, cfg, weights, dtype="float32", tokenizer=True, vocab_dir=None):
    """Write a Hugging Face style GPT-2 folder: config.json, model.safetensors and, with
    tokenizer=True, vocab.json + merges.txt cut to cfg's vocab_size. Returns the folder."""
    from safetensors.numpy import save_file

    assert dtype in ("float32", "float16"), dtype
    os.makedirs(folder, exist_ok=True)
    config = config_dict(cfg)
    config["dtype"] = dtype
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    tensors = {name: np.ascontiguousarray(a.astype(dtype)) for name, a in weights.items()}
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    if tokenizer:
        vocab_text, merges_text = tokenizer_files(cfg["vocab_size"], vocab_dir)
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
            f.write(vocab_text)
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
            f.write(merges_text)
    return folder


def load_fixture(name):
    """(meta dict from <name>.json, arrays from <name>.npz) of a fixture in tests/fixtures/."""
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as f:
        meta = json.load(f)
    with np.load(os.path.join(FIXTURES, name + ".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays
