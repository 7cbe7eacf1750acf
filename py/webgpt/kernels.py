"""WGSL kernels: find the shader files, compile each (shader, constants) pair once, and bind
buffers to a kernel by the names its WGSL gives them.

The shaders are one .wgsl file per op under the repository's top-level `shaders/`; the wheel
carries them as `webgpt/shaders/` (see pyproject.toml). Each file is valid WGSL on its own and
is specialised with `override` constants, never by editing its text.

Bindings are read from each shader's `@group(0) @binding(n) var<...> NAME` declarations, so a
bind group is built by name (`kernels.bind("gemv", pipe, x=..., Wt=..., out=...)`): a name
the shader lacks, or one of its bindings left out, fails at build time naming the shader and
the binding, and reordering the bindings in a .wgsl file cannot silently swap buffers.
"""

import os
import re

from .errors import BindingError

_HERE = os.path.dirname(os.path.abspath(__file__))
# Installed wheel first, then a checkout (py/webgpt/ -> ../../shaders).
SHADER_DIRS = [os.path.join(_HERE, "shaders"), os.path.join(_HERE, "..", "..", "shaders")]


def shader_dir():
    for d in SHADER_DIRS:
        if os.path.isfile(os.path.join(d, "matmul.wgsl")):
            return os.path.normpath(d)
    raise FileNotFoundError("the WGSL shaders were not found in " + " or ".join(SHADER_DIRS))


def shader_source(name):
    with open(os.path.join(shader_dir(), name + ".wgsl"), encoding="utf-8") as f:
        return f.read()


_BINDING = re.compile(
    r"@group\(\s*0\s*\)\s*@binding\(\s*(\d+)\s*\)\s*var\s*(<[^>]*>)?\s*([A-Za-z_][A-Za-z0-9_]*)")


def parse_bindings(wgsl):
    """{name: (binding index, address space and access)} of a shader's group-0 bindings,
    e.g. {"x": (0, "storage, read"), "p": (8, "uniform")}. Comments are ignored."""
    text = re.sub(r"//[^\n]*", "", wgsl)
    out = {}
    for index, space, name in _BINDING.findall(text):
        out[name] = (int(index), (space or "<>")[1:-1].strip())
    return out


class Kernels:
    """Pipeline cache of one device, keyed by (shader name, override constants).

    `sources` maps a shader name to WGSL text that replaces the file's (an edited shader);
    `clear()` forgets compiled pipelines so the next `get` compiles the current text.
    """

    def __init__(self, device):
        self.device = device
        self.sources = {}
        self._text = {}
        self._pipelines = {}
        self._bindings = {}

    def source(self, name):
        if name in self.sources:
            return self.sources[name]
        if name not in self._text:
            self._text[name] = shader_source(name)
        return self._text[name]

    def get(self, name, **constants):
        key = (name, tuple(sorted(constants.items())))
        pipe = self._pipelines.get(key)
        if pipe is None:
            # Booleans go to WebGPU as 0/1 like every other override value.
            values = {k: (1 if v is True else 0 if v is False else v) for k, v in constants.items()}
            pipe = self.device.pipeline(self.source(name), values, label=name)
            self._pipelines[key] = pipe
        return pipe

    def bindings(self, name):
        """{binding name: (index, address space)} of shader `name` (as currently edited)."""
        text = self.source(name)
        got = self._bindings.get(name)
        if got is None or got[0] is not text:
            got = self._bindings[name] = (text, parse_bindings(text))
        return got[1]

    def bind(self, name, pipeline, standin=None, **buffers):
        """A bind group of `pipeline` (compiled from shader `name`) with each binding given by
        its WGSL name. A value may be a buffer, a (buffer, offset, size) range, or None for a
        binding this variant of the kernel does not use: `standin(index, space)` gives a small
        buffer to fill it (WebGPU needs every declared binding bound)."""
        declared = self.bindings(name)
        unknown = sorted(set(buffers) - set(declared))
        missing = sorted(set(declared) - set(buffers))
        if unknown or missing:
            detail = "; ".join(x for x in (
                f"it has no binding named {', '.join(unknown)}" if unknown else "",
                f"nothing was given for {', '.join(missing)}" if missing else "") if x)
            raise BindingError(f"{name}.wgsl: {detail} (its bindings: "
                               f"{', '.join(sorted(declared, key=lambda n: declared[n][0]))})")
        ordered = [None] * (max((i for i, _ in declared.values()), default=-1) + 1)
        for binding, (index, space) in declared.items():
            b = buffers[binding]
            if b is None:
                if standin is None:
                    raise BindingError(f"{name}.wgsl: binding {binding} was left out (None) and "
                                       f"there is no stand-in buffer for it")
                b = standin(index, space)
            ordered[index] = b
        if any(b is None for b in ordered):
            gaps = [i for i, b in enumerate(ordered) if b is None]
            raise BindingError(f"{name}.wgsl: bindings {gaps} are not declared as var<...> NAME")
        return self.device.bind_group(pipeline, ordered, label=name)

    def clear(self):
        self._text.clear()
        self._pipelines.clear()
        self._bindings.clear()
