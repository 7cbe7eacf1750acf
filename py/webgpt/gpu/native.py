"""Native backend: wgpu-py (WebGPU over Vulkan / Metal / D3D12) in CPython."""

import asyncio
import re
import time

from .base import Device, GPUError, resolve_limits

try:
    import wgpu
except ImportError as e:  # pragma: no cover - depends on the environment
    wgpu = None
    _import_error = e

try:
    # wgpu-native's C functions, as wgpu-py calls them (pinned with wgpu in requirements.txt).
    # Recording a dispatch through them costs a third of wgpu-py's methods (measured on an
    # H200 machine: 110 against 476 us for the 65 dispatches of a 124M decode step), which
    # wrap each call in Python-side error capture; errors in recorded commands surface where
    # wgpu validates them, when the pass is ended and the command buffer finished.
    from wgpu.backends.wgpu_native._ffi import ffi as _ffi, lib as _lib
    _SET_PIPELINE = _lib.wgpuComputePassEncoderSetPipeline
    _SET_BIND_GROUP = _lib.wgpuComputePassEncoderSetBindGroup
    _DISPATCH = _lib.wgpuComputePassEncoderDispatchWorkgroups
except (ImportError, AttributeError):  # pragma: no cover - another wgpu-py
    _lib = None

STORAGE = 0
READBACK = 1
UNIFORM = 2


def _usage(kind):
    U = wgpu.BufferUsage
    if kind == READBACK:
        return U.MAP_READ | U.COPY_DST
    if kind == UNIFORM:
        return U.UNIFORM | U.COPY_DST
    return U.STORAGE | U.COPY_SRC | U.COPY_DST


