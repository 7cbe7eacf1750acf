"""webgpt: LLM inference over WebGPU (GPT-2, Llama, Qwen), the same Python in the browser
(Pyodide) and natively (wgpu-py).

    model = await webgpt.load("weights/shakespeare-char")
    text = await model.generate("ROMEO:", max_new_tokens=100, temperature=0.8, seed=1)
"""

import importlib
import time

from .errors import RequestError
from .folder import ModelFolderError, open_folder
from .tokenizer import Tokenizer, TokenizerError

__all__ = ["load", "open_folder", "Client", "function_tool", "ModelFolderError",
           "RequestError", "Tokenizer", "TokenizerError", "gpu"]
__version__ = "0.1.0"


def __getattr__(name):
    # webgpt.gpu and webgpt.Client (webgpt.api, over the model) on first use, so that reading
    # a folder (webgpt.folder, the tools that only read folders) imports no GPU code.
    if name == "gpu":
        return importlib.import_module(".gpu", __name__)
    if name in ("Client", "function_tool"):
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def load(path_or_url, progress=None, device=None, layout=None, check_weights=True,
               quantize=None):
    """Load a model folder (a directory natively, a URL in the browser) onto the GPU.

    The folder is read and checked completely (config, tokenizer, chat template, every
    tensor's header) before any GPU work, so a defect fails fast with a sentence naming the
    file and tensor. `progress(stage, done_bytes, total_bytes)` is called as the weights stream
    in. `layout` picks the kernels' workgroup shapes: "gpu" or "cpu" (no barriers); by default
    the adapter's kind decides. `check_weights` checks on the GPU, once loaded, that no weight
    is NaN or infinite (webgpt/finite.py; it costs about one token's time).

    `quantize` ("q8" or "q4", or (bits, block)): the float matrices of a safetensors folder
    are quantized on the GPU as they stream in, to the same numbers `build.py quantize` writes
    (32 values per scale by default); GPU memory never holds more than one matrix (a window of
    its rows) at full precision.

    A load that fails part way (a file cut short while streaming, the GPU out of memory, bad
    weights) destroys the buffers it made before it raises: nothing stays on the GPU.
    """
    from . import gpu
    from .finite import check_finite
    from .limits import check_host_memory
    from .model import Model, layouts

    if layout not in (None, "cpu", "gpu"):
        raise ValueError(f"layout must be 'cpu', 'gpu' or None, got {layout!r}")
    t0 = time.perf_counter()
    spec = await open_folder(path_or_url)
    if quantize is not None:
        spec = _quantize_at_load(spec, quantize)
    if device is None:
        device = await gpu.request_device()
    model = Model(spec, device, layout=layouts(device, layout))
    try:
        # A CPU adapter's buffers are the host's memory: refuse what it cannot hold, before
        # streaming (planned_bytes comes from config.json and the headers alone).
        check_host_memory(device, model.planned_bytes()[1], "this model")
        await model.upload(progress)
        if check_weights:
            await check_finite(model)
    except BaseException:
        model.release()
        raise
    model.stats["load_s"] = time.perf_counter() - t0
    return model


def _quantize_at_load(spec, quantize):
    """`spec` with load_quantization set, after checking every matrix can take it."""
    import dataclasses

    from .arch import arch_for
    from .config import Quantization, check_quantization

    bits, block = {"q8": (8, 32), "q4": (4, 32)}.get(quantize, (None, None)) \
        if isinstance(quantize, str) else tuple(quantize)
    why = "quantize must be 'q8' or 'q4'" if bits is None else check_quantization(bits, block)
    if why:
        raise ValueError(f"{why}, not {quantize!r}")
    if spec.quantization is not None:
        what = spec.source.where(spec.gguf["files"][0] if spec.gguf else "")
        raise ModelFolderError(f"{what} is already quantized ({spec.quantization}); "
                               f"quantize=... is for float weights")
    arch = arch_for(spec.config)
    group = {8: 16, 4: 32}[bits]
    for name, ref in spec.tensors.items():
        if arch.is_matrix(name):
            K = ref.shape[0] if arch.matrix_storage(name) == "cols" else ref.shape[1]
            if K % block or K % group:
                raise ModelFolderError(
                    f"{spec.source.where(ref.file)}: tensor {name!r} has rows of {K} values, "
                    f"which {bits}-bit blocks of {block} cannot hold (a multiple of "
                    f"{max(block, group)} is needed)")
    return dataclasses.replace(spec, load_quantization=Quantization(bits, block))
