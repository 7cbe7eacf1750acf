"""Bad input never corrupts state and always explains itself.

Each bad input, through the Python API and through the command line, must fail with our own
error (ValueError, ModelFolderError, TokenizerError; the CLI: status 1 and one line on stderr,
no traceback) whose message says what is wrong and names the file, tensor, parameter or
character, and a model that refused an input must still generate exactly what it did before.

Inputs: sampling parameters (negative, absurd, NaN, wrong type, as URL text), empty prompts,
prompts longer than the context, characters outside the vocabulary, token ids out of range,
and model folders with every kind of defect: missing files, bad JSON, config/tensor and
config/tokenizer mismatches, safetensors cut short or with a bad header length, overlapping
offsets, wrong byte counts, and NaN/inf weights (found on the GPU at load).

The GPU tests skip, saying why, where wgpu finds no adapter (CI has lavapipe: nothing skips).
"""

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

import refmodels

import webgpt
from webgpt.tools import cli
from webgpt.folder import ModelFolderError
from webgpt.safetensors import MAX_HEADER
from webgpt.sampling import MAX_NEW_TOKENS, check_params, params_from_strings
from webgpt.sources import LocalSource
from webgpt.tokenizer import TokenizerError

# A small model with GPT-2's whole vocabulary (so '<|endoftext|>' and any text encode), and
# the fixtures' tiny model (1000 tokens: no '<|endoftext|>') and mini (77 tokens: the bytes
# '!'..'m' only, so most text cannot be encoded).
WIDE = dict(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, n_positions=48)
CONFIGS = {"wide": WIDE, "tiny": refmodels.CONFIGS["tiny"], "mini": refmodels.CONFIGS["mini"]}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{name: folder}, made once: the three models above, f32."""
    base = tmp_path_factory.mktemp("inputs")
    return {name: refmodels.write_folder(str(base / name), cfg, refmodels.make_weights(cfg, 5))
            for name, cfg in CONFIGS.items()}


@pytest.fixture(scope="module")
def models(folders, gpu_device):
    """{name: loaded model} on the module's device."""
    async def load_all():
        return {name: await webgpt.load(path, device=gpu_device) for name, path in folders.items()}
    return asyncio.run(load_all())


def run(coro):
    return asyncio.run(coro)


def fails(exc_type, call, *words):
    """`call()` (a coroutine or a function) raises exc_type with every word in its message."""
    with pytest.raises(exc_type) as info:
        result = call()
        if asyncio.iscoroutine(result):
            run(result)
    message = str(info.value)
    for w in words:
        assert w in message, f"{w!r} not in: {message}"
    return message


