"""GGUF files for the tests, written by the `gguf` package (ggml's own writer, PyPI) from models
transformers made, as llama.cpp's convert_hf_to_gguf.py lays them out: llama.cpp's metadata
keys and tensor names, Llama's q/k rows interleaved per head, GPT-2's Conv1D matrices as rows,
the tokenizer (tokens, token types, merges, pre-tokenizer name) from the model's tokenizer.json.

Each matrix is stored in the ggml type a policy gives it. Legacy types and the float types are
quantized from the model's weights by gguf.quants (ggml's reference quantizers); the K types,
which the package can only decode, get random blocks with scales chosen so the decoded weights
have a sensible spread (every bit pattern of a K block is a valid block). `write_gguf` returns
the weights as gguf.quants.dequantize gives them, back under transformers' names and order,
for the reference forward.
"""

import json
import os

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q

# Where d (and dmin) sit in a K block, and the spread of the decoded weights wanted.
K_SCALES = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}
K_STD = 0.05

LLAMA_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GPT2_NAMES = {
    "ln_1.weight": "attn_norm.weight", "ln_1.bias": "attn_norm.bias",
    "attn.c_attn.weight": "attn_qkv.weight", "attn.c_attn.bias": "attn_qkv.bias",
    "attn.c_proj.weight": "attn_output.weight", "attn.c_proj.bias": "attn_output.bias",
    "ln_2.weight": "ffn_norm.weight", "ln_2.bias": "ffn_norm.bias",
    "mlp.c_fc.weight": "ffn_up.weight", "mlp.c_fc.bias": "ffn_up.bias",
    "mlp.c_proj.weight": "ffn_down.weight", "mlp.c_proj.bias": "ffn_down.bias",
}


def gguf_name(arch, hf_name):
    """llama.cpp's name of a transformers tensor name (without the model./transformer. prefix)."""
    if arch == "gpt2":
        top = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
               "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
        if hf_name in top:
            return top[hf_name]
        _, i, rest = hf_name.split(".", 2)
        return f"blk.{i}.{GPT2_NAMES[rest]}"
    top = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if hf_name in top:
        return top[hf_name]
    _, i, rest = hf_name.split(".", 2)
    return f"blk.{i}.{LLAMA_NAMES[rest]}"


def permute(w, heads):
    """llama.cpp's converter's interleaving of one projection's rows (per head: rows i and
    i + hd/2 become 2i and 2i + 1)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def unpermute(w, heads):
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


# The mean of a random block's q, by which dmin is d times so that, on average, the min offsets
# cancel the positive q's (w = d sc q - dmin m with sc and m alike): weights of mean about 0, as
# trained ones are; otherwise each product adds the same direction to every token's state.
K_MEAN_Q = {Q.Q2_K: 1.5, Q.Q4_K: 7.5, Q.Q5_K: 15.5}


def k_blocks(qtype, n_rows, K, rng):
    """Random K-quant rows (uint8 [n_rows, row bytes]) whose decoded values spread ~K_STD."""
    bv, bb = gguf.GGML_QUANT_SIZES[qtype]
    nb = n_rows * K // bv
    blocks = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)

    def set_scales(d):
        d = np.asarray(d, np.float32) * np.ones(nb, np.float32)
        factors = (d, d * K_MEAN_Q.get(qtype, 0.0))
        for off, v in zip(K_SCALES[qtype], factors):
            blocks[:, off:off + 2] = v.astype(np.float16).view(np.uint8).reshape(nb, 2)

    set_scales(1.0)
    std = float(gguf.quants.dequantize(blocks, qtype).std())
    set_scales(K_STD / std * rng.uniform(0.5, 1.5, size=nb))
    return blocks.reshape(n_rows, K // bv * bb)


def encode_matrix(w, qtype, rng):
    """(raw data for the writer, its dequantized float32 values) of a [N, K] matrix."""
    if qtype in K_SCALES:
        raw = k_blocks(qtype, w.shape[0], w.shape[1], rng)
    elif qtype == Q.F32:
        raw = w.astype(np.float32)
    elif qtype == Q.F16:
        raw = w.astype(np.float16)
    else:
        raw = gguf.quants.quantize(w.astype(np.float32), qtype)
    deq = gguf.quants.dequantize(raw, qtype).astype(np.float32)
    return raw, deq.reshape(w.shape)


def tokenizer_metadata(writer, tok_dir, pre="gpt-2", add_bos=None):
    """tokenizer.ggml.* from tokenizer.json (+ tokenizer_config.json) as convert_hf_to_gguf
    writes a byte-level BPE: every id's token, CONTROL for special added tokens."""
    with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    vocab = dict(spec["model"]["vocab"])
    types = {}
    for t in spec.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
        types[t["id"]] = 3 if t.get("special") else 4
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    for t, i in vocab.items():
        tokens[i] = t
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([types.get(i, 1) for i in range(n)])
    merges = spec["model"].get("merges", [])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    cfg_path = os.path.join(tok_dir, "tokenizer_config.json")
    cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    for key, add in (("eos_token", writer.add_eos_token_id), ("bos_token", writer.add_bos_token_id)):
        name = cfg.get(key)
        if isinstance(name, dict):
            name = name.get("content")
        if name in vocab:
            add(vocab[name])
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    if isinstance(cfg.get("chat_template"), str):
        writer.add_chat_template(cfg["chat_template"])
    return tokens


