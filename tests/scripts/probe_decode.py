"""Where a decode step's time goes on this machine's adapter (native wgpu): the CPU's share
(recording the pass, ending it, finishing the command buffer, submitting) and the GPU's
(timestamp queries around the whole pass and, where the adapter allows timestamps inside a
pass, after each dispatch).

    python tests/scripts/probe_decode.py [--shape 124M] [--dtype F16] [--context 16] [--per-op]

Random weights, the same loader and plan as `python -m webgpt bench`. A measuring tool for
developers (the figures go into notes and issues), not a test.
"""

import argparse
import asyncio
import collections
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "py"))

import wgpu  # noqa: E402

from webgpt.gpu.base import resolve_limits  # noqa: E402
from webgpt.gpu.native import NativeDevice  # noqa: E402
from webgpt.model import GPT2, layouts  # noqa: E402
from webgpt.tools.bench import _NoTokenizer, dispatch_cost, random_spec  # noqa: E402

FEATURES = ("shader-f16", "timestamp-query", "timestamp-query-inside-passes", "subgroup")


async def device():
    adapter = await wgpu.gpu.request_adapter_async(power_preference="high-performance")
    want = [f for f in FEATURES if f in adapter.features]
    d = await adapter.request_device_async(required_features=want,
                                           required_limits=resolve_limits(dict(adapter.limits),
                                                                          None))
    return NativeDevice(adapter, d), want


def cpu_share(d, seq, n=200, raw=False):
    """Seconds per pass of each CPU step, recording `seq` into a pass of its own `n` times
    (with raw, through wgpu-native's C functions directly rather than wgpu-py's methods)."""
    from wgpu.backends.wgpu_native._ffi import ffi, lib

    out = collections.defaultdict(list)
    handles = [(p._internal, g._internal, x, y, z) for p, g, x, y, z in seq]
    for _ in range(n):
        t0 = time.perf_counter()
        enc = d.create_command_encoder()
        p = enc.begin_compute_pass()
        if raw:
            h, null = p._internal, ffi.NULL
            sp, sb = lib.wgpuComputePassEncoderSetPipeline, lib.wgpuComputePassEncoderSetBindGroup
            dw = lib.wgpuComputePassEncoderDispatchWorkgroups
            for pipe, group, x, y, z in handles:
                sp(h, pipe)
                sb(h, 0, group, 0, null)
                dw(h, x, y, z)
        else:
            for pipe, group, x, y, z in seq:
                p.set_pipeline(pipe)
                p.set_bind_group(0, group)
                p.dispatch_workgroups(x, y, z)
        t1 = time.perf_counter()
        p.end()
        t2 = time.perf_counter()
        cb = enc.finish()
        t3 = time.perf_counter()
        d.queue.submit([cb])
        t4 = time.perf_counter()
        for k, a, b in (("record", t0, t1), ("end", t1, t2), ("finish", t2, t3),
                        ("submit", t3, t4)):
            out[k].append(b - a)
    return {k: statistics.median(v) for k, v in out.items()}


