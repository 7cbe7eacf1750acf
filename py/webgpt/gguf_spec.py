"""A GGUF model (one .gguf file, or NAME-0000k-of-0000n.gguf parts) read into the same
ModelSpec a model folder gives (webgpt.spec): config from the metadata, tensors located and
checked under the architecture's canonical names, tokenizer and chat template from the
metadata. Nothing here touches the GPU or reads a weight.

Architectures (general.architecture): llama (Llama 2/3.x, SmolLM2, Mistral, TinyLlama), qwen2,
qwen3, gpt2; hyper-parameters from the `<arch>.*` keys. Tensor names are llama.cpp's:

    token_embd, output_norm, output, rope_freqs (llama 3 rope factors), position_embd (gpt2)
    blk.N.attn_norm, attn_q, attn_k, attn_v, attn_qkv (gpt2), attn_output, attn_q_norm,
    attn_k_norm (qwen3), ffn_norm, ffn_gate, ffn_up, ffn_down

Matrices become BlockRefs (rows of ggml blocks, decoded by the kernels); vectors (norms,
biases) and GPT-2's position table are TensorRefs (F32, F16 or BF16). GPT-2's matrices are
stored transposed to GGUF's rows, so they need no transpose here. llama.cpp's converter
interleaves the rows of each head of Llama's q and k (it rotates pairs (2i, 2i + 1) where
transformers rotates (i, i + hd / 2)); the loader undoes that at load, row by row (BlockRef.
permute), so the rotary kernel is the same for every family. Qwen2 and Qwen3 files are not
permuted.
"""

import os
import struct

from .arch import arch_for, by_model_type
from .errors import ModelFolderError, TokenizerError
from .ggml import FLOAT_TYPES, KERNEL_TYPES, unsupported_sentence
from .gguf import GGUFError, read_gguf_files
from .spec import BlockRef, ModelSpec, TensorRef

__all__ = ["open_gguf", "is_gguf", "ARCHITECTURES"]

ARCHITECTURES = ("llama", "qwen2", "qwen3", "gpt2")

# llama.cpp's per-layer names -> the canonical (transformers) names, per family.
LLAMA_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight", "attn_output.bias": "self_attn.o_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
LLAMA_TOP = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight",
             "output.weight": "lm_head.weight"}
GPT2_LAYER = {
    "attn_norm.weight": "ln_1.weight", "attn_norm.bias": "ln_1.bias",
    "attn_qkv.weight": "attn.c_attn.weight", "attn_qkv.bias": "attn.c_attn.bias",
    "attn_output.weight": "attn.c_proj.weight", "attn_output.bias": "attn.c_proj.bias",
    "ffn_norm.weight": "ln_2.weight", "ffn_norm.bias": "ln_2.bias",
    "ffn_up.weight": "mlp.c_fc.weight", "ffn_up.bias": "mlp.c_fc.bias",
    "ffn_down.weight": "mlp.c_proj.weight", "ffn_down.bias": "mlp.c_proj.bias",
}
GPT2_TOP = {"token_embd.weight": "wte.weight", "position_embd.weight": "wpe.weight",
            "output_norm.weight": "ln_f.weight", "output_norm.bias": "ln_f.bias"}


def is_gguf(path_or_url):
    """Whether `path_or_url` names a .gguf file (rather than a model folder)."""
    return isinstance(path_or_url, (str, os.PathLike)) and \
        os.fspath(path_or_url).lower().split("?")[0].endswith(".gguf")


def _split_path(path_or_url):
    """(folder or base URL, file name) of a .gguf path or URL."""
    import sys

    where = os.fspath(path_or_url)
    if where.startswith(("http://", "https://")) or sys.platform == "emscripten":
        base, _, name = where.rpartition("/")
        return (base + "/") if base else "./", name
    base, name = os.path.split(where)
    return base or ".", name


async def open_gguf(path_or_url):
    """The ModelSpec of a .gguf file (or, for one part of a split model, of all its parts)."""
    import sys

    from .sources import open_source

    base, name = _split_path(path_or_url)
    if sys.platform != "emscripten" and not base.startswith(("http://", "https://")):
        if not os.path.exists(os.fspath(path_or_url)):
            raise ModelFolderError(f"model file {os.fspath(path_or_url)} does not exist")
    source = open_source(base)
    return await read_gguf_model(source, name)


