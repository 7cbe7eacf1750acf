"""`python -m webgpt bench`: speed of the GPT-2, Llama-family, Gemma, Phi and SmolLM3 shapes on this
machine's adapter.

For each shape and file dtype: load time, prefill tokens/s for a 512-token prompt, greedy decode
ms/token at several context lengths, GPU memory held, and the floor: bytes a decode step must
read (weights + KV cache) divided by the bandwidth a plain copy kernel reaches here. Where
PyTorch with CUDA and transformers are installed, transformers' `generate` on the same shape
runs in the same process as a baseline, and the table gives our time as a ratio of its time.

Weights are random (timing does not depend on their values); they stream from an in-memory
source through the same loader as a model folder. CPython only (uses numpy).
"""

import asyncio
import json
import math
import time

from ..arch import arch_for
from ..gguf_spec import open_gguf
from ..arch.fields import Quantization
from ..kernels import Kernels
from ..model import GPT2, PIPELINE
from ..spec import ModelSpec, QuantizedRef, TensorRef
from ..model.plan import resolve_grid
from . import bench_llamacpp

# The shapes and file types (cli.py, tests/scripts and callers import them from here too).
from .bench_shapes import (ALL_SHAPES, DTYPES, GGUF_DTYPES, HF_CLASSES,  # noqa: F401
                           LLAMA_SHAPES, SHAPES, gguf_type, shape_config)

ITEMSIZE = {"F32": 4, "F16": 2, "Q8": 2, "Q4": 2}  # Q8, Q4: f16 vectors, scales, wpe
ITEMSIZE.update({t: 2 for t in GGUF_DTYPES})
BLOCK = 32  # values per scale of the quantized rows


