"""Phi-3 / Phi-3.5 / Phi-4-mini against Hugging Face transformers (webgpt/arch/phi3.py).

A Phi3ForCausalLM written by transformers itself, Phi-4-mini's shape scaled down: the fused
qkv_proj (GQA 2:1) and gate_up_proj of the file, a partial rotary embedding (3/4 of each head),
LongRoPE (short and long factors, the attention factor of max_position_embeddings /
original_max_position_embeddings), a sliding window shorter than the prompt, the head tied to
the token table, an f16 file. tests/familycheck.py has the checks and tolerances. Within the
context kept (original_max_position_embeddings at most) transformers uses the short factors, as
here. Also: the published configs read as transformers reads them (its own LongRoPE
frequencies and attention factor), and Phi-3.5-mini-instruct's real chat template.
"""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import familycheck  # noqa: E402
from webgpt.arch import arch_for  # noqa: E402
from webgpt.arch.rope import inv_freq  # noqa: E402
from webgpt.config import parse_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHORT = [1.0, 1.05, 1.1, 1.2, 1.35, 1.5, 1.8, 2.1, 2.5, 3.0, 3.6, 4.2]
LONG = [2.0 * f for f in SHORT]
KEYS = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, partial_rotary_factor=0.75, original_max_position_embeddings=96,
            max_position_embeddings=384, sliding_window=7, tie_word_embeddings=True,
            rope_scaling={"type": "longrope", "short_factor": SHORT, "long_factor": LONG})


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return familycheck.make(tmp_path_factory.mktemp("phi3"), "Phi3ForCausalLM", KEYS, "float16")


@pytest.mark.parametrize("layout", ["cpu", "gpu"])
def test_matches_transformers(adapter, made, layout):
    familycheck.check(made, layout, "phi3-f16")


def _factors(n, a):
    return [round(1.0 + a * i / n, 4) for i in range(n)]


# The published config.json files' keys (the LongRoPE factor lists abridged to made-up values of
# the right length).
PHI_35_MINI = {
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu",
    "hidden_size": 3072, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "rope_scaling": {"long_factor": _factors(48, 20), "short_factor": _factors(48, 1),
                     "type": "longrope"},
    "sliding_window": 262144, "tie_word_embeddings": False, "vocab_size": 32064,
    "bos_token_id": 1, "eos_token_id": 32000, "pad_token_id": 32000}
PHI_4_MINI = {
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu",
    "hidden_size": 3072, "intermediate_size": 8192, "max_position_embeddings": 131072,
    "num_attention_heads": 24, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "original_max_position_embeddings": 4096, "partial_rotary_factor": 0.75,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "rope_scaling": {"long_factor": _factors(48, 30), "short_factor": _factors(48, 2),
                     "type": "longrope"},
    "sliding_window": 262144, "tie_word_embeddings": True, "vocab_size": 200064,
    "bos_token_id": 199999, "eos_token_id": 199999, "pad_token_id": 199999}
PHI_3_MINI_4K = {
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu",
    "hidden_size": 3072, "intermediate_size": 8192, "max_position_embeddings": 4096,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_scaling": None,
    "rope_theta": 10000.0, "sliding_window": 2047, "tie_word_embeddings": False,
    "vocab_size": 32064}


@pytest.mark.parametrize("config", [PHI_35_MINI, PHI_4_MINI, PHI_3_MINI_4K],
                         ids=["phi-3.5-mini", "phi-4-mini", "phi-3-mini-4k"])
def test_published_configs_read_as_transformers_reads_them(config):
    """The rotated values, the inverse frequencies and LongRoPE's attention factor as
    transformers' rotary embedding computes them, the window on every layer, the context kept."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    ours = parse_config(json.dumps(config))
    hf = transformers.Phi3Config(**{k: v for k, v in config.items() if k != "architectures"})
    kind = hf.rope_parameters["rope_type"]
    if kind == "default":
        dim = int(hf.hidden_size // hf.num_attention_heads
                  * hf.rope_parameters.get("partial_rotary_factor", 1.0))
        want = 1.0 / (hf.rope_parameters["rope_theta"]
                      ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        factor = 1.0
    else:
        want, factor = ROPE_INIT_FUNCTIONS[kind](hf, None)
    got = np.array(inv_freq(ours.rotary_dims, ours.rope_theta, ours.rope_scaling), np.float32)
    assert ours.rotary_dims == 2 * len(want)
    np.testing.assert_allclose(got, want.numpy(), rtol=2e-7)
    assert ours.attention_factor == pytest.approx(factor, rel=1e-12)
    assert set(ours.windows) == {hf.sliding_window}
    arch = arch_for(ours)
    assert arch.max_context() == 4096   # the short factors' range, and the 4096 kept anyway


def test_phi35_chat_template_as_transformers(tmp_path):
    """Phi-3.5-mini-instruct's chat template (tests/fixtures/chat_templates) renders as
    transformers renders it: system, user and assistant turns, <|end|>, the generation prompt,
    and eos_token at the end without one."""
    familycheck.check_template(tmp_path, "phi-3.5-mini-instruct.jinja", bos_token="<s>",
                               eos_token="<|endoftext|>")