def cli_fails(capsys, argv, *words):
    """The CLI in this process: status 1 and exactly one line on stderr, holding every word."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:     # argparse's usage errors exit from parse_args
        rc = e.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 1, f"exit status {rc}\nstdout: {out}\nstderr: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr: {err!r}"
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], f"{w!r} not in: {lines[0]}"
    return lines[0]


# --- sampling parameters --------------------------------------------------------------------

BAD_PARAMS = [
    (dict(max_new_tokens=-1), ["max_new_tokens", "-1", "0 to"]),
    (dict(max_new_tokens=MAX_NEW_TOKENS + 1), ["max_new_tokens", str(MAX_NEW_TOKENS + 1)]),
    (dict(max_new_tokens=10**400), ["max_new_tokens", "characters)"]),
    (dict(max_new_tokens=2.5), ["max_new_tokens", "whole number", "2.5"]),
    (dict(max_new_tokens="10"), ["max_new_tokens", "'10'"]),
    (dict(max_new_tokens=True), ["max_new_tokens", "True"]),
    (dict(temperature=-0.5), ["temperature", "-0.5", "0 (greedy)"]),
    (dict(temperature=float("nan")), ["temperature", "nan"]),
    (dict(temperature=float("inf")), ["temperature", "inf"]),
    (dict(temperature=10**400), ["temperature", "characters)"]),
    (dict(temperature=1e-300), ["temperature", "1e-300", "1e-06"]),
    (dict(temperature=1e300), ["temperature", "1e+300", "1e+06"]),
    (dict(temperature="hot"), ["temperature", "'hot'"]),
    (dict(top_k=-1), ["top_k", "-1", "0 (off)"]),
    (dict(top_k=10**12), ["top_k", str(10**12)]),
    (dict(top_k=1.5), ["top_k", "1.5"]),
    (dict(top_p=0), ["top_p", "got 0"]),
    (dict(top_p=1.5), ["top_p", "1.5", "to 1"]),
    (dict(top_p=-0.1), ["top_p", "-0.1"]),
    (dict(top_p=float("nan")), ["top_p", "nan"]),
    (dict(top_p=1e-300), ["top_p", "1e-300"]),
    (dict(seed=1.5), ["seed", "1.5", "whole number"]),
    (dict(seed="42"), ["seed", "'42'"]),
]
GOOD = dict(max_new_tokens=4, temperature=0.8, top_k=None, top_p=None, seed=1)


@pytest.mark.parametrize("bad,words", BAD_PARAMS, ids=[str(b) for b, _ in BAD_PARAMS])
def test_check_params_says_what_is_wrong(bad, words):
    fails(ValueError, lambda: check_params(**dict(GOOD, **bad)), *words)


def test_good_params_pass():
    for p in [GOOD, dict(GOOD, temperature=0), dict(GOOD, max_new_tokens=0, top_k=0, top_p=1),
              dict(GOOD, top_k=10**9, top_p=1e-6, seed=-(2**70), temperature=1e6),
              dict(GOOD, max_new_tokens=MAX_NEW_TOKENS, temperature=1e-6)]:
        check_params(**p)


def test_params_from_url_strings():
    """The page's URL parameters and form fields arrive as text."""
    got = params_from_strings({"max_new_tokens": " 12 ", "temperature": "0", "top_k": "0",
                               "top_p": "", "seed": "-3", "model": "ignored", "autorun": "1"})
    assert got == dict(max_new_tokens=12, temperature=0.0, top_k=None, top_p=None, seed=-3)
    assert params_from_strings({}) == dict(max_new_tokens=50, temperature=1.0, top_k=None,
                                           top_p=None, seed=None)
    assert params_from_strings({"temperature": 0.5, "top_k": 40})["top_k"] == 40
    cases = [
        ({"max_new_tokens": "abc"}, ["max_new_tokens='abc'", "not a whole number",
                                     "max_new_tokens=100"]),
        ({"max_new_tokens": "1e3"}, ["'1e3'", "whole number"]),
        ({"max_new_tokens": "-5"}, ["max_new_tokens", "got -5"]),
        ({"max_new_tokens": "9" * 5000}, ["max_new_tokens=", "not a whole number"]),
        ({"temperature": "warm"}, ["temperature='warm'", "temperature=0.8"]),
        ({"temperature": "nan"}, ["temperature", "got nan"]),
        ({"temperature": "-inf"}, ["temperature", "got -inf"]),
        ({"top_k": "4.5"}, ["top_k='4.5'"]),
        ({"top_p": "0"}, ["top_p", "got 0.0"]),
        ({"top_p": "%20"}, ["top_p='%20'"]),
        ({"seed": "0x10"}, ["seed='0x10'"]),
    ]
    for values, words in cases:
        message = fails(ValueError, lambda: params_from_strings(values), *words)
        assert len(message) < 200, message


# --- through the model ----------------------------------------------------------------------


def test_bad_params_leave_the_model_working(models):
    model = models["tiny"]
    prompt = [1, 2, 3]
    before = run(model.generate_ids(prompt, max_new_tokens=8, temperature=0))
    for bad, words in BAD_PARAMS:
        fails(ValueError, lambda: model.generate_ids(prompt, **dict(GOOD, **bad)), *words)
    fails(ValueError, lambda: model.generate("hello", max_new_tokens=-3), "max_new_tokens")
    assert run(model.generate_ids(prompt, max_new_tokens=8, temperature=0)) == before
    # Extremes that are allowed give tokens of the vocabulary.
    for p in [dict(temperature=1e-6), dict(temperature=1e6), dict(top_k=10**9),
              dict(top_p=1e-6), dict(top_k=1), dict(seed=-(2**70))]:
        ids = run(model.generate_ids(prompt, **dict(GOOD, **p)))
        assert len(ids) == 4 and all(0 <= i < model.V for i in ids), (p, ids)
    assert run(model.generate_ids(prompt, max_new_tokens=0)) == []


