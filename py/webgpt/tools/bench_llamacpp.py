"""llama.cpp as a peer of `python -m webgpt bench` (`--baselines llamacpp`).

For a Llama/Qwen shape and a dtype (F16, Q8_0, Q4_0, Q4_K_M) the bench writes a real GGUF
file of that shape with random weights (`write_gguf`), times ours on that file through
webgpt's own GGUF loading, and times llama.cpp itself on the same file through the npm package
node-llama-cpp (pinned 3.21.1; tests/llamacpp/bench.mjs): greedy decode ms/token after the same
token ids at each context, prefill tokens/s, and the first 8 greedy tokens, so the table
compares like with like and says whether both compute the same model.

The weights are random but sane: matrices of spread 1/sqrt(K) (every product keeps its
input's scale), norms 1; F16 values, Q8_0 and Q4_0 blocks quantized from such floats by gguf.quants
(ggml's reference quantizers, PyPI `gguf`); the K blocks (Q4_K, Q6_K), which gguf.quants can
only decode, are random bytes whose f16 factors are set so the decoded values have the same
spread. The embedding table's spread is 0.1, so the layers' sum outweighs the token's own
row in the residual stream (with a tied head, the greedy token would else be the input
token) and the logits spread about 0.1 sqrt(hidden size). To make a large file quickly, each (type, row length) gets a pool of 65536 quantized
blocks and every row is a random draw of blocks from it (distinct rows, every block a real
quantizer's output). The vocabulary is minimal (byte-level BPE: the 256 byte symbols, filler
tokens, one merge): the bench feeds token ids, never text.

node-llama-cpp comes from `--llamacpp DIR` (or $WEBGPT_LLAMACPP): a folder whose node_modules
holds node-llama-cpp and a prebuilt llama.cpp build (@node-llama-cpp/linux-x64 for the CPU,
-vulkan, -cuda); by default tests/llamacpp. `--llamacpp-backend` picks vulkan, cuda or cpu;
node-llama-cpp may fall back silently, so the row says which backend ran (`llama.gpu`, and
"cpu" where it sees no device of that kind or offloads no layer; llama.cpp's Vulkan backend
skips CPU adapters such as lavapipe unless GGML_VK_VISIBLE_DEVICES names them). Under load,
$WEBGPT_LLAMACPP_THREADS sets its CPU threads (llama.cpp's threads spin-wait: more threads
than free cores make it very slow).
CPython only (uses numpy and gguf).
"""

import json
import math
import os
import subprocess
import tempfile

from .bench_shapes import LLAMA_SHAPES, gguf_type, shape_config

__all__ = ["DTYPES", "supports", "model_file", "write_gguf", "run_peer", "add_peer", "cells",
           "options", "NOTE"]

DTYPES = ("F16", "Q8_0", "Q4_0", "Q4_K_M")
FAMILIES = ("llama", "qwen2", "qwen3")
GREEDY = 8
EMBED_STD = 0.1
POOL = 1 << 16  # quantized blocks per (type, row length) that rows are drawn from
# Where a K block's f16 factors sit (d, and dmin where the type has one), and the mean of a
# random block's q, by which dmin is d times so that the min offsets cancel the positive q's on
# average (weights of mean about 0, as trained ones are).
K_FACTORS = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
K_MEAN_Q = {"Q4_K": 7.5, "Q5_K": 15.5}
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
SCRIPT = os.path.join(REPO, "tests", "llamacpp", "bench.mjs")


def supports(shape, dtype):
    """Whether the llama.cpp peer runs for this bench shape and dtype."""
    return shape in LLAMA_SHAPES and LLAMA_SHAPES[shape]["model_type"] in FAMILIES and \
        dtype in DTYPES


