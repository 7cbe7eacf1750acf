"""Convert models people train elsewhere into model folders (config.json, model.safetensors,
vocab.json, merges.txt) that webgpt loads as they are.

    import_nanogpt("out/ckpt.pt", "weights/mine")          # nanoGPT's train.py checkpoints
    import_webgpt("WebGPT/weights/gpt2", "weights/gpt2")   # the original WebGPT's weight folders

Both sources hold nanoGPT's module layout: nn.Linear weights [out, in], which this one-time
conversion transposes to GPT-2's Conv1D [in, out] (so nothing is transposed at load time), and
an lm_head tied to the token embedding. `bias=False` models get zero biases.

nanoGPT checkpoints are read without torch: torch.save writes a zip whose data.pkl is a pickle
that names each tensor's storage by a persistent id ('storage', <type>, key, location, numel),
with the bytes in data/<key>. A restricted unpickler turns those into numpy arrays and everything
else it does not know into inert placeholders, so nothing in the file can run code.

Needs numpy and safetensors (the native requirements), not torch.
"""

import json
import os
import pickle
import zipfile

import numpy as np

from ..errors import ConversionError
from ..limits import MiB, parse_json
from ..sources.local import open_regular, os_error, read_text_file, stat_regular
from ..tokenizer import BYTE_SYMBOLS

__all__ = ["ConversionError", "import_nanogpt", "import_webgpt", "read_torch_checkpoint"]

# The vendored GPT-2 BPE files (encoder.json / vocab.bpe under their Hugging Face names).
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")  # webgpt/data
GPT2_VOCAB_SIZE = 50257
GPT2_EOT = 50256

# The tensors of one block, as nanoGPT names them; the Linear weights are the ones to transpose.
LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
NORMS = ("ln_1", "ln_2")


# data.pkl of a nanoGPT checkpoint (the structure, not the tensors: a few KB) and meta.pkl (a
# character table) are unpickled whole; larger ones are not a checkpoint's.
MAX_PICKLE = 16 * MiB



_DIMS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")


def _dims(args, where, key_format):
    """(n_layer, n_head, n_embd, block_size, vocab_size, bias) of a checkpoint's settings, each
    a positive integer and n_embd a multiple of n_head; `key_format` names a key in messages."""
    for key in _DIMS:
        v = args.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConversionError(
                f"{where}: {key_format.format(key)} is {v!r}, not a positive integer")
    L, H, C, P, V = (args[k] for k in _DIMS)
    if C % H:
        raise ConversionError(f"{where}: n_embd ({C}) is not a multiple of n_head ({H})")
    return L, H, C, P, V, args.get("bias", True) is not False

# ---------------------------------------------------------------- torch.save files, no torch

# torch's legacy storage classes -> the numpy dtype of their elements ('bfloat16' is special:
# numpy has no bfloat16, so those are widened to float32 on reading).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class _Storage:
    """One data/<key> entry of the zip, read when a tensor that uses it is materialized."""

    def __init__(self, zf, prefix, key, dtype, numel, where):
        self.zf, self.name, self.dtype, self.numel = zf, f"{prefix}data/{key}", dtype, numel
        self.where = where
        self._array = None

    def array(self):
        if self._array is None:
            try:
                info = self.zf.getinfo(self.name)
            except KeyError:
                raise ConversionError(
                    f"{self.where} lacks {self.name}, the data of a tensor") from None
            itemsize = 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize
            # Checked before inflating it: a compressed entry could unpack to any size.
            if info.file_size > self.numel * itemsize:
                raise ConversionError(
                    f"{self.where}: {self.name} holds {info.file_size} bytes, more than the "
                    f"{self.numel} elements of {itemsize} bytes its storage declares")
            raw = self.zf.read(self.name)
            if self.dtype == "bfloat16":
                bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
                a = bits.view(np.float32)
            else:
                a = np.frombuffer(raw, self.dtype)
            if a.size < self.numel:
                raise ConversionError(f"{self.where}: {self.name} holds {a.size} elements, "
                                      f"fewer than the {self.numel} its tensor needs")
            self._array = a
        return self._array