def write_gguf(path, model, tok_dir, policy, seed=0, split_max_tensors=0, pre="gpt-2",
               extra_tensors=None):
    """Write transformers `model` (Llama/Qwen2/Qwen3/GPT-2 ForCausalLM, f32) as GGUF `path`;
    `policy(gguf name, shape)` gives each matrix's GGMLQuantizationType; `extra_tensors`
    {gguf name: array} are written as they are (rope_freqs.weight). Returns the dequantized
    weights {transformers state_dict name: float32 array}."""
    import torch

    cfg = model.config
    arch = cfg.model_type
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    p = arch
    if arch == "gpt2":
        w.add_uint32(f"{p}.context_length", cfg.n_positions)
        w.add_uint32(f"{p}.embedding_length", cfg.n_embd)
        w.add_uint32(f"{p}.feed_forward_length", 4 * cfg.n_embd)
        w.add_uint32(f"{p}.block_count", cfg.n_layer)
        w.add_uint32(f"{p}.attention.head_count", cfg.n_head)
        w.add_float32(f"{p}.attention.layer_norm_epsilon", cfg.layer_norm_epsilon)
    else:
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        w.add_uint32(f"{p}.context_length", cfg.max_position_embeddings)
        w.add_uint32(f"{p}.embedding_length", cfg.hidden_size)
        w.add_uint32(f"{p}.feed_forward_length", cfg.intermediate_size)
        w.add_uint32(f"{p}.block_count", cfg.num_hidden_layers)
        w.add_uint32(f"{p}.attention.head_count", cfg.num_attention_heads)
        w.add_uint32(f"{p}.attention.head_count_kv", cfg.num_key_value_heads)
        w.add_uint32(f"{p}.attention.key_length", hd)
        w.add_uint32(f"{p}.attention.value_length", hd)
        w.add_uint32(f"{p}.rope.dimension_count", hd)
        w.add_float32(f"{p}.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta") or \
            getattr(cfg, "rope_theta", 10000.0)
        w.add_float32(f"{p}.rope.freq_base", float(theta))
    w.add_string("general.name", f"test {arch}")
    tokenizer_metadata(w, tok_dir, pre)

    state = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    prefix = "transformer." if arch == "gpt2" else "model."
    deq = {}
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if arch == "gpt2" and (name.endswith((".attn.bias", ".masked_bias")) or
                               key == "lm_head.weight"):
            continue
        if arch != "gpt2" and key == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        gname = gguf_name(arch, name)
        v = value
        if arch == "gpt2" and v.ndim == 2 and gname != "token_embd.weight" and \
                gname != "position_embd.weight":
            v = v.T     # Conv1D [in, out] -> rows [out, in]
        heads = None
        if arch == "llama" and gname.endswith(("attn_q.weight", "attn_k.weight")):
            heads = cfg.num_attention_heads if "attn_q" in gname else cfg.num_key_value_heads
            v = permute(v, heads)
        v = np.ascontiguousarray(v, dtype=np.float32)
        if v.ndim == 2 and gname != "position_embd.weight":
            qtype = policy(gname, v.shape)
            raw, d = encode_matrix(v, qtype, rng)
            w.add_tensor(gname, raw, raw_dtype=qtype)
        else:
            d = v
            w.add_tensor(gname, v)
        if heads:
            d = unpermute(d, heads)
        if arch == "gpt2" and d.ndim == 2 and gname not in ("token_embd.weight",
                                                           "position_embd.weight"):
            d = d.T
        deq[key] = np.ascontiguousarray(d, dtype=np.float32)
    for gname, v in (extra_tensors or {}).items():
        w.add_tensor(gname, np.ascontiguousarray(v))
    if arch == "gpt2":
        deq["lm_head.weight"] = deq["transformer.wte.weight"]
    elif cfg.tie_word_embeddings:
        deq["lm_head.weight"] = deq["model.embed_tokens.weight"]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return deq


