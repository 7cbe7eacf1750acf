"""GGUF repositories from the hub (`build.py fetch OWNER/NAME:QUANT`, webgpt.tools.hub), against
test_fetch's fake hub: a tag picks one file (a split model's parts together), no tag lists the
repository's quantizations with their sizes, an unknown tag says what there is; the download
loads and gives the local file's logits.
"""

import asyncio
import os

import numpy as np
import pytest

import ggufmodels
import hfmodels
import test_fetch
from test_fetch import Hub, run_build

gguf = pytest.importorskip("gguf")
pytest.importorskip("torch")

import webgpt  # noqa: E402
from webgpt.tools import hub  # noqa: E402

REPO = "test-org/tiny-GGUF"
Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """{file: bytes} of a GGUF repository: Q8_0 and Q4_K_M files, an F16 one in two parts, a
    multimodal projector (never a model), a README."""
    d = str(tmp_path_factory.mktemp("gguf-repo"))
    hfmodels.write_tokenizer(d)
    model = hfmodels.hf_model("Qwen3ForCausalLM", dict(
        hidden_size=256, intermediate_size=256, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=128, tie_word_embeddings=True))
    ggufmodels.write_gguf(os.path.join(d, "tiny-Q8_0.gguf"), model, d,
                          ggufmodels.uniform(Q.Q8_0))
    ggufmodels.write_gguf(os.path.join(d, "tiny-Q4_K_M.gguf"), model, d, ggufmodels.q4_k_m)
    ggufmodels.write_gguf(os.path.join(d, "tiny-F16.gguf"), model, d, ggufmodels.uniform(Q.F16),
                          split_max_tensors=6)
    files = {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)
             if n.endswith(".gguf")}
    files["mmproj-tiny-f16.gguf"] = b"GGUF" + bytes(100)
    files["README.md"] = b"# tiny GGUF\n"
    return d, files


@pytest.fixture
def server(repo, monkeypatch):
    monkeypatch.setattr(test_fetch, "LFS_SUFFIXES", (".safetensors", ".bin", ".gguf"))
    srv = Hub({REPO: repo[1]})
    yield srv
    srv.close()


def fetch(server, dest, name):
    lines = []
    files = hub.fetch(name, str(dest), endpoint_url=server.url, log=lines.append, retry_wait=0)
    return files, "\n".join(lines)


def logits(path, ids=(5, 9, 13, 200)):
    async def go():
        m = await webgpt.load(str(path))
        try:
            return np.asarray(await m.logits(list(ids)))
        finally:
            m.release()
    return asyncio.run(go())


def test_a_tag_picks_its_file(adapter, server, repo, tmp_path):
    src, files = repo
    dest = tmp_path / "q4"
    got, log = fetch(server, dest, f"{REPO}:Q4_K_M")
    assert got == {"tiny-Q4_K_M.gguf": len(files["tiny-Q4_K_M.gguf"])}
    assert sorted(os.listdir(dest)) == [".gitignore", "tiny-Q4_K_M.gguf"]
    assert open(dest / "tiny-Q4_K_M.gguf", "rb").read() == files["tiny-Q4_K_M.gguf"]
    # The folder (its one GGUF file) loads as the file does.
    assert np.array_equal(logits(dest), logits(os.path.join(src, "tiny-Q4_K_M.gguf")))


def test_a_split_model_comes_whole(adapter, server, repo, tmp_path):
    src, files = repo
    dest = tmp_path / "f16"
    got, _ = fetch(server, dest, f"{REPO}:f16")     # tags match whatever their case
    parts = sorted(n for n in files if n.startswith("tiny-F16-"))
    assert len(parts) > 1 and sorted(got) == parts
    assert np.array_equal(logits(dest), logits(os.path.join(src, parts[0])))


def test_without_a_tag_the_quantizations_are_listed(server, tmp_path):
    dest = tmp_path / "none"
    with pytest.raises(hub.HubError) as e:
        fetch(server, dest, REPO)
    text = str(e.value)
    assert f"name one as {REPO}:TAG" in text
    for tag in ("Q8_0", "Q4_K_M", "F16"):
        assert f"{tag} (" in text and " MB)" in text
    assert "mmproj" not in text
    assert not dest.exists()    # nothing written
    with pytest.raises(hub.HubError, match="none of its GGUF files match 'Q5_K_M'; it has"):
        fetch(server, dest, f"{REPO}:Q5_K_M")
    with pytest.raises(hub.HubError, match="is not a quantization tag"):
        fetch(server, dest, f"{REPO}:../x")


def test_build_py_fetch_with_a_tag(server, tmp_path):
    r = run_build(["fetch", f"{REPO}:Q8_0", "--dest", str(tmp_path / "q8")], server.url)
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path / "q8").count("tiny-Q8_0.gguf") == 1
    r = run_build(["fetch", REPO, "--dest", str(tmp_path / "x")], server.url)
    assert r.returncode != 0 and "Q4_K_M (" in r.stderr and "Traceback" not in r.stderr