class TensorRef:
    """A tensor in a checkpoint: its storage, offset, shape and strides (in elements)."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset = storage, offset
        self.shape, self.stride = tuple(shape), tuple(stride)

    def numpy(self):
        """The tensor as a new numpy array (float32 for bfloat16 storages)."""
        base = self.storage.array()
        count = 1
        for d in self.shape:
            count *= d
        if count == 0:
            return np.zeros(self.shape, base.dtype)
        last = self.offset + sum((d - 1) * s for d, s in zip(self.shape, self.stride))
        if self.offset < 0 or last >= base.size:
            raise ConversionError(f"{self.storage.where}: a tensor of shape {list(self.shape)} "
                                  f"runs past the end of {self.storage.name}")
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], self.shape, [s * base.itemsize for s in self.stride])
        return np.array(view)


class _Placeholder:
    """What an object of a class the reader does not know becomes: inert, holds its args."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):
        return _Placeholder(*args)


def _placeholder_class(module, name):
    return type(f"{module}.{name}", (_Placeholder,), {})


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *rest):
    return data


class _CheckpointUnpickler(pickle.Unpickler):
    def __init__(self, f, zf, prefix, where):
        super().__init__(f)
        self.zf, self.prefix, self.where = zf, prefix, where
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter",
                                                  "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        if module == "_codecs" and name == "encode":  # how protocol 2 writes bytes
            import codecs
            return codecs.encode
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "builtins" and name in ("set", "frozenset", "slice", "complex"):
            import builtins
            return getattr(builtins, name)
        # Anything else (optimizer internals, numpy scalars, torch.device, ...) is not needed
        # to convert the model: an inert placeholder stands in for it.
        return _placeholder_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise ConversionError(f"{self.where}: unexpected persistent id {pid!r} in data.pkl")
        _, dtype, key, _location, numel = pid[:5]
        if not isinstance(dtype, str):
            raise ConversionError(f"{self.where}: storage {key!r} has a type this reader does "
                                  f"not know ({getattr(dtype, '__name__', dtype)})")
        if key not in self.storages:
            self.storages[key] = _Storage(self.zf, self.prefix, key, dtype, numel, self.where)
        return self.storages[key]


def read_torch_checkpoint(path):
    """The object torch.save wrote to `path`, with tensors as TensorRef (call .numpy()).

    The zip stays open while the returned tensors are in use (they read it lazily), so a
    checkpoint's optimizer state is never read at all.
    """
    stat_regular(path, ConversionError)    # a pipe or a device is named, never opened
    if not zipfile.is_zipfile(path):
        raise ConversionError(
            f"{path} is not a zip-format torch checkpoint (torch >= 1.6 writes those by default); "
            f"load it with torch and torch.save() it again")
    zf = zipfile.ZipFile(path)
    pkls = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
    if not pkls:
        raise ConversionError(f"{path} is a zip but not a torch checkpoint (it has no data.pkl)")
    if zf.getinfo(pkls[0]).file_size > MAX_PICKLE:
        raise ConversionError(f"{path}: its data.pkl is {zf.getinfo(pkls[0]).file_size} bytes, "
                              f"more than the {MAX_PICKLE} a checkpoint's structure takes")
    prefix = pkls[0][: -len("data.pkl")]
    byteorder = prefix + "byteorder"
    if byteorder in zf.namelist() and zf.read(byteorder).strip() != b"little":
        raise ConversionError(f"{path} was saved on a big-endian machine; not supported")
    with zf.open(pkls[0]) as f:
        try:
            return _CheckpointUnpickler(f, zf, prefix, path).load()
        except ConversionError:
            raise
        except Exception as e:  # a damaged pickle: one line, not a traceback
            raise ConversionError(
                f"{path}: cannot read data.pkl ({type(e).__name__}: {e})") from None


