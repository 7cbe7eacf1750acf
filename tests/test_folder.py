"""Reading and checking a model folder: config.json, safetensors headers, shards, tokenizer files.

Folders are built in tmp_path: good ones with the safetensors package (and one test with
transformers' own save_pretrained, the layout users really have), bad ones by hand, byte by
byte. Each defect must fail with a ModelFolderError that names the file and the tensor.
"""

import asyncio
import json
import os
import struct

import pytest

np = pytest.importorskip("numpy", reason="numpy is not installed: it builds the test weights")
st_numpy = pytest.importorskip(
    "safetensors.numpy", reason="safetensors is not installed: it writes the test files")

from webgpt.config import GPT2Config  # noqa: E402
from webgpt.folder import ModelFolderError, ModelSpec, TensorRef, expected_shapes, open_folder  # noqa: E402
from webgpt.safetensors import MAX_HEADER, parse_header, read_header  # noqa: E402
from webgpt.sources import LocalSource, open_source  # noqa: E402

L, H, C, V, P = 2, 2, 8, 300, 16
CONFIG = {"model_type": "gpt2", "n_layer": L, "n_head": H, "n_embd": C, "vocab_size": V,
          "n_positions": P, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}


def gpt2_shapes():
    """GPT2Model's weights for the tiny config, written out here rather than taken from the
    code under test (the transformers test checks both against a real model)."""
    s = {"wte.weight": (V, C), "wpe.weight": (P, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(L):
        s.update({
            f"h.{i}.ln_1.weight": (C,), f"h.{i}.ln_1.bias": (C,),
            f"h.{i}.attn.c_attn.weight": (C, 3 * C), f"h.{i}.attn.c_attn.bias": (3 * C,),
            f"h.{i}.attn.c_proj.weight": (C, C), f"h.{i}.attn.c_proj.bias": (C,),
            f"h.{i}.ln_2.weight": (C,), f"h.{i}.ln_2.bias": (C,),
            f"h.{i}.mlp.c_fc.weight": (C, 4 * C), f"h.{i}.mlp.c_fc.bias": (4 * C,),
            f"h.{i}.mlp.c_proj.weight": (4 * C, C), f"h.{i}.mlp.c_proj.bias": (C,),
        })
    return s


def weights(dtype=np.float32, prefix="transformer.", seed=0):
    rng = np.random.default_rng(seed)
    return {prefix + k: rng.standard_normal(s).astype(dtype) for k, s in gpt2_shapes().items()}


def make_folder(path, tensors=None, config=CONFIG, tokenizer=True):
    """A model folder with a single model.safetensors (unless tensors is None)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    if tokenizer:
        with open(os.path.join(path, "vocab.json"), "w") as f:
            json.dump({"a": 0, "b": 1, "ab": 2}, f)
        with open(os.path.join(path, "merges.txt"), "w") as f:
            f.write("#version: 0.2\na b\n")
    if tensors is not None:
        st_numpy.save_file(tensors, os.path.join(path, "model.safetensors"))
    return str(path)


def write_raw(path, header, data=b"", length=None):
    """A safetensors file from a header dict and data bytes, with an optional false length."""
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) if length is None else length) + h + data)


def shard(path, parts):
    """Write the given {file: {name: array}} shards and their index into folder `path`."""
    weight_map = {}
    for file, tensors in parts.items():
        st_numpy.save_file(tensors, os.path.join(path, file))
        weight_map.update({name: file for name in tensors})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def run_open(path):
    return asyncio.run(open_folder(path))


def fails(path, *words):
    """open_folder must fail with a message holding every word (file names, tensor names)."""
    with pytest.raises(ModelFolderError) as e:
        run_open(path)
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"
    return msg


def check_bytes(path, spec, arrays, prefix):
    """Every TensorRef points at exactly the bytes of the array saved under its name."""
    for name, ref in spec.tensors.items():
        with open(os.path.join(path, ref.file), "rb") as f:
            f.seek(ref.start)
            raw = f.read(ref.end - ref.start)
        assert raw == arrays[prefix + name].tobytes(), name


# --- good folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_both_prefixes(tmp_path, prefix):
    arrays = weights(prefix=prefix)
    path = make_folder(tmp_path / "m", arrays)
    spec = run_open(path)
    assert isinstance(spec, ModelSpec)
    assert spec.config == GPT2Config(L, H, C, V, P)
    # The one reader gives the tokenizer too: the folder's vocab.json + merges.txt.
    assert spec.tokenizer.encode("abab") == [2, 2] and spec.tokenizer.chat_template is None
    assert spec.stop_ids == frozenset()    # no generation_config.json, no <|endoftext|>
    assert set(spec.tensors) == set(gpt2_shapes())
    assert expected_shapes(spec.config) == gpt2_shapes()
    for name, ref in spec.tensors.items():
        assert isinstance(ref, TensorRef)
        assert (ref.file, ref.dtype, ref.shape) == ("model.safetensors", "F32", gpt2_shapes()[name])
    check_bytes(path, spec, arrays, prefix)
    # In file order, so a loader streams each file front to back.
    starts = [ref.start for ref in spec.tensors.values()]
    assert starts == sorted(starts)


def test_tied_lm_head_and_old_buffers_ignored(tmp_path):
    arrays = weights()
    arrays["lm_head.weight"] = arrays["transformer.wte.weight"].copy()
    for i in range(L):
        arrays[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((1, 1, P, P), np.float32))
        arrays[f"transformer.h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    spec = run_open(make_folder(tmp_path / "m", arrays))
    assert set(spec.tensors) == set(gpt2_shapes())


@pytest.mark.parametrize("dtype,name", [(np.float16, "F16"), (np.float32, "F32")])
def test_dtypes(tmp_path, dtype, name):
    arrays = weights(dtype)
    path = make_folder(tmp_path / "m", arrays)
    spec = run_open(path)
    assert {ref.dtype for ref in spec.tensors.values()} == {name}
    check_bytes(path, spec, arrays, "transformer.")


def test_bf16(tmp_path):
    # numpy has no bfloat16: write the file by hand, the top halves of f32 values.
    header, data = {}, b""
    for name, shape in gpt2_shapes().items():
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [len(data), len(data) + n]}
        data += bytes(n)
    path = make_folder(tmp_path / "m")
    write_raw(os.path.join(path, "model.safetensors"), header, data)
    spec = run_open(path)
    assert {ref.dtype for ref in spec.tensors.values()} == {"BF16"}


def test_metadata_allowed(tmp_path):
    path = make_folder(tmp_path / "m")
    st_numpy.save_file(weights(), os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    assert len(run_open(path).tensors) == len(gpt2_shapes())


def test_sharded(tmp_path):
    arrays = weights(prefix="")
    names = sorted(arrays)
    path = make_folder(tmp_path / "m")
    shard(path, {"model-00001-of-00002.safetensors": {k: arrays[k] for k in names[:10]},
                 "model-00002-of-00002.safetensors": {k: arrays[k] for k in names[10:]}})
    spec = run_open(path)
    assert {ref.file for ref in spec.tensors.values()} == {
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    check_bytes(path, spec, arrays, "")
    files = [ref.file for ref in spec.tensors.values()]
    assert files == sorted(files)


def test_single_file_preferred_over_index(tmp_path):
    # transformers reads model.safetensors when it exists; a stale index beside it is unused.
    path = make_folder(tmp_path / "m", weights())
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        f.write("{}")
    assert len(run_open(path).tensors) == len(gpt2_shapes())


def test_open_folder_takes_a_source(tmp_path):
    path = make_folder(tmp_path / "m", weights())
    spec = asyncio.run(open_folder(LocalSource(path)))
    assert isinstance(spec.source, LocalSource)
    spec = asyncio.run(open_folder(tmp_path / "m"))     # a PathLike works too
    assert len(spec.tensors) == len(gpt2_shapes())


def test_a_gpt2_folder_may_carry_a_chat_template(tmp_path):
    """chat_template.jinja (else tokenizer_config.json's chat_template) reaches the GPT-2
    tokenizer as it reaches a tokenizer.json one, and generation_config.json's eos ids the stop
    ids; without them there is neither."""
    path = make_folder(tmp_path / "m", weights())
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"chat_template": "{% for m in messages %}{{ m.content }}b{% endfor %}"}, f)
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [1, 299, 300]}, f)    # 300 is past vocab_size: never made
    spec = run_open(path)
    tok = spec.tokenizer
    assert tok.chat_template.startswith("{% for m in messages %}")
    assert tok.apply_chat_template([{"role": "user", "content": "a"}]) == [2]   # "ab"
    assert spec.stop_ids == {1, 299}
    with open(os.path.join(path, "chat_template.jinja"), "w") as f:
        f.write("{{ messages[0].content }}")              # the file wins over the config's
    assert run_open(path).tokenizer.chat_template == "{{ messages[0].content }}"
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": "two"}, f)
    fails(path, "generation_config.json", "eos_token_id must be a token id or a list")


def test_save_pretrained_folders(tmp_path):
    """The layouts transformers really writes: GPT2LMHeadModel, GPT2Model, sharded, f16."""
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed: no real save_pretrained folder to check")
    torch = pytest.importorskip(
        "torch", reason="torch is not installed: transformers needs it to save a GPT-2")
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(n_layer=L, n_head=H, n_embd=C, vocab_size=V, n_positions=P)

    def tokenizer(path):
        make_folder(path, config=json.load(open(os.path.join(path, "config.json"))))

    lm = transformers.GPT2LMHeadModel(hf_config).eval()
    state = {k.removeprefix("transformer."): v for k, v in lm.state_dict().items()}
    cases = {
        "lm": (lm, {}),
        "sharded": (lm, {"max_shard_size": "4KB"}),
        "base": (transformers.GPT2Model(hf_config), {}),
        "f16": (transformers.GPT2LMHeadModel(hf_config).half(), {}),
    }
    for case, (model, kwargs) in cases.items():
        path = str(tmp_path / case)
        model.save_pretrained(path, **kwargs)
        tokenizer(path)
        listing = os.listdir(path)
        if case == "sharded":
            assert "model.safetensors.index.json" in listing
            assert sum(f.endswith(".safetensors") for f in listing) > 1
        else:
            assert "model.safetensors" in listing
        spec = run_open(path)
        assert spec.config.n_params == sum(p.numel() for p in model.parameters())
        assert set(spec.tensors) == set(gpt2_shapes())
        ref_state = state if case in ("lm", "sharded") else {
            k.removeprefix("transformer."): v for k, v in model.state_dict().items()}
        for name, ref in spec.tensors.items():
            t = ref_state[name]
            assert ref.shape == tuple(t.shape), name
            assert ref.dtype == ("F16" if case == "f16" else "F32")
            with open(os.path.join(path, ref.file), "rb") as f:
                f.seek(ref.start)
                assert f.read(ref.nbytes) == t.contiguous().numpy().tobytes(), (case, name)
        if len({ref.file for ref in spec.tensors.values()}) > 1:
            assert case == "sharded"


# --- sources --------------------------------------------------------------------------------


def test_local_source_reads(tmp_path):
    data = bytes(range(256)) * 40
    (tmp_path / "f.bin").write_bytes(data)
    (tmp_path / "t.txt").write_text("héllo", encoding="utf-8")
    src = open_source(str(tmp_path))

    async def go():
        assert await src.exists("f.bin") and not await src.exists("nope")
        assert await src.size("f.bin") == len(data)
        assert await src.text("t.txt") == "héllo"
        assert await src.read("f.bin", 5, 300) == data[5:300]
        got = [bytes(c) async for c in src.chunks("f.bin", 7, 9000, chunk_size=1000)]
        assert all(len(c) <= 1000 for c in got) and b"".join(got) == data[7:9000]
        assert [bytes(c) async for c in src.chunks("f.bin", 9, 9)] == []
        with pytest.raises(ModelFolderError, match="f.bin is truncated"):
            [c async for c in src.chunks("f.bin", 0, len(data) + 1, chunk_size=4096)]
        with pytest.raises(ModelFolderError, match="nope"):
            await src.text("nope")
        with pytest.raises(ModelFolderError, match="nope"):
            await src.size("nope")

    asyncio.run(go())
    assert src.where("f.bin") == os.path.join(str(tmp_path), "f.bin")


def test_open_source_refuses(tmp_path):
    with pytest.raises(ModelFolderError, match="only supported in the browser"):
        open_source("https://example.com/gpt2")
    with pytest.raises(ModelFolderError, match="does not exist"):
        open_source(str(tmp_path / "nowhere"))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFolderError, match="not a folder"):
        open_source(str(tmp_path / "model.safetensors"))


# --- config.json ----------------------------------------------------------------------------


def test_config_properties():
    c = GPT2Config(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024)
    assert c.head_size == 64
    assert c.n_params == 124_439_808      # GPT-2 small, with lm_head tied to wte


def test_config_n_ctx_fallback_and_defaults():
    d = {k: v for k, v in CONFIG.items() if k not in ("n_positions", "layer_norm_epsilon",
                                                      "activation_function")}
    c = GPT2Config.from_json(json.dumps(dict(d, n_ctx=32)), "x/config.json")
    assert (c.n_positions, c.layer_norm_epsilon, c.activation_function) == (32, 1e-5, "gelu_new")
    c = GPT2Config.from_json(json.dumps(dict(CONFIG, activation_function="gelu_pytorch_tanh")))
    assert c.activation_function == "gelu_pytorch_tanh"


@pytest.mark.parametrize("change,words", [
    ({"n_layer": None}, ["n_layer"]),
    ({"n_head": 0}, ["n_head", "positive integer"]),
    ({"n_embd": -8}, ["n_embd", "positive integer"]),
    ({"vocab_size": 300.5}, ["vocab_size"]),
    ({"n_positions": True}, ["n_positions"]),
    ({"n_head": 3}, ["n_embd (8)", "n_head (3)"]),
    ({"activation_function": "relu"}, ["'relu'", "gelu_new", "gelu_pytorch_tanh"]),
    ({"layer_norm_epsilon": "small"}, ["layer_norm_epsilon"]),
    ({"model_type": "mamba"}, ["mamba", "GPT-2", "Llama", "Qwen"]),
    # A supported architecture whose config lacks its own keys names the first one missing.
    ({"model_type": "llama"}, ["hidden_size", "llama"]),
    ({"n_inner": 64}, ["n_inner"]),
    ({"scale_attn_by_inverse_layer_idx": True}, ["scale_attn_by_inverse_layer_idx"]),
])
def test_config_rejects(tmp_path, change, words):
    d = {k: v for k, v in dict(CONFIG, **change).items() if v is not None}
    fails(make_folder(tmp_path / "m", weights(), config=d), "config.json", *words)


def test_config_not_json(tmp_path):
    path = make_folder(tmp_path / "m", weights())
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write("{n_layer: 2")
    fails(path, "config.json", "not valid JSON")
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write("[1, 2]")
    fails(path, "config.json", "JSON object")


# --- missing files --------------------------------------------------------------------------


def test_missing_config(tmp_path):
    path = make_folder(tmp_path / "m", weights())
    os.remove(os.path.join(path, "config.json"))
    fails(path, "config.json", "is missing", "model.safetensors", "vocab.json")


@pytest.mark.parametrize("name", ["vocab.json", "merges.txt"])
def test_missing_tokenizer_file(tmp_path, name):
    path = make_folder(tmp_path / "m", weights())
    os.remove(os.path.join(path, name))
    fails(path, name, "is missing", "vocab.json and merges.txt")


def test_missing_weights(tmp_path):
    path = make_folder(tmp_path / "m")
    fails(path, "model.safetensors is missing", "model.safetensors.index.json")
    open(os.path.join(path, "pytorch_model.bin"), "wb").close()
    fails(path, "model.safetensors is missing", "pytorch_model.bin")


# --- safetensors headers --------------------------------------------------------------------


def folder_with_raw(tmp_path, header, data=b"", length=None):
    path = make_folder(tmp_path / "m")
    write_raw(os.path.join(path, "model.safetensors"), header, data, length)
    return path


def one(dtype="F32", shape=(C,), offsets=(0, 4 * C)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def test_file_too_small(tmp_path):
    path = make_folder(tmp_path / "m")
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(b"\x01\x02\x03")
    fails(path, "model.safetensors", "too small", "3 bytes")


def test_header_length_absurd(tmp_path):
    fails(folder_with_raw(tmp_path, {}, length=5000), "model.safetensors", "5000",
          "past the end")
    fails(folder_with_raw(tmp_path, {}, length=1 << 40), "model.safetensors", f"over {MAX_HEADER}")


def test_header_not_json(tmp_path):
    path = make_folder(tmp_path / "m")
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", 5) + b"{abc}")
    fails(path, "model.safetensors", "not valid JSON")
    fails(folder_with_raw(tmp_path, [1, 2]), "model.safetensors", "not a JSON object")


def test_header_duplicate_key(tmp_path):
    path = make_folder(tmp_path / "m")
    h = b'{"ln_f.bias": {"dtype":"F32","shape":[8],"data_offsets":[0,32]},' \
        b' "ln_f.bias": {"dtype":"F32","shape":[8],"data_offsets":[32,64]}}'
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + bytes(64))
    fails(path, "model.safetensors", "'ln_f.bias' twice")


@pytest.mark.parametrize("drop", ["dtype", "shape", "data_offsets"])
def test_entry_missing_field(tmp_path, drop):
    entry = one()
    del entry[drop]
    fails(folder_with_raw(tmp_path, {"ln_f.bias": entry}, bytes(32)),
          "model.safetensors", "'ln_f.bias'", drop)


def test_unsupported_dtype(tmp_path):
    msg = fails(folder_with_raw(tmp_path, {"ln_f.bias": one("I8", offsets=(0, C))}, bytes(C)),
                "model.safetensors", "'ln_f.bias'", "'I8'")
    assert "F32, F16, BF16" in msg


def test_byte_count_mismatch(tmp_path):
    fails(folder_with_raw(tmp_path, {"ln_f.bias": one(offsets=(0, 30))}, bytes(32)),
          "model.safetensors", "'ln_f.bias'", "30 bytes", "needs 32")


def test_offsets_backwards(tmp_path):
    fails(folder_with_raw(tmp_path, {"ln_f.bias": one(offsets=(32, 0))}, bytes(32)),
          "model.safetensors", "'ln_f.bias'", "end before they begin")


def test_offsets_overlap(tmp_path):
    header = {"ln_f.bias": one(offsets=(0, 32)), "ln_f.weight": one(offsets=(16, 48))}
    fails(folder_with_raw(tmp_path, header, bytes(48)),
          "model.safetensors", "'ln_f.weight'", "overlaps", "'ln_f.bias'")


def test_truncated_data(tmp_path):
    path = make_folder(tmp_path / "m", weights())
    file = os.path.join(path, "model.safetensors")
    size = os.path.getsize(file)
    with open(file, "r+b") as f:
        f.truncate(size - 10)
    header_len = struct.unpack("<Q", open(file, "rb").read(8))[0]
    data = size - 8 - header_len
    fails(path, "model.safetensors", "truncated", f"{data} bytes", f"only {data - 10}",
          f"{size} bytes expected", f"{size - 10} found")


def test_parse_header_directly():
    h = json.dumps({"__metadata__": {"format": "pt"}, "b": one(offsets=(32, 64)),
                    "a": one("F16", (2, 3), (0, 12))}).encode()
    infos = parse_header(h, 8 + len(h) + 64, "w.safetensors")
    assert list(infos) == ["a", "b"]      # in file order
    assert infos["a"].shape == (2, 3) and infos["a"].start == 8 + len(h)
    assert (infos["b"].start, infos["b"].end) == (8 + len(h) + 32, 8 + len(h) + 64)
    with pytest.raises(ModelFolderError, match="w.safetensors is truncated"):
        parse_header(h, 8 + len(h) + 63, "w.safetensors")


def test_read_header_large_header(tmp_path):
    # A header longer than the first range read takes a second read.
    header = {f"t{i:05d}": one(offsets=(32 * i, 32 * i + 32)) for i in range(2000)}
    write_raw(tmp_path / "big.safetensors", header, bytes(32 * 2000))
    infos = asyncio.run(read_header(LocalSource(str(tmp_path)), "big.safetensors"))
    assert len(infos) == 2000 and infos["t01999"].end == os.path.getsize(tmp_path / "big.safetensors")


# --- tensor names and shapes ----------------------------------------------------------------


def test_unknown_tensor(tmp_path):
    arrays = weights()
    arrays["transformer.h.0.attn.rotary"] = np.zeros(4, np.float32)
    fails(make_folder(tmp_path / "m", arrays), "model.safetensors", "'transformer.h.0.attn.rotary'")


def test_extra_layer_is_unknown(tmp_path):
    arrays = weights()
    arrays["transformer.h.2.ln_1.weight"] = np.zeros(C, np.float32)
    fails(make_folder(tmp_path / "m", arrays), "model.safetensors", "'transformer.h.2.ln_1.weight'",
          "n_layer=2")


def test_missing_tensor(tmp_path):
    arrays = weights()
    del arrays["transformer.h.1.mlp.c_fc.bias"]
    fails(make_folder(tmp_path / "m", arrays), "model.safetensors", "'h.1.mlp.c_fc.bias'",
          "missing")
    del arrays["transformer.ln_f.weight"]
    fails(make_folder(tmp_path / "m", arrays), "'h.1.mlp.c_fc.bias'", "and 1 more")


def test_wrong_shape(tmp_path):
    arrays = weights()
    # A Linear-style [out, in] weight where GPT-2's Conv1D has [in, out].
    arrays["transformer.h.1.attn.c_attn.weight"] = np.zeros((3 * C, C), np.float32)
    fails(make_folder(tmp_path / "m", arrays), "model.safetensors",
          "'transformer.h.1.attn.c_attn.weight'", "[24, 8]", "expected [8, 24]")


def test_wrong_vocab(tmp_path):
    fails(make_folder(tmp_path / "m", weights(), config=dict(CONFIG, vocab_size=301)),
          "'transformer.wte.weight'", "[300, 8]", "expected [301, 8]")


def test_untied_lm_head_shape(tmp_path):
    arrays = weights()
    arrays["lm_head.weight"] = np.zeros((C, V), np.float32)
    fails(make_folder(tmp_path / "m", arrays), "model.safetensors", "'lm_head.weight'",
          "[8, 300]", "[300, 8]")


def test_same_tensor_with_both_prefixes(tmp_path):
    arrays = weights()
    arrays["wte.weight"] = arrays["transformer.wte.weight"]
    fails(make_folder(tmp_path / "m", arrays), "'wte.weight'", "'transformer.wte.weight'", "twice")


# --- shards ---------------------------------------------------------------------------------

S1, S2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


def split(arrays):
    names = sorted(arrays)
    return {k: arrays[k] for k in names[:10]}, {k: arrays[k] for k in names[10:]}


def test_duplicate_across_shards(tmp_path):
    a, b = split(weights())
    b["transformer.ln_f.bias"] = np.zeros(C, np.float32)
    a["transformer.ln_f.bias"] = np.zeros(C, np.float32)
    path = make_folder(tmp_path / "m")
    st_numpy.save_file(a, os.path.join(path, S1))
    st_numpy.save_file(b, os.path.join(path, S2))
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {**{k: S1 for k in a}, **{k: S2 for k in b}}}, f)
    fails(path, "'ln_f.bias'", "twice", S1, S2)


def test_missing_shard(tmp_path):
    a, b = split(weights())
    path = make_folder(tmp_path / "m")
    shard(path, {S1: a, S2: b})
    os.remove(os.path.join(path, S2))
    fails(path, S2, "is missing", "model.safetensors.index.json")


def test_index_points_to_wrong_shard(tmp_path):
    a, b = split(weights())
    path = make_folder(tmp_path / "m")
    shard(path, {S1: a, S2: b})
    index_file = os.path.join(path, "model.safetensors.index.json")
    index = json.load(open(index_file))
    moved = sorted(b)[0]
    index["weight_map"][moved] = S1
    json.dump(index, open(index_file, "w"))
    fails(path, "model.safetensors.index.json", repr(moved), S1, "does not have it")


@pytest.mark.parametrize("index,words", [
    ("{not json", ["not valid JSON"]),
    ('{"metadata": {}}', ["weight_map"]),
    ('{"weight_map": {"wte.weight": "../elsewhere.safetensors"}}', ["'../elsewhere.safetensors'"]),
])
def test_bad_index(tmp_path, index, words):
    path = make_folder(tmp_path / "m")
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        f.write(index)
    fails(path, "model.safetensors.index.json", *words)


def test_shard_defect_names_the_shard(tmp_path):
    a, b = split(weights())
    path = make_folder(tmp_path / "m")
    shard(path, {S1: a, S2: b})
    file = os.path.join(path, S2)
    with open(file, "r+b") as f:
        f.truncate(os.path.getsize(file) - 4)
    fails(path, S2, "truncated")
