"""webgpt: GPT-2 inference over WebGPU, the same Python in the browser (Pyodide) and natively.

    model = await webgpt.load("weights/shakespeare-char")
    text = await model.generate("ROMEO:", max_new_tokens=100, temperature=0.8, seed=1)
"""

import time

from . import gpu
from .folder import ModelFolderError, open_folder
from .sources import open_source
from .tokenizer import Tokenizer

__all__ = ["load", "ModelFolderError", "Tokenizer", "gpu"]
__version__ = "0.1.0"


async def load(path_or_url, progress=None, device=None, layout=None):
    """Load a model folder (a directory natively, a URL in the browser) onto the GPU.

    The folder is read and checked completely (config, tokenizer, every tensor's header)
    before any GPU work, so a defect fails fast with a sentence naming the file and tensor.
    `progress(stage, done_bytes, total_bytes)` is called as the weights stream in.
    `layout` picks the kernels' workgroup shapes: "gpu" or "cpu" (no barriers); by default the
    adapter's kind decides.
    """
    from .model import GPT2, layouts

    t0 = time.perf_counter()
    source = open_source(path_or_url)
    spec = await open_folder(source)
    vocab, merges = spec.tokenizer_files
    tokenizer = Tokenizer.from_texts(await source.text(vocab), await source.text(merges))
    if device is None:
        device = await gpu.request_device()
    if layout not in (None, "cpu", "gpu"):
        raise ValueError(f"layout must be 'cpu', 'gpu' or None, got {layout!r}")
    model = GPT2(spec, device, tokenizer, layouts(device, layout))
    await model.upload(progress)
    model.stats["load_s"] = time.perf_counter() - t0
    return model
