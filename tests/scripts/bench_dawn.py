"""Page path vs native on one GPU: the same measurements through the page's own Python path
(Pyodide under Node with Dawn, the WebGPU of Chrome, through tests/dawn_harness.mjs: the
site's worker, its wheel, gpu/browser.py) and through wgpu-py (gpu/native.py).

    .venv/bin/python tests/scripts/bench_dawn.py [--site DIST] [--shapes 124M 1.5B] [--dtypes F16 Q4_0]
        [--paths native page] [--contexts 16 1000] [--prompt 512] [--decode-tokens 40] [--json out.json]

For each path, shape (any of `python -m webgpt bench`'s: GPT-2's and the Llama family's) and
file dtype (F16, our Q8 / Q4, or the GGUF types: random weights as `bench` makes them, from a
source that needs no numpy so that the same code runs in Pyodide): prefill tokens/s of a 512-token
prompt, greedy decoding ms/token at each context (steady state: the difference of two runs
that share the prompt pass, as webgpt.tools.bench does), and the CPU time each decode token's
pass costs to encode and submit (Plan.queue: the uniform write, the recording of the
pass's dispatches, the copy of the token to its read-back slot, the submit), which the
pipelined decode loop must keep under the GPU's time per token. `page-loop` is the page path
recording each dispatch with three calls from Python, as gpu/browser.py did before passes
were replayed by one JavaScript call.

Without --site the site is built (build.py) into a temporary folder. The page path needs
node, the npm package `webgpu` (web/node_modules, or WEBGPU_MODULE) and a Vulkan driver that
Dawn can use (VK_ICD_FILENAMES). Not a test: figures are printed, not asserted.
"""

import asyncio
import base64
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

IN_PYODIDE = sys.platform == "emscripten"
# The modules of webgpt.tools that random_spec needs, copied into Pyodide for the page path.
TOOLS_MODULES = ("__init__.py", "bench.py", "bench_shapes.py", "bench_llamacpp.py")


# ---------------------------------------------------------------- both worlds (no numpy)


