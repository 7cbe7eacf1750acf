"""The architecture contract (webgpt.arch) and the package's import graph.

Every registered family implements the contract of webgpt/arch/base.py, and its parts agree
with each other: the forward pass, run against a recorder that only checks names, reads and
writes nothing but the buffers `activations` declares and the tensors `expected_shapes` (and
`groups`) name. Reading a folder imports no GPU code, and no module of the package imports
itself back through another (no import cycles).
"""

import ast
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, "py")
sys.path.insert(0, PY)

from webgpt.arch import ARCHITECTURES, Architecture, Dims, arch_for, by_model_type  # noqa: E402
from webgpt.config import parse_config  # noqa: E402
from webgpt.errors import ModelFolderError  # noqa: E402

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_head": 3, "n_embd": 96, "vocab_size": 1000,
        "n_positions": 64}
LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 32, "vocab_size": 300, "max_position_embeddings": 128,
         "tie_word_embeddings": True}
QWEN2 = dict(LLAMA, model_type="qwen2", tie_word_embeddings=False)
QWEN3 = dict(LLAMA, model_type="qwen3", num_key_value_heads=1)
MISTRAL = dict(LLAMA, model_type="mistral", sliding_window=16)
SMOLLM3 = dict(LLAMA, model_type="smollm3", no_rope_layer_interval=2, use_sliding_window=True,
               sliding_window=16)
GEMMA2 = dict(LLAMA, model_type="gemma2", sliding_window=16, query_pre_attn_scalar=24)
GEMMA3 = dict(GEMMA2, model_type="gemma3_text", sliding_window_pattern=2,
              rope_scaling={"rope_type": "linear", "factor": 8.0})
GEMMA3_MM = {"model_type": "gemma3", "text_config": dict(GEMMA3, model_type="gemma3_text")}
PHI3 = dict(LLAMA, model_type="phi3", partial_rotary_factor=0.75, sliding_window=16,
            original_max_position_embeddings=64,
            rope_scaling={"type": "longrope", "short_factor": [1.0] * 12,
                          "long_factor": [2.0] * 12})
CONFIGS = {"gpt2": GPT2, "llama": LLAMA, "qwen2": QWEN2, "qwen3": QWEN3, "mistral": MISTRAL,
           "smollm3": SMOLLM3, "gemma2": GEMMA2, "gemma3_text": GEMMA3, "gemma3": GEMMA3_MM,
           "phi3": PHI3}
# Norms a layer: GPT-2's and Llama's two; Gemma's four (a pre- and a post-norm each side).
NORMS = {"gemma2": 4, "gemma3_text": 4, "gemma3": 4}


def arch_of(d, n_ctx=None):
    return arch_for(parse_config(json.dumps(d)), n_ctx)


def test_every_model_type_has_one_architecture():
    seen = {}
    for arch in ARCHITECTURES:
        assert issubclass(arch, Architecture) and arch.name and arch.tokenizer_files
        for t in arch.model_types:
            assert t not in seen, f"model_type {t!r} is claimed by {seen.get(t)} and {arch}"
            seen[t] = arch
            assert by_model_type(t) is arch
    assert set(CONFIGS) <= set(seen)
    assert by_model_type("mamba") is None


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_each_family_implements_the_contract(arch):
    """What base.py leaves to a family (the methods that raise NotImplementedError there)
    is defined by each family's own class, or by the family it extends (Gemma and Phi-3 are
    Llama's with their differences)."""
    required = [name for name, f in vars(Architecture).items()
                if callable(f) or isinstance(f, property)]
    required = [n for n in required if _raises_not_implemented(getattr(Architecture, n))]
    assert set(required) == {"expected_shapes", "matrix_storage", "max_context", "dims",
                             "activations", "forward"}
    families = [c for c in arch.__mro__ if issubclass(c, Architecture) and c is not Architecture]
    for name in required:
        assert any(name in vars(c) for c in families), f"{arch.__name__} does not define {name}"
    assert arch.config_class is not None and hasattr(arch.config_class, "from_dict")


def _raises_not_implemented(member):
    f = member.fget if isinstance(member, property) else member
    src = ast.parse(_dedent(f))
    return any(isinstance(n, ast.Raise) and "NotImplementedError" in ast.dump(n)
               for n in ast.walk(src))


def _dedent(f):
    import inspect
    import textwrap
    return textwrap.dedent(inspect.getsource(f))


@pytest.mark.parametrize("kind", CONFIGS)
def test_dims_are_typed(kind):
    d = arch_of(CONFIGS[kind]).dims
    assert isinstance(d, Dims)
    for field in ("C", "V", "n_ctx", "n_layer", "n_head", "n_kv", "head_size", "widest",
                  "biggest_matrix"):
        assert type(getattr(d, field)) is int, field
    assert type(d.eps) is float
    assert d.q_cols == d.n_head * d.head_size and d.qkv_cols == d.q_cols + 2 * d.n_kv * d.head_size
    assert d.n_head % d.n_kv == 0


def test_the_context_is_the_architectures_not_the_configs():
    config = parse_config(json.dumps(LLAMA))
    arch = arch_for(config)
    assert arch.n_ctx == 128 and arch.dims.n_ctx == 128
    short = arch.with_context(40)
    assert short.dims.n_ctx == 40 and short.activations()["k_cache.0"] == 40 * 2 * 32 * 4
    assert config.max_position_embeddings == 128 and arch.n_ctx == 128  # nothing mutated
    assert len(short.constants()["rope"]) == 40 * 32 * 4