async def read_gguf_model(source, name):
    """The ModelSpec of GGUF file `name` (and its split parts) in `source`."""
    files = await read_gguf_files(source, name)
    md = files[0].metadata
    where = source.where(files[0].name)
    tensors = {t.name: t for f in files for t in f.tensors}
    arch_name = md.get("general.architecture")
    if arch_name not in ARCHITECTURES:
        raise GGUFError(f"{where}: general.architecture is {arch_name!r}; webgpt runs "
                        f"{', '.join(ARCHITECTURES)} GGUF files")
    rope_factors = None
    if "rope_freqs.weight" in tensors:
        rope_factors = await _rope_factors(source, tensors["rope_freqs.weight"], where)
    config = _config(md, arch_name, tensors, where, rope_factors)
    arch = arch_for(config)
    refs, types = _refs(arch, arch_name, config, tensors, where)
    try:
        from .gguf_tokenizer import gguf_tokenizer, stop_ids

        tokenizer = gguf_tokenizer(md, where)
        stops = stop_ids(md, tokenizer, where)
    except TokenizerError as e:
        raise ModelFolderError(str(e)) from None
    if tokenizer.vocab_size > arch.dims.V:
        raise ModelFolderError(f"{where}: the tokenizer has {tokenizer.vocab_size} tokens, but "
                               f"token_embd.weight has {arch.dims.V} rows")
    gguf = {"files": [f.name for f in files], "version": files[0].version,
            "architecture": arch_name, "name": md.get("general.name"), "types": types}
    return ModelSpec(config=config, source=source, tensors=refs, tokenizer=tokenizer,
                     stop_ids=stops, gguf=gguf)


async def _rope_factors(source, t, where):
    if t.type.name != "F32" or len(t.dims) != 1:
        raise GGUFError(f"{where}: rope_freqs.weight must be a vector of F32 factors")
    data = await source.read(t.file, t.start, t.end)
    return struct.unpack(f"<{t.dims[0]}f", data)


def _get(md, key, where, kind=int, default=None):
    v = md.get(key, default)
    if v is None:
        raise GGUFError(f"{where} lacks the metadata {key}, which this architecture needs")
    if isinstance(v, list):
        raise GGUFError(f"{where}: metadata {key} varies by layer ({len(v)} values), which "
                        f"webgpt does not support")
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise GGUFError(f"{where}: metadata {key} must be a whole number, not {v!r}")
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise GGUFError(f"{where}: metadata {key} must be a number, not {v!r}")
    return v


