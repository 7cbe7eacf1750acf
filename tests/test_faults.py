"""GPU faults and leaks, natively (wgpu-py): what the page and the CLI rely on to recover.

- A device lost mid-generation (the test calls the wgpu device's destroy(), as a driver reset
  or the browser would) raises GPUError "the GPU device was lost ...; load the model again";
  loading again (a new device) gives the same text as before; the CLI prints one line.
- Out of GPU memory: a model too big for the adapter's limits fails before any upload, saying
  what it needs and what fits; an out-of-memory part way through the upload (simulated: wgpu's
  create_buffer raises GPUOutOfMemoryError after a budget) raises MemoryError and leaves no
  buffer behind. So does a file cut short while it streams.
- A released model refuses every call with a sentence; release() is idempotent.
- No leaks: loading, switching and releasing models ten times, and generating fifty times,
  leave the device's live bytes (NativeDevice.allocated) exactly as before and Python's heap
  (tracemalloc) flat within a bound stated below.

Each test opens its own device where it breaks one. Skips, saying why, without an adapter.
"""

import asyncio
import gc
import tracemalloc

import pytest

import refmodels
from conftest import open_device

import webgpt
from webgpt.tools import cli
from webgpt.config import GPT2Config
from webgpt.folder import ModelFolderError, ModelSpec, TensorRef, expected_shapes
from webgpt.gpu import GPUError
from webgpt.model import GPT2, Plan
from webgpt.sources import LocalSource

wgpu = pytest.importorskip("wgpu", reason="the faults are wgpu's (the native backend)")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    out = {}
    for name, config, dtype in [("tiny", "tiny", "float32"), ("tiny-f16", "tiny", "float16"),
                                ("mini", "mini", "float32")]:
        cfg = refmodels.CONFIGS[config]
        out[name] = refmodels.write_folder(str(base / name), cfg,
                                           refmodels.make_weights(cfg, 7), dtype=dtype)
    return out


def run(coro):
    return asyncio.run(coro)


def new_device():
    return open_device()   # skips (or fails under CI) without an adapter


# --- a lost device --------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0, 0.9])
def test_device_lost_mid_generation(folders, temperature):
    dev = new_device()

    async def go():
        model = await webgpt.load(folders["tiny"], device=dev)
        prompt = model.tokenizer.encode("Hello")
        want = await model.generate_ids(prompt, 12, temperature=temperature, seed=3)
        got = []
        with pytest.raises(GPUError) as info:
            async for token in model.stream_ids(prompt, 12, temperature=temperature, seed=3):
                got.append(token)
                if len(got) == 4:
                    dev._dev.destroy()       # as a driver reset or the browser would
        assert got == want[:4]
        message = str(info.value)
        assert "the GPU device was lost" in message and "load the model again" in message, message
        # Further calls say the same; release() still works and gives back every byte.
        with pytest.raises(GPUError, match="device was lost"):
            await model.logits(prompt)
        model.release()
        assert dev.allocated == 0
        # Recovery: load again (webgpt.load opens a new device) and get the same tokens.
        again = await webgpt.load(folders["tiny"])
        assert await again.generate_ids(prompt, 12, temperature=temperature, seed=3) == want
        again.release()
        # The lost device itself cannot load anything, and says why.
        with pytest.raises(GPUError, match="device was lost"):
            await webgpt.load(folders["tiny"], device=dev)
        assert dev.allocated == 0
    run(go())


