"""Read a model folder (Hugging Face layout) and check all of it before any GPU work.

A folder holds config.json, the weights as model.safetensors or as shards listed in
model.safetensors.index.json, the tokenizer files its architecture names (GPT-2's vocab.json +
merges.txt, or tokenizer.json with tokenizer_config.json), and optionally
chat_template.jinja and generation_config.json. `open_folder` reads every small file and the
safetensors headers (never the weights' bytes) and returns a ModelSpec (webgpt.spec): the
config, where each tensor's bytes are, the tokenizer with its chat template, and the ids that
end generation. A defect (a missing file, a bad config, a tensor of the wrong shape, a header
cut short, a tokenizer that does not fit the vocabulary) is a ModelFolderError naming the file
and tensor.

Quantized folders (`build.py quantize`) carry NAME.qweight and NAME.scales for each quantized
weight NAME (see webgpt.spec); config.json's "webgpt_quantization" says how to read them.

A .gguf file (or a folder holding one GGUF model and no config.json) is read by
webgpt.gguf_spec into the same ModelSpec.

This module and what it imports touch no GPU: tools that only read folders use it without
the plan, the weights or webgpt.gpu.
"""

from .arch import ARCHITECTURES, arch_for
from .config import QUANTIZATION_KEY, parse_config
from .errors import ModelFolderError, printable
from .limits import json_budget, parse_json
from .safetensors import QWEIGHT_SUFFIX, read_header
from .sources import open_source
from .spec import ModelSpec, QuantizedRef, TensorRef
from .tokenizer import Tokenizer, TokenizerError

__all__ = ["ModelFolderError", "ModelSpec", "TensorRef", "QuantizedRef", "open_folder",
           "expected_shapes", "quantized_names"]

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
QWEIGHT, SCALES = QWEIGHT_SUFFIX, ".scales"  # the two tensors of a quantized weight
CHAT_TEMPLATE = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"
GGUF_MANIFEST = "gguf.json"     # names the .gguf file of a GGUF model's folder in the site

LAYOUT = ("a model folder holds config.json, model.safetensors (or shards listed in "
          "model.safetensors.index.json) and its tokenizer files ("
          + ", ".join(f"{' and '.join(a.tokenizer_files)} for {a.name}" for a in ARCHITECTURES)
          + ")")


def expected_shapes(config):
    """Canonical tensor name -> shape of the weights of this config's architecture."""
    return arch_for(config).expected_shapes()


def quantized_names(config):
    """The weights a quantized folder stores quantized (the matrices the products read)."""
    return arch_for(config).quantized_names()


async def open_folder(source):
    """Read and check a model folder; `source` is a Source or a path (a URL in the browser).
    A path or URL of a .gguf file (or a folder that holds one GGUF model and no config.json)
    is read by webgpt.gguf_spec into the same ModelSpec."""
    from .gguf_spec import is_gguf, open_gguf, read_gguf_model

    if is_gguf(source):
        return await open_gguf(source)
    source = open_source(source)
    base = source.where("").rstrip("/")
    if is_gguf(base):
        # A source made for a .gguf file's URL as if it were a folder (the page's worker makes
        # one for every model): the same kind of source for the folder the file is in.
        from .gguf_spec import _split_path

        parent, name = _split_path(base)
        progress = getattr(source, "progress", None)
        source = type(source)(parent, **({"progress": progress} if progress else {}))
        return await read_gguf_model(source, name)
    if not await source.exists("config.json"):
        gguf = _gguf_in(source)
        if gguf is None and await source.exists(GGUF_MANIFEST):
            gguf = _manifest_gguf(source, await source.text(GGUF_MANIFEST))
        if gguf is not None:
            return await read_gguf_model(source, gguf)
        raise ModelFolderError(f"{source.where('config.json')} is missing; {LAYOUT}")
    config = parse_config(await source.text("config.json"), source.where("config.json"))
    arch = arch_for(config)
    for name in arch.tokenizer_files:
        if not await source.exists(name):
            files = " and ".join(arch.tokenizer_files)
            raise ModelFolderError(
                f"{source.where(name)} is missing: add the {arch.name} tokenizer file"
                f"{'s' if len(arch.tokenizer_files) > 1 else ''} {files} to the folder (they "
                f"come with the model on Hugging Face)")
    tensors = await _Tensors(source, arch).read(await _weight_files(source))
    tokenizer = await _tokenizer(source, arch)
    return ModelSpec(config=config, source=source, tensors=tensors, tokenizer=tokenizer,
                     stop_ids=await _stop_ids(source, config, tokenizer))


