"""Browser backend: the page's `navigator.gpu`, reached from Pyodide through `pyodide.ffi`.

It implements the same `Device` interface as the native backend (see gpu/__init__.py) with
the JS WebGPU API: camelCase names, descriptors as plain JS objects. Python dicts and lists
become JS objects and arrays through `to_js(..., dict_converter=Object.fromEntries)`; GPU
objects (buffers, pipelines, bind groups) stay JS objects that Python holds as `JsProxy`.

Data written to buffers may be a Python bytes-like object or a JS typed array (the chunks
that `fetch` streams): a typed array goes to `queue.writeBuffer` as it is, never through
the Python heap.

WebGPU reports validation errors asynchronously (on the device's `uncapturederror` event,
not as exceptions of the call that caused them). They are collected here and raised as a
`GPUError` by the next `read`, so a bad shader or binding cannot silently produce numbers.

A lost device (the driver reset, the browser reclaimed it, or `destroy()`: the JS
`device.lost` promise resolves) is recorded: from then on every call raises a `GPUError`
saying so (the model must be loaded again, on a new device), and `on_lost(error)`, if set,
is called once.
"""

import js
from pyodide.ffi import JsProxy, create_once_callable, create_proxy, to_js

from .base import Device, GPUError, resolve_limits

# Writes up to this many bytes (uniforms, token ids) go through a JS typed array kept for their
# size, filled in place: no new JS object per write.
SMALL_WRITE = 4096

# The calls made for every forward pass, in JavaScript: a call from Python into JS costs a few
# microseconds (its arguments converted, its result wrapped), so a pass's dozens to hundreds of
# dispatches are recorded by one call (`replay`), not three calls each, and a submit and a
# read-back are one call each. Defined once per worker, made from this source.
_HELPERS_JS = """({
  // Record a pass's dispatches: `list` is flat, [pipeline, bind group, x, y, z, ...].
  replay(pass, list) {
    for (let i = 0; i < list.length; i += 5) {
      pass.setPipeline(list[i]);
      pass.setBindGroup(0, list[i + 1]);
      pass.dispatchWorkgroups(list[i + 2], list[i + 3], list[i + 4]);
    }
  },
  // End the open pass (if any), finish the encoder and submit its commands.
  submit(queue, encoder, pass) {
    if (pass) pass.end();
    queue.submit([encoder.finish()]);
  },
  // The first `size` bytes of a mappable buffer once the GPU work writing it is done.
  async mapRead(buffer, size) {
    await buffer.mapAsync(GPUMapMode.READ, 0, buffer.size);
    try {
      return new Uint8Array(buffer.getMappedRange(0, buffer.size), 0, size).slice();
    } finally {
      buffer.unmap();
    }
  },
})"""
_helpers = None


def _js_helpers():
    global _helpers
    if _helpers is None:
        from pyodide.code import run_js

        _helpers = run_js(_HELPERS_JS)
    return _helpers

# WebGPU's standard limits, in the camelCase of the JS API. Their kebab-case names
# (max-buffer-size, ...) are the ones the Device interface uses, as wgpu-py does.
_LIMITS = (
    "maxTextureDimension1D", "maxTextureDimension2D", "maxTextureDimension3D",
    "maxTextureArrayLayers", "maxBindGroups", "maxBindGroupsPlusVertexBuffers",
    "maxBindingsPerBindGroup", "maxDynamicUniformBuffersPerPipelineLayout",
    "maxDynamicStorageBuffersPerPipelineLayout", "maxSampledTexturesPerShaderStage",
    "maxSamplersPerShaderStage", "maxStorageBuffersPerShaderStage",
    "maxStorageTexturesPerShaderStage", "maxUniformBuffersPerShaderStage",
    "maxUniformBufferBindingSize", "maxStorageBufferBindingSize",
    "minUniformBufferOffsetAlignment", "minStorageBufferOffsetAlignment",
    "maxVertexBuffers", "maxBufferSize", "maxVertexAttributes", "maxVertexBufferArrayStride",
    "maxInterStageShaderVariables", "maxColorAttachments", "maxColorAttachmentBytesPerSample",
    "maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX", "maxComputeWorkgroupSizeY", "maxComputeWorkgroupSizeZ",
    "maxComputeWorkgroupsPerDimension",
)


