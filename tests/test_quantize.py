"""Quantized weights on the CPU: quantize/dequantize, the folder converter, and folder.py's checks.

The format is fixed by webgpt/tools/quantize.py's docstring (the GPU kernels read it): here it is
checked from the definition (hand-made bytes, numpy arithmetic written out again), not from the
code under test. Fast, CPU only.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys

import pytest

np = pytest.importorskip("numpy", reason="numpy is not installed: the quantizer needs it")
st_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import npref  # noqa: E402
import refmodels  # noqa: E402

from webgpt.tools import quantize as qz  # noqa: E402
from webgpt.config import GPT2Config, Quantization  # noqa: E402
from webgpt.folder import (ModelFolderError, QuantizedRef, TensorRef,  # noqa: E402
                           open_folder, quantized_names)
from webgpt.tools.quantize import QuantizeError, dequantize, quantize, quantize_folder  # noqa: E402

HF_TINY = os.path.join(refmodels.FIXTURES, "hf_tiny")     # C = 96, V = 1000, 2 layers, f32
QMAX = {8: 127, 4: 7}


def bound(scales, bits, block):
    """The error bound of every element: max(s / 2, qmax * ulp(s) / 2) (the second term only
    matters for a subnormal f16 scale)."""
    s = scales.astype(np.float64)
    ulp = np.spacing(scales).astype(np.float64)
    return np.repeat(np.maximum(s / 2, QMAX[bits] * ulp / 2), block, axis=1)


def reference_q(w, bits, block):
    """q and f16 scales from the definition, one block at a time (slow, plain)."""
    N, K = w.shape
    qmax = QMAX[bits]
    q = np.zeros((N, K), np.int64)
    s = np.zeros((N, K // block), np.float16)
    for n in range(N):
        for b in range(K // block):
            x = w[n, b * block:(b + 1) * block].astype(np.float64)
            s[n, b] = np.float16(np.abs(x).max() / qmax)
            if s[n, b] != 0:
                q[n, b * block:(b + 1) * block] = np.clip(np.rint(x / float(s[n, b])), -qmax, qmax)
    return q, s


# --- one matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_round_trip_random_shapes(seed):
    """Random shapes, blocks and magnitudes: the definition, the bound, exact f32 products."""
    rng = np.random.default_rng(seed)
    bits = (8, 4)[seed % 2]
    block = int(rng.choice([8, 16, 32, 64]))
    N, K = int(rng.integers(1, 40)), block * int(rng.integers(1, 6))
    # Rows of very different magnitudes, so some scales are subnormal f16.
    w = rng.standard_normal((N, K)) * 10.0 ** rng.uniform(-7, 2, (N, 1))
    w = w.astype(np.float32 if seed % 3 else np.float16)
    qweight, scales = quantize(w, bits, block)
    assert scales.dtype == np.float16 and scales.shape == (N, K // block)
    if bits == 8:
        assert qweight.dtype == np.int8 and qweight.shape == (N, K)
        q = qweight.astype(np.int64)
    else:
        assert qweight.dtype == np.uint8 and qweight.shape == (N, K // 2)
        q = qz.unpack_int4(qweight).astype(np.int64)
    want_q, want_s = reference_q(w, bits, block)
    assert np.array_equal(scales, want_s)
    assert np.array_equal(q, want_q)
    assert np.abs(q).max(initial=0) <= QMAX[bits]

    deq = dequantize(qweight, scales, bits, block)
    assert deq.dtype == np.float32 and deq.shape == (N, K)
    # q * scale is exact in f32: the same as the float64 product.
    exact = q * np.repeat(scales.astype(np.float64), block, axis=1)
    assert np.array_equal(deq.astype(np.float64), exact)
    err = np.abs(w.astype(np.float64) - deq)
    assert (err <= bound(scales, bits, block)).all(), (err - bound(scales, bits, block)).max()
    # Where the scale is a normal f16, the plain bound |w - w'| <= scale / 2 holds.
    normal = np.repeat(scales >= np.finfo(np.float16).tiny, block, axis=1)
    half = np.repeat(scales.astype(np.float64) / 2, block, axis=1)
    assert (err[normal] <= half[normal]).all()
    print(f"seed {seed}: {bits}-bit block {block} [{N}, {K}]: max |w - w'| / scale "
          f"{(err / np.maximum(2 * half, 1e-30))[normal].max(initial=0):.4f}")


def test_nibble_packing_order():
    # Element 2j in the low nibble of byte j, 2j + 1 in the high one; two's complement.
    q = np.array([[1, -1, 7, -8, 0, 3, -7, 2]], np.int8)
    packed = qz.pack_int4(q)
    assert packed.dtype == np.uint8
    assert packed.tolist() == [[0xF1, 0x87, 0x30, 0x29]]
    assert qz.unpack_int4(packed).tolist() == q.tolist()
    # Every byte unpacks to its two nibbles.
    all_bytes = np.arange(256, dtype=np.uint8).reshape(1, 256)
    u = qz.unpack_int4(all_bytes)
    lo, hi = u[0, 0::2].astype(int), u[0, 1::2].astype(int)
    assert ((lo & 0xF) | ((hi & 0xF) << 4)).tolist() == list(range(256))
    assert lo.min() == -8 and lo.max() == 7


def test_hand_made_4bit_bytes():
    # One block of 8 with max |w| = 7: the scale is 1 and q = round(w).
    w = np.array([[7.0, -7.0, 1.0, 0.0, 2.4, -3.6, 0.5, -1.5]], np.float32)
    qweight, scales = quantize(w, 4, 8)
    assert scales.tolist() == [[1.0]]
    # q = [7, -7, 1, 0, 2, -4, 0, -2] (0.5 and -1.5 round half to even)
    assert qweight.tolist() == [[0x97, 0x01, 0xC2, 0xE0]]
    assert dequantize(qweight, scales, 4, 8).tolist() == [[7, -7, 1, 0, 2, -4, 0, -2]]


def test_hand_made_8bit_half_to_even():
    w = np.array([[127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5]], np.float32)
    qweight, scales = quantize(w, 8, 8)
    assert scales.tolist() == [[1.0]]
    assert qweight.tolist() == [[127, 0, 2, 2, 0, -2, -2, 126]]


def test_zero_blocks():
    w = np.zeros((3, 32), np.float32)
    w[1, 8:16] = np.linspace(-1, 1, 8)      # one non-zero block among zero ones
    for bits in (8, 4):
        qweight, scales = quantize(w, bits, 8)
        assert scales[0].tolist() == [0, 0, 0, 0] and scales[2].tolist() == [0, 0, 0, 0]
        assert scales[1].tolist()[0] == 0 and scales[1, 1] > 0 and scales[1, 2:].tolist() == [0, 0]
        q = qweight if bits == 8 else qz.unpack_int4(qweight)
        assert not q[0].any() and not q[2].any() and not q[1, :8].any()
        deq = dequantize(qweight, scales, bits, 8)
        assert not deq[0].any() and not deq[2].any()
        assert np.abs(deq - w).max() <= scales.astype(np.float32).max() / 2


def test_scale_rounded_to_f16_first():
    """q comes from the f16 scale, so w' = q * f16 scale is the best the stored scale allows."""
    # max |w| / 127 = 0.1 / 127 is not an f16: the stored scale differs from it.
    s16 = np.float16(np.float32(0.1) / 127)
    assert float(s16) != float(np.float32(0.1)) / 127
    # 62.5 and 63.5 stored scales: one of them rounds the other way with the unrounded scale.
    w = np.array([[0.1, 62.5 * float(s16), 63.5 * float(s16), -0.0731, 0.03, 0.01, -0.1,
                   0.07777]], np.float32)
    qweight, scales = quantize(w, 8, 8)
    assert scales[0, 0] == s16
    want = np.clip(np.rint(w.astype(np.float64) / float(s16)), -127, 127)
    assert qweight.astype(np.int64).tolist() == want.astype(np.int64).tolist()
    assert want[0, 1:3].tolist() == [62, 64]      # half to even
    unrounded = np.clip(np.rint(w.astype(np.float64) / (float(np.float32(0.1)) / 127)), -127, 127)
    assert not np.array_equal(want, unrounded), "the example should tell the two apart"
    deq = dequantize(qweight, scales, 8, 8)
    assert np.array_equal(deq, (want * float(s16)).astype(np.float32))


