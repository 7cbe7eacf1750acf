"""The model shapes `python -m webgpt bench` times (GPT-2's and the other families', by their
config.json, random weights) and the ggml types of its GGUF files: shared by tools/bench.py and
tools/bench_llamacpp.py (which writes those files for llama.cpp)."""

from ..arch import by_model_type
from ..arch.gpt2 import GPT2Config

SHAPES = {
    "124M": dict(n_layer=12, n_head=12, n_embd=768),
    "355M": dict(n_layer=24, n_head=16, n_embd=1024),
    "774M": dict(n_layer=36, n_head=20, n_embd=1280),
    "1.5B": dict(n_layer=48, n_head=25, n_embd=1600),
}
# The Llama-family models people run in browsers, by their config.json (random weights).
LLAMA_SHAPES = {
    "SmolLM2-135M": dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         vocab_size=49152, rope_theta=100000.0, tie_word_embeddings=True),
    "SmolLM2-360M": dict(model_type="llama", hidden_size=960, intermediate_size=2560,
                         num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                         vocab_size=49152, rope_theta=100000.0, tie_word_embeddings=True),
    "Qwen2.5-0.5B": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         vocab_size=151936, rope_theta=1000000.0, tie_word_embeddings=True),
    "Qwen3-0.6B": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072,
                       num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                       head_dim=128, vocab_size=151936, rope_theta=1000000.0,
                       tie_word_embeddings=True),
    "Llama-3.2-1B": dict(model_type="llama", hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=True,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 8192}),
    # Gemma, Phi and SmolLM3 (webgpt/arch/gemma.py, phi3.py, llama.py), as their config.json;
    # Phi's LongRoPE factors are made up (their values do not change the speed).
    "Gemma-2-2B": dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216,
                       num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                       head_dim=256, vocab_size=256000, query_pre_attn_scalar=256,
                       sliding_window=4096, attn_logit_softcapping=50.0,
                       final_logit_softcapping=30.0, tie_word_embeddings=True),
    "Gemma-3-1B": dict(model_type="gemma3_text", hidden_size=1152, intermediate_size=6912,
                       num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1,
                       head_dim=256, vocab_size=262144, query_pre_attn_scalar=256,
                       sliding_window=512, sliding_window_pattern=6, rope_theta=1000000.0,
                       rope_local_base_freq=10000.0, tie_word_embeddings=True),
    "Phi-3.5-mini": dict(model_type="phi3", hidden_size=3072, intermediate_size=8192,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                         vocab_size=32064, original_max_position_embeddings=4096,
                         rope_scaling={"type": "longrope", "short_factor": [1.0] * 48,
                                       "long_factor": [4.0] * 48},
                         sliding_window=262144, tie_word_embeddings=False),
    "Phi-4-mini": dict(model_type="phi3", hidden_size=3072, intermediate_size=8192,
                       num_hidden_layers=32, num_attention_heads=24, num_key_value_heads=8,
                       vocab_size=200064, partial_rotary_factor=0.75,
                       original_max_position_embeddings=4096,
                       rope_scaling={"type": "longrope", "short_factor": [1.0] * 48,
                                     "long_factor": [4.0] * 48},
                       sliding_window=262144, tie_word_embeddings=True),
    "SmolLM3-3B": dict(model_type="smollm3", hidden_size=2048, intermediate_size=11008,
                       num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=4,
                       vocab_size=128256, rope_theta=5000000.0, no_rope_layer_interval=4,
                       tie_word_embeddings=True),
}
# transformers' (config class, model class) of each model_type, for the baseline.
HF_CLASSES = {"llama": ("LlamaConfig", "LlamaForCausalLM"),
              "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
              "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
              "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
              "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
              "phi3": ("Phi3Config", "Phi3ForCausalLM"),
              "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM")}
ALL_SHAPES = list(SHAPES) + list(LLAMA_SHAPES)


def shape_config(shape, quant=None):
    """The config of a named shape (GPT2Config, or its family's config class: LlamaConfig,
    GemmaConfig, Phi3Config), context 4096 for the others."""
    if shape in SHAPES:
        return GPT2Config(vocab_size=50257, n_positions=1024, quantization=quant, **SHAPES[shape])
    d = dict(LLAMA_SHAPES[shape], max_position_embeddings=4096)
    cfg = by_model_type(d["model_type"]).config_class.from_dict(d)
    cfg.quantization = quant
    return cfg
# GGUF files as the hub publishes them (matrices in ggml block types, the kernels decoding
# them; vectors f16 here): one type for every matrix, or a Q4_K_M-style mix.
GGUF_DTYPES = ("Q4_0", "Q8_0", "Q4_K_M")
DTYPES = ["F32", "F16", "Q8", "Q4", *GGUF_DTYPES]


def gguf_type(dtype, name, K):
    """The ggml type of matrix `name` (rows of K values) in a GGUF file of `dtype`: Q4_K_M as
    llama.cpp's quantizer makes it (Q6_K for the LM head and the value and down projections,
    Q4_K elsewhere; Q8_0 and Q5_0 where rows are not a multiple of 256, as SmolLM2's 576)."""
    if dtype != "Q4_K_M":
        return dtype
    big = name in ("lm_head.weight",) or name.endswith(
        ("v_proj.weight", "down_proj.weight", "mlp.c_proj.weight"))
    if K % 256:
        return "Q8_0" if big else "Q5_0"
    return "Q6_K" if big else "Q4_K"