class _PlainUnpickler(pickle.Unpickler):
    """For meta.pkl: plain dicts, lists, strings and numbers, no classes at all."""

    def find_class(self, module, name):
        raise ConversionError(f"it holds a {module}.{name} object, not just plain data")


def _read_meta(path):
    with open_regular(path, ConversionError) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_PICKLE:
            raise ConversionError(f"{path} is {size} bytes, more than the {MAX_PICKLE} a "
                                  f"meta.pkl (a character table) takes")
        try:
            meta = _PlainUnpickler(f).load()
        except ConversionError as e:
            raise ConversionError(f"{path}: {e}") from None
        except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
            raise ConversionError(f"{path} is not a readable meta.pkl ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("itos"), dict):
        raise ConversionError(f"{path} has no 'itos' (id -> character) table, as nanoGPT's "
                              f"character-level prepare.py writes")
    return meta


# ---------------------------------------------------------------- tokenizers


def _gpt2_tokenizer():
    with open(os.path.join(DATA, "vocab.json"), encoding="utf-8") as f:
        vocab = f.read()
    with open(os.path.join(DATA, "merges.txt"), encoding="utf-8") as f:
        merges = f.read()
    return vocab, merges


def char_tokenizer(itos, where):
    """(vocab.json text, merges.txt text) for a character-level vocabulary {id: character}.

    Byte-level BPE says this exactly, with no merges, when every character is one UTF-8 byte
    (ASCII): each character's byte symbol is its token. (A two-byte character would need a merge
    of two byte symbols, and Hugging Face's tokenizers refuse merges whose parts have no id.)
    The ids must be 0..n-1.
    """
    ids = sorted(itos)
    if ids != list(range(len(ids))) or not ids:
        raise ConversionError(f"{where}: the character ids are not 0..{len(ids) - 1}")
    vocab, wide = {}, []
    for i in ids:
        ch = itos[i]
        if not isinstance(ch, str) or len(ch) != 1:
            raise ConversionError(f"{where}: token {i} is {ch!r}, not a single character")
        if ord(ch) > 127:
            wide.append(f"{ch!r} (U+{ord(ch):04X})")
            continue
        token = BYTE_SYMBOLS[ord(ch)]
        if token in vocab:
            raise ConversionError(f"{where}: the character {ch!r} appears twice")
        vocab[token] = i
    if wide:
        raise ConversionError(
            f"{where}: {', '.join(wide[:5])}{' and more' if len(wide) > 5 else ''} "
            f"{'is' if len(wide) == 1 else 'are'} not ASCII; a character-level vocabulary becomes "
            f"GPT-2's byte-level BPE (one token per byte, no merges) only when every character "
            f"is a single byte")
    return json.dumps(vocab, ensure_ascii=False), "#version: 0.2\n"


# ---------------------------------------------------------------- the model folder


def _config(n_layer, n_head, n_embd, n_positions, vocab_size, eot, dtype, dropout=0.0):
    """config.json as transformers writes it for a GPT2LMHeadModel."""
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": dropout,
        "bos_token_id": eot,
        "embd_pdrop": dropout,
        "eos_token_id": eot,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": n_positions,
        "n_embd": n_embd,
        "n_head": n_head,
        "n_inner": None,
        "n_layer": n_layer,
        "n_positions": n_positions,
        "resid_pdrop": dropout,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "dtype": dtype,
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def _prepare_out(out_dir, force, error=ConversionError):
    """Make out_dir ready for a model folder's files: new, empty, or (force) emptied of an
    earlier model's weights. Mistakes raise `error` (ConversionError here; quantize passes its
    own)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise error(f"{out_dir} exists and is not a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise error(f"{out_dir} is not empty; choose a new folder (or pass --force to "
                    f"overwrite the model files in it)")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):  # an earlier model's weights would mix with these
        if name.endswith(".safetensors") or name == "model.safetensors.index.json":
            os.remove(os.path.join(out_dir, name))


def _write_folder(out_dir, config, tensors, tokenizer, dtype, source):
    """config.json, model.safetensors (GPT2LMHeadModel names, lm_head tied so not stored),
    vocab.json, merges.txt. Returns the weights' size in bytes."""
    from safetensors.numpy import save_file

    out = {}
    for name, a in tensors.items():
        out[name] = np.ascontiguousarray(a.astype(dtype))
    path = os.path.join(out_dir, "model.safetensors")
    save_file(out, path + ".tmp", metadata={"format": "pt", "source": source})
    os.replace(path + ".tmp", path)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    vocab, merges = tokenizer
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(vocab)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write(merges)
    return os.path.getsize(path)


def _gpt2_tensors(get, n_layer, n_embd, bias, where):
    """GPT2LMHeadModel's tensors from nanoGPT-layout ones: get(name, shape) returns the array
    named as in nanoGPT without 'transformer.' (None when absent), checked against `shape`."""
    C = n_embd
    linear_shapes = {"attn.c_attn": (3 * C, C), "attn.c_proj": (C, C),
                     "mlp.c_fc": (4 * C, C), "mlp.c_proj": (C, 4 * C)}

    def bias_of(name, n):
        b = get(name, (n,)) if bias else None
        if b is None:
            if bias:
                raise ConversionError(f"{where}: {name} is missing")
            return np.zeros(n, np.float32)
        return b

    t = {"transformer.wte.weight": _need(get("wte.weight", None), "wte.weight", where),
         "transformer.wpe.weight": _need(get("wpe.weight", None), "wpe.weight", where)}
    for i in range(n_layer):
        h = f"h.{i}."
        for ln in NORMS:
            name = h + ln + ".weight"
            t["transformer." + name] = _need(get(name, (C,)), name, where)
            t[f"transformer.{h}{ln}.bias"] = bias_of(h + ln + ".bias", C)
        for lin in LINEARS:
            out_in = linear_shapes[lin]
            w = _need(get(h + lin + ".weight", out_in), h + lin + ".weight", where)
            t[f"transformer.{h}{lin}.weight"] = np.ascontiguousarray(w.T)  # [out, in] -> [in, out]
            t[f"transformer.{h}{lin}.bias"] = bias_of(h + lin + ".bias", out_in[0])
    t["transformer.ln_f.weight"] = _need(get("ln_f.weight", (C,)), "ln_f.weight", where)
    t["transformer.ln_f.bias"] = bias_of("ln_f.bias", C)
    return t


def _need(a, name, where):
    if a is None:
        raise ConversionError(f"{where}: {name} is missing")
    return a


def _shape_error(where, name, got, want):
    msg = f"{where}: {name} has shape {list(got)}, expected {list(want)}"
    if len(want) == 2 and tuple(got) == tuple(want)[::-1]:
        msg += (" (it looks transposed: nanoGPT and WebGPT store nn.Linear weights as "
                "[out, in])")
    return ConversionError(msg)


def _tokenizer_rows(V, tokenizer_size, what, notes):
    """How many embedding rows to keep: a vocabulary padded past its tokenizer (nanoGPT pads
    GPT-2's 50257 to 50304) loses the padding rows, which no token of the tokenizer uses."""
    if V < tokenizer_size:
        raise ConversionError(f"the model has {V} token embeddings but its tokenizer ({what}) "
                              f"has {tokenizer_size} tokens")
    if V > tokenizer_size:
        notes.append(f"dropped embedding rows {tokenizer_size}..{V - 1}: padding past the "
                     f"{tokenizer_size} tokens of the tokenizer ({what})")
    return tokenizer_size


# ---------------------------------------------------------------- nanoGPT


def _find_meta(ckpt_path, checkpoint):
    """nanoGPT's sample.py reads data/<dataset>/meta.pkl for character-level models."""
    folder = os.path.dirname(os.path.abspath(ckpt_path))
    candidates = [os.path.join(folder, "meta.pkl")]
    config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    dataset = config.get("dataset") if isinstance(config, dict) else None
    if isinstance(dataset, str) and dataset and "/" not in dataset and ".." not in dataset:
        for base in (os.getcwd(), folder, os.path.dirname(folder)):
            candidates.append(os.path.join(base, "data", dataset, "meta.pkl"))
    for path in candidates:
        if os.path.isfile(path):
            return path
    return None


def import_nanogpt(ckpt_path, out_dir, dtype="float32", meta_path=None, force=False):
    """Convert a nanoGPT checkpoint (train.py's ckpt.pt) into a model folder.

    Returns (summary line, [warning lines]). The tokenizer is GPT-2's BPE, or, when a meta.pkl
    is given or found where nanoGPT's sample.py looks (beside the checkpoint, data/<dataset>/),
    the character-level vocabulary it holds.
    """
    if dtype not in ("float32", "float16"):
        raise ConversionError(f"dtype must be float32 or float16, not {dtype!r}")
    ckpt, args = _nanogpt_checkpoint(ckpt_path)
    L, H, C, P, V, bias = _dims(args, ckpt_path, "model_args[{!r}]")
    tensors = _nanogpt_tensors(ckpt["model"], L, C, P, V, bias, ckpt_path)

    notes = ["nanoGPT's MLP uses exact GELU (nn.GELU()); GPT-2 and webgpt use its tanh "
             "approximation (at most 4.7e-4 apart), so logits differ slightly from nanoGPT's own"]
    tokenizer, keep, eot, vocab_what = _nanogpt_tokenizer(ckpt_path, ckpt, meta_path, V, notes)
    tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"][:keep]
    if not bias:
        notes.append("bias=False: wrote zero biases (the same function)")

    dropout = args.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool):
        dropout = 0.0
    config = _config(L, H, C, P, keep, eot, dtype, dropout)
    _prepare_out(out_dir, force)
    nbytes = _write_folder(out_dir, config, tensors, tokenizer, dtype,
                           f"nanoGPT {os.path.basename(ckpt_path)}")
    summary = (f"{out_dir}: nanoGPT {ckpt_path} -> {L} layers, {H} heads, n_embd {C}, context "
               f"{P}, vocab {keep} ({vocab_what}), {dtype}, {nbytes / 1e6:.1f} MB")
    return summary, notes