def test_token_ids_out_of_range(models):
    model = models["tiny"]
    V = model.V
    for ids in ([V], [-1], [1.0], [True], ["a"]):
        fails(ValueError, lambda: model.generate_ids(ids, max_new_tokens=2), "token ids",
              f"[0, {V})")
        fails(ValueError, lambda: model.logits(ids), "token ids")
    fails(ValueError, lambda: model.generate_ids([], max_new_tokens=2), "at least one")
    fails(ValueError, lambda: model.logits([]), "1 to 64")


def test_prompt_not_text(models):
    fails(ValueError, lambda: models["tiny"].generate(b"bytes"), "the prompt must be text",
          "bytes")
    fails(ValueError, lambda: models["tiny"].generate(None), "the prompt must be text")


def test_empty_prompt(models):
    # With '<|endoftext|>' in the vocabulary, an empty prompt starts from it, as GPT-2 does
    # for unconditional text; without it, the error says to type something.
    wide = models["wide"]
    assert run(wide.generate_ids([wide.tokenizer.eot_id], 5, temperature=0, stop_at_eot=False)) \
        == run(_stream_ids(wide, "", 5))
    fails(ValueError, lambda: models["tiny"].generate("", max_new_tokens=3),
          "the prompt is empty", "type some text")


async def _stream_ids(model, prompt, n):
    return await model.generate_ids(model.encode_prompt(prompt), n, temperature=0,
                                    stop_at_eot=False)


def test_prompt_longer_than_the_context(models):
    model = models["wide"]                      # n_positions 48
    prompt = "the quick brown fox jumps over the lazy dog, " * 12
    n = len(model.tokenizer.encode(prompt))
    assert n > 48
    with pytest.warns(UserWarning) as record:
        text = run(model.generate(prompt, max_new_tokens=5, temperature=0))
    message = str(record[0].message)
    assert f"the prompt has {n} tokens" in message and "context of 48" in message \
        and "only the last 48 are used" in message, message
    assert isinstance(text, str)
    fails(ValueError, lambda: model.logits(model.tokenizer.encode(prompt)), "1 to 48", str(n))


def test_characters_outside_the_vocabulary(models):
    model = models["mini"]                      # byte symbols '!'..'m' only
    message = fails(TokenizerError, lambda: model.generate("hello", max_new_tokens=2),
                    "'o'", "U+006F", "position 4", "remove or replace it")
    assert "6f" in message
    with pytest.raises(TokenizerError) as info:
        run(model.generate("abc😀", max_new_tokens=2))
    assert info.value.position == 3 and info.value.chars == "😀"
    assert "remove or replace" in str(info.value)
    assert len(run(model.generate("abc", max_new_tokens=3, temperature=0))) >= 0


def test_lone_surrogates_in_a_prompt(models):
    # Text from JavaScript may hold half of a UTF-16 pair: it becomes U+FFFD, like tiktoken.
    tok = models["wide"].tokenizer
    assert tok.encode("a\ud800b") == tok.encode("a\ufffdb")
    assert tok.decode(tok.encode("x\ud83d\ude00y")) == "x\U0001F600y"
    assert isinstance(run(models["wide"].generate("a\udc80", max_new_tokens=2)), str)


# --- model folders --------------------------------------------------------------------------


def copy(folders, tmp_path, name="tiny"):
    dst = str(tmp_path / ("bad-" + name))
    shutil.copytree(folders[name], dst)
    return dst


def rewrite_header(folder, change):
    """Edit model.safetensors' header with change(header dict) -> None, keeping its data."""
    path = os.path.join(folder, "model.safetensors")
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    change(header)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    return path


def tensor_names(folder):
    path = os.path.join(folder, "model.safetensors")
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return sorted((k for k in header if k != "__metadata__"),
                  key=lambda k: header[k]["data_offsets"][0])


def _remove(name):
    return lambda d: os.remove(os.path.join(d, name))


def _write(name, text):
    def change(d):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write(text)
    return change


def _config(**changes):
    def change(d):
        path = os.path.join(d, "config.json")
        cfg = json.load(open(path))
        cfg.update(changes)
        json.dump(cfg, open(path, "w"))
    return change