def _config(md, arch_name, tensors, where, rope_factors):
    """The architecture's config class from the metadata (its checks apply, with messages
    naming the file)."""
    import dataclasses

    p = arch_name + "."
    embd = tensors.get("token_embd.weight")
    if embd is None or len(embd.dims) != 2:
        raise GGUFError(f"{where} has no token_embd.weight matrix")
    vocab = embd.dims[1]
    for key, why in ((p + "expert_count", "mixture-of-experts models are not supported"),):
        if md.get(key):
            raise GGUFError(f"{where}: {key} = {md[key]!r}: {why}")
    if arch_name == "gpt2":
        d = {"model_type": "gpt2", "n_layer": _get(md, p + "block_count", where),
             "n_head": _get(md, p + "attention.head_count", where),
             "n_embd": _get(md, p + "embedding_length", where), "vocab_size": vocab,
             "n_positions": _get(md, p + "context_length", where),
             "layer_norm_epsilon": _get(md, p + "attention.layer_norm_epsilon", where, float),
             "n_inner": _get(md, p + "feed_forward_length", where)}
        return by_model_type("gpt2").config_class.from_dict(d, where)
    heads = _get(md, p + "attention.head_count", where)
    hidden = _get(md, p + "embedding_length", where)
    head_dim = _get(md, p + "attention.key_length", where, default=hidden // max(heads, 1))
    if _get(md, p + "attention.value_length", where, default=head_dim) != head_dim:
        raise GGUFError(f"{where}: keys and values of different lengths are not supported")
    rot = _get(md, p + "rope.dimension_count", where, default=head_dim)
    if rot != head_dim:
        raise GGUFError(f"{where}: rotary embedding over {rot} of {head_dim} values per head is "
                        f"not supported")
    scaling = md.get(p + "rope.scaling.type", "none")
    if scaling not in ("none", None) and not (scaling == "linear" and
                                              md.get(p + "rope.scaling.factor", 1.0) == 1.0):
        raise GGUFError(f"{where}: {p}rope.scaling.type {scaling!r} is not supported")
    d = {"model_type": arch_name, "hidden_size": hidden,
         "intermediate_size": _get(md, p + "feed_forward_length", where),
         "num_hidden_layers": _get(md, p + "block_count", where),
         "num_attention_heads": heads,
         "num_key_value_heads": _get(md, p + "attention.head_count_kv", where, default=heads),
         "head_dim": head_dim, "vocab_size": vocab,
         "max_position_embeddings": _get(md, p + "context_length", where),
         "rms_norm_eps": _get(md, p + "attention.layer_norm_rms_epsilon", where, float),
         "rope_theta": _get(md, p + "rope.freq_base", where, float, 10000.0),
         "tie_word_embeddings": "output.weight" not in tensors,
         "attention_bias": "blk.0.attn_q.bias" in tensors}
    config = by_model_type(arch_name).config_class.from_dict(d, where)
    if rope_factors is not None:
        if len(rope_factors) != head_dim // 2:
            raise GGUFError(f"{where}: rope_freqs.weight has {len(rope_factors)} factors; "
                            f"expected {head_dim // 2} (half the head size)")
        config = dataclasses.replace(config, rope_scaling={"rope_type": "factors",
                                                           "factors": tuple(rope_factors)})
    return config


def _canonical(arch_name, name):
    """The canonical name of llama.cpp tensor `name`, or None."""
    layer_map, top = (GPT2_LAYER, GPT2_TOP) if arch_name == "gpt2" else (LLAMA_LAYER, LLAMA_TOP)
    if name in top:
        return top[name]
    if name.startswith("blk."):
        _, n, rest = name.split(".", 2) if name.count(".") >= 2 else (None, None, None)
        if n is not None and n.isdigit() and rest in layer_map:
            return (f"h.{int(n)}." if arch_name == "gpt2" else f"layers.{int(n)}.") + \
                layer_map[rest]
    return None


def _refs(arch, arch_name, config, tensors, where):
    """spec.tensors for the GGUF tensors (canonical name -> BlockRef / TensorRef, in file
    order) and {ggml type: bytes} of the matrices, every expected tensor checked once."""
    expected = arch.expected_shapes()
    found, types = {}, {}
    heads = {}
    if arch_name == "llama":
        for i in range(config.num_hidden_layers):
            heads[f"layers.{i}.self_attn.q_proj.weight"] = config.num_attention_heads
            heads[f"layers.{i}.self_attn.k_proj.weight"] = config.num_key_value_heads
    for t in sorted(tensors.values(), key=lambda t: (t.file, t.start)):
        if t.name == "rope_freqs.weight":
            continue
        name = _canonical(arch_name, t.name)
        if arch_name == "gpt2" and t.name == "output.weight":
            continue    # GPT-2's head is its token table (llama.cpp may write a copy)
        if name is None or name not in expected:
            raise GGUFError(f"{where}: tensor {t.name!r} is not a {arch_name} weight webgpt "
                            f"knows for this metadata ({config.n_layer} layers)")
        want = expected[name]
        storage = arch.matrix_storage(name)
        rows = tuple(reversed(want)) if storage == "cols" else want
        if t.shape != tuple(rows):
            raise GGUFError(f"{where}: tensor {t.name!r} has shape {list(t.shape)}; expected "
                            f"{list(rows)}")
        gname = t.type.name
        if storage is not None:
            if gname not in KERNEL_TYPES:
                raise GGUFError(f"{where}: tensor {t.name!r}: {unsupported_sentence(gname)}")
            N, K = rows
            found[name] = BlockRef(t.file, gname, tuple(want), N, K, t.start, t.end,
                                   permute=heads.get(name, 0))
            types[gname] = types.get(gname, 0) + t.nbytes
        else:
            if gname not in FLOAT_TYPES:
                raise GGUFError(f"{where}: tensor {t.name!r} is {gname}; webgpt reads vectors "
                                f"and position tables as F32, F16 or BF16")
            if arch_name == "llama" and name.endswith(("q_proj.bias", "k_proj.bias")):
                raise GGUFError(f"{where}: tensor {t.name!r}: a Llama file's q and k biases "
                                f"(permuted by the converter) are not supported")
            found[name] = TensorRef(t.file, gname, tuple(want), t.start, t.end)
    missing = [n for n in expected if n not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GGUFError(f"{where}: the tensor for {missing[0]!r} is missing{more}")
    return found, types