def _kebab(camel):
    # "maxTextureDimension1D" -> "max-texture-dimension-1d", as wgpu-py names limits.
    out = []
    for i, ch in enumerate(camel):
        if ch.isupper() and i > 0 and camel[i - 1].islower():
            out.append("-")
        elif ch.isdigit() and i > 0 and not camel[i - 1].isdigit():
            out.append("-")
        out.append(ch.lower())
    return "".join(out)


_CAMEL = {_kebab(name): name for name in _LIMITS}

NO_WEBGPU = (
    "This browser does not offer WebGPU (navigator.gpu is missing). Use a recent Chrome, "
    "Edge or another browser with WebGPU turned on, and open the page over http://localhost "
    "or https (WebGPU needs a secure context)."
)
NO_ADAPTER = (
    "WebGPU is present but found no GPU adapter. Check that hardware acceleration is on "
    "in the browser's settings and that the GPU driver is not blocklisted (see chrome://gpu)."
)


def _js(value):
    """A Python dict/list (holding numbers, strings and JsProxies) as a plain JS value."""
    return to_js(value, dict_converter=js.Object.fromEntries)


def _limits_of(js_limits):
    out = {}
    for name in _LIMITS:
        value = getattr(js_limits, name, None)
        if isinstance(value, (int, float)):
            out[_kebab(name)] = int(value)
    return out


async def request_device(required_limits=None, features=("shader-f16",)):
    gpu = getattr(js.navigator, "gpu", None)
    if not gpu:
        raise GPUError(NO_WEBGPU)
    adapter = await gpu.requestAdapter(_js({"powerPreference": "high-performance"}))
    if not adapter:  # JS null (jsnull, which is falsy): no adapter
        raise GPUError(NO_ADAPTER)
    limits = resolve_limits(_limits_of(adapter.limits), required_limits)
    wanted = [f for f in features if adapter.features.has(f)]
    descriptor = {
        "requiredFeatures": wanted,
        "requiredLimits": {_CAMEL[k]: v for k, v in limits.items() if k in _CAMEL},
    }
    try:
        device = await adapter.requestDevice(_js(descriptor))
    except Exception as e:  # a JsException: the adapter refused the limits or features
        raise GPUError(f"WebGPU could not open a device: {e}") from e
    return BrowserDevice(adapter, device)


def _adapter_info(adapter):
    info = getattr(adapter, "info", None)

    def field(name):
        value = getattr(info, name, "") if info else ""
        return value if isinstance(value, str) else ""

    vendor, arch = field("vendor"), field("architecture")
    fallback = bool(getattr(info, "isFallbackAdapter", False)) if info else False
    on_cpu = fallback or arch == "swiftshader"
    return {
        # Browsers often hide the device's name; the architecture is what they tell.
        "device": field("device") or field("description") or arch,
        "vendor": vendor,
        "architecture": arch,
        "description": field("description"),
        "backend": "WebGPU (browser)",
        "type": "CPU" if on_cpu else "GPU",
        "fallback": fallback,
    }


class BrowserEncoder:
    """One command encoder; compute dispatches share one pass until a copy ends it."""

    def __init__(self, device):
        self._device = device
        self._enc = device._dev.createCommandEncoder()
        self._pass = None

    def _begin(self):
        if self._pass is None:
            self._pass = self._enc.beginComputePass()
        return self._pass

    def dispatch(self, pipeline, bind_group, x, y=1, z=1):
        p = self._begin()
        p.setPipeline(pipeline)
        p.setBindGroup(0, bind_group)
        p.dispatchWorkgroups(x, y, z)

    def run(self, sequence):
        """Record a sequence made by device.sequence() (dispatches in one compute pass): one
        call into JavaScript for the whole list."""
        self._device._helpers.replay(self._begin(), sequence)

    def _end_pass(self):
        if self._pass is not None:
            self._pass.end()
            self._pass = None

    def copy(self, src, src_offset, dst, dst_offset, size):
        self._end_pass()
        self._enc.copyBufferToBuffer(src, src_offset, dst, dst_offset, size)

    def submit(self):
        self._device._helpers.submit(self._device._queue, self._enc, self._pass)
        self._pass = None