def _truncate(nbytes, keep=None):
    """Cut nbytes off the end of model.safetensors (or keep only its first `keep` bytes)."""
    def change(d):
        path = os.path.join(d, "model.safetensors")
        with open(path, "r+b") as f:
            f.truncate(keep if keep is not None else os.path.getsize(path) - nbytes)
    return change


def _header_length(value):
    def change(d):
        with open(os.path.join(d, "model.safetensors"), "r+b") as f:
            f.write(struct.pack("<Q", value))
    return change


def _overlap(d):
    first, second = tensor_names(d)[:2]

    def change(h):
        h[second]["data_offsets"] = [h[first]["data_offsets"][0] + 4,
                                     h[second]["data_offsets"][1] - h[second]["data_offsets"][0]
                                     + h[first]["data_offsets"][0] + 4]
    rewrite_header(d, change)


def _byte_count(d):
    def change(h):
        h["transformer.ln_f.bias"]["data_offsets"][1] -= 4
    rewrite_header(d, change)


def _dtype(d):
    rewrite_header(d, lambda h: h["transformer.ln_f.bias"].update(dtype="I8"))


def _shape(d):
    rewrite_header(d, lambda h: h["transformer.h.0.mlp.c_fc.weight"].update(shape=[384, 96]))


def _nan(where, value):
    def change(d):
        path = os.path.join(d, "model.safetensors")
        raw = bytearray(open(path, "rb").read())
        n = struct.unpack("<Q", raw[:8])[0]
        info = json.loads(raw[8:8 + n])[where[0]]
        at = 8 + n + info["data_offsets"][0] + 4 * where[1]
        raw[at:at + 4] = struct.pack("<f", value)
        open(path, "wb").write(bytes(raw))
    return change


# (name, how to break the tiny folder, the error type, words its message must hold). The
# folder's path is always in the message too.
FOLDER_DEFECTS = [
    ("no config", _remove("config.json"), ModelFolderError, ["config.json", "is missing"]),
    ("no vocab", _remove("vocab.json"), ModelFolderError, ["vocab.json", "is missing",
                                                            "tokenizer files"]),
    ("no merges", _remove("merges.txt"), ModelFolderError, ["merges.txt", "is missing"]),
    ("no weights", _remove("model.safetensors"), ModelFolderError,
     ["model.safetensors", "is missing"]),
    ("config not JSON", _write("config.json", "{"), ModelFolderError,
     ["config.json", "not valid JSON"]),
    ("config nested", _write("config.json", "[" * 100000), ModelFolderError,
     ["config.json", "not valid JSON"]),
    ("config absurd", _config(n_layer=10**9), ModelFolderError,
     ["config.json", "n_layer = 1000000000", "far larger"]),
    ("config negative", _config(n_embd=-96), ModelFolderError,
     ["config.json", "n_embd must be a positive integer", "-96"]),
    ("config vs tensors", _config(vocab_size=999), ModelFolderError,
     ["model.safetensors", "'transformer.wte.weight'", "[1000, 96]", "expected [999, 96]"]),
    ("config layers vs tensors", _config(n_layer=3), ModelFolderError,
     ["model.safetensors", "'h.2.ln_1.weight'", "missing"]),
    ("config heads", _config(n_head=5), ModelFolderError,
     ["config.json", "n_embd (96) must be a multiple of n_head (5)"]),
    ("config vocab_size vs wte", _config(vocab_size=500), ModelFolderError,
     ["'transformer.wte.weight'", "expected [500, 96]"]),
    ("vocab not JSON", _write("vocab.json", '{"a": '), ModelFolderError,
     ["vocab.json", "not valid JSON"]),
    ("vocab absurd id", _write("vocab.json", '{"a": 99999999999}'), ModelFolderError,
     ["vocab.json", "'a'", "99999999999"]),
    ("vocab too large", _write("vocab.json", json.dumps({f"t{i}": i for i in range(1001)})),
     ModelFolderError, ["vocab.json", "token ids up to 1000", "vocab_size 1000",
                        "another model"]),
    ("merges bad line", _write("merges.txt", "#version: 0.2\na b c\n"), ModelFolderError,
     ["merges.txt", "line 2", "two tokens"]),
    ("truncated data", _truncate(1000), ModelFolderError,
     ["model.safetensors", "truncated", "bytes of tensor data"]),
    ("truncated header", _truncate(0, keep=100), ModelFolderError,
     ["model.safetensors", "truncated", "runs past the end of the 100-byte file"]),
    ("truncated length", _truncate(0, keep=5), ModelFolderError,
     ["model.safetensors", "too small", "5 bytes"]),
    ("header length past the end", _header_length(10**7), ModelFolderError,
     ["model.safetensors", "header length 10000000", "runs past the end"]),
    ("header length absurd", _header_length(2**63), ModelFolderError,
     ["model.safetensors", f"over {MAX_HEADER} bytes"]),
    ("header length zero", _header_length(0), ModelFolderError,
     ["model.safetensors", "header is not valid JSON"]),
    ("overlapping offsets", _overlap, ModelFolderError, ["model.safetensors", "overlaps"]),
    ("wrong byte count", _byte_count, ModelFolderError,
     ["model.safetensors", "'transformer.ln_f.bias'", "has 380 bytes", "needs 384"]),
    ("unknown dtype", _dtype, ModelFolderError, ["'I8'", "F32, F16, BF16"]),
    ("wrong shape", _shape, ModelFolderError,
     ["'transformer.h.0.mlp.c_fc.weight'", "[384, 96]", "expected [96, 384]"]),
    ("NaN weight", _nan(("transformer.h.1.attn.c_proj.weight", 96 * 2 + 5), float("nan")),
     ModelFolderError, ["model.safetensors", "NaN or infinite", "'h.1.attn.c_proj.weight'",
                        "row 2, column 5", "1 value is not finite"]),
    ("inf weight", _nan(("transformer.wpe.weight", 7), float("-inf")), ModelFolderError,
     ["model.safetensors", "NaN or infinite", "'wpe.weight'", "row 0, column 7"]),
]


