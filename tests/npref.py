"""Numpy reference implementations of GPT-2's ops, written from the math (not from our WGSL).

Used by the kernel tests, and as a second reference beside Hugging Face's fixtures.
"""

import numpy as np


def layernorm(x, w, b, eps=1e-5):
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def attention(q, k, v, n_head, pos0):
    """q: (T, C) for positions pos0..; k, v: (pos0 + T, C). Causal."""
    T, C = q.shape
    hs = C // n_head
    y = np.zeros((T, C))
    for h in range(n_head):
        sl = slice(h * hs, (h + 1) * hs)
        s = q[:, sl].astype(np.float64) @ k[:, sl].T.astype(np.float64) / np.sqrt(hs)  # (T, S)
        S = k.shape[0]
        mask = np.arange(S)[None, :] > (pos0 + np.arange(T))[:, None]
        s[mask] = -np.inf
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        y[:, sl] = s @ v[:, sl]
    return y


def forward(weights, cfg, ids):
    """Logits (T, V) of GPT2LMHeadModel for token ids from position 0, float64."""
    w = {k.removeprefix("transformer."): v.astype(np.float64) for k, v in weights.items()}
    T, C = len(ids), cfg["n_embd"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    x = w["wte.weight"][ids] + w["wpe.weight"][:T]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        a = layernorm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        y = attention(q, k, v, cfg["n_head"], 0)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        m = layernorm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = gelu(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layernorm(x, w["ln_f.weight"], w["ln_f.bias"], eps)
    return x @ w["wte.weight"].T


def load_folder(folder):
    """(cfg dict, {canonical name: float32 array}) of a model folder read through webgpt's own
    folder checks; a quantized folder's weights come dequantized (webgpt.tools.quantize), in the
    plain layout, so forward() runs it as the GPU kernels should."""
    from webgpt.tools.quantize import load_weights

    config, weights = load_weights(folder)
    cfg = {"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
           "vocab_size": config.vocab_size, "n_positions": config.n_positions,
           "layer_norm_epsilon": config.layer_norm_epsilon}
    return cfg, weights


def forward_folder(folder, ids):
    """forward() of a model folder, quantized or not: logits (T, V), float64."""
    cfg, weights = load_folder(folder)
    return forward(weights, cfg, ids)