def options(a):
    """The peer's options from the bench's command line (argparse namespace `a`; the
    environment's WEBGPT_LLAMACPP, WEBGPT_NODE, WEBGPT_LLAMACPP_THREADS where it has none)."""
    env = os.environ.get
    threads = env("WEBGPT_LLAMACPP_THREADS")
    return {"dir": getattr(a, "llamacpp", None) or env("WEBGPT_LLAMACPP") or
            os.path.join(REPO, "tests", "llamacpp"),
            "node": getattr(a, "node", None) or env("WEBGPT_NODE") or "node",
            "backend": getattr(a, "llamacpp_backend", None) or "vulkan",
            "files": getattr(a, "gguf_dir", None), "threads": int(threads) if threads else None}


NOTE = ("llama.cpp: node-llama-cpp 3.21.1's prebuilt llama.cpp on the same GGUF file as ours "
        "(random weights), every layer on the backend in brackets, greedy ms/token after "
        "the same ids by llama.cpp's own counters (llama_perf: its decode calls, without "
        "node-llama-cpp's JavaScript; where they do not print, from one token to the next as "
        "sequence.evaluate yields them); prefill: the prompt in one batch; greedy 8: our "
        "first 8 greedy tokens after the same 16 ids equal llama.cpp's (yes), or how many "
        "lead alike.")


def add_peer(row, path, contexts, decode_tokens, prompt_len, opts, log=print):
    """Run llama.cpp on `path` and put its numbers in the bench's `row` (ours on the same
    file): row["llamacpp"] {ctx: ms/token}, row["llamacpp_info"] the rest."""
    V = shape_config(row["shape"]).vocab_size
    prompt = [(i * 7919) % V for i in range(prompt_len)]  # bench_model's prompt
    opts = opts or options(None)
    out = run_peer(path, contexts, decode_tokens, prompt, prompt[:16], opts, log)
    if out is None:
        return
    # llama.cpp's own per-token time (llama_perf: its decode calls alone) where it printed
    # one for every context, as the figures were taken; else the time between tokens
    # as node-llama-cpp yields them (which adds its JavaScript's share: 0.4 to 1 ms a token
    # on an H100), kept in the info either way.
    perf = out.get("perf_ms") or {}
    yielded = out.pop("ms")
    row["llamacpp"] = perf if set(perf) == set(yielded) else yielded
    out["timing"] = "llama_perf" if row["llamacpp"] is perf else "as yielded"
    out["yielded_ms"] = yielded
    row["llamacpp_info"] = out
    log(f"  {row['shape']} {row['file dtype']} llama.cpp ({out['gpu'] or 'cpu'}): " +
        ", ".join(f"{v:.2f} ms/token at context {c}" for c, v in row["llamacpp"].items()) +
        f"; prefill {out['prefill_tok_s']:.0f} tok/s; greedy {out['greedy']}, ours "
        f"{row.get('greedy')}")


def cells(row):
    """The table's llama.cpp prefill and greedy-check cells of `row`."""
    info = row.get("llamacpp_info")
    if not info:
        return ["n/a", "n/a"]
    ours, theirs = row.get("greedy") or [], info["greedy"]
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), len(theirs))
    return [f"{info['prefill_tok_s']:.0f} ({info['gpu'] or 'cpu'})",
            "yes" if ours == theirs else f"no ({same} of {len(theirs)})"]


def model_file(shape, dtype, folder=None, log=print):
    """The GGUF file of `shape` in `dtype` (written once into `folder`, by default a folder in
    the system's temporary directory, and reused)."""
    folder = folder or os.path.join(tempfile.gettempdir(), "webgpt-bench-gguf")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{shape}-{dtype}.gguf")
    if not os.path.exists(path):
        log(f"  writing {path}")
        write_gguf(path + ".part", shape, dtype)
        os.replace(path + ".part", path)
    return path


def _ggml_type(dtype, canonical, K, tied):
    """The ggml type of matrix `canonical` in a `dtype` file: the bench's own choice (a tied
    embedding is the LM head, as llama.cpp's quantizer treats it)."""
    if dtype == "F16":
        return "F16"
    if tied and canonical == "embed_tokens.weight":
        canonical = "lm_head.weight"
    return gguf_type(dtype, canonical, K)