@pytest.mark.parametrize("defect,words", [(d[1], d[2:]) for d in FOLDER_DEFECTS],
                         ids=[d[0] for d in FOLDER_DEFECTS])
def test_bad_folder_api_and_cli(folders, tmp_path, gpu_device, capsys, defect, words):
    """A broken folder fails at load with a sentence naming the file (and tensor), leaves no
    GPU buffer behind, and the command line says the same in one line."""
    folder = copy(folders, tmp_path)
    defect(folder)
    exc_type, words = words
    before = gpu_device.allocated
    message = fails(exc_type, lambda: webgpt.load(folder, device=gpu_device), *words)
    assert folder in message, message
    assert gpu_device.allocated == before
    line = cli_fails(capsys, ["generate", "--model", folder, "--prompt", "hi", "-n", "2"], *words)
    assert line == f"error: {message}"


def test_bad_model_paths(tmp_path, capsys):
    fails(ModelFolderError, lambda: webgpt.load(str(tmp_path / "nowhere")), "nowhere",
          "does not exist")
    (tmp_path / "file").write_text("x")
    fails(ModelFolderError, lambda: webgpt.load(str(tmp_path / "file")), "is not a folder")
    fails(ModelFolderError, lambda: webgpt.load(""), "no model folder was given")
    fails(ModelFolderError, lambda: webgpt.load("https://example.com/m"), "only supported in "
          "the browser")
    fails(ValueError, lambda: webgpt.load(str(tmp_path), layout="fast"), "layout", "'fast'")
    cli_fails(capsys, ["generate", "--model", str(tmp_path / "nowhere"), "--prompt", "x"],
              "does not exist")


def test_unreadable_file(folders, tmp_path):
    """A file that cannot be read (permissions, a folder in its place, a disk error) is named,
    and a folder in a file's place is called one (tests/test_hostile.py has pipes and links)."""
    folder = copy(folders, tmp_path)
    os.mkdir(os.path.join(folder, "sub"))
    source = LocalSource(folder)
    for call in (lambda: source.text("sub"), lambda: source.read("sub", 0, 8)):
        fails(ModelFolderError, call, "sub", "is a folder, not a regular file")
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):  # root reads any file
        os.chmod(os.path.join(folder, "vocab.json"), 0)
        fails(ModelFolderError, lambda: webgpt.load(folder), "vocab.json", "cannot be read")


