"""The page's own Python path without a browser: the built site's worker (worker.mjs, its
Pyodide, the wheel it installs, worker.py's entry points and so gpu/browser.py) under Node,
with WebGPU from Dawn (the npm package `webgpu`, dawn.node) on SwiftShader's Vulkan driver.
tests/dawn_harness.mjs plays the page's main thread; tests/scripts/bench_dawn.py runs the same path
on a real GPU.

Skips, saying why, without node, the npm package or SwiftShader's driver (Debian's chromium
ships it), except under CI (CI=true), where `build.py test` installs all three.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import IN_CI, ROOT, missing

HARNESS = os.path.join(ROOT, "tests", "dawn_harness.mjs")
SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json"
PROMPT, N = "Hello world, this is", 24
GREEDY = {"prompt": PROMPT, "max_new_tokens": str(N), "temperature": "0", "top_k": "0",
          "top_p": "1", "seed": "1"}


def cli_generate(folder, prompt, n):
    """The command line's greedy continuation (native wgpu-py)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "py"))
    r = subprocess.run([sys.executable, "-m", "webgpt", "generate", "--model", folder,
                        "--prompt", prompt, "-n", str(n), "--temperature", "0"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    if r.returncode != 0 and "adapter" in r.stderr.lower() and not IN_CI:
        pytest.skip(f"no native WebGPU adapter for the CLI: {r.stderr.strip()}")
    assert r.returncode == 0, f"the CLI failed: {r.stderr}"
    return r.stdout[:-1]


@pytest.fixture(scope="module")
def harness(site, tmp_path_factory):
    """run(steps) -> the messages the worker posted, running the site under Node + Dawn."""
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (apt-get install nodejs npm)")
    if not os.path.exists(os.path.join(ROOT, "web", "node_modules", "webgpu", "index.js")):
        missing("the npm package webgpu is not installed (npm ci in web/)")
    if not os.path.exists(SWIFTSHADER_ICD):
        missing(f"{SWIFTSHADER_ICD} is missing (apt-get install chromium: its SwiftShader)")
    tmp = tmp_path_factory.mktemp("dawn")
    env = dict(os.environ, VK_ICD_FILENAMES=SWIFTSHADER_ICD, XDG_RUNTIME_DIR=str(tmp))

    def run(steps):
        job = tmp / "job.json"
        job.write_text(json.dumps({"site": site, "steps": steps, "timeout_s": 600}))
        r = subprocess.run([node, HARNESS, str(job)], capture_output=True, text=True, env=env,
                           timeout=700)
        lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        adapter = next((line["adapter"] for line in lines if "adapter" in line), None)
        if adapter is None:
            missing(f"Dawn found no adapter on SwiftShader: {r.stderr.strip()[-2000:]}")
        assert r.returncode in (0, 1), f"the harness failed ({r.returncode}): {r.stderr[-4000:]}"
        return [line["msg"] for line in lines if "msg" in line]

    return run


def _runs(messages):
    """[(text, run-done message)] of each run, in order."""
    out, pieces = [], []
    for m in messages:
        if m["type"] == "piece":
            pieces.append(m["text"])
        elif m["type"] == "run-done":
            out.append(("".join(pieces), m))
            pieces = []
    return out


@pytest.fixture(scope="module")
def messages(harness):
    """One worker, as the page drives it: boot, self-test, load (f32 and f16 files) and
    Generate, a script of the editor, and a broken model."""
    return harness([
        {"selftest": True},
        {"load": "tiny"},
        {"run": "scripts/generate.py", "params": GREEDY},
        {"code": "print(model.config.n_layer, model.device.describe())"},
        {"load": "tiny-f16"},
        {"run": "scripts/generate.py", "params": GREEDY},
        {"code": GPU_LAYOUT},
        {"load": "broken"},
    ])


# The GPU layout's kernels (split attention, the products' fused variants, matmul's tiles)
# compiled by Dawn's WGSL compiler, Tint, as Chrome on a GPU would: the page on SwiftShader
# picks the CPU layout, so without this only naga (wgpu-py) would ever compile them here.
GPU_LAYOUT = f"""
import json
from webgpt.model import Model, layouts
gpu = Model(model.spec, model.device, model.tokenizer, layouts(model.device, "gpu"))
await gpu.upload()
ids = model.tokenizer.encode({PROMPT!r})
out = await gpu.generate_ids(ids, max_new_tokens={N}, temperature=0)
shaders = sorted({{l.shader for k in ("prompt", "decode") for l in gpu.plan.launches(k)}})
print("GPU-LAYOUT " + json.dumps({{"ids": list(out), "shaders": shaders}}))
gpu.release()
"""


def test_the_page_path_under_dawn_gives_the_cli_tokens(messages, test_models):
    """Greedy text through the page's path equals the command line's, token for token."""
    booted = next(m for m in messages if m["type"] == "booted")
    assert booted["python"].startswith("3.")
    selftest = next(m for m in messages if m["type"] == "selftest")
    assert selftest["ok"], selftest["text"]
    loaded = [m for m in messages if m["type"] == "loaded"]
    assert [m["name"] for m in loaded] == ["tiny", "tiny-f16"]
    assert "WebGPU (browser)" in loaded[0]["device"]  # gpu/browser.py, not wgpu-py
    runs = _runs(messages)
    assert [r[1]["status"] for r in runs] == ["ok"] * 4, runs
    console = "".join(m["text"] for m in messages if m["type"] == "console" and m["stream"] == "out")
    assert console.startswith("2 ")
    assert runs[0][1]["stats"]["tokens"] == N
    assert runs[0][0] == cli_generate(test_models["tiny"], PROMPT, N)
    assert runs[2][0] == cli_generate(test_models["tiny-f16"], PROMPT, N)


def test_the_gpu_layout_under_dawn_gives_the_native_tokens(messages, test_models):
    """The GPU layout's kernels, compiled by Tint and run through the page's path, give the
    greedy tokens wgpu-py gives with the same layout."""
    import asyncio

    import webgpt

    console = "".join(m["text"] for m in messages if m["type"] == "console")
    line = next((x for x in console.splitlines() if x.startswith("GPU-LAYOUT ")), None)
    assert line is not None, console[-2000:]
    got = json.loads(line[len("GPU-LAYOUT "):])
    assert {"attention.wgsl", "gemv.wgsl", "matmul.wgsl"} <= set(
        got["shaders"]), got["shaders"]

    async def native():
        m = await webgpt.load(test_models["tiny-f16"], layout="gpu")
        try:
            return list(await m.generate_ids(m.tokenizer.encode(PROMPT), max_new_tokens=N,
                                             temperature=0))
        finally:
            m.release()

    assert got["ids"] == asyncio.run(native())


def test_a_broken_model_under_dawn_names_the_file(messages):
    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["stage"] == "load", errors
    assert "model.safetensors" in errors[0]["message"]