def _manifest_gguf(source, text):
    """The .gguf file a site's gguf.json names ({"gguf": "NAME.gguf"}: build.py writes it
    beside a GGUF model, since a folder served over HTTP cannot be listed)."""
    where = source.where(GGUF_MANIFEST)
    d = parse_json(text, where, budget=json_budget(GGUF_MANIFEST))
    name = d.get("gguf") if isinstance(d, dict) else None
    if not isinstance(name, str) or not name.lower().endswith(".gguf") or "/" in name \
            or "\\" in name or name.startswith("."):
        raise ModelFolderError(f"{where} must name the folder's .gguf file as "
                               f"{{\"gguf\": \"NAME.gguf\"}}")
    return name


def _gguf_in(source):
    """The .gguf file of a local folder without config.json that holds one GGUF model (one file,
    or the first of one split model's parts), or None."""
    import os

    from .gguf import split_names

    path = getattr(source, "path", None)
    if path is None or not os.path.isdir(path):
        return None
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(".gguf"))
    firsts = [n for n in names if split_names(n) is None or split_names(n)[1] == 1]
    return firsts[0] if len(firsts) == 1 else None


# ---------------------------------------------------------------- the weights' files

async def _weight_files(source):
    """The safetensors files to read, each with the tensor names the index places in it
    (None for a single model.safetensors, which has no index)."""
    if await source.exists(SINGLE):
        return {SINGLE: None}
    if not await source.exists(INDEX):
        hint = ""
        if await source.exists("pytorch_model.bin"):
            hint = (" (the folder has pytorch_model.bin, a pickle webgpt does not read: "
                    "save the model as safetensors)")
        raise ModelFolderError(
            f"{source.where(SINGLE)} is missing, and there is no {INDEX} for a sharded "
            f"model either{hint}")

    where = source.where(INDEX)
    index = parse_json(await source.text(INDEX), where, budget=json_budget(INDEX))
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelFolderError(
            f"{where} has no \"weight_map\" object mapping tensor names to shard files")
    files = {}
    for tensor, file in weight_map.items():
        # A shard is a file beside the index: no paths, which could leave the folder.
        if (not isinstance(file, str) or not file or "/" in file or "\\" in file or "\0" in file
                or file in (".", "..")):
            raise ModelFolderError(
                f"{where} maps tensor {tensor!r} to {file!r}, which is not a file name in the folder")
        files.setdefault(file, set()).add(tensor)
    # Shard names sort in their numbered order, so the loader reads shard 1 first.
    files = dict(sorted(files.items()))
    for file in files:
        if not await source.exists(file):
            raise ModelFolderError(f"{source.where(file)} is missing; {INDEX} lists it as a shard")
    return files


def _shape(s):
    return "[" + ", ".join(map(str, s)) + "]"