def test_nonfinite_f16_and_opt_out(folders, tmp_path, gpu_device):
    """f16 weights as the GPU holds them (packed halves, or widened to f32) are checked too;
    check_weights=False skips the check."""
    cfg = CONFIGS["tiny"]
    w = refmodels.make_weights(cfg, 5)
    w["transformer.h.0.mlp.c_fc.weight"][10, 20] = np.inf        # a matrix
    w["transformer.h.1.ln_2.bias"][3] = np.nan                    # a vector: always f32
    folder = refmodels.write_folder(str(tmp_path / "f16"), cfg, w, dtype="float16")
    for layout in ("gpu", "cpu"):   # f16 kept packed on GPUs, widened on CPU adapters
        fails(ModelFolderError, lambda: webgpt.load(folder, device=gpu_device, layout=layout),
              "NaN or infinite", "'h.0.mlp.c_fc.weight'", "row 10, column 20",
              "1 more tensor has some")
    model = run(webgpt.load(folder, device=gpu_device, check_weights=False))
    model.release()


# --- the command line -----------------------------------------------------------------------


def test_cli_parameter_mistakes(folders, capsys):
    model = folders["tiny"]
    for argv, words in [
        (["-n", "abc"], ["-n/--max-new-tokens", "'abc'", "--help"]),
        (["--temperature", "hot"], ["--temperature", "'hot'"]),
        (["-n", "-4"], ["max_new_tokens", "-4"]),
        (["--temperature", "-1"], ["temperature", "-1.0"]),
        (["--temperature", "nan"], ["temperature", "nan"]),
        (["--top-k", "-2"], ["top_k", "-2"]),
        (["--top-p", "0"], ["top_p", "0.0"]),
        (["--top-p", "7"], ["top_p", "7.0"]),
        (["--frobnicate"], ["unrecognized arguments", "--frobnicate"]),
    ]:
        cli_fails(capsys, ["generate", "--model", model, "--prompt", "x", *argv], *words)
    cli_fails(capsys, ["generate", "--model", model], "--prompt")
    cli_fails(capsys, ["bench", "--contexts", "5000"], "--contexts")
    cli_fails(capsys, ["generate", "--model", folders["mini"], "--prompt", "hello"],
              "cannot encode", "'o'", "position 4")
    cli_fails(capsys, ["generate", "--model", model, "--prompt", ""], "the prompt is empty")


def test_cli_long_prompt_notes_the_window(folders, capsys):
    prompt = "the quick brown fox " * 30
    rc = cli.main(["generate", "--model", folders["wide"], "--prompt", prompt, "-n", "3",
                   "--temperature", "0"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err.startswith("note: the prompt has") and "context of 48" in err, err


def test_cli_subprocess_no_traceback(folders, tmp_path):
    """The real command: status 1, one line, no traceback (in-process tests cannot see an
    interpreter-level crash)."""
    bad = copy(folders, tmp_path)
    _nan(("transformer.ln_f.weight", 0), float("nan"))(bad)
    env = dict(os.environ, PYTHONPATH=os.path.join(refmodels.REPO, "py"),
               XDG_RUNTIME_DIR=str(tmp_path))     # else Mesa's loader warns on stderr
    for argv, words in [
        (["--model", bad, "--prompt", "x"], ["NaN or infinite", "'ln_f.weight'"]),
        (["--model", folders["tiny"], "--prompt", "x", "-n", "-1"], ["max_new_tokens"]),
        (["--model", folders["tiny"], "--prompt", "x", "-n", "1e9"], ["invalid int value"]),
    ]:
        r = subprocess.run([sys.executable, "-m", "webgpt", "generate", *argv], env=env,
                           capture_output=True, text=True, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr)
        assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]


def test_warnings_do_not_leak_from_the_model(models):
    # A refused call leaves no state behind: the next generation is the same as a fresh one.
    model = models["wide"]
    first = run(model.generate("Hello", max_new_tokens=6, temperature=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for bad in (dict(top_p=2), dict(temperature=-1)):
            with pytest.raises(ValueError):
                run(model.generate("Hello", max_new_tokens=6, **bad))
        run(model.generate("x " * 100, max_new_tokens=2, temperature=0))   # slides the window
    assert run(model.generate("Hello", max_new_tokens=6, temperature=0)) == first
