"""The page's Python, run by worker.mjs in a Web Worker (imported as `webgpt_page`).

It loads a model with `webgpt.load` from the site's models/<name>/ URL, generates text with
`model.stream` and posts what happens to the page's main thread (main.js):

    {type: "progress", stage, done, total}       weights streaming in
    {type: "loaded", name, device, has_f16, uses_f16, load_s}
    {type: "piece", text}                         a piece of the continuation, as produced
    {type: "done", stats}                         stats as model.stats, plus tokens and stopped
    {type: "selftest", ok, text}                  the result of gpu_selftest()
    {type: "error", stage, message, hint}         a sentence for the user, and what to do

Stop: `stop()` runs when the page posts "stop"; the generation loop checks the flag after each
token (each token awaits the GPU, so the worker's event loop handles messages in between).
"""

import sys
import time
import traceback

import js
from pyodide.ffi import to_js

import webgpt
from webgpt.fetch_source import FetchSource
from webgpt.gpu import GPUError

_model = None
_stop_requested = False


def post(kind, **fields):
    js.postMessage(to_js({"type": kind, **fields}, dict_converter=js.Object.fromEntries))


def _error(stage, message, hint=""):
    post("error", stage=stage, message=message, hint=hint)


def _progress(stage, done, total):
    post("progress", stage=stage, done=int(done), total=int(total))


async def load_model(name, url):
    global _model
    if _model is not None:
        close = getattr(_model.device, "close", None)
        _model = None
        if close is not None:
            close()  # frees the previous model's GPU buffers now, not at garbage collection
    t0 = time.perf_counter()
    source = FetchSource(url, progress=_progress)
    try:
        model = await webgpt.load(source, progress=_progress)
    except webgpt.ModelFolderError as e:
        _error("load", f"The model \u201c{name}\u201d could not be loaded: {e}",
               "A model folder needs config.json, model.safetensors (or shards with "
               "model.safetensors.index.json), vocab.json and merges.txt. Fix the folder under "
               "weights/, run python build.py again, or pick another model.")
        return
    except GPUError as e:
        _error("load", str(e), "The page needs WebGPU with a working adapter to run models.")
        return
    except MemoryError as e:
        _error("load", f"The model \u201c{name}\u201d does not fit this GPU: {e}",
               "Pick a smaller model.")
        return
    except Exception as e:
        traceback.print_exc()
        _error("load", f"The model \u201c{name}\u201d could not be loaded: {type(e).__name__}: {e}",
               "See the browser's console for details.")
        return
    finally:
        await source.close()
    _model = model
    load_s = model.stats.get("load_s") or (time.perf_counter() - t0)
    post("loaded", name=name, device=model.device.describe(), has_f16=bool(model.device.has_f16),
         uses_f16=bool(model.uses_f16), load_s=load_s)


def stop():
    global _stop_requested
    _stop_requested = True


async def generate(prompt, max_new_tokens, temperature, top_k, top_p, seed):
    global _stop_requested
    _stop_requested = False
    if _model is None:
        _error("generate", "No model is loaded yet.", "Pick a model and wait for it to load.")
        return
    temperature = float(temperature)
    top_k = int(top_k) or None
    top_p = float(top_p)
    top_p = None if top_p >= 1 else top_p
    seed = None if seed is None else int(seed)
    tokens = 0
    stream = _model.stream(str(prompt), max_new_tokens=int(max_new_tokens),
                           temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    try:
        async for piece in stream:
            tokens += 1
            post("piece", text=piece)
            if _stop_requested:
                break
    except ValueError as e:  # a bad parameter or prompt: a sentence from check_params
        _error("generate", f"Cannot generate: {e}", "Change the parameter and try again.")
        return
    except Exception as e:
        traceback.print_exc()
        _error("generate", f"Generation failed: {type(e).__name__}: {e}",
               "See the browser's console for details.")
        return
    finally:
        await stream.aclose()
    stats = {k: v for k, v in _model.stats.items() if isinstance(v, (int, float)) or v is None}
    stats["tokens"] = stats.get("decode_tokens", 0) + (1 if stats.get("first_token_s") else 0)
    stats["pieces"] = tokens
    stats["stopped"] = _stop_requested
    stats["seed"] = seed
    post("done", stats=stats)


SELFTEST_WGSL = """
// y[i] = x[i] * SCALE + 1 for i < N: checks buffers, writes, override constants, read-back.
override N: u32;
override SCALE: f32 = 1.0;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < N) { y[id.x] = x[id.x] * SCALE + 1.0; }
}
"""


async def gpu_selftest():
    """One compute shader through webgpt.gpu's browser backend; posts what it found."""
    import struct

    try:
        dev = await webgpt.gpu.request_device()
        n = 1000
        x = dev.buffer(n * 4, "x")
        y = dev.buffer(n * 4, "y")
        values = [float(i) - 500.0 for i in range(n)]
        data = struct.pack(f"<{n}f", *values)
        # The first half as Python bytes, the second as a JS Uint8Array (as fetch gives).
        half = n // 2 * 4
        dev.write(x, 0, data[:half])
        dev.write(x, half, js.Uint8Array.new(to_js(data[half:])))
        pipe = dev.pipeline(SELFTEST_WGSL, {"N": n, "SCALE": 3}, "selftest")
        enc = dev.encoder()
        enc.dispatch(pipe, dev.bind_group(pipe, [x, y]), (n + 63) // 64)
        enc.submit()
        got = struct.unpack(f"<{n}f", await dev.read(y, 0, n * 4))
        bad = [i for i in range(n) if got[i] != values[i] * 3 + 1]
        ok = not bad
        text = (f"GPU self-test {'passed' if ok else 'FAILED'} on {dev.describe()}: "
                f"{n - len(bad)}/{n} values right; features: {', '.join(sorted(dev.features)) or 'none'}; "
                f"max storage binding {dev.limits.get('max-storage-buffer-binding-size')}; "
                f"Python {sys.version.split()[0]}")
        dev.close()
    except Exception as e:
        traceback.print_exc()
        ok, text = False, f"GPU self-test failed: {type(e).__name__}: {e}"
    post("selftest", ok=ok, text=text)
