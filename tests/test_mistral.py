"""Mistral, and Qwen2 / Qwen3 with a sliding window, against Hugging Face transformers
(webgpt/arch/llama.py: each layer's window as the family's config class makes layer_types).

Models written by transformers itself (MistralForCausalLM: a window on every layer;
Qwen2ForCausalLM with use_sliding_window: the layers from max_window_layers on), the windows
shorter than the prompt; tests/familycheck.py has the checks and tolerances. The window is a
mask over the keys (transformers' boundary: key j is seen from query i when i - W < j <= i); the
KV cache keeps the whole context. Also: which layers slide, for the published configs and the
keys' combinations, as transformers' config classes say.
"""

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import familycheck  # noqa: E402
from webgpt.config import parse_config  # noqa: E402
from webgpt.errors import ModelFolderError  # noqa: E402

# name -> (transformers class, config keys, file dtype, layouts checked: one each, as the window
# is the same option of the same kernels as Gemma's, Phi-3's and SmolLM3's, checked on both)
MODELS = {
    # Mistral 7B's shape scaled down: GQA 4:1, head_dim 24 (4 x 24 != 64), a window of 6.
    "mistral": ("MistralForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=24, sliding_window=6, max_position_embeddings=96),
        "float32", ("gpu",)),
    # Qwen2 with q/k/v biases, its second layer sliding (max_window_layers 1).
    "qwen2-window": ("Qwen2ForCausalLM", dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, use_sliding_window=True, sliding_window=5, max_window_layers=1,
        tie_word_embeddings=True, max_position_embeddings=96), "float32", ("cpu",)),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cls, keys, dtype, _ = MODELS[name]
            cache[name] = familycheck.make(tmp_path_factory.mktemp(name), cls, keys, dtype)
        return cache[name]

    return get


@pytest.mark.parametrize("name,layout", [(n, lay) for n, m in MODELS.items() for lay in m[3]])
def test_matches_transformers(adapter, made, name, layout):
    familycheck.check(made(name), layout, name)


BASE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300, max_position_embeddings=4096)


@pytest.mark.parametrize("model_type,keys", [
    ("mistral", {"sliding_window": 4096}),                 # Mistral-7B-v0.1
    ("mistral", {"sliding_window": None}),                 # v0.2, v0.3
    ("mistral", {}),                                       # MistralConfig's default: 4096
    ("qwen2", {"use_sliding_window": False, "sliding_window": 131072,
               "max_window_layers": 28}),                  # Qwen2.5's published configs
    ("qwen2", {"use_sliding_window": True, "sliding_window": 512, "max_window_layers": 2}),
    ("qwen2", {"use_sliding_window": True}),               # the defaults: 4096 from layer 28
    ("qwen3", {"use_sliding_window": True, "sliding_window": 64, "max_window_layers": 1}),
    ("qwen3", {"use_sliding_window": True, "sliding_window": 64,
               "layer_types": ["full_attention", "sliding_attention"] * 2}),
])
def test_which_layers_slide_as_transformers(model_type, keys):
    d = dict(BASE, model_type=model_type, **keys)
    ours = parse_config(json.dumps(d))
    hf = transformers.AutoConfig.for_model(**d)
    types = getattr(hf, "layer_types", None) or ["sliding_attention"] * hf.num_hidden_layers
    window = hf.sliding_window
    want = tuple(window if t == "sliding_attention" and window else 0 for t in types)
    assert (ours.windows or (0,) * 4) == want


def test_sliding_layers_without_a_window_are_refused():
    d = dict(BASE, model_type="qwen2", layer_types=["sliding_attention"] * 4)
    with pytest.raises(ModelFolderError, match="use_sliding_window is not set"):
        parse_config(json.dumps(d))