async def gpu_share(dev, seq, names, per_op, m=20):
    """GPU microseconds of the whole pass (median of m) and, with per_op, of each dispatch."""
    d = dev._dev
    if per_op:
        m = max(1, min(m, 4096 // (len(seq) + 1)))  # a query set holds at most 4096
    count = 2 * m if not per_op else m * (len(seq) + 1)
    qs = d.create_query_set(type="timestamp", count=count)
    resolve = d.create_buffer(size=8 * count, usage=wgpu.BufferUsage.QUERY_RESOLVE |
                              wgpu.BufferUsage.COPY_SRC)
    enc = d.create_command_encoder()
    q = 0
    for _ in range(m):
        if per_op:
            p = enc.begin_compute_pass()
            p._write_timestamp(qs, q)
            q += 1
            for pipe, group, x, y, z in seq:
                p.set_pipeline(pipe)
                p.set_bind_group(0, group)
                p.dispatch_workgroups(x, y, z)
                p._write_timestamp(qs, q)
                q += 1
        else:
            p = enc.begin_compute_pass(timestamp_writes={
                "query_set": qs, "beginning_of_pass_write_index": q,
                "end_of_pass_write_index": q + 1})
            q += 2
            for pipe, group, x, y, z in seq:
                p.set_pipeline(pipe)
                p.set_bind_group(0, group)
                p.dispatch_workgroups(x, y, z)
        p.end()
    enc.resolve_query_set(qs, 0, count, resolve, 0)
    d.queue.submit([enc.finish()])
    raw = await dev.read(resolve, 0, 8 * count)
    ts = memoryview(raw).cast("Q").tolist()
    period = 1.0
    try:
        period = d.queue.get_timestamp_period()
    except Exception:
        pass
    if not per_op:
        whole = [(ts[2 * i + 1] - ts[2 * i]) * period / 1e3 for i in range(m)]
        return statistics.median(whole), None
    step = len(seq) + 1
    passes = [ts[i * step:(i + 1) * step] for i in range(m)]
    whole = statistics.median((p[-1] - p[0]) * period / 1e3 for p in passes)
    ops = collections.defaultdict(float)
    for i, name in enumerate(names):
        ops[name] += statistics.median((p[i + 1] - p[i]) * period / 1e3 for p in passes)
    return whole, dict(ops)


async def main(a):
    dev, features = await device()
    print(f"adapter: {dev.describe()}; features used: {', '.join(features)}")
    if a.variants:
        # Layout variants by GPU time alone (timestamps: steadier than end-to-end timing).
        base = layouts(dev, "gpu")
        for change in json.loads(a.variants):
            model = GPT2(random_spec(a.shape, a.dtype), dev, _NoTokenizer(), base.replace(**change))
            await model.upload()
            seq, names = await prepared(model, a.context)
            whole, _ = await gpu_share(dev, seq, names, False)
            _, ops = await gpu_share(dev, seq, names, True)
            top = ", ".join(f"{n} {us:.0f}" for n, us in
                            sorted(ops.items(), key=lambda kv: -kv[1])[:6])
            print(f"{a.shape} @{a.context} {json.dumps(change)}: GPU {whole:.0f} us a pass; "
                  f"with timestamps, by op: {top}", flush=True)
            model.release()
        return
    model = GPT2(random_spec(a.shape, a.dtype), dev, _NoTokenizer())
    await model.upload()
    seq, names = await prepared(model, a.context)
    plan = model.plan
    print(f"{a.shape} {a.dtype} at context {a.context}: {len(seq)} dispatches a decode step")
    for raw in (False, True):
        cpu_share(dev._dev, seq, 20, raw)
        cpu = cpu_share(dev._dev, seq, raw=raw)
        await model.sync()
        total = sum(cpu.values())
        print(f"CPU per pass{' (C calls)' if raw else ''} (us): " +
              ", ".join(f"{k} {v * 1e6:.0f}" for k, v in cpu.items()) +
              f"; total {total * 1e6:.0f} ({total / len(seq) * 1e6:.2f} a dispatch)")
    whole, _ = await gpu_share(dev, seq, names, False)
    print(f"GPU per pass (timestamps around the pass): {whole:.0f} us "
          f"({whole / len(seq):.2f} a dispatch)")
    if a.per_op and "timestamp-query-inside-passes" in features:
        whole, ops = await gpu_share(dev, seq, names, True)
        print(f"GPU per pass with a timestamp after each dispatch: {whole:.0f} us; by op "
              "(summed over layers):")
        for name, us in sorted(ops.items(), key=lambda kv: -kv[1]):
            print(f"  {us:8.1f} us  {name}")
    cost = await dispatch_cost(dev)
    print("tiny dispatch (us, in a chain of 200 in one submit): " +
          ", ".join(f"{k} {v:.2f}" for k, v in cost.items()))
    # Steady-state decode as the bench measures it.
    ids = [1] * a.context
    async def timed(n):
        t = time.perf_counter()
        await model.generate_ids(ids, max_new_tokens=n, temperature=0)
        return time.perf_counter() - t
    await timed(6)
    short = min([await timed(6) for _ in range(2)])
    long = min([await timed(6 + a.tokens) for _ in range(2)])
    print(f"decode: {(long - short) / a.tokens * 1e3:.3f} ms/token")
    model.release()


async def prepared(model, context):
    """The decode step's dispatches (and op names) of `model` at `context`, the cache filled."""
    await model.sync()
    plan = model.plan
    await model.generate_ids([1] * context, max_new_tokens=1, temperature=0)
    plan.write_params(1, context, 0, 1)
    seq = plan.dispatches("decode") + plan.dispatches("argmax")
    launches = plan.launches("decode") + plan.launches("argmax")
    names = [re.sub(r"(layers|h)\.\d+\.", r"\1.*.", l.name) for l in launches]
    return seq, names


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="124M")
    ap.add_argument("--dtype", default="F16")
    ap.add_argument("--context", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--per-op", action="store_true")
    ap.add_argument("--variants", help="a JSON list of layout changes to compare by GPU time, "
                    "e.g. '[{}, {\"gemv\": {\"TPR\": 64, \"RPW\": 4, \"U\": 2}}]'")
    asyncio.run(main(ap.parse_args()))