def _nanogpt_checkpoint(ckpt_path):
    """(checkpoint dict, its model_args dict) of a nanoGPT checkpoint file."""
    ckpt = read_torch_checkpoint(ckpt_path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise ConversionError(
            f"{ckpt_path} is not a nanoGPT checkpoint: it should be a dict with 'model' (the "
            f"state dict) and 'model_args' (n_layer, n_head, n_embd, block_size, bias, "
            f"vocab_size)")
    args = ckpt["model_args"]
    if not isinstance(args, dict):
        raise ConversionError(f"{ckpt_path}: model_args is not a dict")
    return ckpt, args


def _nanogpt_tensors(model, L, C, P, V, bias, where):
    """GPT-2's tensors ({name: numpy array}, Conv1D layout) of a nanoGPT state dict `model`,
    each checked against the checkpoint's dimensions; a weight that is not nanoGPT's GPT's, or
    an lm_head not tied to the token embedding, is a ConversionError."""
    # torch.compile'd models save every name with an _orig_mod. prefix.
    state = {}
    for key, value in model.items():
        name = key[len("_orig_mod."):] if key.startswith("_orig_mod.") else key
        state[name] = value
    known = {"lm_head.weight"}
    expected = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (P, C)}

    def get(name, shape):
        full = "transformer." + name
        known.add(full)
        ref = state.get(full)
        if ref is None:
            return None
        if not isinstance(ref, TensorRef):
            raise ConversionError(f"{where}: {full} is not a tensor")
        want = shape if shape is not None else expected[full]
        if ref.shape != tuple(want):
            raise _shape_error(where, full, ref.shape, want)
        return ref.numpy()

    tensors = _gpt2_tensors(get, L, C, bias, where)
    for name in state:
        # The causal mask buffer (h.N.attn.bias) of nanoGPT versions without flash attention.
        if name not in known and not name.endswith(".attn.bias"):
            raise ConversionError(f"{where}: {name} is not a nanoGPT GPT weight (a modified "
                                  f"model? webgpt runs the GPT-2 architecture only)")
    head = state.get("lm_head.weight")
    if head is not None:
        if (not isinstance(head, TensorRef) or head.shape != (V, C)
                or not np.array_equal(head.numpy(), tensors["transformer.wte.weight"])):
            raise ConversionError(f"{where}: lm_head.weight is not tied to transformer.wte.weight; "
                                  f"webgpt runs GPT-2's tied output layer only")
    return tensors