class Recorder:
    """Stands in for webgpt.model.plan.Forward: checks each op's buffer and tensor names."""

    def __init__(self, arch):
        self.arch = arch
        self.buffers = set(arch.activations()) | {"ids", "logits"}
        shapes = arch.expected_shapes()
        grouped = {}
        for name, members in arch.groups():
            assert all(m in shapes for m in members), (name, members)
            grouped[name] = members
        self.tensors = set(shapes) | set(grouped)
        self.ops = []

    def _buffer(self, *names):
        for n in names:
            assert n in self.buffers, f"{n!r} is not an activation of {type(self.arch).__name__}"

    def _weight(self, name, *suffixes):
        assert any(name + s in self.tensors for s in suffixes), f"no tensor {name}{suffixes}"

    def embedding(self, name, ids, table, positions, out, scale=None):
        self._buffer(ids, out)
        self._weight(table, "")
        if positions is not None:
            self._weight(positions, "")
        self.ops.append("embedding")

    def layer_norm(self, name, x, out):
        self._buffer(x, out)
        self._weight(name, ".weight")
        self._weight(name, ".bias")
        self.ops.append("norm")

    def rms_norm(self, name, x, out, offset=0.0, residual=False):
        self._buffer(x, out)
        self._weight(name, ".weight")
        self.ops.append("norm")

    def linear(self, name, x, out, K, N, gelu=False, residual=False, kv=None, swiglu_in=False,
               geglu_in=False):
        self._buffer(x, out)
        self._weight(name, ".weight")
        width = self.arch.activations()[out] // (4 * self.arch.n_ctx)
        assert N <= width, f"{name}: {N} columns into {out!r} of {width}"
        if kv is not None:
            self._buffer(f"k_cache.{kv}", f"v_cache.{kv}")
        self.ops.append("linear")

    def rope(self, name, qkv, layer, q_norm=None, k_norm=None, norm_offset=0.0, table="rope",
             rot=None):
        self._buffer(qkv, table, f"k_cache.{layer}", f"v_cache.{layer}")
        assert rot is None or 0 <= rot <= self.arch.dims.head_size
        for n in (q_norm, k_norm):
            if n is not None:
                self._weight(n, ".weight")
        self.ops.append("rope")

    def attention(self, name, qkv, layer, out, scale=None, softcap=None, window=None):
        self._buffer(qkv, out, f"k_cache.{layer}", f"v_cache.{layer}")
        self.ops.append("attention")

    def lm_head(self, name, x, out, softcap=None):
        self._buffer(x, out)
        self._weight(name, "")
        self.ops.append("lm_head")


@pytest.mark.parametrize("kind", CONFIGS)
def test_forward_names_only_what_the_architecture_declares(kind):
    arch = arch_of(CONFIGS[kind])
    f = Recorder(arch)
    arch.forward(f)
    n = arch.dims.n_layer
    assert f.ops[0] == "embedding" and f.ops[-1] == "lm_head"
    assert f.ops.count("attention") == n and f.ops.count("norm") == NORMS.get(kind, 2) * n + 1
    shapes = arch.expected_shapes()
    for name in arch.quantized_names():
        assert arch.is_matrix(name) and len(shapes[name]) == 2
    assert arch.ignored().isdisjoint(shapes)


def test_config_refusals_name_the_key():
    for d, words in [
        (dict(QWEN2, layer_types=["sliding_attention"] * 2), "use_sliding_window"),
        (dict(LLAMA, hidden_act="gelu"), "hidden_act"),
        (dict(LLAMA, num_key_value_heads=3), "num_key_value_heads"),
        (dict(LLAMA, architectures=["MistralForCausalLM"]), "architectures"),
        (dict(GPT2, n_inner=7), "n_inner"),
        ({"model_type": "mamba"}, "'mamba'"),
    ]:
        with pytest.raises(ModelFolderError, match=words):
            parse_config(json.dumps(d), "m/config.json")


# ---------------------------------------------------------------- the import graph

def _modules():
    """{module name: file} of every module in py/webgpt."""
    out = {}
    base = os.path.join(PY, "webgpt")
    for folder, _, files in os.walk(base):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), PY)[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = \
                    os.path.join(folder, f)
    return out


def _imports(name, path, modules):
    """The package modules `name` imports, anywhere in its file (at module level or inside a
    function): `import a.b`, `from . import x`, `from .x import y`."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            # `from pkg import mod` imports the submodule; `from mod import name` the module.
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod
                       for a in node.names]
        for t in targets:
            if t in modules and t != name:
                out.add(t)
    return out


def test_no_import_cycles_in_the_package():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    assert graph["webgpt.folder"] and graph["webgpt.model.generator"]  # the walk sees imports
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycle = path[path.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_reading_a_folder_imports_no_gpu_code():
    code = ("import sys, webgpt.folder, webgpt.arch, webgpt.config, webgpt.tools.quantize, "
            "webgpt.tools.hub; print(' '.join(sorted(m for m in sys.modules "
            "if m.startswith('webgpt'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=PY), timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.split()
    assert "webgpt.folder" in loaded and "webgpt.arch.llama" in loaded
    for gpu_side in ("webgpt.gpu", "webgpt.model", "webgpt.model.plan", "webgpt.model.weights",
                     "webgpt.kernels"):
        assert gpu_side not in loaded, f"{gpu_side} is imported by reading a folder"
