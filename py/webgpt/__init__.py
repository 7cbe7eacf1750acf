"""webgpt: GPT-2 inference over WebGPU, the same Python in the browser (Pyodide) and natively.

    model = await webgpt.load("weights/shakespeare-char")
    text = await model.generate("ROMEO:", max_new_tokens=100, temperature=0.8, seed=1)
"""

import time

from . import gpu
from .errors import printable
from .folder import ModelFolderError, open_folder
from .sources import open_source
from .tokenizer import Tokenizer, TokenizerError

__all__ = ["load", "ModelFolderError", "Tokenizer", "gpu"]
__version__ = "0.1.0"


async def load(path_or_url, progress=None, device=None, layout=None, check_weights=True):
    """Load a model folder (a directory natively, a URL in the browser) onto the GPU.

    The folder is read and checked completely (config, tokenizer, every tensor's header)
    before any GPU work, so a defect fails fast with a sentence naming the file and tensor.
    `progress(stage, done_bytes, total_bytes)` is called as the weights stream in.
    `layout` picks the kernels' workgroup shapes: "gpu" or "cpu" (no barriers); by default the
    adapter's kind decides. `check_weights` checks on the GPU, once loaded, that no weight is
    NaN or infinite (webgpt/finite.py; it costs about one token's time).

    A load that fails part way (a file cut short while streaming, the GPU out of memory, bad
    weights) destroys the buffers it made before it raises: nothing stays on the GPU.
    """
    from .finite import check_finite
    from .model import Model, layouts

    if layout not in (None, "cpu", "gpu"):
        raise ValueError(f"layout must be 'cpu', 'gpu' or None, got {layout!r}")
    t0 = time.perf_counter()
    source = open_source(path_or_url)
    spec = await open_folder(source)
    tokenizer = await _tokenizer(source, spec)
    stop_ids = await _stop_ids(source, spec, tokenizer)
    if device is None:
        device = await gpu.request_device()
    model = Model(spec, device, tokenizer, layouts(device, layout))
    model.stop_ids = stop_ids
    try:
        # A CPU adapter's buffers are the host's memory: refuse what it cannot hold, before
        # streaming (planned_bytes comes from config.json and the headers alone).
        from .limits import check_host_memory
        check_host_memory(device, model.planned_bytes()[1], "this model")
        await model.upload(progress)
        if check_weights:
            await check_finite(model)
    except BaseException:
        model.release()
        raise
    model.stats["load_s"] = time.perf_counter() - t0
    return model


async def _tokenizer(source, spec):
    """The folder's tokenizer, checked against config.json; a defect is a ModelFolderError.
    GPT-2 BPE files (vocab.json + merges.txt), or a Hugging Face tokenizer.json (with
    tokenizer_config.json where the folder has one)."""
    files = spec.tokenizer_files
    vocab = files[0]
    try:
        if files == ("tokenizer.json",):
            from .hf_tokenizer import HFTokenizer

            config_name = "tokenizer_config.json"
            config = await source.text(config_name) if await source.exists(config_name) else None
            tokenizer = HFTokenizer.from_texts(await source.text(vocab), config,
                                               source.where(vocab), source.where(config_name))
            tokenizer.chat_template = await _chat_template(source, tokenizer)
        else:
            merges = files[1]
            tokenizer = Tokenizer.from_texts(await source.text(vocab), await source.text(merges),
                                             source.where(vocab), source.where(merges))
    except TokenizerError as e:
        raise ModelFolderError(str(e)) from None
    V = spec.config.vocab_size
    if tokenizer.vocab_size > V:
        # The model could not embed the ids the tokenizer gives beyond its vocabulary.
        raise ModelFolderError(
            f"{source.where(vocab)} has token ids up to {tokenizer.vocab_size - 1}, but "
            f"{source.where('config.json')} has vocab_size {V}: the tokenizer files belong to "
            f"another model")
    return tokenizer


async def _chat_template(source, tokenizer):
    """The folder's chat template (chat_template.jinja, else tokenizer_config.json's), or None."""
    from .chat_template import ChatTemplateError, find_chat_template

    name = "chat_template.jinja"
    jinja = await source.text(name) if await source.exists(name) else None
    try:
        return find_chat_template(tokenizer.config, jinja)
    except ChatTemplateError as e:
        raise ModelFolderError(f"{source.where('tokenizer_config.json')}: {e}") from None


async def _stop_ids(source, spec, tokenizer):
    """The ids that end generation: generation_config.json's eos_token_id (an int or a list)
    and the tokenizer's end-of-text id."""
    from .limits import json_budget, parse_json

    ids = set()
    eot = getattr(tokenizer, "eot_id", None)
    if eot is not None:
        ids.add(eot)
    name = "generation_config.json"
    if await source.exists(name):
        where = source.where(name)
        d = parse_json(await source.text(name), where, budget=json_budget(name))
        eos = d.get("eos_token_id") if isinstance(d, dict) else None
        eos = [eos] if isinstance(eos, int) and not isinstance(eos, bool) else eos
        if eos is not None:
            if not isinstance(eos, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in eos):
                raise ModelFolderError(f"{where}: eos_token_id must be a token id or a list of "
                                       f"token ids, not {printable(repr(eos))[:60]}")
            # An id the model cannot produce (at or past vocab_size) can never end a reply.
            ids.update(i for i in eos if i < spec.config.vocab_size)
    return frozenset(ids)