def reference(model, deq):
    """`model` (a transformers model) with the dequantized weights."""
    import torch

    model.load_state_dict({k: torch.from_numpy(v) for k, v in deq.items()}, strict=False)
    return model.eval()


def uniform(qtype):
    """A policy: every matrix in `qtype`."""
    return lambda name, shape: qtype


def q4_k_m(name, shape):
    """A Q4_K_M-style mix as llama.cpp's quantizer makes it: Q6_K for the output and the value
    and down projections, Q4_K elsewhere; Q8_0 / Q5_0 where rows are not a multiple of 256."""
    k_ok = shape[1] % 256 == 0
    big = name in ("output.weight",) or name.endswith(("attn_v.weight", "ffn_down.weight"))
    if not k_ok:
        return Q.Q8_0 if big else Q.Q5_0
    return Q.Q6_K if big else Q.Q4_K


def cycle(types):
    """A policy: the matrices take `types` in turn, in the order they are written (so one
    model holds every type, some in one product with others: q, k, v of different types)."""
    state = {"k": 0}

    def pick(name, shape):
        t = types[state["k"] % len(types)]
        state["k"] += 1
        return t
    return pick


def tokenizer_gguf(path, tokenizer_json, tokenizer_config=None, pre=None):
    """A GGUF holding a tokenizer and no tensors (a vocab-only file, as llama.cpp's vocab files
    are) from tokenizer.json's text: "gpt2" with merges where the model has a ByteLevel
    pre-tokenizer (`pre` names its split pattern), else "llama" (SentencePiece) with a score
    per token (minus its id: SentencePiece's BPE scores a piece by its merge order), byte
    tokens <0xAB> as BYTE, special added tokens as CONTROL."""
    spec = json.loads(tokenizer_json)
    cfg = json.loads(tokenizer_config) if tokenizer_config else {}
    vocab = dict(spec["model"]["vocab"])
    types = {}
    for t in spec.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
        types[t["id"]] = 3 if t.get("special") else 4
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    for t, i in vocab.items():
        tokens[i] = t
    w = gguf.GGUFWriter(path, "llama")
    for k, v in {"context_length": 64, "embedding_length": 64, "feed_forward_length": 64,
                 "block_count": 1, "attention.head_count": 1}.items():
        w.add_uint32(f"llama.{k}", v)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-6)
    spm = pre is None
    w.add_tokenizer_model("llama" if spm else "gpt2")
    if spm:
        unk = spec["model"].get("unk_token")
        for i, t in enumerate(tokens):
            if i not in types:
                types[i] = 6 if len(t) == 6 and t.startswith("<0x") and t.endswith(">") else \
                    2 if t == unk else 1
        # A piece's score: minus the rank of the merge that makes it (the order SentencePiece's
        # BPE learnt them in, which tokenizer.json's merges keep); pieces no merge makes last.
        scores = [-float(len(spec["model"]["merges"]) + i) for i in range(n)]
        for rank, m in enumerate(spec["model"].get("merges", [])):
            left, right = m.split(" ", 1) if isinstance(m, str) else m
            i = vocab.get(left + right)
            if i is not None and scores[i] < -rank:
                scores[i] = -float(rank)
        w.add_token_scores([scores[i] if types.get(i) == 1 else 0.0 for i in range(n)])
    else:
        w.add_tokenizer_pre(pre)
        merges = spec["model"].get("merges", [])
        w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_token_list(tokens)
    w.add_token_types([types.get(i, 1) for i in range(n)])
    for key, add in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id)):
        name = cfg.get(key)
        if isinstance(name, dict):
            name = name.get("content")
        if name in vocab:
            add(vocab[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
