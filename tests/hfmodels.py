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


def hf_model(cls, keys, seed=0, vocab_size=300):
    """A random-init transformers model of class `cls` (e.g. "Qwen3ForCausalLM")."""
    import torch
    import transformers

    config_cls = getattr(transformers, cls.replace("ForCausalLM", "Config"))
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