def test_chunked_rows_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((37, 64)).astype(np.float32)
    whole = [quantize(w, bits, 16) for bits in (8, 4)]
    monkeypatch.setattr(qz, "CHUNK_VALUES", 100)    # a row chunk of one row
    for (q1, s1), bits in zip(whole, (8, 4)):
        q2, s2 = quantize(w, bits, 16)
        assert np.array_equal(q1, q2) and np.array_equal(s1, s2)


@pytest.mark.parametrize("call,words", [
    (lambda: quantize(np.ones((2, 32)), 5, 32), ["bits must be 8 or 4", "5"]),
    (lambda: quantize(np.ones((2, 32)), True, 32), ["bits must be 8 or 4"]),
    (lambda: quantize(np.ones((2, 32)), 8, 12), ["block", "multiple of 8", "12"]),
    (lambda: quantize(np.ones((2, 32)), 8, 0), ["block", "multiple of 8"]),
    (lambda: quantize(np.ones((2, 32)), 8, -8), ["block", "multiple of 8"]),
    (lambda: quantize(np.ones((2, 40)), 8, 32), ["40", "not a multiple of the block size 32"]),
    (lambda: quantize(np.ones(32), 8, 32), ["matrix"]),
    (lambda: quantize(np.array([[1.0] * 7 + [np.nan]]), 8, 8), ["row 0, column 7", "not finite"]),
    (lambda: quantize(np.full((1, 8), 1e9), 8, 8), ["too large for f16 scales"]),
    (lambda: dequantize(np.zeros((2, 32), np.int8), np.zeros((2, 2), np.float16), 8, 32),
     ["do not fit"]),
])
def test_bad_arguments(call, words):
    with pytest.raises(QuantizeError) as e:
        call()
    for w in words:
        assert w in str(e.value), str(e.value)


