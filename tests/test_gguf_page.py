"""GGUF files in the page (Chromium, WebGPU on SwiftShader), from test_hub_page's mock hub (a
second origin with CORS, the files in LFS behind a storage redirect on a third): ?hub=OWNER/
NAME:QUANT loads the file of that quantization, a Q4_K_M-style mix (Q4_K and Q6_K blocks) and a
Q8_0 file, each giving the command line's greedy text on the same file (so the kernels decode
the blocks on SwiftShader as they do on lavapipe, and the page's tokenizer is the file's);
without a tag the page lists the repository's quantizations (tag and size, a split model's
parts as one) and a pick loads it. Only the chosen file is fetched; Keep puts it in the model
store, and with the hub gone it runs from there. A GGUF model shipped in the site (a weights/
folder holding one .gguf) runs as the site's own. Load as 4-bit (?quantize=q4) quantizes the
site's safetensors model as it loads, as the command line's --quantize q4 does, and does
nothing for a GGUF file.
"""

import os
import shutil
import subprocess
import sys
import threading

import pytest

import ggufmodels
import hfmodels
from conftest import ROOT, _import_build
from test_fetch import COMMIT
from test_hub_page import TIMEOUT_MS, HubVisit, PageHub, sha256
from test_web import cli_generate

gguf = pytest.importorskip("gguf")
pytest.importorskip("torch")

REPO = "test-org/tiny-GGUF"
PROMPT = "ROMEO: what light"
N = 10


@pytest.fixture(scope="module")
def gguf_repo(tmp_path_factory):
    """(folder of the files, {file: bytes}) of a GGUF repository of a small Qwen3 model."""
    d = str(tmp_path_factory.mktemp("gguf-page"))
    hfmodels.write_tokenizer(d)
    model = hfmodels.hf_model("Qwen3ForCausalLM", dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, tie_word_embeddings=False,
        max_position_embeddings=128))
    Q = gguf.GGMLQuantizationType
    ggufmodels.write_gguf(os.path.join(d, "tiny-Q4_K_M.gguf"), model, d, ggufmodels.q4_k_m)
    ggufmodels.write_gguf(os.path.join(d, "tiny-Q8_0.gguf"), model, d, ggufmodels.uniform(Q.Q8_0))
    files = {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)
             if n.endswith(".gguf")}
    files["README.md"] = b"# tiny GGUF\n"
    # A split model, listed as one (never loaded: its parts are not GGUF).
    files["tiny-F16-00001-of-00002.gguf"] = bytes(1_500_000)
    files["tiny-F16-00002-of-00002.gguf"] = bytes(2_500_000)
    return d, files


@pytest.fixture(scope="module")
def gguf_hubs(gguf_repo):
    import test_fetch

    saved = test_fetch.LFS_SUFFIXES
    test_fetch.LFS_SUFFIXES = saved + (".gguf",)    # the hub keeps .gguf files in LFS
    storage = PageHub({REPO: gguf_repo[1]})
    hub = PageHub({REPO: gguf_repo[1]}, storage=storage.url)
    yield hub, storage
    for h in (hub, storage):
        if h.server is not None:
            h.close()
    test_fetch.LFS_SUFFIXES = saved


@pytest.fixture(scope="module")
def gguf_site(tmp_path_factory, gguf_hubs, gguf_repo):
    build = _import_build()
    shipped = str(tmp_path_factory.mktemp("shipped") / "tiny-gguf")
    os.makedirs(shipped)
    shutil.copy(os.path.join(gguf_repo[0], "tiny-Q4_K_M.gguf"), shipped)
    site = build.build(str(tmp_path_factory.mktemp("ggufsite") / "dist"),
                       extra_models={"tiny-gguf": shipped}, hub_endpoint=gguf_hubs[0].url)
    srv = build.make_server(site, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def cli_generate_q4(folder, prompt, n):
    """The command line's greedy continuation with --quantize q4 (native wgpu)."""
    r = subprocess.run(
        [sys.executable, "-m", "webgpt", "generate", "--model", folder, "--prompt", prompt,
         "-n", str(n), "--temperature", "0", "--quantize", "q4"],
        capture_output=True, env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "py")),
        timeout=600, cwd=ROOT)
    assert r.returncode == 0, f"the CLI failed: {r.stderr.decode('utf-8', 'replace')}"
    return r.stdout.decode("utf-8")[:-1]  # (its newline)