class RandomSource:
    """A model folder whose tensors are small random values, made on the fly.

    One random block is reused for every chunk, so the source costs no time beside the upload.
    """

    def __init__(self, dtype, chunk=8 << 20):
        import numpy as np

        rng = np.random.default_rng(0)
        vals = rng.uniform(-0.05, 0.05, chunk // ITEMSIZE[dtype])
        self._block = vals.astype(np.float32 if dtype == "F32" else np.float16).tobytes()

    def where(self, name):
        return f"<random>/{name}"

    async def chunks(self, name, start, end, chunk_size=8 << 20):
        block = memoryview(self._block)
        pos = start
        while pos < end:
            n = min(len(block), end - pos)
            yield block[:n]
            pos += n


def random_spec(shape, dtype, source=None):
    """A spec of the GPT-2 `shape` with random weights in `dtype`: F32, F16, or Q8 / Q4 (the
    format of webgpt/tools/quantize.py: matrices as rows of signed values with f16 block scales, the
    rest f16). `source`: where the bytes come from (default: a RandomSource of the dtype's
    values; tests/scripts/bench_dawn.py passes one that needs no numpy, for Pyodide)."""
    if dtype in GGUF_DTYPES:
        return _random_gguf_spec(shape, dtype, source)
    bits = {"Q8": 8, "Q4": 4}.get(dtype)
    quant = Quantization(bits, BLOCK) if bits else None
    cfg = shape_config(shape, quant)
    size = ITEMSIZE[dtype]
    tensors, offset = {}, 0

    def ref(dt, shp, itemsize):
        nonlocal offset
        n = math.prod(shp) * itemsize
        r = TensorRef("model.safetensors", dt, shp, offset, offset + n)
        offset += n
        return r

    arch = arch_for(cfg)
    quantized = set(arch.quantized_names()) if bits else set()
    for name, shp in arch.expected_shapes().items():
        if name in quantized:
            transposed = arch.matrix_storage(name) == "cols"
            N, K = (shp[1], shp[0]) if transposed else shp
            q = ref("I8" if bits == 8 else "U8", (N, K * bits // 8), 1)
            tensors[name] = QuantizedRef(q, ref("F16", (N, K // BLOCK), 2), bits, BLOCK, shp,
                                         transposed)
        else:
            tensors[name] = ref("F32" if dtype == "F32" else "F16", shp, size)
    return ModelSpec(config=cfg, source=source or RandomSource("F32" if dtype == "F32" else "F16"),
                     tensors=tensors)


def _random_gguf_spec(shape, dtype, source=None):
    """A GGUF model of `shape` whose matrices are ggml blocks of random bytes (the random
    source's f16 values: every f16 in a block is a small number, as a real file's factors)."""
    from ..ggml import row_bytes
    from ..spec import BlockRef

    cfg = shape_config(shape)
    arch = arch_for(cfg)
    tensors, offset, types = {}, 0, {}
    matrices = set(arch.quantized_names())
    for name, shp in arch.expected_shapes().items():
        if name in matrices:
            cols = arch.matrix_storage(name) == "cols"
            N, K = (shp[1], shp[0]) if cols else shp
            t = gguf_type(dtype, name, K)
            n = N * row_bytes(t, K)
            tensors[name] = BlockRef("model.gguf", t, shp, N, K, offset, offset + n)
            types[t] = types.get(t, 0) + n
        else:
            n = math.prod(shp) * 2
            tensors[name] = TensorRef("model.gguf", "F16", shp, offset, offset + n)
        offset += n
    return ModelSpec(config=cfg, source=source or RandomSource("F16"), tensors=tensors,
                     gguf={"files": ["model.gguf"], "types": types})


class _NoTokenizer:
    eot_id = None  # random weights: never stop early


async def copy_bandwidth(dev, nbytes=256 << 20, repeats=10):
    """Bytes moved per second (read + write) by the copy kernel on `nbytes` buffers."""
    nbytes = min(nbytes, dev.max_binding) // 16 * 16
    src, dst = dev.buffer(nbytes, "copy src"), dev.buffer(nbytes, "copy dst")
    k = Kernels(dev)
    n4, wg = nbytes // 16, 256
    groups = -(-n4 // wg)
    gx = min(groups, 65535)
    pipe = k.get("copy", N4=n4, WG=wg)
    group = dev.bind_group(pipe, [src, dst])

    async def run(n):
        enc = dev.encoder()
        for _ in range(n):
            enc.dispatch(pipe, group, gx, -(-groups // gx))
        enc.submit()
        await dev.read(dst, 0, 4)

    await run(2)  # warm up
    t0 = time.perf_counter()
    await run(repeats)
    dt = time.perf_counter() - t0
    dev.destroy(src)
    dev.destroy(dst)
    return 2 * nbytes * repeats / dt


# An API request with every logits processor on (bench --controls): what it costs per token.
CONTROLS = dict(min_p=0.05, repetition_penalty=1.1, frequency_penalty=0.5, presence_penalty=0.5,
                logit_bias={1: -5.0, 2: 5.0}, logprobs=5)


async def decode_ms(model, ids, decode_tokens, **sampling):
    """ms per decoded token after `ids`, in steady state: the difference of two runs that share
    the prompt pass, with the read-back pipeline full (a single run's average would credit the
    passes queued behind the first token to the prompt)."""
    async def timed(n):
        t = time.perf_counter()
        await model.generate_ids(ids, max_new_tokens=n, stop_at_eot=False, **sampling)
        return time.perf_counter() - t

    short = PIPELINE + 2
    n = min(decode_tokens, model.n_ctx - len(ids) - short)  # stay inside the context
    await timed(short)
    # Short and long runs alternate, so a drift (clocks settling after the load, another
    # process) weighs on both alike; the best of each. A long run no slower than the short one
    # means such a drift still hid the difference (it happened once, on the H100's first row
    # of a bench: -0.41 ms/token): more rounds then.
    t_short = t_long = float("inf")
    for rounds in range(6):
        t_short = min(t_short, await timed(short))
        t_long = min(t_long, await timed(short + n))
        if rounds >= 1 and t_long > t_short:
            break
    if t_long <= t_short:
        return float("nan")   # no measurement: a table cell "nan", not a negative time
    return (t_long - t_short) / n * 1e3


async def bench_model(dev, shape, dtype, contexts, decode_tokens, prompt_len, log, profile=False,
                      layout=None, controls=False, spec=None):
    """One row of the table: `shape` with random `dtype` weights (or `spec`, a GGUF file's:
    then also its first greedy tokens), loaded with `layout` (the adapter's default when None);
    with `controls`, also sampled decoding without and with CONTROLS."""
    from_file, spec = spec is not None, spec or random_spec(shape, dtype)
    before = dev.allocated
    t0 = time.perf_counter()
    model = GPT2(spec, dev, _NoTokenizer(), layout)
    await model.upload()
    await model.sync()  # wait until every upload and conversion has run
    load_s = time.perf_counter() - t0
    gpu_bytes = dev.allocated - before
    cfg = spec.config
    row = {"shape": shape, "file dtype": dtype,
           "weights": model.weights, "load_s": load_s,
           "gpu_MiB": gpu_bytes / 2**20}
    # Prefill: the second run, once pipelines exist.
    prompt = [(i * 7919) % cfg.vocab_size for i in range(prompt_len)]
    for _ in range(2):
        await model.generate_ids(prompt, max_new_tokens=1, temperature=0)
    row["prefill_tok_s"] = prompt_len / model.stats["prefill_s"]
    if from_file:  # the check against llama.cpp on the same file
        row["greedy"] = await model.generate_ids(prompt[:16], max_new_tokens=8, temperature=0,
                                                 stop_at_eot=False)
    weight_bytes = model.weight_bytes()
    for ctx in contexts:
        ids = prompt[:1] * ctx if ctx > len(prompt) else prompt[:ctx]
        ms = await decode_ms(model, ids, decode_tokens, temperature=0)
        row[f"ms/token @{ctx}"] = ms
        # One decode step reads every weight and the KV cache of ctx positions (f32).
        d = model.dims
        row[f"bytes/token @{ctx}"] = weight_bytes + 2 * d.n_layer * ctx * d.kv_cols * 4
        log(f"  {shape} {dtype}: {ms:.2f} ms/token at context {ctx}")
        if controls:
            # Sampled, without and with an API request's processors and log-probs.
            plain = await decode_ms(model, ids, decode_tokens, temperature=1.0, seed=1)
            full = await decode_ms(model, ids, decode_tokens, temperature=1.0, seed=1,
                                   **CONTROLS)
            row[f"sampled ms/token @{ctx}"], row[f"controls ms/token @{ctx}"] = plain, full
            log(f"  {shape} {dtype}: sampled {plain:.2f}, with the controls {full:.2f} "
                f"ms/token at context {ctx} ({full / plain:.2f}x)")
    if profile:
        row["profile_us"] = await profile_decode(model)
        row["profile_prefill_us"] = await profile_decode(model, T=min(prompt_len, model.plan.chunk),
                                                         pos0=0)
        log(f"  profile of the {prompt_len}-token prompt (us per dispatch): " +
            ", ".join(f"{k} {v:.1f}" for k, v in row["profile_prefill_us"].items()))
        row["dispatch_us"] = await dispatch_cost(dev)
        log("  tiny dispatch (us, incl. one submit + read-back / 200): " +
            ", ".join(f"{k} {v:.1f}" for k, v in row["dispatch_us"].items()))
        log("  profile (us per dispatch): " + ", ".join(f"{k} {v:.1f}" for k, v in row["profile_us"].items()))
    model.release()
    return row


async def dispatch_cost(dev, n=200):
    """Microseconds per tiny dispatch: in a dependent chain (each reads what the previous
    wrote, so the GPU must drain between them) and independent (different buffers)."""
    k = Kernels(dev)
    pipe = k.get("copy", N4=64, WG=64)
    bufs = [dev.buffer(1024) for _ in range(4)]
    chain = [dev.bind_group(pipe, [bufs[i % 2], bufs[1 - i % 2]]) for i in range(2)]
    free = [dev.bind_group(pipe, [bufs[0], bufs[2]]), dev.bind_group(pipe, [bufs[1], bufs[3]])]

    async def timed(groups):
        enc = dev.encoder()
        for i in range(n):
            enc.dispatch(pipe, groups[i % 2], 1)
        t = time.perf_counter()
        enc.submit()
        await dev.read(bufs[0], 0, 4)
        return time.perf_counter() - t

    out = {}
    for name, groups in (("dependent", chain), ("independent", free)):
        await timed(groups)
        out[name] = min([await timed(groups) for _ in range(3)]) / n * 1e6
    for b in bufs:
        dev.destroy(b)
    return out


async def profile_decode(model, repeats=50, T=1, pos0=16):
    """Microseconds per dispatch of each op of a pass of T tokens at position pos0 (T = 1: a
    decode step; T = 512: the prompt), each repeated in one encoder (`repeats` times, fewer for
    long passes), less the cost of an empty submit + read-back; and the whole pass. The ops are
    the plan's launch records of layer 0 (and the LM head and argmax), by name, so a fused
    record ("h.0.ln_1 + h.0.attn.c_attn") is timed as the one dispatch it is."""
    dev, plan = model.device, model.plan
    kind = "decode" if T == 1 else "prompt"
    plan.write_params(T, pos0, T - 1, 1)
    launches = plan.launches(kind) + plan.launches("argmax")
    ops = {}
    for launch in launches:
        if launch.name.startswith("h.") and not launch.name.startswith("h.0."):
            continue  # every layer runs the same kernels: time layer 0's
        name = launch.name.replace("h.0.", "")
        if name == "attn":
            name = f"attention@{pos0 + T}"
        ops.setdefault(name, []).append(launch)

    def record_of(group):
        def record(enc):
            for launch in group:
                enc.dispatch(launch.pipeline, launch.bind_group,
                             *(resolve_grid(v, T, 1) for v in launch.grid))
        return record

    ops = {name: record_of(group) for name, group in ops.items()}
    ops["whole pass"] = lambda enc: (plan.encode(enc, kind, T, 1), plan.encode(enc, "argmax"))
    if T > 1:
        repeats = max(3, repeats // 10)

    async def timed(record, n):
        enc = dev.encoder()
        for _ in range(n):
            record(enc)
        t = time.perf_counter()
        enc.submit()
        await model.sync()
        return time.perf_counter() - t

    empty = min([await timed(lambda enc: None, 1) for _ in range(5)])
    out = {"submit + read-back": empty * 1e6}
    for name, record in ops.items():
        if record is None:
            continue
        n = 3 if name == "whole pass" else repeats
        await timed(record, 2)
        best = min([await timed(record, n) for _ in range(3)])
        out[name] = (best - empty) / n * 1e6
    return out


def _hf_model(shape, dtype):
    """transformers' model of `shape` (random weights) on CUDA in `dtype`, or None without
    PyTorch, CUDA or transformers."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch_dtype = torch.float32 if dtype == "F32" else torch.float16
    if shape in SHAPES:
        cfg = transformers.GPT2Config(vocab_size=50257, n_positions=1024, **SHAPES[shape])
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        keys = dict(LLAMA_SHAPES[shape], max_position_embeddings=4096)
        config_class, model_class = HF_CLASSES[keys.pop("model_type")]
        cfg = getattr(transformers, config_class)(**keys)
        model = getattr(transformers, model_class)(cfg)
    return model.to("cuda", torch_dtype).eval()


def _n_ctx(cfg):
    return getattr(cfg, "n_positions", None) or cfg.max_position_embeddings


def torch_baseline(shape, dtype, contexts, decode_tokens, static=False):
    """transformers' `generate` on the same shape and GPU, ms/token at each context: eager, or
    with `static` its static KV cache (which transformers compiles with torch.compile); None
    without CUDA."""
    model = _hf_model(shape, dtype)
    if model is None:
        return None
    import torch

    cfg = model.config
    out = {}
    extra = {"cache_implementation": "static"} if static else {}
    # Longest context first: transformers keeps the static cache it made and reuses it for a
    # shorter run, so the compiled decode step is made once.
    for ctx in sorted(contexts, reverse=static):
        ids = torch.arange(ctx, device="cuda").unsqueeze(0) % cfg.vocab_size
        n = min(decode_tokens, _n_ctx(cfg) - ctx - 1) + 1  # stay inside the context

        def run(k):
            torch.cuda.synchronize()
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=k, min_new_tokens=k, do_sample=False,
                           pad_token_id=0, **extra)
            torch.cuda.synchronize()
            return time.perf_counter() - t

        try:
            run(n)
            run(2)
            if static:  # compiled: more runs until every graph is warm
                run(n), run(1)
            out[ctx] = (min(run(n) for _ in range(2)) - min(run(1) for _ in range(2))) / (n - 1) * 1e3
        except Exception as e:  # a transformers version without this path: say so, go on
            print(f"  transformers {'static' if static else 'eager'} generate failed on "
                  f"{shape}: {type(e).__name__}: {e}")
            return None
    model = None  # free the GPU memory before the next shape
    torch.cuda.empty_cache()
    return out


class _StaticDecoder:
    """One greedy decode step of a transformers model written out in PyTorch over a static KV
    cache, captured in a CUDA graph: the gpt-fast recipe. The step reads the token and its
    position from GPU tensors and leaves the next token and position there, so replaying the
    graph n times decodes n tokens with no CPU work between them."""

    def __init__(self, model, max_len):
        import torch

        self.torch = torch
        cfg = model.config
        self.gpt2 = hasattr(cfg, "n_embd")
        sd = {k: v for k, v in model.state_dict().items()}
        dev, dt = "cuda", next(model.parameters()).dtype
        if self.gpt2:
            self.H = self.G = cfg.n_head
            self.hd = cfg.n_embd // cfg.n_head
            self.L = cfg.n_layer
        else:
            self.H, self.G = cfg.num_attention_heads, cfg.num_key_value_heads
            self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
            self.L = cfg.num_hidden_layers
            pos = torch.arange(max_len, device=dev)[None]
            cos, sin = model.model.rotary_emb(torch.zeros(1, device=dev, dtype=dt), pos)
            self.cos, self.sin = cos[0], sin[0]                      # (max_len, hd)
        self.sd, self.cfg, self.model = sd, cfg, model
        shape = (self.L, 1, self.G, max_len, self.hd)
        self.k = torch.zeros(shape, device=dev, dtype=dt)
        self.v = torch.zeros(shape, device=dev, dtype=dt)
        self.tok = torch.zeros(1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        self.span = torch.arange(max_len, device=dev)
        self.graph = None

    def _norm(self, x, name):
        F, sd, cfg = self.torch.nn.functional, self.sd, self.cfg
        if self.gpt2:
            return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"],
                                cfg.layer_norm_epsilon)
        return F.rms_norm(x, x.shape[-1:], sd[name + ".weight"], cfg.rms_norm_eps)

    def _rope(self, x):  # x: (1, heads, 1, hd)
        torch = self.torch
        cos, sin = self.cos[self.pos], self.sin[self.pos]            # (1, hd)
        half = x.shape[-1] // 2
        rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rot * sin

    def step(self):
        torch, F, sd = self.torch, self.torch.nn.functional, self.sd
        H, G, hd = self.H, self.G, self.hd
        mask = (self.span <= self.pos)[None, None, None, :]          # (1, 1, 1, max_len)
        if self.gpt2:
            x = sd["transformer.wte.weight"][self.tok] + sd["transformer.wpe.weight"][self.pos]
        else:
            x = sd["model.embed_tokens.weight"][self.tok]
        for i in range(self.L):
            if self.gpt2:
                p = f"transformer.h.{i}."
                h = self._norm(x, p + "ln_1")
                qkv = torch.addmm(sd[p + "attn.c_attn.bias"], h, sd[p + "attn.c_attn.weight"])
                q, k, v = (t.view(1, 1, H, hd).transpose(1, 2) for t in qkv.split(H * hd, -1))
            else:
                p = f"model.layers.{i}."
                h = self._norm(x, p + "input_layernorm")
                a = p + "self_attn."
                q, k, v = (F.linear(h, sd[a + n + ".weight"], sd.get(a + n + ".bias"))
                           for n in ("q_proj", "k_proj", "v_proj"))
                q, k, v = (q.view(1, 1, H, hd), k.view(1, 1, G, hd), v.view(1, 1, G, hd))
                if a + "q_norm.weight" in sd:  # Qwen3
                    q = F.rms_norm(q, (hd,), sd[a + "q_norm.weight"], self.cfg.rms_norm_eps)
                    k = F.rms_norm(k, (hd,), sd[a + "k_norm.weight"], self.cfg.rms_norm_eps)
                q, k, v = (t.transpose(1, 2) for t in (q, k, v))
                q, k = self._rope(q), self._rope(k)
            self.k[i].index_copy_(2, self.pos, k)
            self.v[i].index_copy_(2, self.pos, v)
            y = F.scaled_dot_product_attention(q, self.k[i], self.v[i], attn_mask=mask,
                                               enable_gqa=G != H)
            y = y.transpose(1, 2).reshape(1, H * hd)
            if self.gpt2:
                x = torch.addmm(sd[p + "attn.c_proj.bias"], y, sd[p + "attn.c_proj.weight"]) + x
                h = self._norm(x, p + "ln_2")
                h = F.gelu(torch.addmm(sd[p + "mlp.c_fc.bias"], h, sd[p + "mlp.c_fc.weight"]),
                           approximate="tanh")
                x = torch.addmm(sd[p + "mlp.c_proj.bias"], h, sd[p + "mlp.c_proj.weight"]) + x
            else:
                x = F.linear(y, sd[a + "o_proj.weight"], sd.get(a + "o_proj.bias")) + x
                h = self._norm(x, p + "post_attention_layernorm")
                m = p + "mlp."
                h = F.silu(F.linear(h, sd[m + "gate_proj.weight"])) * F.linear(h, sd[m + "up_proj.weight"])
                x = F.linear(h, sd[m + "down_proj.weight"]) + x
        if self.gpt2:
            x = self._norm(x, "transformer.ln_f")
            head = sd["transformer.wte.weight"]
        else:
            x = self._norm(x, "model.norm")
            head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
        logits = F.linear(x, head)
        self.tok.copy_(logits.argmax(-1))
        self.pos.add_(1)
        return logits

    def capture(self):
        torch = self.torch
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                self.step()
        torch.cuda.current_stream().wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.step()

    def check(self):
        """The captured step's logits against the transformers model's own (a sentence if they
        differ, so a wrong baseline never goes into the table)."""
        torch = self.torch
        ids = torch.tensor([[5, 17, 99, 3]], device="cuda")
        with torch.no_grad():
            want = self.model(ids).logits[0].float()
        for t in range(ids.shape[1]):
            self.tok.fill_(int(ids[0, t]))
            self.pos.fill_(t)
            self.graph.replay()
        got = self.logits[0].float()
        err = (got - want[-1]).abs().max().item() / want[-1].abs().max().item()
        if err > 2e-2:
            raise RuntimeError(f"the CUDA-graph decode's logits differ from transformers' by "
                               f"{err:.3g} of their scale")

    def ms_per_token(self, ctx, n):
        torch = self.torch

        def timed(k):
            self.tok.fill_(1)
            self.pos.fill_(ctx)
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(k):
                self.graph.replay()
            torch.cuda.synchronize()
            return time.perf_counter() - t

        timed(4)
        return (min(timed(n + 4) for _ in range(3)) - min(timed(4) for _ in range(3))) / n * 1e3


def cuda_graph_baseline(shape, dtype, contexts, decode_tokens):
    """PyTorch greedy decoding with a static KV cache, one token per CUDA-graph replay (the
    gpt-fast recipe; see _StaticDecoder), ms/token at each context; None without CUDA, and
    for the families _StaticDecoder does not implement (GPT-2 and Llama/Qwen only)."""
    if shape in LLAMA_SHAPES and LLAMA_SHAPES[shape]["model_type"] not in ("llama", "qwen2",
                                                                             "qwen3"):
        return None
    model = _hf_model(shape, dtype)
    if model is None:
        return None
    import torch

    n_ctx = _n_ctx(model.config)
    out = {}
    n = max(4, decode_tokens)
    with torch.inference_mode():
        for ctx in contexts:
            # The cache spans what the run reaches, as gpt-fast sizes it for a prompt and the
            # tokens asked for (attention reads all of it, masked).
            max_len = min(n_ctx, ctx + n + 8)
            dec = _StaticDecoder(model, max_len)
            dec.capture()
            dec.check()
            out[ctx] = dec.ms_per_token(ctx, min(n, max_len - ctx - 8))
            dec = None
    dec = model = None
    torch.cuda.empty_cache()
    return out


PEERS = (("hf", "HF eager"), ("hf_static", "HF static"), ("graphs", "CUDA graphs"),
         ("llamacpp", "llama.cpp"))


def table(rows, contexts, bandwidth, device_name):
    lines = [f"Device: {device_name}; copy kernel bandwidth {bandwidth / 1e9:.0f} GB/s.", ""]
    peers = [(key, label) for key, label in PEERS if any(r.get(key) for r in rows)]
    cpp = any(r.get("llamacpp") for r in rows)
    head = ["model", "file", "weights on GPU", "load s", "GPU MiB", "prefill 512 tok/s"]
    head += ["llama.cpp prefill tok/s", "greedy 8 = llama.cpp"] if cpp else []
    for c in contexts:
        head += [f"ms/tok @{c}", f"floor @{c}", f"x floor @{c}"]
        head += [f"{label} @{c}" for _, label in peers]
        if peers:
            head.append(f"vs best peer @{c}")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in rows:
        cells = [r["shape"], r["file dtype"], r["weights"], f"{r['load_s']:.1f}",
                 f"{r['gpu_MiB']:.0f}", f"{r['prefill_tok_s']:.0f}"]
        cells += bench_llamacpp.cells(r) if cpp else []
        for c in contexts:
            ms = r[f"ms/token @{c}"]
            floor = r[f"bytes/token @{c}"] / bandwidth * 1e3
            cells += [f"{ms:.2f}", f"{floor:.3f}", f"{ms / floor:.1f}"]
            if f"controls ms/token @{c}" in r:
                cells[-3] += (f" (sampled {r[f'sampled ms/token @{c}']:.2f}, with the controls "
                              f"{r[f'controls ms/token @{c}']:.2f})")
            got = [(r.get(key) or {}).get(c) for key, _ in peers]
            cells += [f"{t:.2f}" if t else "n/a" for t in got]
            if peers:
                best = min((t for t in got if t), default=None)
                cells.append(f"{ms / best:.2f}" if best else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("x floor: our ms/token divided by the floor (bytes read per token / copy bandwidth)."
                 + (" Peers, ms/token on the same GPU and dtype, in the same process: "
                    "transformers' generate eager (HF eager) and with its static, compiled "
                    "cache (HF static); PyTorch decoding one token per CUDA-graph replay over a "
                    "static cache (CUDA graphs). vs best peer: ours over the fastest of them "
                    "(below 1 is faster)." if peers else "")
                 + (" " + bench_llamacpp.NOTE if cpp else ""))
    return "\n".join(lines)


def plot(rows, contexts, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    # One colour per shape, one marker per dtype; each PyTorch peer its own line style.
    fig, ax = plt.subplots(figsize=(9, 5))
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    colours = dict(zip(shapes, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    markers = {"F32": "o", "F16": "s", "Q8": "^", "Q4": "v", "Q4_0": "<", "Q8_0": ">",
               "Q4_K_M": "D"}
    for r in rows:
        style = dict(color=colours[r["shape"]], marker=markers.get(r["file dtype"], "o"))
        ax.plot(contexts, [r[f"ms/token @{c}"] for c in contexts],
                label=f"{r['shape']} {r['file dtype']}", **style)
        for (key, label), ls in zip(PEERS, ("--", "-.", ":", (0, (5, 1, 1, 1)))):
            if r.get(key):
                ax.plot(contexts, [r[key][c] for c in contexts], linestyle=ls, alpha=0.6,
                        label=f"{r['shape']} {r['file dtype']} {label}", **style)
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("ms per token (greedy decode)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


async def run_bench(shapes, dtypes, contexts, decode_tokens, prompt_len, baseline, out_json,
                    out_png, log=print, profile=False, controls=False, llamacpp=None):
    """`baseline`: which peers to run beside ours, a collection of "hf" (transformers eager),
    "hf_static" and "graphs" (these three where CUDA is there), and "llamacpp" (llama.cpp on a
    GGUF file of the shape, which ours then loads too; `llamacpp`: bench_llamacpp.options)
    (True: the PyTorch three, False: none)."""
    if baseline is True:
        baseline = [key for key, _ in PEERS if key != "llamacpp"]
    baseline = set(baseline or ())
    from .. import gpu

    dev = await gpu.request_device()
    bandwidth = await copy_bandwidth(dev)
    log(f"adapter: {dev.describe()}; copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    rows = []
    for shape in shapes:
        for dtype in dtypes:
            gguf = None
            if "llamacpp" in baseline and bench_llamacpp.supports(shape, dtype):
                gguf = bench_llamacpp.model_file(shape, dtype, (llamacpp or {}).get("files"), log)
            row = await bench_model(dev, shape, dtype, contexts, decode_tokens, prompt_len, log,
                                    profile, controls=controls,
                                    spec=gguf and await open_gguf(gguf))
            if gguf:
                bench_llamacpp.add_peer(row, gguf, contexts, decode_tokens, prompt_len,
                                        llamacpp, log)
            if dtype in ("F32", "F16"):
                if "hf" in baseline:
                    row["hf"] = torch_baseline(shape, dtype, contexts, decode_tokens)
                if "hf_static" in baseline:
                    row["hf_static"] = torch_baseline(shape, dtype, contexts, decode_tokens,
                                                      static=True)
                if "graphs" in baseline:
                    row["graphs"] = cuda_graph_baseline(shape, dtype, contexts, decode_tokens)
                for key, label in PEERS:
                    if row.get(key):
                        log(f"  {shape} {dtype} {label}: " + ", ".join(
                            f"{v:.2f} ms/token at context {c}" for c, v in row[key].items()))
            rows.append(row)
    text = table(rows, contexts, bandwidth, dev.describe())
    if out_json:
        with open(out_json, "w") as f:
            json.dump({"device": dev.describe(), "bandwidth": bandwidth, "rows": rows}, f, indent=1)
    if out_png:
        plot(rows, contexts, out_png)
    return text


def main(a):
    baseline = () if a.no_baseline else a.baselines
    text = asyncio.run(run_bench(a.shapes, a.dtypes, a.contexts, a.decode_tokens, a.prompt,
                                 baseline, a.json, a.plot, profile=a.profile,
                                 controls=a.controls, llamacpp=bench_llamacpp.options(a)))
    print(text)