def _pool(qtype, K, rng):
    """POOL blocks (uint8 [POOL, block bytes]) of ggml type `qtype` whose values spread about
    1/sqrt(K)."""
    import gguf
    import numpy as np

    t = gguf.GGMLQuantizationType[qtype]
    values, nbytes = gguf.GGML_QUANT_SIZES[t]
    std = K ** -0.5
    if qtype in K_FACTORS:
        blocks = rng.integers(0, 256, size=(POOL, nbytes), dtype=np.uint8)

        def set_factors(d):
            d = np.asarray(d, np.float32) * np.ones(POOL, np.float32)
            for off, v in zip(K_FACTORS[qtype], (d, d * K_MEAN_Q.get(qtype, 0.0))):
                blocks[:, off:off + 2] = v.astype(np.float16).view(np.uint8).reshape(POOL, 2)

        set_factors(1.0)
        got = float(gguf.quants.dequantize(blocks, t).std())
        set_factors(std / got * rng.uniform(0.5, 1.5, size=POOL))
        return blocks
    floats = (rng.standard_normal((POOL, values)) * std).astype(np.float32)
    if qtype == "F16":
        return floats.astype(np.float16).view(np.uint8)
    return gguf.quants.quantize(floats, t)


def _matrix(qtype, N, K, rng, pools, scale=1.0):
    """Rows [N, K] of `qtype` drawn from its pool: uint8 [N, row bytes], or f16 [N, K]."""
    import gguf
    import numpy as np

    key = (qtype, K, scale)
    if key not in pools:
        pools[key] = _pool(qtype, K / scale ** 2, rng)
    values, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    pick = rng.integers(0, POOL, size=(N, K // values))
    raw = pools[key][pick].reshape(N, K // values * nbytes)
    return raw.view(np.float16) if qtype == "F16" else raw


def _metadata(w, cfg, arch_name):
    p = arch_name + "."
    hd = cfg.head_dim or cfg.hidden_size // cfg.num_attention_heads
    for key, v in (("context_length", cfg.max_position_embeddings),
                   ("embedding_length", cfg.hidden_size),
                   ("feed_forward_length", cfg.intermediate_size),
                   ("block_count", cfg.num_hidden_layers),
                   ("attention.head_count", cfg.num_attention_heads),
                   ("attention.head_count_kv", cfg.num_key_value_heads),
                   ("attention.key_length", hd), ("attention.value_length", hd),
                   ("rope.dimension_count", hd)):
        w.add_uint32(p + key, v)
    w.add_float32(p + "attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
    w.add_float32(p + "rope.freq_base", float(cfg.rope_theta))
    w.add_string("general.name", f"webgpt bench {arch_name} (random weights)")


def _vocabulary(w, V):
    """A minimal byte-level BPE vocabulary of V tokens (llama.cpp needs one token per row of
    the embedding): the 256 byte symbols, "[T", fillers "[T<id>]", and a control token last."""
    from ..bpe import BYTE_SYMBOLS

    tokens = BYTE_SYMBOLS + ["[T"] + [f"[T{i}]" for i in range(257, V - 1)] + ["<|endoftext|>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([1] * (V - 1) + [3])
    w.add_token_merges(["[ T"])
    w.add_eos_token_id(V - 1)
    w.add_bos_token_id(V - 1)
    w.add_add_bos_token(False)


def _rope_factors(cfg):
    """llama.cpp's rope_freqs.weight for Llama 3's rope scaling (as convert_hf_to_gguf.py
    computes it), or None."""
    import numpy as np

    s = cfg.rope_scaling or {}
    if s.get("rope_type") != "llama3":
        return None
    hd = cfg.head_dim or cfg.hidden_size // cfg.num_attention_heads
    old, factor = s["original_max_position_embeddings"], s["factor"]
    low, high = s["low_freq_factor"], s["high_freq_factor"]
    out = []
    for freq in 1.0 / cfg.rope_theta ** (np.arange(0, hd, 2) / hd):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, np.float32)


def write_gguf(path, shape, dtype, seed=0):
    """Write the GGUF file of bench shape `shape` (a Llama/Qwen one) in `dtype` (DTYPES), with
    random weights (see the module's note), as llama.cpp's converter lays such a file out."""
    import gguf
    import numpy as np

    from ..arch import arch_for
    from ..gguf_spec import LLAMA_LAYER, LLAMA_TOP

    arch_name = LLAMA_SHAPES[shape]["model_type"]
    cfg = shape_config(shape)
    arch = arch_for(cfg)
    names = {v: k for k, v in LLAMA_TOP.items()}
    rng, pools = np.random.default_rng(seed), {}
    w = gguf.GGUFWriter(path, arch_name)
    _metadata(w, cfg, arch_name)
    _vocabulary(w, cfg.vocab_size)
    factors = _rope_factors(cfg)
    if factors is not None:
        w.add_tensor("rope_freqs.weight", factors)
    matrices = set(arch.quantized_names())
    for name, shp in arch.expected_shapes().items():
        if name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            gname = f"blk.{i}.{ {v: k for k, v in LLAMA_LAYER.items()}[rest]}"
        else:
            gname = names[name]
        if name in matrices:
            N, K = shp
            t = _ggml_type(dtype, name, K, cfg.tie_word_embeddings)
            # The embedding table spreads EMBED_STD: the layers' sum outweighs a token's own
            # row in the residual stream (else the tied head's top token is the input token).
            scale = EMBED_STD * math.sqrt(K) if name == "embed_tokens.weight" else 1.0
            raw = _matrix(t, N, K, rng, pools, scale)
            w.add_tensor(gname, raw, raw_dtype=gguf.GGMLQuantizationType[t])
        elif name.endswith(".bias"):
            w.add_tensor(gname, (rng.standard_normal(shp) * 0.1).astype(np.float32))
        else:
            w.add_tensor(gname, np.ones(shp, np.float32))  # norms
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def run_peer(path, contexts, decode_tokens, prompt, greedy_prompt, opts, log=print):
    """llama.cpp on GGUF file `path` through tests/llamacpp/bench.mjs: {"ms": {ctx: ms/token},
    "prefill_tok_s", "greedy": [8 ids], "gpu": the backend that ran, ...}, or None (with a
    line in the log) where node or node-llama-cpp is missing or the run fails."""
    request = {"model": os.path.abspath(path), "backend": opts["backend"],
               "contexts": {str(c): (prompt[:1] * c if c > len(prompt) else prompt[:c])
                            for c in contexts},
               "decode_tokens": max(4, decode_tokens), "prompt": prompt,
               "greedy_prompt": greedy_prompt, "greedy": GREEDY, "threads": opts.get("threads")}
    modules = os.path.join(opts["dir"], "node_modules")
    if not os.path.isdir(os.path.join(modules, "node-llama-cpp")):
        log(f"  llama.cpp: no node-llama-cpp in {modules} (--llamacpp DIR or $WEBGPT_LLAMACPP)")
        return None
    env = dict(os.environ, NODE_PATH=modules)
    # bench.mjs imports node-llama-cpp from the install: a copy of the script sits beside it.
    script = os.path.join(opts["dir"], "webgpt-bench.mjs")
    if os.path.abspath(os.path.dirname(SCRIPT)) == os.path.abspath(opts["dir"]):
        script = SCRIPT
    else:
        with open(SCRIPT) as src, open(script, "w") as dst:
            dst.write(src.read())
    try:
        r = subprocess.run([opts["node"], script], input=json.dumps(request), cwd=opts["dir"],
                           env=env, capture_output=True, text=True, timeout=3600)
    except OSError as e:
        log(f"  llama.cpp: cannot run node ({opts['node']}): {e}")
        return None
    if r.returncode:
        log(f"  llama.cpp failed: {r.stderr.strip()[-1500:]}")
        return None
    out = json.loads(r.stdout)
    out["ms"] = {int(c): v for c, v in out["ms"].items()}
    out["perf_ms"] = {int(c): v for c, v in (out.get("perf_ms") or {}).items() if v is not None}
    return out