# Runs before test_gguf_files_run_in_the_page, which ends with the hub gone.
def test_pick_a_quantization_and_load_as_4_bit(browser, gguf_site, gguf_hubs, gguf_repo):
    hub = gguf_hubs[0]
    want = cli_generate_q4(os.path.join(ROOT, "weights", "shakespeare-char"), PROMPT, N)
    v = HubVisit(browser, gguf_site, gguf_hubs)
    try:
        # ?quantize=q4: the site's float model, quantized as it loads: the CLI's greedy text.
        v.open(model="shakespeare-char", quantize="q4", prompt=PROMPT, max_new_tokens=N,
               temperature=0, autorun=1)
        assert v.state("done", "error") == "done", v.error()
        assert v.page.is_checked("#quantize")
        assert v.page.text_content("#output") == want
        adapter = v.page.locator("#adapter")
        assert adapter.get_attribute("data-weights") == "q4", adapter.text_content()
        assert adapter.get_attribute("data-quantize") == "q4"
        assert "q4 weights, quantized to 4 bits as they loaded" in adapter.text_content()
        print(f"Load as 4-bit: the page's greedy text equals the CLI's --quantize q4: {want!r}")

        # A GGUF repository without a tag: its quantizations to pick, the page ready.
        listed = len(hub.requests)
        assert v.load(REPO) == "ready"
        assert v.page.is_hidden("#error"), v.error()
        choices = v.page.locator("#hub-choices")
        assert choices.is_visible()
        assert f"{REPO} holds GGUF files, one per quantization" in choices.text_content()
        buttons = {b.get_attribute("data-quant"): " ".join(b.text_content().split())
                   for b in choices.locator("button").all()}
        size = {tag: len(gguf_repo[1][f"tiny-{tag}.gguf"]) / 1e6 for tag in ("Q4_K_M", "Q8_0")}
        assert all(n < 10 for n in size.values())  # shown as 1.23 MB
        assert buttons == {"F16": "F16 \u00b7 4.00 MB in 2 parts",
                           **{tag: f"{tag} \u00b7 {n:.2f} MB" for tag, n in size.items()}}, buttons
        assert v.page.input_value("#model") == "shakespeare-char"  # the model in stays
        # A pick loads REPO:Q8_0 as typing it would; Load as 4-bit does nothing for it.
        v.page.click('#hub-choices button[data-quant="Q8_0"]')
        assert v.settle() == "ready", v.error()
        assert v.page.input_value("#hub-id") == f"{REPO}:Q8_0"
        assert v.page.input_value("#model") == f"{REPO}:Q8_0"
        assert choices.is_hidden()
        assert adapter.get_attribute("data-weights") == "Q8_0", adapter.text_content()
        assert adapter.get_attribute("data-quantize") == "skipped"
        assert "a GGUF file, already quantized: Load as 4-bit does nothing for it" in \
            adapter.text_content()
        assert sum(1 for m, p, _ in hub.requests[listed:] if m == "GET" and p.startswith("/api/")) \
            == 2  # listed once for the choices, once for the pick
        assert v.blocked == [], v.blocked
        assert v.errors == [], v.errors
    finally:
        v.close()


def test_gguf_files_run_in_the_page(browser, gguf_site, gguf_hubs, gguf_repo):
    hub, storage = gguf_hubs
    folder, files = gguf_repo
    v = HubVisit(browser, gguf_site, gguf_hubs)
    try:
        for tag in ("Q4_K_M", "Q8_0"):
            name = f"tiny-{tag}.gguf"
            want = cli_generate(os.path.join(folder, name), PROMPT, N)
            v.open(hub=f"{REPO}:{tag}", prompt=PROMPT, max_new_tokens=N, temperature=0,
                   autorun=1)
            assert v.state("done", "error") == "done", v.error()
            assert v.page.text_content("#output") == want, tag
            assert v.page.input_value("#model") == f"{REPO}:{tag}"
            fetched = {n for m, p, _ in storage.requests if m == "GET" and p.startswith("/cdn/")
                       for n, data in files.items() if p == f"/cdn/{sha256(data)}"}
            assert fetched <= {"tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"} and name in fetched
            assert all(COMMIT in p for m, p, _ in hub.requests if f"/{REPO}/resolve/" in p)
            print(f"{tag}: the page's greedy text equals the CLI's: {want!r}")
        # A tag no file has: a sentence naming those there are; the model in stays.
        assert v.load(f"{REPO}:Q2_K") == "ready"
        assert "no GGUF file for \u201cQ2_K\u201d" in v.error() and "Q4_K_M (" in v.error(), \
            v.error()
        # Keep: the model store keeps the GGUF file, and with the hub gone it runs from there.
        assert v.load(f"{REPO}:Q8_0") == "ready", v.error()
        v.page.wait_for_selector("#hub-keep:visible", timeout=TIMEOUT_MS)
        v.page.click("#hub-keep")
        row = f'#cached-models li[data-model="{REPO}:Q8_0"][data-complete="1"]'
        v.page.wait_for_selector(row, timeout=TIMEOUT_MS)
        for h in (hub, storage):
            h.close()
        v.open(hub=f"{REPO}:Q8_0", prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=1)
        assert v.state("done", "error") == "done", v.error()
        assert v.page.text_content("#output") == want
        # A GGUF model shipped in the site (a folder of weights/ holding one .gguf file).
        want = cli_generate(os.path.join(folder, "tiny-Q4_K_M.gguf"), PROMPT, N)
        v.open(model="tiny-gguf", prompt=PROMPT, max_new_tokens=N, temperature=0, autorun=1)
        assert v.state("done", "error") == "done", v.error()
        assert v.page.text_content("#output") == want
        assert v.blocked == [], v.blocked
        assert v.errors == [], v.errors
    finally:
        v.close()