# --- folders --------------------------------------------------------------------------------


def spec_of(path):
    return asyncio.run(open_folder(path))


def plain_folder(tmp_path, name="src", prefix="transformer.", dtype="float32", shards=None):
    """The tiny fixture's weights as a folder: with or without prefix, f32/f16, or sharded into
    `shards` files."""
    cfg = refmodels.CONFIGS["tiny"]
    w = refmodels.make_weights(cfg, 1)
    w = {prefix + k.removeprefix("transformer."): v for k, v in w.items()}
    folder = refmodels.write_folder(str(tmp_path / name), cfg, w, dtype)
    if shards:
        os.remove(os.path.join(folder, "model.safetensors"))
        names = sorted(w)
        weight_map = {}
        for k in range(shards):
            file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: w[n].astype(dtype) for n in names[k::shards]}
            st_numpy.save_file(part, os.path.join(folder, file))
            weight_map.update({n: file for n in part})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return folder, w


@pytest.mark.parametrize("bits", [8, 4])
def test_convert_hf_fixture(tmp_path, bits):
    """hf_tiny (written by transformers) -> quantized folder -> folder.py -> the format."""
    dst = str(tmp_path / f"q{bits}")
    lines = []
    summary = quantize_folder(HF_TINY, dst, bits, 32, progress=lines.append)
    assert sorted(os.listdir(dst)) == ["config.json", "generation_config.json", "merges.txt",
                                       "model.safetensors", "tokenizer.json",
                                       "tokenizer_config.json", "vocab.json"]
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        with open(os.path.join(dst, name), "rb") as a, open(os.path.join(HF_TINY, name), "rb") as b:
            assert a.read() == b.read()
    config = json.load(open(os.path.join(dst, "config.json")))
    original = json.load(open(os.path.join(HF_TINY, "config.json")))
    assert config == dict(original, webgpt_quantization={"bits": bits, "block": 32})
    src = spec_of(HF_TINY)
    assert len(lines) == len(src.tensors) and lines[0].startswith(f"[1/{len(src.tensors)}] ")
    assert len(summary["tensors"]) == 1 + 4 * 2
    assert all(s["max_err_over_scale"] <= 0.5 for s in summary["tensors"])
    size = os.path.getsize(os.path.join(dst, "model.safetensors"))
    assert summary["files"] == {"model.safetensors": size}

    spec = spec_of(dst)
    assert spec.quantization == Quantization(bits, 32)
    assert spec.config.quantization == Quantization(bits, 32)
    assert set(spec.tensors) == set(src.tensors)
    saved = st_numpy.load_file(os.path.join(dst, "model.safetensors"))
    original_w = st_numpy.load_file(os.path.join(HF_TINY, "model.safetensors"))
    qnames = set(quantized_names(spec.config))
    assert len(qnames) == 1 + 4 * 2
    for name, ref in spec.tensors.items():
        if name not in qnames:
            assert isinstance(ref, TensorRef) and ref.dtype == "F32"
            assert np.array_equal(saved["transformer." + name], original_w["transformer." + name])
            continue
        assert isinstance(ref, QuantizedRef)
        w = original_w["transformer." + name]
        rows = w.T if name != "wte.weight" else w                # [N, K]
        N, K = rows.shape
        assert (ref.bits, ref.block, ref.shape, ref.N, ref.K) == (bits, 32, w.shape, N, K)
        assert ref.transposed == (name != "wte.weight")
        assert ref.dtype == f"Q{bits}" and ref.nbytes == ref.qweight.nbytes + ref.scales.nbytes
        assert ref.qweight.dtype == ("I8" if bits == 8 else "U8")
        assert ref.qweight.shape == (N, K if bits == 8 else K // 2)
        assert (ref.scales.dtype, ref.scales.shape) == ("F16", (N, K // 32))
        qweight = saved["transformer." + name + ".qweight"]
        scales = saved["transformer." + name + ".scales"]
        # The bytes folder.py points at are the tensors.
        with open(os.path.join(dst, ref.qweight.file), "rb") as f:
            f.seek(ref.qweight.start)
            assert f.read(ref.qweight.nbytes) == qweight.tobytes()
        want_q, want_s = reference_q(rows, bits, 32)
        assert np.array_equal(scales, want_s), name
        got_q = qweight if bits == 8 else qz.unpack_int4(qweight)
        assert np.array_equal(got_q, want_q), name
    # lm_head is not written (tied), nor any old mask buffer.
    assert not any(k.startswith("lm_head") for k in saved)


@pytest.mark.parametrize("prefix,dtype,shards", [
    ("transformer.", "float32", None), ("", "float16", None), ("", "float32", 3),
    ("transformer.", "float16", 2)])
def test_convert_any_folder_and_run_it(tmp_path, prefix, dtype, shards):
    """Prefix kept as in the source; f32/f16 sources, sharded or not; the numpy reference
    runs the quantized folder close to the original."""
    src, w = plain_folder(tmp_path, prefix=prefix, dtype=dtype, shards=shards)
    cfg = refmodels.CONFIGS["tiny"]
    ids = list(np.random.default_rng(0).integers(0, cfg["vocab_size"], 23))
    want = npref.forward_folder(src, ids)
    # Random weights of N(0, 1/fan_in) are hard on 4 bits (the shipped model's figures are in
    # its card); measured here: 8-bit max |dlogit| 0.055, relative RMS 1.3%; 4-bit 1.12, 24%.
    for bits, max_err, rel_rms, same_top in ((8, 0.1, 0.025, 1.0), (4, 2.0, 0.4, 0.6)):
        dst = str(tmp_path / f"q{bits}")
        quantize_folder(src, dst, bits)
        saved = st_numpy.load_file(os.path.join(dst, "model.safetensors"))
        assert prefix + "h.0.mlp.c_fc.weight.qweight" in saved
        assert prefix + "wpe.weight" in saved and saved[prefix + "wpe.weight"].dtype == dtype
        assert np.array_equal(saved[prefix + "wpe.weight"], w[prefix + "wpe.weight"].astype(dtype))
        got = npref.forward_folder(dst, ids)
        err = np.abs(got - want).max()
        rms = np.sqrt(((got - want) ** 2).mean() / (want ** 2).mean())
        top = (got.argmax(-1) == want.argmax(-1)).mean()
        print(f"{prefix or 'no prefix'} {dtype} shards={shards}: {bits}-bit max |dlogit| "
              f"{err:.4f}, relative RMS {rms:.4f}, same argmax {top:.2f}")
        assert err < max_err and rms < rel_rms and top >= same_top


def test_sharded_output(tmp_path):
    src, _ = plain_folder(tmp_path)
    dst = str(tmp_path / "q")
    summary = quantize_folder(src, dst, 8, 32, max_shard=120_000)
    files = sorted(f for f in os.listdir(dst) if f.endswith(".safetensors"))
    n = len(files)
    assert n > 2 and files == [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    assert "model.safetensors" not in files
    assert summary["files"] == {f: os.path.getsize(os.path.join(dst, f)) for f in files}
    # Every file within the limit (no single tensor here is larger).
    assert all(os.path.getsize(os.path.join(dst, f)) <= 120_000 for f in files)
    index = json.load(open(os.path.join(dst, "model.safetensors.index.json")))
    tensors = {}
    for f in files:
        tensors.update({k: f for k in st_numpy.load_file(os.path.join(dst, f))})
    assert index["weight_map"] == tensors
    assert index["metadata"]["total_size"] == sum(
        a.nbytes for f in files for a in st_numpy.load_file(os.path.join(dst, f)).values())
    one = str(tmp_path / "one")
    quantize_folder(src, one, 8, 32)
    a, b = npref.load_folder(dst)[1], npref.load_folder(one)[1]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_oversized_tensor_gets_its_own_shard(tmp_path):
    src, _ = plain_folder(tmp_path)
    lines = []
    quantize_folder(src, str(tmp_path / "q"), 8, 32, max_shard=20_000, progress=lines.append)
    assert any(line.startswith("warning:") and "over the shard size" in line for line in lines)
    spec_of(str(tmp_path / "q"))


def test_bf16_source_copied_as_bf16(tmp_path):
    src, w = plain_folder(tmp_path)
    # Rewrite model.safetensors in bf16 by hand (numpy has no bf16): the top halves of f32.
    header, data = {}, b""
    for name, a in w.items():
        raw = (a.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(a.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    with open(os.path.join(src, "model.safetensors"), "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + data)
    dst = str(tmp_path / "q")
    quantize_folder(src, dst, 8)
    spec = spec_of(dst)
    assert spec.tensors["wpe.weight"].dtype == "BF16"
    _, got = npref.load_folder(dst)
    bf = (w["transformer.wpe.weight"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    assert np.array_equal(got["wpe.weight"], bf)
    wte = (w["transformer.wte.weight"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    s = spec_of(dst).tensors["wte.weight"]
    assert np.abs(got["wte.weight"] - wte).max() <= np.abs(wte).max() / 127 / 2 * 1.01
    assert s.shape == wte.shape


# --- converter errors -----------------------------------------------------------------------


def fails(words, **kw):
    with pytest.raises((QuantizeError, ModelFolderError)) as e:
        quantize_folder(**kw)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_converter_errors(tmp_path):
    src, _ = plain_folder(tmp_path)
    dst = str(tmp_path / "q")
    fails(["bits must be 8 or 4", "16"], src=src, dst=dst, bits=16)
    fails(["block must be a positive multiple of 8", "20"], src=src, dst=dst, bits=8, block=20)
    fails(["shard size"], src=src, dst=dst, bits=8, max_shard=0)
    # K = n_embd = 96 is not a multiple of 64: the message names the tensor and its file.
    msg = fails(["K = 96", "block size 64", "model.safetensors", "'transformer."],
                src=src, dst=dst, bits=8, block=64)
    assert ".weight'" in msg
    assert not os.path.exists(dst)      # nothing written
    fails(["is the source folder"], src=src, dst=src, bits=8, force=True)
    quantize_folder(src, dst, 8)
    fails(["already quantized", "8-bit, block 32"], src=dst, dst=str(tmp_path / "qq"), bits=4)
    fails([dst, "not empty", "--force"], src=src, dst=dst, bits=4)
    (tmp_path / "file").write_text("x")
    fails(["not a folder"], src=src, dst=str(tmp_path / "file"), bits=4)
    # --force replaces the weights and config.json; files that are not the model's stay.
    (tmp_path / "q" / "notes.txt").write_text("mine")
    quantize_folder(src, dst, 4, 16, max_shard=60_000, force=True)
    assert "model.safetensors" not in os.listdir(dst)
    assert (tmp_path / "q" / "notes.txt").read_text() == "mine"
    assert spec_of(dst).quantization == Quantization(4, 16)
    quantize_folder(src, dst, 8, force=True)    # and back to one file: no stale shard left
    assert sorted(f for f in os.listdir(dst) if "safetensors" in f) == ["model.safetensors"]
    # A bad source fails with folder.py's sentence.
    os.remove(os.path.join(src, "vocab.json"))
    fails(["vocab.json", "is missing"], src=src, dst=str(tmp_path / "q3"), bits=8)


def test_build_py_quantize(tmp_path):
    src, _ = plain_folder(tmp_path)
    env = dict(os.environ, WEBGPT_NO_VENV="1")

    def build(*args):
        return subprocess.run([sys.executable, "build.py", "quantize", *args], cwd=refmodels.REPO,
                              capture_output=True, text=True, env=env, timeout=300)

    r = build(src, str(tmp_path / "q"), "--bits", "4", "--block", "16", "--max-shard", "0.05")
    assert r.returncode == 0, r.stderr
    assert "4-bit, block 16" in r.stdout and "build.py: quantize: [1/" in r.stderr
    assert os.path.exists(tmp_path / "q" / "model.safetensors.index.json")
    assert spec_of(str(tmp_path / "q")).quantization == Quantization(4, 16)
    r = build(src, str(tmp_path / "q"), "--bits", "8")
    assert r.returncode == 1 and r.stderr.startswith("build.py: quantize: ")
    assert "--force" in r.stderr
    assert "Traceback" not in r.stderr
    r = build(src, str(tmp_path / "q"), "--bits", "3", "--force")
    assert r.returncode == 1 and "bits must be 8 or 4" in r.stderr
    env = dict(os.environ, PYTHONPATH=os.path.join(refmodels.REPO, "py"))
    r = subprocess.run([sys.executable, "-m", "webgpt", "quantize", src, str(tmp_path / "c"),
                        "--bits", "8"], cwd=refmodels.REPO, capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert spec_of(str(tmp_path / "c")).quantization == Quantization(8, 32)


# --- folder.py's checks of quantized folders --------------------------------------------------


@pytest.fixture(scope="module")
def q8(tmp_path_factory):
    base = tmp_path_factory.mktemp("q8")
    src, _ = plain_folder(base)
    quantize_folder(src, str(base / "q8"), 8, 32)
    return str(base / "q8"), src


def variant(tmp_path, q8, config=None, change=None):
    """A copy of the q8 folder with config.json's quantization replaced (None: dropped) and
    its tensors changed by change(dict) before they are written again."""
    path = str(tmp_path / "v")
    shutil.copytree(q8[0], path)
    cfg = json.load(open(os.path.join(path, "config.json")))
    if config != "keep":
        if config is None:
            del cfg["webgpt_quantization"]
        else:
            cfg["webgpt_quantization"] = config
        json.dump(cfg, open(os.path.join(path, "config.json"), "w"))
    if change:
        t = st_numpy.load_file(os.path.join(path, "model.safetensors"))
        change(t)
        st_numpy.save_file(t, os.path.join(path, "model.safetensors"))
    return path


def refused(path, *words):
    with pytest.raises(ModelFolderError) as e:
        spec_of(path)
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


@pytest.mark.parametrize("config,words", [
    ({"bits": 5, "block": 32}, ["config.json", "webgpt_quantization", "bits must be 8 or 4"]),
    ({"bits": 8, "block": 12}, ["config.json", "block must be a positive multiple of 8"]),
    ({"bits": 8, "block": True}, ["config.json", "block must be"]),
    ({"bits": 8}, ["config.json", "webgpt_quantization must be an object"]),
    ({"bits": 8, "block": 32, "zero_point": 1}, ["config.json", "must be an object"]),
    ("8bit", ["config.json", "must be an object"]),
    ({"bits": 8, "block": 64}, ["config.json", "block 64 does not divide n_embd (96)"]),
])
def test_config_key_checked(tmp_path, q8, config, words):
    refused(variant(tmp_path, q8, config), *words)


def test_config_parses():
    c = GPT2Config.from_json(json.dumps({"n_layer": 1, "n_head": 1, "n_embd": 16, "vocab_size": 5,
                                         "n_positions": 4,
                                         "webgpt_quantization": {"bits": 4, "block": 16}}))
    assert c.quantization == Quantization(4, 16)
    assert (c.quantization.qmax, c.quantization.qdtype) == (7, "U8")
    assert GPT2Config.from_json('{"n_layer": 1, "n_head": 1, "n_embd": 16, "vocab_size": 5, '
                                '"n_positions": 4}').quantization is None


Q = "transformer.h.1.attn.c_proj.weight"


def _set(name, value):
    return lambda t: t.__setitem__(name, value)


@pytest.mark.parametrize("change,words", [
    (_set(Q + ".qweight", np.zeros((96, 96), np.uint8)),
     [Q + ".qweight", "model.safetensors", "dtype 'U8'", "8-bit, block 32", "as I8"]),
    (_set(Q + ".qweight", np.zeros((96, 48), np.int8)),
     [Q + ".qweight", "model.safetensors", "[96, 48]", "expected [96, 96]"]),
    (_set(Q + ".scales", np.zeros((96, 3), np.float32)),
     [Q + ".scales", "model.safetensors", "dtype 'F32'", "as F16"]),
    (_set(Q + ".scales", np.zeros((3, 96), np.float16)),
     [Q + ".scales", "[3, 96]", "expected [96, 3]"]),
    (_set("transformer.wte.weight.scales", np.zeros((1000, 2), np.float16)),
     ["transformer.wte.weight.scales", "[1000, 2]", "expected [1000, 3]"]),
    (lambda t: t.pop(Q + ".scales"),
     ["'h.1.attn.c_proj.weight.scales'", "is missing", "model.safetensors"]),
    (lambda t: t.pop(Q + ".qweight"),
     ["'h.1.attn.c_proj.weight.qweight'", "is missing"]),
    (lambda t: (t.pop(Q + ".qweight"), t.pop(Q + ".scales"),
                t.__setitem__(Q, np.zeros((96, 96), np.float32))),
     [Q, "is not quantized", "config.json", "8-bit, block 32", ".qweight'"]),
    (_set(Q, np.zeros((96, 96), np.float32)),
     ["'h.1.attn.c_proj.weight'", "plain and quantized", repr(Q), repr(Q + ".qweight")]),
    (_set("transformer.wpe.weight.qweight", np.zeros((64, 96), np.int8)),
     ["'transformer.wpe.weight.qweight'", "'wpe.weight' is never quantized"]),
    (_set("transformer.h.1.attn.c_proj.bias.scales", np.zeros((96, 3), np.float16)),
     ["'h.1.attn.c_proj.bias' is never quantized"]),
    (_set("transformer.h.7.mlp.c_fc.weight.qweight", np.zeros((96, 96), np.int8)),
     ["'transformer.h.7.mlp.c_fc.weight.qweight'", "not a GPT-2 weight", "n_layer=2"]),
    (_set("transformer.ln_f.bias", np.zeros(96, np.int8)),
     ["'transformer.ln_f.bias'", "dtype 'I8'", "F32, F16, BF16", "only for the .qweight"]),
    (_set("h.1.attn.c_proj.weight.qweight", np.zeros((96, 96), np.int8)),
     ["'h.1.attn.c_proj.weight.qweight'", "appears twice", repr(Q + ".qweight")]),
])
def test_quantized_folder_refusals(tmp_path, q8, change, words):
    refused(variant(tmp_path, q8, "keep", change), *words)


def test_quantized_tensors_need_the_config_key(tmp_path, q8):
    refused(variant(tmp_path, q8, None), "is part of a quantized weight", "config.json",
            "webgpt_quantization")


def test_4bit_folder_dtype_checked(tmp_path, q8):
    # The 8-bit folder read as 4-bit: I8 [96, 96] where U8 [96, 48] belongs.
    refused(variant(tmp_path, q8, {"bits": 4, "block": 32}), ".qweight", "dtype 'I8'",
            "4-bit, block 32", "as U8")


def test_plain_folder_unchanged(q8):
    """A plain folder still reads as before: TensorRefs only, no quantization."""
    spec = spec_of(q8[1])
    assert spec.quantization is None
    assert all(isinstance(r, TensorRef) for r in spec.tensors.values())


def test_spec_order_follows_files(tmp_path, q8):
    src = q8[1]
    dst = str(tmp_path / "q")
    quantize_folder(src, dst, 4, 32, max_shard=60_000)
    spec = spec_of(dst)
    files = sorted({r.qweight.file if isinstance(r, QuantizedRef) else r.file
                    for r in spec.tensors.values()})

    def position(r):
        r = r.qweight if isinstance(r, QuantizedRef) else r
        return files.index(r.file), r.start

    positions = [position(r) for r in spec.tensors.values()]
    assert positions == sorted(positions)
