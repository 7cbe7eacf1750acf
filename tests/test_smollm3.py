"""SmolLM3 against Hugging Face transformers (webgpt/arch/llama.py: layers without rotary
embedding, and the sliding window SmolLM3Config can give them).

A SmolLM3ForCausalLM written by transformers itself, SmolLM3-3B's shape scaled down: GQA 2:1,
every fourth layer without rotary embedding (no_rope_layers), those layers sliding
(use_sliding_window, a window shorter than the prompt), the head tied, a bf16 file;
tests/familycheck.py has the checks and tolerances. SmolLM3's tokenizer is Llama 3's
(test_hf_tokenizer checks that one on its real files); its real chat template is checked here.
"""

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import familycheck  # noqa: E402
from webgpt.config import parse_config  # noqa: E402

KEYS = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, use_sliding_window=True, sliding_window=5,
            tie_word_embeddings=True, max_position_embeddings=96)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return familycheck.make(tmp_path_factory.mktemp("smollm3"), "SmolLM3ForCausalLM", KEYS,
                            "bfloat16")


@pytest.mark.parametrize("layout", ["cpu", "gpu"])
def test_matches_transformers(adapter, made, layout):
    familycheck.check(made, layout, "smollm3-bf16")


# SmolLM3-3B's config.json (keys that matter).
SMOLLM3_3B = {
    "architectures": ["SmolLM3ForCausalLM"], "model_type": "smollm3", "hidden_act": "silu",
    "hidden_size": 2048, "intermediate_size": 11008, "max_position_embeddings": 65536,
    "num_attention_heads": 16, "num_hidden_layers": 36, "num_key_value_heads": 4,
    "no_rope_layer_interval": 4, "no_rope_layers": [int((i + 1) % 4 != 0) for i in range(36)],
    "rms_norm_eps": 1e-06, "rope_theta": 5000000.0, "sliding_window": None,
    "use_sliding_window": False, "tie_word_embeddings": True, "vocab_size": 128256,
    "layer_types": ["full_attention"] * 36}


@pytest.mark.parametrize("keys", [SMOLLM3_3B, dict(KEYS, model_type="smollm3", vocab_size=300),
                                  dict(KEYS, model_type="smollm3", vocab_size=300,
                                       no_rope_layers=[1, 0, 1, 1])],
                         ids=["smollm3-3b", "test-model", "listed"])
def test_config_read_as_transformers_reads_it(keys):
    ours = parse_config(json.dumps(keys))
    hf = transformers.SmolLM3Config(**{k: v for k, v in keys.items()
                                       if k not in ("architectures", "model_type")})
    assert ours.rope_layers == tuple(bool(v) for v in hf.no_rope_layers)
    want = tuple(hf.sliding_window if t == "sliding_attention" else 0 for t in hf.layer_types)
    assert (ours.windows or (0,) * hf.num_hidden_layers) == want
    assert ours.rope_theta == hf.rope_parameters["rope_theta"]


def test_smollm3_chat_template_as_transformers(tmp_path):
    """SmolLM3-3B's chat template (tests/fixtures/chat_templates): its system block with the
    reasoning mode and the date, the turns, the generation prompt."""
    familycheck.check_template(tmp_path, "smollm3-3b.jinja", eos_token="<|im_end|>")