class RandomSource:
    """A model folder of small random f16 values: one random block (a JS Uint8Array in
    Pyodide, as the page's fetch gives) handed out again for every chunk."""

    def __init__(self, chunk=8 << 20):
        rng = random.Random(0)
        piece = struct.pack("<32768e", *(rng.uniform(-0.05, 0.05) for _ in range(32768)))
        block = piece * (chunk // len(piece))
        if IN_PYODIDE:
            from pyodide.ffi import to_js
            self._block = to_js(memoryview(block))
        else:
            self._block = memoryview(block)

    def where(self, name):
        return f"<random>/{name}"

    async def chunks(self, name, start, end, chunk_size=8 << 20):
        pos = start
        n_block = len(self._block)
        while pos < end:
            n = min(n_block, end - pos)
            yield self._block.subarray(0, n) if IN_PYODIDE else self._block[:n]
            pos += n


def random_spec(shape, dtype):
    """`shape` with random `dtype` weights, as webgpt.tools.bench.random_spec makes them (its
    f16 values, as here, are also what fills the GGUF types' blocks), from RandomSource."""
    from webgpt.tools.bench import random_spec as bench_spec

    return bench_spec(shape, dtype, RandomSource())


class _NoTokenizer:
    eot_id = None  # random weights: never stop early


def loop_recording():
    """gpu/browser.py as it recorded passes before: each dispatch three calls from Python."""
    from webgpt.gpu import browser

    def sequence(self, dispatches):
        return tuple(tuple(d) for d in dispatches)

    def run(self, seq):
        for pipeline, bind_group, x, y, z in seq:
            self.dispatch(pipeline, bind_group, x, y, z)

    browser.BrowserDevice.sequence = sequence
    browser.BrowserEncoder.run = run


async def measure(dev, shape, dtype, contexts, decode_tokens, prompt_len, log):
    from webgpt.model import GPT2, PIPELINE

    spec = random_spec(shape, dtype)
    cfg = spec.config
    t0 = time.perf_counter()
    model = GPT2(spec, dev, _NoTokenizer())
    await model.upload()
    await model.sync()
    row = {"shape": shape, "dtype": dtype, "weights": model.weights,
           "load_s": time.perf_counter() - t0,
           "dispatches/token": len(model.plan.launches("decode")) + len(model.plan.launches("argmax"))}
    # A read-back round trip on an idle queue (a copy, a submit, a map): the latency the
    # pipelined decode loop hides behind the passes queued after the token being read.
    await model.sync()
    t = time.perf_counter()
    for _ in range(20):
        await model.sync()
    row["read-back us"] = (time.perf_counter() - t) / 20 * 1e6
    # The CPU time of a decode pass's encoding and submit (Plan.queue) while the GPU is
    # idle, so that no wait for it is counted (in the decode loop a submit may wait for the
    # passes queued before it: that time is the GPU's, not the encoding's).
    cpu = []
    for i in range(60):
        t = time.perf_counter()
        model.plan.queue(None, 16, "argmax", model.plan.slots[0])
        cpu.append(time.perf_counter() - t)
        await model.sync()
    cpu.sort()
    row["submit cpu us"] = cpu[len(cpu) // 2] * 1e6
    # Of which recording alone (no submit: the GPU API's own translation for the driver,
    # done at submit by Dawn and wgpu alike, is left out).
    plan = model.plan
    rec = []
    for i in range(60):
        t = time.perf_counter()
        plan.write_params(1, 16, 0, 1)
        enc = dev.encoder()
        plan.encode(enc, "decode")
        plan.encode(enc, "argmax")
        enc.copy(plan.buf["ids"], 0, plan.slots[0], 0, 4)
        enc._end_pass()
        enc._enc.finish()
        rec.append(time.perf_counter() - t)
    rec.sort()
    row["record cpu us"] = rec[len(rec) // 2] * 1e6
    # The time each decode pass's encoding and submit takes in the decode loop.
    spent = [0.0, 0]
    submit = model.plan.queue

    def timed_submit(ids, pos0, choose, slot=None):
        t = time.perf_counter()
        submit(ids, pos0, choose, slot)
        if ids is None:
            spent[0] += time.perf_counter() - t
            spent[1] += 1

    model.plan.queue = timed_submit
    prompt = [(i * 7919) % cfg.vocab_size for i in range(prompt_len)]
    for _ in range(2):
        await model.generate_ids(prompt, max_new_tokens=1, temperature=0)
    row["prefill_tok_s"] = prompt_len / model.stats["prefill_s"]
    for ctx in contexts:
        ids = prompt[:1] * ctx if ctx > len(prompt) else prompt[:ctx]

        async def timed(n):
            t = time.perf_counter()
            await model.generate_ids(ids, max_new_tokens=n, temperature=0)
            return time.perf_counter() - t

        short = PIPELINE + 2
        n = min(decode_tokens, cfg.n_positions - ctx - short)
        await timed(short)
        spent[:] = [0.0, 0]
        t_short = min([await timed(short) for _ in range(2)])
        t_long = min([await timed(short + n) for _ in range(2)])
        row[f"ms/token @{ctx}"] = (t_long - t_short) / n * 1e3
        row[f"encode us/token @{ctx}"] = spent[0] / max(1, spent[1]) * 1e6
        log(f"  {shape} {dtype}: {row[f'ms/token @{ctx}']:.3f} ms/token at context {ctx}, "
            f"encode {row[f'encode us/token @{ctx}']:.1f} us/token")
    model.release()
    return row


async def bench_all(shapes, dtypes, contexts, decode_tokens, prompt_len, loop=False):
    """Every shape in every dtype on this platform's device; prints RESULT <json> (the harness
    reads it)."""
    from webgpt import gpu

    if loop:
        loop_recording()
    dev = await gpu.request_device()
    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"adapter: {dev.describe()}")
    rows = [await measure(dev, s, d, contexts, decode_tokens, prompt_len, log)
            for s in shapes for d in dtypes]
    result = {"device": dev.describe(), "rows": rows}
    print("RESULT " + json.dumps(result), flush=True)
    return result


# ---------------------------------------------------------------- the driver (CPython)


def page_path(site, args, loop):
    """bench_all in the site's worker under Node + Dawn; returns its result."""
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.abspath(__file__), encoding="utf-8") as f:
        source = f.read()
    call = (f"\nawait bench_all({args.shapes!r}, {args.dtypes!r}, {args.contexts!r}, {args.decode_tokens!r}, "
            f"{args.prompt!r}, loop={loop!r})\n")
    # The page's wheel leaves webgpt.tools out (CPython-only tools); the random specs come from
    # its bench modules, so their sources go beside the installed package first. Everything in
    # base64: the worker scans a script's text for certain words before it runs it (one of
    # them makes it fetch more packages from the page, which the harness does not serve).
    tools = os.path.join(os.path.dirname(tests), "py", "webgpt", "tools")
    texts = {}
    for name in TOOLS_MODULES:
        with open(os.path.join(tools, name), "rb") as f:
            texts[name] = base64.b64encode(f.read()).decode("ascii")
    encoded = base64.b64encode(source.encode("utf-8")).decode("ascii")
    source = (f"import base64 as _b64, os as _os, webgpt as _webgpt\n"
              f"_tools = _os.path.join(_os.path.dirname(_webgpt.__file__), 'tools')\n"
              f"_os.makedirs(_tools, exist_ok=True)\n"
              f"for _name, _text in {texts!r}.items():\n"
              f"    with open(_os.path.join(_tools, _name), 'wb') as _f:\n"
              f"        _f.write(_b64.b64decode(_text))\n"
              f"exec(compile(_b64.b64decode({encoded!r}).decode('utf-8'), 'bench_dawn.py', 'exec'), globals())\n")
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.json")
        with open(job, "w") as f:
            json.dump({"site": site, "timeout_s": 1800,
                       "steps": [{"code": source + call, "filename": "bench_dawn_job.py"}]}, f)
        env = dict(os.environ)
        env.setdefault("XDG_RUNTIME_DIR", tmp)
        proc = subprocess.Popen([os.environ.get("NODE", "node"), os.path.join(tests, "dawn_harness.mjs"),
                                 job], stdout=subprocess.PIPE, text=True, env=env)
        result = None
        for line in proc.stdout:
            msg = json.loads(line)
            m = msg.get("msg", {})
            if "adapter" in msg:
                print(f"  dawn adapter: {msg['adapter']}", flush=True)
            elif m.get("type") == "console":
                for text in m["text"].splitlines():
                    if text.startswith("RESULT "):
                        result = json.loads(text[len("RESULT "):])
                    else:
                        print(f"  {text}", flush=True)
            elif m.get("type") in ("error", "run-done", "booted"):
                print(f"  {m.get('type')}: " + json.dumps({k: v for k, v in m.items()
                                                          if k in ("boot_s", "status", "error", "message", "seconds")}),
                      flush=True)
        proc.wait()
    return result


def table(results, contexts):
    lines = []
    head = ["model", "path", "prefill 512 tok/s"] + [f"ms/token @{c}" for c in contexts] + \
        ["CPU us/token (idle GPU)", "dispatches/token"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    def key(r):
        return r["shape"], r["dtype"]

    models = []
    for res in results.values():
        for r in res["rows"]:
            if key(r) not in models:
                models.append(key(r))
    for model in models:
        native = next((r for r in results.get("native", {"rows": []})["rows"] if key(r) == model), None)
        for path, res in results.items():
            r = next((r for r in res["rows"] if key(r) == model), None)
            if r is None:
                continue
            cells = [" ".join(model), path, f"{r['prefill_tok_s']:.0f}"]
            for c in contexts:
                ms = r[f"ms/token @{c}"]
                ratio = f" ({ms / native[f'ms/token @{c}']:.2f}x)" if native and path != "native" else ""
                cells.append(f"{ms:.3f}{ratio}")
            cells += [f"{r['submit cpu us']:.0f}", str(r["dispatches/token"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    import argparse

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(root, "py"))
    from webgpt.tools.bench_shapes import ALL_SHAPES, DTYPES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", help="a built site (default: build one)")
    ap.add_argument("--shapes", nargs="+", default=["124M", "1.5B"], choices=list(ALL_SHAPES))
    ap.add_argument("--dtypes", nargs="+", default=["F16"], choices=[d for d in DTYPES if d != "F32"],
                    help="file dtypes (F32 is left out: the random source holds f16 values)")
    ap.add_argument("--paths", nargs="+", default=["native", "page"],
                    choices=["native", "page", "page-loop"])
    ap.add_argument("--contexts", nargs="+", type=int, default=[16, 1000])
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=40)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    site = a.site
    if site is None and any(p.startswith("page") for p in a.paths):
        sys.path.insert(0, root)
        import build
        site = build.build(os.path.join(tempfile.mkdtemp(prefix="webgpt-dawn-"), "dist"))
    results = {}
    for path in a.paths:
        print(f"{path}:", flush=True)
        t = time.perf_counter()
        if path == "native":
            results[path] = asyncio.run(bench_all(a.shapes, a.dtypes, a.contexts, a.decode_tokens, a.prompt))
        else:
            results[path] = page_path(os.path.abspath(site), a, loop=path == "page-loop")
        print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)
        if results[path] is None:
            del results[path]
    print(table(results, a.contexts))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__" and not IN_PYODIDE:
    main()
