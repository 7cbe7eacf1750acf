"""The GGUF reader (webgpt.gguf, webgpt.gguf_spec) against files the `gguf` package (ggml's own
writer) writes: every metadata value type, versions 2 and 3, general.alignment, split files,
the tensor table; and hostile headers, each one sentence within the reader's budgets. No GPU.
"""

import asyncio
import os
import struct

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from webgpt.errors import ModelFolderError  # noqa: E402
from webgpt.gguf import GGUFError, read_gguf, read_gguf_files  # noqa: E402
from webgpt.sources import LocalSource  # noqa: E402


def run(coro):
    return asyncio.run(coro)


def read(path):
    return run(read_gguf(LocalSource(os.path.dirname(path)), os.path.basename(path)))


def write(path, build, **kw):
    w = gguf.GGUFWriter(str(path), "llama", **kw)
    build(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


VALUES = [
    ("u8", 200, gguf.GGUFValueType.UINT8), ("i8", -100, gguf.GGUFValueType.INT8),
    ("u16", 60000, gguf.GGUFValueType.UINT16), ("i16", -30000, gguf.GGUFValueType.INT16),
    ("u32", 4_000_000_000, gguf.GGUFValueType.UINT32), ("i32", -2_000_000_000, gguf.GGUFValueType.INT32),
    ("f32", 0.5, gguf.GGUFValueType.FLOAT32), ("bool", True, gguf.GGUFValueType.BOOL),
    ("str", "héllo wörld 😀", gguf.GGUFValueType.STRING),
    ("u64", 2**63 + 5, gguf.GGUFValueType.UINT64), ("i64", -2**62, gguf.GGUFValueType.INT64),
    ("f64", 1e300, gguf.GGUFValueType.FLOAT64),
]


def test_every_value_type_and_tensors(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    q = gguf.quants.quantize(np.ones((2, 64), np.float32), gguf.GGMLQuantizationType.Q8_0)

    def build(w):
        for key, value, vtype in VALUES:
            w.add_key_value("t." + key, value, vtype)
        w.add_array("t.ints", [1, -2, 3])
        w.add_array("t.floats", [0.25, -1.5])
        w.add_array("t.strings", ["a", "", "ĉ"])
        w.add_array("t.bools", [True, False])
        w.add_array("t.nested", [[1, 2], [3]])
        w.add_tensor("a", a)
        w.add_tensor("q", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    f = read(write(tmp_path / "m.gguf", build))
    md = f.metadata
    assert f.version == 3 and md["general.architecture"] == "llama"
    for key, value, _ in VALUES:
        assert md["t." + key] == value, key
    assert md["t.ints"] == [1, -2, 3] and md["t.floats"] == [0.25, -1.5]
    assert md["t.strings"] == ["a", "", "ĉ"] and md["t.bools"] == [True, False]
    assert md["t.nested"] == [[1, 2], [3]]
    ta, tq = f.tensors
    assert (ta.name, ta.dims, ta.type.name, ta.shape) == ("a", (4, 3), "F32", (3, 4))
    assert (tq.name, tq.dims, tq.type.name, tq.nbytes) == ("q", (64, 2), "Q8_0", 2 * 2 * 34)
    raw = open(tmp_path / "m.gguf", "rb").read()
    assert np.frombuffer(raw[ta.start:ta.end], np.float32).tolist() == a.ravel().tolist()
    assert raw[tq.start:tq.end] == q.tobytes()
    assert ta.start % 32 == 0 and tq.start % 32 == 0


def test_version_2_and_alignment(tmp_path):
    def build(w):
        w.data_alignment = 256
        w.add_uint32("general.alignment", 256)
        w.add_tensor("a", np.ones(5, np.float32))
        w.add_tensor("b", np.ones(7, np.float32))

    path = write(tmp_path / "m.gguf", build)
    assert all(t.start % 256 == 0 for t in read(path).tensors)
    raw = bytearray(open(path, "rb").read())
    raw[4:8] = struct.pack("<I", 2)   # v2 and v3 little-endian files are laid out alike
    open(path, "wb").write(raw)
    f = read(path)
    assert f.version == 2 and f.alignment == 256 and [t.name for t in f.tensors] == ["a", "b"]


def test_split_files(tmp_path):
    def build(w):
        for k in range(5):
            w.add_tensor(f"t{k}", np.full(8, k, np.float32))

    write(tmp_path / "m.gguf", build, split_max_tensors=2)
    names = sorted(os.listdir(tmp_path))
    assert names == [f"m-0000{k}-of-00003.gguf" for k in (1, 2, 3)]
    src = LocalSource(str(tmp_path))
    for name in names:      # any part names the whole model
        files = run(read_gguf_files(src, name))
        assert [t.name for f in files for t in f.tensors] == [f"t{k}" for k in range(5)]
    os.remove(tmp_path / names[1])
    with pytest.raises(GGUFError, match="part 2 of the 3 files"):
        run(read_gguf_files(src, names[0]))


# ---------------------------------------------------------------------------------------------
# Hostile headers: each is one sentence, before anything large is held.

def header(n_tensors=0, n_kv=0, version=3, magic=b"GGUF"):
    return magic + struct.pack("<IQQ", version, n_tensors, n_kv)


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return gstr(key) + struct.pack("<I", vtype) + payload


def tinfo(name, dims, gtype, offset):
    return gstr(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) + \
        struct.pack("<IQ", gtype, offset)


def arch_kv():
    return kv("general.architecture", 8, gstr("llama"))


def padded(data, align=32):
    return data + bytes(-len(data) % align)


HOSTILE = {
    "not gguf": (b"PK\x03\x04" + bytes(60), "not a GGUF file"),
    "version 1": (header(version=1) + bytes(8), "version 1"),
    "big-endian": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
    "version 9": (header(version=9), "GGUF version 9"),
    "a billion keys": (header(n_kv=10**9) + bytes(64), "metadata count is 1,000,000,000"),
    "a billion tensors": (header(n_tensors=10**9, n_kv=0) + bytes(64), "tensor count"),
    "2 GB string": (header(n_kv=1) + kv("k", 8, struct.pack("<Q", 2 << 30) + b"x" * 100),
                    "string of 2,147,483,648 bytes"),
    "array longer than the file": (header(n_kv=1) + kv("k", 9, struct.pack("<IQ", 4, 10**12)),
                                   "length of metadata 'k'"),
    "unknown value type": (header(n_kv=1) + kv("k", 77, b"\0" * 8), "value type 77"),
    "duplicate key": (header(n_kv=2) + arch_kv() + arch_kv(), "general.architecture' twice"),
    "bad utf-8": (header(n_kv=1) + kv("k", 8, gstr(b"\xff\xfe")), "not UTF-8"),
    "deep arrays": (header(n_kv=1) + kv("k", 9, struct.pack("<IQ", 9, 1) * 5
                                         + struct.pack("<IQ", 4, 0)), "nests arrays"),
    "truncated header": (header(n_kv=2) + arch_kv(), "the file ends"),
    "bad alignment": (header(n_kv=1) + kv("general.alignment", 4, struct.pack("<I", 3)),
                      "power of two"),
    "unknown ggml type": (padded(header(1, 1) + arch_kv() + tinfo("t", (4,), 99, 0)) + bytes(64),
                          "ggml type 99"),
    "zero dimension": (padded(header(1, 1) + arch_kv() + tinfo("t", (4, 0), 0, 0)) + bytes(64),
                       "dimension of 0"),
    "five dimensions": (padded(header(1, 1) + arch_kv() + tinfo("t", (1,) * 5, 0, 0)),
                        "5 dimensions"),
    "partial block": (padded(header(1, 1) + arch_kv() + tinfo("t", (20,), 8, 0)) + bytes(64),
                      "not a multiple of Q8_0's blocks of 32"),
    "past the end": (padded(header(1, 1) + arch_kv() + tinfo("t", (64,), 0, 0)) + bytes(100),
                     "runs past the end"),
    "misaligned": (padded(header(1, 1) + arch_kv() + tinfo("t", (4,), 0, 4)) + bytes(64),
                   "not a multiple of the alignment"),
    "overlap": (padded(header(2, 1) + arch_kv() + tinfo("a", (16,), 0, 0)
                       + tinfo("b", (16,), 0, 32)) + bytes(256), "overlap"),
    "duplicate tensor": (padded(header(2, 1) + arch_kv() + tinfo("a", (4,), 0, 0)
                                + tinfo("a", (4,), 0, 32)) + bytes(64), "appears twice"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_header_is_a_sentence(tmp_path, case):
    data, message = HOSTILE[case]
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    with pytest.raises(GGUFError) as e:
        read(str(path))
    text = str(e.value)
    assert message in text and str(path) in text, text
    assert "\n" not in text


def test_header_larger_than_the_first_window(tmp_path):
    """A 20 MB string (a header past the 16 MiB first read) is read in a second, larger one."""
    big = "x" * (20 << 20)
    path = write(tmp_path / "m.gguf", lambda w: (w.add_string("t.big", big),
                                                w.add_tensor("a", np.ones(4, np.float32))))
    f = read(path)
    assert f.metadata["t.big"] == big and f.tensors[0].name == "a"


def test_model_level_defects(tmp_path):
    """Metadata and tensor tables that are valid GGUF but not a model webgpt runs."""
    import webgpt

    def model(arch="llama", extra=None, embd_type=None):
        def build(w):
            w.add_string("general.architecture", arch)
            for k, v in {"context_length": 32, "embedding_length": 256, "feed_forward_length": 256,
                         "block_count": 1, "attention.head_count": 4}.items():
                w.add_uint32(f"{arch}.{k}", v)
            w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
            w.add_tokenizer_model("gpt2")
            w.add_tokenizer_pre("gpt-2")
            w.add_token_list([chr(65 + i) for i in range(8)])
            if extra:
                extra(w)
            raw = np.zeros((8, 256 // 256 * 110), np.uint8)
            if embd_type is not None:
                w.add_tensor("token_embd.weight", raw, raw_dtype=embd_type)
            else:
                w.add_tensor("token_embd.weight", np.zeros((8, 256), np.float32))
        return write(tmp_path / f"{arch}.gguf", build)

    def fails(path, match):
        with pytest.raises(ModelFolderError, match=match):
            run(webgpt.open_folder(path))

    fails(model("mamba"), "general.architecture is 'mamba'")
    fails(model(extra=lambda w: w.add_uint32("llama.expert_count", 8)), "mixture-of-experts")
    fails(model(), "missing")       # a model with only its token table
    fails(model(embd_type=gguf.GGMLQuantizationType.IQ3_S),
          "IQ3_S is an importance-matrix \\(IQ\\) type")
    fails(_with_pre(tmp_path, "klingon"), "tokenizer.ggml.pre is 'klingon'")


def _with_pre(tmp_path, pre):
    """A complete tiny llama file whose tokenizer names pre-tokenizer `pre`."""
    import hfmodels
    import ggufmodels

    d = str(tmp_path / "pre")
    os.makedirs(d, exist_ok=True)
    hfmodels.write_tokenizer(d)
    m = hfmodels.hf_model("LlamaForCausalLM", dict(
        hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, tie_word_embeddings=True))
    path = os.path.join(d, "m.gguf")
    ggufmodels.write_gguf(path, m, d, ggufmodels.uniform(gguf.GGMLQuantizationType.F32),
                          pre=pre)
    return path


def test_site_ships_a_gguf_folder(tmp_path):
    """build.py ships a folder holding one GGUF model (and no config.json) with a gguf.json
    naming the file, which the reader follows where it cannot list the folder (a URL)."""
    import json

    import hfmodels
    import ggufmodels
    from webgpt.folder import open_folder
    from webgpt.tools.site.models import copy_models

    src = str(tmp_path / "src")
    os.makedirs(src)
    hfmodels.write_tokenizer(src)
    m = hfmodels.hf_model("LlamaForCausalLM", dict(
        hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, tie_word_embeddings=True))
    folder = str(tmp_path / "shipped")
    os.makedirs(folder)
    ggufmodels.write_gguf(os.path.join(folder, "m-Q8_0.gguf"), m, src,
                          ggufmodels.uniform(gguf.GGMLQuantizationType.F32))
    out = str(tmp_path / "models")
    copy_models(out, {"tiny-gguf": folder})
    index = json.load(open(os.path.join(out, "index.json")))
    entry = next(e for e in index["models"] if e["name"] == "tiny-gguf")
    assert set(entry["files"]) == {"m-Q8_0.gguf", "gguf.json"} and set(entry["sha256"]) == \
        set(entry["files"])

    class Unlistable(LocalSource):      # as a folder URL: files can be read, not listed
        def __init__(self, path):
            self._path = path

        def where(self, name):
            return os.path.join(self._path, name)

    spec = run(open_folder(Unlistable(os.path.join(out, "tiny-gguf"))))
    assert spec.gguf["files"] == ["m-Q8_0.gguf"]


def test_the_kernels_share_one_block_decoder():
    """gemv.wgsl, matmul.wgsl and embedding.wgsl each carry ggml's block decoder (a file must
    be valid WGSL alone): the same text in the three, so a fix in one is made in all."""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shaders")
    blocks = []
    for name in ("gemv", "matmul", "embedding"):
        text = open(os.path.join(root, f"{name}.wgsl"), encoding="utf-8").read()
        start = text.index("// ---- ggml's block types")
        end = text.index("// ---- end of ggml's block types")
        blocks.append(text[start:end])
    assert blocks[0] == blocks[1] == blocks[2]
    from webgpt.ggml import BY_NAME, KERNEL_TYPES, kernel_format
    for t in KERNEL_TYPES:   # every block type's size in the decoder is the table's
        if BY_NAME[t].is_block:
            fmt = kernel_format(t)
            assert f"case {fmt}u: {{ return {BY_NAME[t].block_bytes}u; }}" in blocks[0] or \
                (t == "Q6_K" and "default: { return 210u; }" in blocks[0]), t


def test_chat_template_and_stop_ids_come_from_the_file(tmp_path):
    """An instruct model's GGUF (tokenizer.chat_template, eos) renders a chat as its folder does,
    and stops on the same ids."""
    import hfmodels
    import ggufmodels
    from webgpt.folder import open_folder

    d = str(tmp_path)
    model, eos = hfmodels.write_chat_folder(d)
    path = os.path.join(d, "chat.gguf")
    ggufmodels.write_gguf(path, model.float(), d,
                          ggufmodels.uniform(gguf.GGMLQuantizationType.Q8_0))
    spec, folder = run(open_folder(path)), run(open_folder(d))
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    assert spec.tokenizer.chat_template == folder.tokenizer.chat_template is not None
    assert spec.tokenizer.apply_chat_template(msgs, add_generation_prompt=True) == \
        folder.tokenizer.apply_chat_template(msgs, add_generation_prompt=True)
    assert spec.stop_ids == folder.stop_ids == frozenset(eos)