def _nanogpt_tokenizer(ckpt_path, ckpt, meta_path, V, notes):
    """(tokenizer files, rows of wte to keep, eot id or None, a description) for a checkpoint
    of vocab_size V: the characters of its meta.pkl (given, or found as nanoGPT's sample.py
    finds it), else GPT-2's BPE. Appends to `notes` what the rows kept leave out."""
    meta_path = meta_path or _find_meta(ckpt_path, ckpt)
    if meta_path:
        meta = _read_meta(meta_path)
        tokenizer = char_tokenizer(meta["itos"], meta_path)
        keep = _tokenizer_rows(V, len(meta["itos"]), f"characters from {meta_path}", notes)
        return tokenizer, keep, None, f"character-level, from {meta_path}"
    if V >= GPT2_VOCAB_SIZE:
        keep = _tokenizer_rows(V, GPT2_VOCAB_SIZE, "GPT-2 BPE", notes)
        return _gpt2_tokenizer(), keep, GPT2_EOT, "GPT-2 BPE"
    raise ConversionError(
        f"{ckpt_path}: vocab_size {V} is not GPT-2's, and no meta.pkl was found beside the "
        f"checkpoint or in data/<dataset>/; for a character-level model pass --meta "
        f"data/<dataset>/meta.pkl")