class BrowserDevice(Device):
    def __init__(self, adapter, device):
        self._adapter = adapter
        self._dev = device
        self._queue = device.queue
        self._helpers = _js_helpers()
        self._small = {}  # size -> the JS Uint8Array small writes of that size go through
        self.info = _adapter_info(adapter)
        self.features = set(js.Array.from_(device.features).to_py())
        self.limits = _limits_of(device.limits)
        self.allocated = 0  # bytes in live buffers made by buffer()
        self._readback = None
        self._mappable = []  # live buffers made by readback_buffer()
        self._errors = []
        # Kept as attributes: the proxies must live as long as the device.
        self._on_error = create_proxy(self._record_error)
        device.addEventListener("uncapturederror", self._on_error)
        self.lost = None  # the GPUError every call raises once the device is lost
        self.on_lost = None  # called with that error when the device is lost (not by close())
        self._closed = False
        device.lost.then(create_once_callable(self._record_lost))

    def _record_lost(self, info):
        reason = str(getattr(info, "reason", "") or "unknown")
        message = str(getattr(info, "message", "") or "").strip()
        detail = f"{reason}: {message}" if message else reason
        self.lost = GPUError(f"the GPU device was lost ({detail}); load the model again")
        if not self._closed and self.on_lost is not None:
            self.on_lost(self.lost)

    def _check(self):
        if self.lost is not None:
            raise GPUError(str(self.lost))

    def _record_error(self, event):
        self._errors.append(str(event.error.message))

    def _raise_errors(self):
        if self._errors:
            first, more = self._errors[0], len(self._errors) - 1
            self._errors.clear()
            extra = f" (and {more} more)" if more else ""
            raise GPUError(f"WebGPU error: {first}{extra}")

    def buffer(self, size, label="", uniform=False):
        self._check()
        # Sizes are rounded up to 4 bytes, as writes and copies need.
        size = max(4, (size + 3) // 4 * 4)
        U = js.GPUBufferUsage
        usage = (U.UNIFORM | U.COPY_DST) if uniform else (U.STORAGE | U.COPY_SRC | U.COPY_DST)
        buf = self._dev.createBuffer(_js({"size": size, "usage": usage, "label": label}))
        self.allocated += size
        return buf

    def write(self, buf, offset, data):
        self._check()
        queue = self._queue
        if isinstance(data, JsProxy):
            # A typed array (e.g. a chunk of a fetch stream): straight to the queue.
            n = data.byteLength
            if n % 4:
                padded = js.Uint8Array.new((n + 3) // 4 * 4)
                padded.set(js.Uint8Array.new(data.buffer, data.byteOffset, n))
                data = padded
            queue.writeBuffer(buf, offset, data)
            return
        view = memoryview(data).cast("B")
        n = len(view)
        if n == 0:
            return
        if n % 4:
            view = memoryview(bytes(view) + bytes(4 - n % 4))
            n = len(view)
        if n <= SMALL_WRITE:
            staging = self._small.get(n)
            if staging is None:
                staging = self._small[n] = js.Uint8Array.new(n)
            staging.assign(view)  # copied in place; writeBuffer copies it again at once
            queue.writeBuffer(buf, offset, staging)
            return
        chunk = to_js(view)
        try:
            queue.writeBuffer(buf, offset, chunk)
        finally:
            # to_js of a buffer gives a typed array; drop our reference at once.
            del chunk

    def pipeline(self, code, constants=None, label=""):
        self._check()
        module = self._dev.createShaderModule(_js({"code": code, "label": label}))
        compute = {"module": module, "entryPoint": "main"}
        if constants:
            compute["constants"] = {k: float(v) for k, v in constants.items()}
        return self._dev.createComputePipeline(
            _js({"layout": "auto", "compute": compute, "label": label}))

    def bind_group(self, pipeline, buffers, label=""):
        self._check()
        entries = []
        for i, b in enumerate(buffers):
            if isinstance(b, tuple):
                buf, offset, size = b
            else:
                buf, offset, size = b, 0, b.size
            entries.append({"binding": i, "resource": {"buffer": buf, "offset": offset, "size": size}})
        return self._dev.createBindGroup(_js({
            "layout": pipeline.getBindGroupLayout(0), "entries": entries, "label": label}))

    def encoder(self):
        self._check()
        return BrowserEncoder(self)

    def sequence(self, dispatches):
        """A fixed list of (pipeline, bind group, x, y, z), made once and recorded by
        encoder.run() as often as needed (a decode pass is the same list every token): one
        flat JS array, which encoder.run() hands to JavaScript as it is."""
        return to_js([v for d in dispatches for v in d])

    def readback_buffer(self, size, label="readback"):
        """A buffer the CPU can map: the target of `encoder.copy` for `map_read`."""
        self._check()
        size = max(8, (size + 7) // 8 * 8)
        usage = js.GPUBufferUsage.MAP_READ | js.GPUBufferUsage.COPY_DST
        buf = self._dev.createBuffer(_js({"size": size, "usage": usage, "label": label}))
        self._mappable.append(buf)
        return buf

    def destroy_readback(self, buf):
        if buf in self._mappable:
            self._mappable.remove(buf)
        buf.destroy()

    async def map_read(self, buf, size):
        """The first `size` bytes of a readback buffer, once the GPU work writing it is done."""
        try:
            data = (await self._helpers.mapRead(buf, size)).to_bytes()
        except Exception as e:
            self._check()
            self._raise_errors()
            raise GPUError(f"WebGPU read-back failed: {e}") from e
        self._check()
        self._raise_errors()
        return data

    async def read(self, buf, offset, size):
        self._check()
        # One staging buffer, grown as needed and reused between reads (a new one while
        # the last is still mapped by a read in flight).
        padded = max(4, (size + 3) // 4 * 4)
        staging = self._readback
        if staging is None or staging.size < padded or staging.mapState != "unmapped":
            if staging is not None and staging.mapState == "unmapped":
                self.destroy_readback(staging)
            staging = self._readback = self.readback_buffer(max(256, padded))
        enc = self._dev.createCommandEncoder()
        enc.copyBufferToBuffer(buf, offset, staging, 0, padded)
        self._helpers.submit(self._queue, enc, None)
        return await self.map_read(staging, size)

    def destroy(self, buf):
        self.allocated -= buf.size
        buf.destroy()

    async def shader_errors(self, code, label=""):
        self._check()
        # In an error scope: the errors are reported here, not later by the next read.
        self._dev.pushErrorScope("validation")
        module = self._dev.createShaderModule(_js({"code": code, "label": label}))
        await self._dev.popErrorScope()
        info = await module.getCompilationInfo()
        return [(int(m.lineNum), int(m.linePos), str(m.type), str(m.message))
                for m in info.messages if str(m.type) == "error"]

    async def settle(self):
        import asyncio

        live = [b for b in self._mappable if getattr(b, "mapState", None) is not None]
        for _ in range(200):
            if all(b.mapState != "pending" for b in live):
                break
            await asyncio.sleep(0.01)
        for b in live:
            if b.mapState == "mapped":
                b.unmap()

    def close(self):
        self._closed = True
        self.on_lost = None
        if self._readback is not None:
            self.destroy_readback(self._readback)
            self._readback = None
        self._dev.removeEventListener("uncapturederror", self._on_error)
        self._on_error.destroy()
        self._dev.destroy()