def _error(e, doing):
    """wgpu's exception `e`, raised while `doing` something, as one sentence: GPUError, or
    MemoryError for an out-of-memory. A lost device says to load the model again."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(e).__name__  # the last line says why; the rest is where
    if "lost" in reason.lower():
        return GPUError(f"the GPU device was lost ({reason}); load the model again "
                        f"(webgpt.load opens a new device)")
    if isinstance(e, wgpu.GPUOutOfMemoryError) or "out of memory" in reason.lower():
        return MemoryError(f"the GPU is out of memory: {doing} failed ({reason}); use a smaller "
                           f"model or close other programs that use the GPU")
    return GPUError(f"WebGPU error: {doing} failed: {reason}")


async def request_device(required_limits=None, features=("shader-f16",)):
    if wgpu is None:
        raise GPUError(f"the native backend needs the wgpu package (pip install wgpu): {_import_error}")
    adapter = await wgpu.gpu.request_adapter_async(power_preference="high-performance")
    if adapter is None:
        raise GPUError("wgpu found no GPU adapter (on Linux, install a Vulkan driver such as "
                       "mesa-vulkan-drivers)")
    limits = resolve_limits(dict(adapter.limits), required_limits)
    want = [f for f in features if f in adapter.features]
    dev = await adapter.request_device_async(required_features=want, required_limits=limits)
    return NativeDevice(adapter, dev)


class NativeEncoder:
    def __init__(self, device):
        self._device = device
        self._enc = device.create_command_encoder()
        self._pass = None

    def dispatch(self, pipeline, bind_group, x, y=1, z=1):
        if self._pass is None:
            self._pass = self._enc.begin_compute_pass()
        p = self._pass
        p.set_pipeline(pipeline)
        p.set_bind_group(0, bind_group)
        p.dispatch_workgroups(x, y, z)

    def run(self, sequence):
        """Record a sequence made by device.sequence() (dispatches in one compute pass)."""
        if self._pass is None:
            self._pass = self._enc.begin_compute_pass()
        p = self._pass
        if sequence.handles is None:
            for pipeline, bind_group, x, y, z in sequence.dispatches:
                p.set_pipeline(pipeline)
                p.set_bind_group(0, bind_group)
                p.dispatch_workgroups(x, y, z)
            return
        h, null = p._internal, _ffi.NULL
        for pipeline, bind_group, x, y, z in sequence.handles:
            if pipeline is not None:  # None: the same pipeline as the dispatch before
                _SET_PIPELINE(h, pipeline)
            _SET_BIND_GROUP(h, 0, bind_group, 0, null)
            _DISPATCH(h, x, y, z)

    def _end_pass(self):
        if self._pass is not None:
            self._pass.end()
            self._pass = None

    def copy(self, src, src_offset, dst, dst_offset, size):
        self._end_pass()
        self._enc.copy_buffer_to_buffer(src, src_offset, dst, dst_offset, size)

    def submit(self):
        self._end_pass()
        self._device.queue.submit([self._enc.finish()])


class _Sequence:
    """Dispatches for NativeEncoder.run: the wgpu-py objects (kept alive here) and, where
    wgpu-native's C functions are at hand, their handles, with the pipeline left out where it
    is the one before."""

    def __init__(self, dispatches):
        self.dispatches = tuple(tuple(d) for d in dispatches)
        self.handles = None
        if _lib is not None:
            handles, last = [], None
            for pipeline, bind_group, x, y, z in self.dispatches:
                handles.append((None if pipeline is last else pipeline._internal,
                                bind_group._internal, x, y, z))
                last = pipeline
            self.handles = tuple(handles)

    def __iter__(self):
        return iter(self.dispatches)

    def __len__(self):
        return len(self.dispatches)

    def __add__(self, other):
        return _Sequence(self.dispatches + tuple(other))


class NativeDevice(Device):
    def __init__(self, adapter, device):
        self._adapter = adapter
        self._dev = device
        info = dict(adapter.info)
        self.info = {
            "device": info.get("device", ""),
            "vendor": info.get("vendor", ""),
            "description": info.get("description", ""),
            "backend": info.get("backend_type", ""),
            "type": info.get("adapter_type", ""),
        }
        self.features = set(device.features)
        self.limits = dict(device.limits)
        self.allocated = 0  # bytes in live buffers made by buffer()
        self._readback = None
        self._mappable = []  # live buffers made by readback_buffer()

    def buffer(self, size, label="", uniform=False):
        # Sizes are rounded up to 4 bytes, as writes and copies need.
        size = max(4, (size + 3) // 4 * 4)
        kind = UNIFORM if uniform else STORAGE
        try:
            buf = self._dev.create_buffer(size=size, usage=_usage(kind), label=label)
        except wgpu.GPUError as e:
            raise _error(e, f"creating buffer {label!r} of {size / 2**20:.1f} MiB, with "
                            f"{self.allocated / 2**20:.1f} MiB held already,") from e
        self.allocated += size
        return buf

    def write(self, buf, offset, data):
        # WebGPU writes whole 4-byte words; a tail (an odd count of 16-bit values) is padded.
        n = memoryview(data).nbytes
        if n % 4:
            data = bytes(data) + bytes(4 - n % 4)
        try:
            self._dev.queue.write_buffer(buf, offset, data)
        except wgpu.GPUError as e:
            raise _error(e, "writing a buffer") from e

    def pipeline(self, code, constants=None, label=""):
        module = self._dev.create_shader_module(code=code, label=label)
        compute = {"module": module, "entry_point": "main"}
        if constants:
            compute["constants"] = {k: float(v) for k, v in constants.items()}
        return self._dev.create_compute_pipeline(layout="auto", compute=compute, label=label)

    def bind_group(self, pipeline, buffers, label=""):
        entries = []
        for i, b in enumerate(buffers):
            if isinstance(b, tuple):
                buf, offset, size = b
            else:
                buf, offset, size = b, 0, b.size
            entries.append({"binding": i, "resource": {"buffer": buf, "offset": offset, "size": size}})
        return self._dev.create_bind_group(
            layout=pipeline.get_bind_group_layout(0), entries=entries, label=label)

    def encoder(self):
        return NativeEncoder(self._dev)

    def sequence(self, dispatches):
        """A fixed list of (pipeline, bind group, x, y, z), made once and recorded by
        encoder.run() as often as needed (a decode pass is the same list every token)."""
        return _Sequence(dispatches)

    def readback_buffer(self, size, label="readback"):
        """A buffer the CPU can map: the target of `encoder.copy` for `map_read` (not counted in
        `allocated`: the device keeps one of its own for `read`; out of memory is said as for
        `buffer`)."""
        size = max(8, (size + 7) // 8 * 8)
        try:
            buf = self._dev.create_buffer(size=size, usage=_usage(READBACK), label=label)
        except wgpu.GPUError as e:
            raise _error(e, f"creating buffer {label!r} of {size / 2**20:.1f} MiB, with "
                            f"{self.allocated / 2**20:.1f} MiB held already,") from e
        self._mappable.append(buf)
        return buf

    def destroy_readback(self, buf):
        if buf in self._mappable:
            self._mappable.remove(buf)
        buf.destroy()

    async def map_read(self, buf, size):
        """The first `size` bytes of a readback buffer, once the GPU work writing it is done."""
        try:
            await self._until_mapped(buf, buf.map_async(wgpu.MapMode.READ, 0, buf.size))
            try:
                return bytes(buf.read_mapped(0, size, copy=True))
            finally:
                buf.unmap()
        except wgpu.GPUError as e:
            raise _error(e, "reading back a result") from e

    async def _until_mapped(self, buf, promise):
        """Await a map_async promise, polling the device without blocking.

        wgpu-py's own wait (a poll thread) blocks until *all* submitted work is done before it
        reports the mapping, so a token read back while later decode passes are queued would
        arrive only after those passes, and nothing new would be queued meanwhile: the GPU
        would drain between tokens. Polling without waiting reports each mapping as soon as
        its own pass is done. (`_poll` is a wgpu-py internal, pinned by requirements; without it
        this falls back to wgpu-py's wait.)
        """
        poll = getattr(self._dev, "_poll", None)
        if poll is not None:
            while buf.map_state == "pending":
                poll(False)
                if buf.map_state != "pending":
                    break
                await asyncio.sleep(0)   # other tasks may run
                time.sleep(20e-6)        # and the CPU rests a little between polls
        await promise

    async def read(self, buf, offset, size):
        # One staging buffer, grown as needed and reused between reads.
        try:
            if self._readback is None or self._readback.size < size:
                if self._readback is not None:
                    self.destroy_readback(self._readback)
                self._readback = self.readback_buffer(max(256, size))
            enc = self._dev.create_command_encoder()
            enc.copy_buffer_to_buffer(buf, offset, self._readback, 0, size)
            self._dev.queue.submit([enc.finish()])
        except wgpu.GPUError as e:
            raise _error(e, "reading back a result") from e
        return await self.map_read(self._readback, size)

    def destroy(self, buf):
        self.allocated -= buf.size
        buf.destroy()

    async def shader_errors(self, code, label=""):
        try:
            self._dev.create_shader_module(code=code, label=label)
        except wgpu.GPUError as e:
            text = str(e)
            # wgpu (naga) points at the error as "wgsl:LINE:COLUMN" (or ":LINE:COLUMN").
            at = re.search(r":(\d+):(\d+)", text)
            line, col = (int(at.group(1)), int(at.group(2))) if at else (0, 0)
            lines = [x.strip() for x in text.splitlines() if x.strip()]
            message = next((x for x in lines if x.lower().startswith("shader")), lines[0] if
                           lines else type(e).__name__)
            return [(line, col, "error", message)]
        return []

    async def settle(self):
        for _ in range(200):
            if all(b.map_state != "pending" for b in self._mappable):
                break
            self._dev._poll(False)
            await asyncio.sleep(0.01)
        for b in self._mappable:
            if b.map_state == "mapped":
                b.unmap()

    def close(self):
        if self._readback is not None:
            self.destroy_readback(self._readback)
            self._readback = None
        self._dev.destroy()
