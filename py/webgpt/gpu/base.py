"""The backend-neutral part of the Device interface (see gpu/__init__.py)."""

from ..errors import GPUError

# Limits the model asks for. None means "as much as the adapter allows"; without asking,
# a device gets WebGPU's defaults (128 MiB per storage binding, 256 MiB per buffer).
WANTED_LIMITS = {
    "max-storage-buffer-binding-size": None,
    "max-buffer-size": None,
    "max-storage-buffers-per-shader-stage": None,
    "max-compute-workgroup-storage-size": None,
    "max-compute-invocations-per-workgroup": None,
}


def resolve_limits(adapter_limits, required_limits):
    """Turn a {name: value-or-None} request into concrete values the adapter can give."""
    wanted = dict(WANTED_LIMITS)
    wanted.update(required_limits or {})
    out = {}
    for name, value in wanted.items():
        have = adapter_limits.get(name)
        if have is None:
            continue
        if value is None:
            value = have
        if value > have and not name.startswith("min-"):
            raise GPUError(f"the adapter allows {name} = {have}, but {value} was asked for")
        out[name] = value
    return out


class Device:
    """Interface every backend implements. See the module docstring of webgpt.gpu."""

    info: dict
    features: set
    limits: dict
    allocated: int = 0  # bytes held by live buffers from buffer(); destroy() gives them back
    lost = None  # the GPUError every call raises once the device is lost (browser backend)

    @property
    def has_f16(self):
        return "shader-f16" in self.features

    @property
    def max_binding(self):
        """Largest storage buffer binding, in bytes."""
        return min(self.limits["max-storage-buffer-binding-size"], self.limits["max-buffer-size"])

    @property
    def is_cpu(self):
        """A software adapter (lavapipe, SwiftShader): kernels then avoid barriers."""
        i = self.info
        text = " ".join(str(i.get(k, "")) for k in ("device", "description", "vendor", "architecture"))
        return i.get("type", "").upper() == "CPU" or "swiftshader" in text.lower() \
            or "llvmpipe" in text.lower() or bool(i.get("fallback"))

    def describe(self):
        i = self.info
        name = i.get("device") or i.get("description") or i.get("vendor") or "unknown adapter"
        extra = ", ".join(v for v in (i.get("vendor"), i.get("backend"), i.get("type")) if v)
        return f"{name} ({extra})" if extra else name

    def buffer(self, size, label="", uniform=False):
        raise NotImplementedError

    def write(self, buf, offset, data):
        raise NotImplementedError

    def pipeline(self, code, constants=None, label=""):
        raise NotImplementedError

    def bind_group(self, pipeline, buffers, label=""):
        raise NotImplementedError

    def encoder(self):
        raise NotImplementedError

    def sequence(self, dispatches):
        """A backend's replayable form of a fixed list of (pipeline, bind group, x, y, z);
        `encoder.run(sequence)` records it. A backend may prepare it once (e.g. as one JS
        array the browser replays in a single call from Python)."""
        raise NotImplementedError

    async def read(self, buf, offset, size):
        raise NotImplementedError

    def readback_buffer(self, size, label="readback"):
        raise NotImplementedError

    async def map_read(self, buf, size):
        raise NotImplementedError

    def destroy(self, buf):
        raise NotImplementedError

    def destroy_readback(self, buf):
        """Destroy a buffer made by readback_buffer()."""
        raise NotImplementedError

    async def shader_errors(self, code, label=""):
        """The compile errors of WGSL `code` as [(line, column, kind, message)] (empty when it
        compiles), reported here rather than later by whatever uses the shader."""
        raise NotImplementedError

    async def settle(self):
        """After a run that ended by surprise (an interrupted or cancelled script): let the
        read-backs that were under way finish, then unmap their buffers, so the next read can
        map them again. Queued GPU work is left to run."""
        raise NotImplementedError
