"""Llama-family model folders written by transformers itself (random weights, fixed seed), with
a small byte-level BPE tokenizer.json trained by the `tokenizers` library: the reference side of
tests/test_llama.py, and the Llama- and Qwen3-shaped models of the browser tests.

Needs torch, transformers and tokenizers (requirements-test.txt).
"""

import json
import os

CORPUS = ["ROMEO: But soft, what light through yonder window breaks? It is the east. " * 8,
          "The quick brown fox jumps over the lazy dog; 0123456789 times, said she. " * 8]

# Small shapes for the page (SwiftShader runs them in milliseconds per token).
PAGE_MODELS = {
    "tiny-llama": ("LlamaForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
        max_position_embeddings=128), "float32"),
    "tiny-qwen3": ("Qwen3ForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, tie_word_embeddings=False,
        max_position_embeddings=128), "float16"),
    # Gemma 3 (GeGLU, four (1 + w) norms a layer, q/k norms, its sliding layer's own rope table,
    # a window shorter than the page's run) with a final soft-cap.
    "tiny-gemma3": ("Gemma3ForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, sliding_window=4, final_logit_softcapping=5.0,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=128,
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0,
                                            "rope_theta": 100000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
        "float32"),
    # Phi-4-mini's kind: fused qkv and gate_up, 3/4 of each head rotated, LongRoPE, a window.
    "tiny-phi3": ("Phi3ForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, partial_rotary_factor=0.75, sliding_window=6,
        original_max_position_embeddings=64, max_position_embeddings=256,
        tie_word_embeddings=True,
        rope_scaling={"type": "longrope", "short_factor": [1.0 + i / 4 for i in range(12)],
                      "long_factor": [4.0] * 12}), "float16"),
}


def write_tokenizer(path):
    """A 300-token byte-level BPE (GPT-2 style pre-tokenizer) trained here, as tokenizer.json,
    with a tokenizer_config.json naming <|endoftext|> as eos. Returns the tokenizers object."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "bos_token": None}, f)
    return tok


# transformers' config class of a model class, where it is not the class's name with Config for
# ForCausalLM.
CONFIG_CLASSES = {"Gemma3ForCausalLM": "Gemma3TextConfig"}


def hf_model(cls, keys, seed=0, vocab_size=300):
    """A random-init transformers model of class `cls` (e.g. "Qwen3ForCausalLM")."""
    import torch
    import transformers

    config_cls = getattr(transformers, CONFIG_CLASSES.get(cls, cls.replace("ForCausalLM",
                                                                           "Config")))
    keys = dict(keys)
    keys.setdefault("max_position_embeddings", 96)
    cfg = config_cls(vocab_size=vocab_size, initializer_range=0.2, eos_token_id=None,
                     bos_token_id=None, pad_token_id=None, attn_implementation="eager", **keys)
    torch.manual_seed(seed)
    return getattr(transformers, cls)(cfg).eval()


def write_folder(path, cls, keys, dtype="float32", seed=0):
    """A model folder as save_pretrained writes it, plus the tokenizer files; returns path."""
    import torch

    os.makedirs(path, exist_ok=True)
    write_tokenizer(path)
    hf_model(cls, keys, seed).to(getattr(torch, dtype)).save_pretrained(path)
    return str(path)


CHAT_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                             "chat_templates", "qwen2.5-instruct.jinja")
CHAT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_KEYS = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=160)


def write_chat_folder(path, seed=3):
    """An instruct-shaped folder: a random Qwen2 model, a byte-level BPE tokenizer.json with
    ChatML's special tokens, the real Qwen2.5-Instruct chat template in tokenizer_config.json,
    and generation_config.json's eos ids (<|im_end|>, <|endoftext|>).
    Returns (the transformers model, [eos ids])."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    os.makedirs(path, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=CHAT_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(CHAT_TEMPLATE, encoding="utf-8") as f:
        template = f.read()
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "bos_token": None, "pad_token": "<|endoftext|>",
                   "chat_template": template}, f)
    model = hf_model("Qwen2ForCausalLM", CHAT_KEYS, seed, vocab_size=320)
    model.save_pretrained(path)
    ends = [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": ends}, f)
    return model, ends


def family_model(cls, keys, seed=0, vocab_size=300):
    """hf_model with every norm weight drawn at random too (transformers initialises Gemma's to
    zeros and Llama's to ones, which would leave a norm's weight, and Gemma's 1 + w, untested)."""
    import torch

    model = hf_model(cls, keys, seed, vocab_size)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (0 if "Gemma" in cls else 1))
    return model


GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]


def write_gemma_chat_folder(path, template, keys, seed=5):
    """An instruct-shaped Gemma 3 folder: a random Gemma3ForCausalLM (family_model), a byte-level
    BPE tokenizer.json with Gemma's special tokens that prepends <bos> as Gemma's does, the real
    Gemma 3 chat template `template` in tokenizer_config.json, and generation_config.json's eos
    ids (<eos>, <end_of_turn>) as Gemma's. Returns (the transformers model, [eos ids])."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    os.makedirs(path, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=GEMMA_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                       special_tokens=[("<bos>", bos)])
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                   "chat_template": template}, f)
    model = family_model("Gemma3ForCausalLM", keys, seed, vocab_size=320)
    model.save_pretrained(path)
    ends = [tok.token_to_id("<eos>"), tok.token_to_id("<end_of_turn>")]
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": ends}, f)
    return model, ends