# ---------------------------------------------------------------- the original WebGPT


def _read_bin(path, count, where):
    with open_regular(path, ConversionError) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            # The size is checked before the file is read: a file of the wrong size is never
            # held (nor one that claims a model's worth of bytes it does not have).
            if size != 4 * count:
                head = f.read(64)
                if head.startswith(b"version https://git-lfs"):
                    raise ConversionError(
                        f"{path} is a Git LFS pointer, not the weights: run `git lfs pull` in "
                        f"the WebGPT clone first")
                raise ConversionError(f"{path} has {size} bytes; {count} float32 values "
                                      f"({4 * count} bytes) were expected from {where}")
            raw = f.read(size)
        except OSError as e:
            raise os_error(path, e, ConversionError) from None
    if len(raw) != 4 * count:
        raise ConversionError(f"{path} has {len(raw)} bytes; {count} float32 values "
                              f"({4 * count} bytes) were expected from {where}")
    return np.frombuffer(raw, "<f4")


def _find_tokens(src_dir):
    for path in (os.path.join(src_dir, "simple_tokens.json"),
                 os.path.join(os.path.dirname(os.path.abspath(src_dir)), "tokenization",
                              "simple_tokens.json")):
        if os.path.isfile(path):
            return path
    return None


def import_webgpt(src_dir, out_dir, dtype="float32", tokens_path=None, force=False):
    """Convert an original WebGPT weight folder into a model folder.

    WebGPT's folders (0hq/WebGPT, weights/<model>/) hold params_gpt.json (nanoGPT's model_args:
    n_layer, n_head, n_embd, block_size, vocab_size, bias) and one little-endian float32 file
    per tensor, named <nanoGPT state-dict name>_gpt.bin
    (transformer.h.0.attn.c_attn.weight_gpt.bin), matrices [out, in], which WebGPT's loader
    transposed on the CPU at every load. The token embedding doubles as the output layer. Its tokenizer: GPT-2's BPE for vocab_size 50257
    (WebGPT's gpt_tokens.json + vocab.bpe are the same data as the vendored files), else a
    character table {character: id} (weights/tokenization/simple_tokens.json, found beside the
    folder or given as tokens_path). Returns (summary line, [warning lines]).
    """
    if dtype not in ("float32", "float16"):
        raise ConversionError(f"dtype must be float32 or float16, not {dtype!r}")
    params_path = os.path.join(src_dir, "params_gpt.json")
    if not os.path.isdir(src_dir):
        raise ConversionError(f"{src_dir} is not a folder")
    if not os.path.lexists(params_path):
        raise ConversionError(f"{params_path} is missing; a WebGPT weight folder holds "
                              f"params_gpt.json and the *_gpt.bin tensor files")
    text = read_text_file(params_path, error=ConversionError)
    if text.startswith("version https://git-lfs"):
        raise ConversionError(f"{params_path} is a Git LFS pointer: run `git lfs pull` first")
    params = parse_json(text, params_path, ConversionError, budget=16 * MiB)
    if not isinstance(params, dict):
        raise ConversionError(f"{params_path} must hold a JSON object")
    if "block_size" not in params and "n_ctx" in params:
        params["block_size"] = params["n_ctx"]
    L, H, C, P, V, bias = _dims(params, params_path, "{}")
    sizes = {"wte.weight": (V, C), "wpe.weight": (P, C)}

    def get(name, shape):
        shape = shape if shape is not None else sizes[name]
        for suffix in ("_gpt.bin", ".bin"):  # WebGPT's loader, and its conversion README
            path = os.path.join(src_dir, f"transformer.{name}{suffix}")
            if os.path.lexists(path):   # _read_bin says what it is if not a file
                count = int(np.prod(shape))
                return _read_bin(path, count, f"{params_path} (shape {list(shape)})").reshape(shape)
        return None

    tensors = _gpt2_tensors(get, L, C, bias, src_dir)
    notes = []
    if V >= GPT2_VOCAB_SIZE and not tokens_path:
        tokenizer, eot, vocab_what = _gpt2_tokenizer(), GPT2_EOT, "GPT-2 BPE"
        keep = _tokenizer_rows(V, GPT2_VOCAB_SIZE, "GPT-2 BPE", notes)
    else:
        tokens_path = tokens_path or _find_tokens(src_dir)
        if not tokens_path:
            raise ConversionError(
                f"{params_path}: vocab_size {V} is not GPT-2's, and no simple_tokens.json "
                f"(WebGPT's character table) was found in the folder or in ../tokenization/; "
                f"pass --tokens")
        stoi = parse_json(read_text_file(tokens_path, error=ConversionError),
                          tokens_path, ConversionError, budget=128 * MiB)
        if not isinstance(stoi, dict) or not all(isinstance(i, int) for i in stoi.values()):
            raise ConversionError(f"{tokens_path} must map characters to ids")
        itos = {i: ch for ch, i in stoi.items()}
        if len(itos) != len(stoi):
            raise ConversionError(f"{tokens_path} gives one id to two characters")
        tokenizer = char_tokenizer(itos, tokens_path)
        keep = _tokenizer_rows(V, len(itos), f"characters from {tokens_path}", notes)
        eot, vocab_what = None, f"character-level, from {tokens_path}"
    tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"][:keep]
    if not bias:
        notes.append("bias=false: wrote zero biases (the same function)")

    config = _config(L, H, C, P, keep, eot, dtype)
    _prepare_out(out_dir, force)
    nbytes = _write_folder(out_dir, config, tensors, tokenizer, dtype,
                           f"WebGPT {os.path.basename(os.path.normpath(src_dir))}")
    summary = (f"{out_dir}: WebGPT {src_dir} -> {L} layers, {H} heads, n_embd {C}, context {P}, "
               f"vocab {keep} ({vocab_what}), {dtype}, {nbytes / 1e6:.1f} MB")
    return summary, notes