def test_device_lost_cli(folders, monkeypatch, capsys):
    """The CLI prints one line (wgpu's own three-line log of the loss is filtered out)."""
    queue = Plan.queue
    calls = []

    def failing_queue(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            self.device._dev.destroy()
        return queue(self, *args, **kwargs)

    monkeypatch.setattr(Plan, "queue", failing_queue)
    rc = cli.main(["generate", "--model", folders["tiny"], "--prompt", "Hello", "-n", "10",
                   "--temperature", "0"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1, err
    assert lines[0].startswith("error: the GPU device was lost") and "load the model" in lines[0]


# --- out of memory --------------------------------------------------------------------------


def spec_for(config, dtype="F32"):
    """A ModelSpec of zero weights for `config` (nothing is read: the load must fail first)."""
    tensors, offset = {}, 0
    for name, shape in expected_shapes(config).items():
        n = 4
        for d in shape:
            n *= d
        tensors[name] = TensorRef("model.safetensors", dtype, shape, offset, offset + n)
        offset += n
    return ModelSpec(config=config, source=LocalSource("/nonexistent"), tensors=tensors)


def test_too_big_for_the_adapter():
    dev = new_device()
    limit = dev.max_binding
    # A prompt runs in chunks of as many tokens as fit, so what must fit one binding is one
    # token's row of the MLP activations (4 n_embd f32): here 64 bytes too many.
    C = limit // 16 + 4
    config = GPT2Config(n_layer=1, n_head=1, n_embd=C, vocab_size=100, n_positions=2)
    with pytest.raises(MemoryError) as info:
        GPT2(spec_for(config), dev, tokenizer=None)
    message = str(info.value)
    need = 4 * C * 4
    assert "one token's row of the MLP activations" in message, message
    assert f"{need / 2**20:.1f} MiB" in message, message
    assert f"allows {limit / 2**20:.1f} MiB" in message and "smaller model" in message, message
    assert dev.allocated == 0


def budget(dev, nbytes):
    """Make the device's create_buffer raise wgpu's out-of-memory error once `nbytes` more
    would be live, as a GPU whose memory runs out does."""
    create = dev._dev.create_buffer
    start = dev.allocated

    def create_buffer(**kw):
        if dev.allocated - start + kw["size"] > nbytes:
            raise wgpu.GPUOutOfMemoryError("Out of memory\n\nCaused by:\n  Not enough memory left")
        return create(**kw)

    dev._dev.create_buffer = create_buffer
    return lambda: setattr(dev._dev, "create_buffer", create)


def test_out_of_memory_during_load(folders, capsys):
    """An OOM at the first buffer, in the middle of the weights, or at the activations and KV
    cache after them: MemoryError naming the buffer, and every buffer made so far destroyed."""
    dev = new_device()
    probe = run(webgpt.load(folders["tiny"], device=dev))
    weights = probe.weight_bytes()
    total = dev.allocated
    probe.release()
    assert dev.allocated == 0 and weights < total
    for limit in (0, weights // 2, weights + 16, (weights + total) // 2, total - 1):
        restore = budget(dev, limit)
        try:
            with pytest.raises(MemoryError) as info:
                run(webgpt.load(folders["tiny"], device=dev))
        finally:
            restore()
        message = str(info.value)
        print(f"budget {limit}: {message}")
        assert "out of memory" in message and "creating buffer" in message and "MiB" in message
        assert "smaller model" in message, message
        assert dev.allocated == 0, f"budget {limit}: {dev.allocated} bytes left behind"
    # The same device loads the model afterwards.
    model = run(webgpt.load(folders["tiny"], device=dev))
    assert len(run(model.generate_ids([1, 2], 3, temperature=0))) == 3
    model.release()
    # The CLI says it in one line.
    restore = budget(dev, weights // 2)
    try:
        real = webgpt.gpu.request_device

        async def this_device(*a, **k):
            return dev

        webgpt.gpu.request_device = this_device
        rc = cli.main(["generate", "--model", folders["tiny"], "--prompt", "x"])
    finally:
        webgpt.gpu.request_device = real
        restore()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "out of memory" in err[0], err


def test_file_cut_short_while_streaming(folders, tmp_path):
    """The header was fine when checked, then the file lost its end (a download in progress, a
    network that dropped): ModelFolderError naming the file, no buffer left behind."""
    dev = new_device()

    class ShrinkingSource(LocalSource):
        async def chunks(self, name, start, end, chunk_size=8 << 20):
            async for chunk in super().chunks(name, start, min(end, start + 100)):
                yield chunk
            if end > start + 100:
                raise ModelFolderError(f"{self.where(name)} is truncated: it ends at byte "
                                       f"{start + 100}")

    with pytest.raises(ModelFolderError, match="model.safetensors is truncated"):
        run(webgpt.load(ShrinkingSource(folders["tiny"]), device=dev))
    assert dev.allocated == 0


# --- a released model -----------------------------------------------------------------------


def test_released_model_says_so(folders):
    dev = new_device()

    async def go():
        model = await webgpt.load(folders["tiny"], device=dev)
        stream = model.stream("Hello", max_new_tokens=20, temperature=0)
        first = await stream.__anext__()
        assert isinstance(first, str)
        await model.close()
        model.release()                       # idempotent
        assert dev.allocated == 0
        with pytest.raises(GPUError, match="was released"):
            await stream.__anext__()          # released while the generator was suspended
        calls = [model.logits([1]), model.generate("x"), model.generate_ids([1]), model.sync()]
        for call in calls:
            with pytest.raises(GPUError, match="released.*load it again"):
                await call
        with pytest.raises(GPUError, match="released"):
            async for _ in model.stream("x"):
                pass
    run(go())


# --- leaks ----------------------------------------------------------------------------------

# Python heap growth allowed over ten load/release cycles, or fifty generations, after one of
# each has warmed caches (the pipeline source text, the tokenizer's BPE cache, wgpu's own).
HEAP_BOUND = 64 << 10


def heap():
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_load_switch_release_ten_times(folders):
    """Loading, switching between three models and releasing, ten times: the device's live
    bytes return to zero each time, and Python's heap stays flat."""
    dev = new_device()
    names = ["tiny", "tiny-f16", "mini"]

    async def cycle(name):
        model = await webgpt.load(folders[name], device=dev)
        held = dev.allocated
        await model.generate_ids([1, 2, 3], 4, temperature=0)
        assert dev.allocated == held          # generating allocates nothing
        await model.close()
        assert dev.allocated == 0, f"{name}: {dev.allocated} bytes still allocated"

    for name in names:
        run(cycle(name))                      # warm up
    tracemalloc.start()
    try:
        before = heap()
        for i in range(10):
            run(cycle(names[i % 3]))
        grown = heap() - before
    finally:
        tracemalloc.stop()
    print(f"Python heap growth over 10 load/release cycles: {grown} bytes")
    assert grown < HEAP_BOUND, f"the heap grew by {grown} bytes over 10 cycles"


def test_generate_fifty_times(folders):
    dev = new_device()

    async def go():
        model = await webgpt.load(folders["tiny"], device=dev)
        held = dev.allocated
        await model.generate("Hello there", max_new_tokens=8, temperature=0.8, seed=1)
        await model.generate("Hello there", max_new_tokens=8, temperature=0)
        tracemalloc.start()
        try:
            before = heap()
            for i in range(50):
                await model.generate("Hello there", max_new_tokens=8, temperature=(i % 2) * 0.8,
                                     seed=i)
                assert dev.allocated == held
            grown = heap() - before
        finally:
            tracemalloc.stop()
        model.release()
        assert dev.allocated == 0
        return grown

    grown = run(go())
    print(f"Python heap growth over 50 generations: {grown} bytes")
    assert grown < HEAP_BOUND, f"the heap grew by {grown} bytes over 50 generations"