class _Tensors:
    """The checks of one folder's safetensors headers against its architecture: every
    expected tensor once, with its shape (or, quantized, its two parts with theirs), nothing
    unknown. `read(files)` gives spec.tensors."""

    def __init__(self, source, arch):
        self.source, self.arch = source, arch
        self.config = arch.config
        self.quant = self.config.quantization
        self.expected = arch.expected_shapes()
        self.quantizable = set(arch.quantized_names())
        self.tied, self.ignored = arch.tied_head(), arch.ignored()
        self.config_where = source.where("config.json")
        self.found = {}  # canonical name -> (TensorRef, name as saved); NAME.qweight/.scales too

    async def read(self, files):
        for file, listed in files.items():
            header = await read_header(self.source, file)
            absent = sorted(listed - set(header)) if listed is not None else []
            if absent:
                raise ModelFolderError(
                    f"{self.source.where(INDEX)} places tensor {absent[0]!r} in "
                    f"{self.source.where(file)}, which does not have it")
            for saved, info in header.items():
                self._add(file, saved, info)
        if self.quant is not None:
            self._check_all_quantized()
        self._check_none_missing(files)
        return self._entries(files)

    def _add(self, file, saved, info):
        """Check one header entry and record it under its canonical name."""
        arch, where = self.arch, self.source.where(file)
        name = arch.canonical(saved)
        if name is None:
            return  # not this model's (a vision tower beside a language model)
        if name == self.tied:
            # An output projection tied to the token table (GPT-2 always, others by
            # config.json's tie_word_embeddings): the table serves, the copy is skipped.
            V, C = arch.dims.V, arch.dims.C
            if info.shape == (V, C):
                return
            raise ModelFolderError(f"tensor {saved!r} in {where} has shape {_shape(info.shape)}; "
                                   f"expected {_shape((V, C))} (tied to the token table)")
        if name in self.ignored:
            return
        part = next((p for p in (QWEIGHT, SCALES) if name.endswith(p)), None)
        base = name[:-len(part)] if part else name
        if part and base in self.expected:
            self._check_part(saved, info, where, base, part)
        elif name not in self.expected:
            raise ModelFolderError(
                f"tensor {saved!r} in {where} is not a {arch.name} weight for this config.json "
                f"({arch.layers_key}={arch.dims.n_layer})")
        if name in self.found:
            other, other_saved = self.found[name]
            raise ModelFolderError(
                f"tensor {name!r} appears twice: as {other_saved!r} in "
                f"{self.source.where(other.file)} and as {saved!r} in {where}")
        # Plain tensors are floats: read_header allows I8 and U8 for NAME.qweight only.
        if not part and info.shape != self.expected[name]:
            raise ModelFolderError(
                f"tensor {saved!r} in {where} has shape {_shape(info.shape)}; "
                f"expected {_shape(self.expected[name])}")
        self.found[name] = (TensorRef(file, info.dtype, info.shape, info.start, info.end), saved)

    def _quantized_shapes(self, name):
        """(qweight shape, scales shape) of quantized weight `name`."""
        q = self.quant
        K, N = self.expected[name]
        if self.arch.matrix_storage(name) == "rows":
            K, N = N, K                 # [N, K] as stored: rows are outputs (tokens for wte)
        return (N, K if q.bits == 8 else K // 2), (N, K // q.block)

    def _check_part(self, saved, info, where, base, part):
        """Check NAME.qweight or NAME.scales (`part`) against config.json's quantization."""
        quant, config_where = self.quant, self.config_where
        if quant is None:
            raise ModelFolderError(
                f"tensor {saved!r} in {where} is part of a quantized weight, but {config_where} "
                f"has no {QUANTIZATION_KEY!r} (bits, block) to say how to read it")
        if base not in self.quantizable:
            raise ModelFolderError(
                f"tensor {saved!r} in {where}: {base!r} is never quantized (only the token "
                f"table and the matrices the products read are)")
        qshape, sshape = self._quantized_shapes(base)
        dtype, shape = (quant.qdtype, qshape) if part == QWEIGHT else ("F16", sshape)
        how = f"{quant.bits}-bit, block {quant.block} ({QUANTIZATION_KEY} in {config_where})"
        if info.dtype != dtype:
            raise ModelFolderError(
                f"tensor {saved!r} in {where} has dtype {info.dtype!r}; a {how} folder stores "
                f"it as {dtype}")
        if info.shape != shape:
            raise ModelFolderError(
                f"tensor {saved!r} in {where} has shape {_shape(info.shape)}; expected "
                f"{_shape(shape)} for {how}")

    def _check_all_quantized(self):
        """In a quantized folder every quantizable weight is stored quantized, once."""
        quant, where = self.quant, self.source.where
        for name in self.quantizable:
            if name not in self.found:
                continue
            plain, plain_saved = self.found[name]
            if name + QWEIGHT in self.found:
                q, q_saved = self.found[name + QWEIGHT]
                raise ModelFolderError(
                    f"tensor {name!r} is there twice, plain and quantized: as {plain_saved!r} "
                    f"in {where(plain.file)} and as {q_saved!r} in {where(q.file)}")
            raise ModelFolderError(
                f"tensor {plain_saved!r} in {where(plain.file)} is not quantized, but "
                f"{self.config_where} says the folder is ({QUANTIZATION_KEY}: {quant.bits}-bit, "
                f"block {quant.block}): {name + QWEIGHT!r} and {name + SCALES!r} should hold it")

    def _check_none_missing(self, files):
        quant = self.quant
        want = [n for n in self.expected if quant is None or n not in self.quantizable]
        if quant is not None:
            want += [n + p for n in self.arch.quantized_names() for p in (QWEIGHT, SCALES)]
        missing = [name for name in want if name not in self.found]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            if len(files) == 1:
                in_what = self.source.where(next(iter(files)))
            else:
                in_what = f"the shards listed in {self.source.where(INDEX)}"
            raise ModelFolderError(f"tensor {missing[0]!r} is missing from {in_what}{more}")

    def _entries(self, files):
        """spec.tensors: every expected weight, ordered by (file, offset)."""
        entries = {}
        for name, shape in self.expected.items():
            if name in self.found:
                entries[name] = self.found[name][0]
            else:   # a quantized folder's weight: checked above, both parts are there
                q = self.quant
                entries[name] = QuantizedRef(
                    self.found[name + QWEIGHT][0], self.found[name + SCALES][0], q.bits, q.block,
                    shape, transposed=self.arch.matrix_storage(name) == "cols")
        order = {file: k for k, file in enumerate(files)}

        def position(item):
            ref = item[1]
            ref = ref.qweight if isinstance(ref, QuantizedRef) else ref
            return order[ref.file], ref.start

        return dict(sorted(entries.items(), key=position))


# ---------------------------------------------------------------- tokenizer and generation

async def _tokenizer(source, arch):
    """The folder's tokenizer with its chat template, checked against config.json: GPT-2 BPE
    files (vocab.json + merges.txt) or a Hugging Face tokenizer.json (with
    tokenizer_config.json where the folder has one). A defect is a ModelFolderError."""
    files = arch.tokenizer_files
    vocab = files[0]
    config_text = (await source.text(TOKENIZER_CONFIG)
                   if await source.exists(TOKENIZER_CONFIG) else None)
    try:
        if files == ("tokenizer.json",):
            from .hf_tokenizer import HFTokenizer

            tokenizer = HFTokenizer.from_texts(await source.text(vocab), config_text,
                                               source.where(vocab), source.where(TOKENIZER_CONFIG))
            template_config = tokenizer.config
        else:
            merges = files[1]
            tokenizer = Tokenizer.from_texts(await source.text(vocab), await source.text(merges),
                                             source.where(vocab), source.where(merges))
            template_config = _tokenizer_config(source, config_text)
    except TokenizerError as e:
        raise ModelFolderError(str(e)) from None
    tokenizer.chat_template = await _chat_template(source, template_config)
    V = arch.dims.V
    if tokenizer.vocab_size > V:
        # The model could not embed the ids the tokenizer gives beyond its vocabulary.
        raise ModelFolderError(
            f"{source.where(vocab)} has token ids up to {tokenizer.vocab_size - 1}, but "
            f"{source.where('config.json')} has vocab_size {V}: the tokenizer files belong to "
            f"another model")
    return tokenizer


def _tokenizer_config(source, text):
    """tokenizer_config.json's object (where the folder has one; {} otherwise)."""
    if text is None:
        return {}
    where = source.where(TOKENIZER_CONFIG)
    d = parse_json(text, where, budget=json_budget(TOKENIZER_CONFIG))
    if not isinstance(d, dict):
        raise ModelFolderError(f"{where} must hold a JSON object")
    return d


async def _chat_template(source, tokenizer_config):
    """The folder's chat template (chat_template.jinja, else tokenizer_config.json's), or None."""
    from .chat_template import ChatTemplateError, find_chat_template

    jinja = await source.text(CHAT_TEMPLATE) if await source.exists(CHAT_TEMPLATE) else None
    try:
        return find_chat_template(tokenizer_config, jinja)
    except ChatTemplateError as e:
        raise ModelFolderError(f"{source.where(TOKENIZER_CONFIG)}: {e}") from None


async def _stop_ids(source, config, tokenizer):
    """The ids that end generation: generation_config.json's eos_token_id (an int or a list)
    and the tokenizer's end-of-text id."""
    ids = set()
    eot = getattr(tokenizer, "eot_id", None)
    if eot is not None:
        ids.add(eot)
    if await source.exists(GENERATION_CONFIG):
        where = source.where(GENERATION_CONFIG)
        d = parse_json(await source.text(GENERATION_CONFIG), where,
                       budget=json_budget(GENERATION_CONFIG))
        eos = d.get("eos_token_id") if isinstance(d, dict) else None
        eos = [eos] if isinstance(eos, int) and not isinstance(eos, bool) else eos
        if eos is not None:
            if not isinstance(eos, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in eos):
                raise ModelFolderError(f"{where}: eos_token_id must be a token id or a list of "
                                       f"token ids, not {printable(repr(eos))[:60]}")
            # An id the model cannot produce (at or past vocab_size) can never end a reply.
            ids.update(i for i in eos if i < config.vocab_size)
    return frozenset(ids)
