"""The only code that touches a GPU API.

The model talks to a small `Device` interface; two backends implement it:

- `native`: wgpu-py in CPython (Vulkan, Metal, D3D12; lavapipe on a CPU),
- `browser`: `navigator.gpu` through `pyodide.ffi` in Pyodide.

The interface is a thin subset of WebGPU, just what compute work needs:

    dev = await request_device(required_limits=...)
    buf = dev.buffer(nbytes, label)              # storage buffer, COPY_SRC | COPY_DST
    par = dev.buffer(16, label, uniform=True)    # uniform buffer, COPY_DST
    dev.write(buf, offset, data)                 # queue.writeBuffer; data is bytes-like (a length
                                                 # that is not a multiple of 4 is zero-padded)
                                                 # (or, in the browser, a JS typed array)
    pipe = dev.pipeline(code, constants, label)  # compute pipeline, entry point "main"
    bg = dev.bind_group(pipe, [buf | (buf, offset, size), ...])   # bindings 0..n-1
    enc = dev.encoder()
    enc.dispatch(pipe, bg, x, y, z); enc.copy(src, src_off, dst, dst_off, n)
    seq = dev.sequence([(pipe, bg, x, y, z), ...]); enc.run(seq)   # a fixed list, made once
    enc.submit()
    data = await dev.read(buf, offset, nbytes)   # -> bytes
    rb = dev.readback_buffer(nbytes)             # mappable; filled by enc.copy(...)
    data = await dev.map_read(rb, nbytes)        # -> bytes, once the work writing it is done
    dev.destroy(buf); dev.destroy_readback(rb)
    errors = await dev.shader_errors(code)       # [(line, column, kind, message)] of WGSL
    await dev.settle()                           # after an interrupted run: unmap read-backs

Bind groups are built by binding name one layer up (webgpt.kernels.Kernels.bind), which
reads the names from each shader's WGSL; this layer takes them in binding order.

`dev.info` describes the adapter (name, vendor, backend, type), `dev.features` is a set
of feature names and `dev.limits` a dict with WebGPU's kebab-case limit names.
"""

import sys

from .base import Device, GPUError  # noqa: F401


async def request_device(required_limits=None, features=("shader-f16",)):
    """Open the default adapter of this platform and return a `Device`.

    `required_limits` maps WebGPU limit names to values; a value of None asks for the
    adapter's maximum. Features in `features` are enabled where the adapter has them.
    """
    if sys.platform == "emscripten":
        from . import browser as backend
    else:
        from . import native as backend
    return await backend.request_device(required_limits, features)
