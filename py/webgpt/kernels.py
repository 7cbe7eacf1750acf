"""WGSL kernels: find the shader files and compile each (shader, constants) pair once.

The shaders are one .wgsl file per op under the repository's top-level `shaders/`; the wheel
carries them as `webgpt/shaders/` (see pyproject.toml). Each file is valid WGSL on its own and
is specialised with `override` constants, never by editing its text.
"""

import os

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

    def clear(self):
        self._text.clear()
        self._pipelines.clear()
