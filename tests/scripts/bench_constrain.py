"""The per-token cost of constrained decoding (webgpt.constrain): the time of `mask(ids)`, which
the GPU path calls once per token (decode.Controls' constraint), for a schema with nested
objects, arrays and enums, on real vocabularies. Standard library only, so that the same file
runs in CPython and in Pyodide (tests/scripts/bench_constrain.mjs runs it in Pyodide under Node).

    python tests/scripts/bench_constrain.py [gpt2] [qwen3] [smollm2=FILE.gguf] [--outputs N]

Each vocabulary: its Vocabulary (trie) built once; then N outputs drawn at random among the
allowed tokens (those closing a string, object or array favoured, so that outputs end), the
first with nothing cached ("cold": each new state walks the trie), the others reusing the
compiled schema ("warm"). Per token: mean, median, 90th percentile and max, in ms.
"""

import json
import random
import sys
import tarfile
import time

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"},
    "kind": {"enum": ["person", "company", "robot"]},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 5},
    "address": {"type": "object", "properties": {
        "city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
        "lines": {"type": "array", "items": {"type": "string"}}},
        "required": ["city", "lines"]},
    "scores": {"type": "array", "items": {"type": "number"}},
    "contacts": {"type": "array", "items": {"type": "object", "properties": {
        "kind": {"enum": ["email", "phone"]}, "value": {"type": "string"}},
        "required": ["kind", "value"]}},
    "active": {"type": "boolean"}},
    "required": ["name", "kind", "age", "tags", "address", "scores", "contacts", "active"]}
CLOSERS = tuple(b'"]},:')


async def tokenizer(name, arg):
    from webgpt.hf_tokenizer import HFTokenizer
    from webgpt.tokenizer import Tokenizer

    if name == "gpt2":
        return Tokenizer.gpt2()
    if name == "qwen3":
        with tarfile.open(arg or "tests/fixtures/tokenizers/qwen3.tar.xz") as tar:
            files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()
                     if m.isfile()}
        return HFTokenizer.from_texts(files["qwen3/tokenizer.json"],
                                      files["qwen3/tokenizer_config.json"])
    if name == "smollm2":
        import webgpt
        return (await webgpt.open_folder(arg)).tokenizer
    raise SystemExit(f"unknown vocabulary {name!r}")


def percentiles(times):
    times = sorted(times)
    ms = [t * 1000 for t in times]
    return (f"mean {sum(ms) / len(ms):6.3f}  p50 {ms[len(ms) // 2]:6.3f}  "
            f"p90 {ms[int(len(ms) * 0.9)]:6.3f}  max {ms[-1]:7.2f}")


def bench(tok, outputs, seed=0):
    from webgpt import constrain
    from webgpt.constrain.vocab import Vocabulary

    t0 = time.perf_counter()
    Vocabulary.of(tok)
    built = time.perf_counter() - t0
    stop = tok.eot_id
    choices = {}          # mask -> (allowed ids, their weights): the walk's own cost, kept low
    rng = random.Random(seed)
    runs = []
    for k in range(outputs):
        c = constrain.json_schema(tok, SCHEMA, stop_ids=[stop])
        ids, times = [0], []
        while True:
            t = time.perf_counter()
            mask = c.mask(ids)
            times.append(time.perf_counter() - t)
            if mask not in choices:
                allowed = [8 * k + bit for k, byte in enumerate(mask) if byte
                           for bit in range(8) if byte >> bit & 1]
                choices[mask] = allowed, [40 if i == stop or any(
                    b in CLOSERS for b in tok.token_bytes(i)[:2]) else 1 for i in allowed]
            token = rng.choices(*choices[mask])[0]
            if token == stop or len(ids) > 600:
                break
            ids.append(token)
        json.loads(tok.decode(ids[1:]))
        runs.append(times)
    return built, runs


async def main(argv):
    outputs = 4
    if "--outputs" in argv:
        outputs = int(argv[argv.index("--outputs") + 1])
    names = [a for a in argv if not a.startswith("--") and not a.isdigit()] or ["gpt2", "qwen3"]
    for spec in names:
        name, _, arg = spec.partition("=")
        tok = await tokenizer(name, arg)
        built, runs = bench(tok, outputs)
        warm = [t for run in runs[1:] for t in run]
        print(f"{name} ({tok.vocab_size} tokens): vocabulary {built * 1000:.0f} ms")
        print(f"  cold  ({len(runs[0])} tokens)  {percentiles(runs[0])}")
        if warm:
            print(f"  warm  ({len(warm)} tokens)  {percentiles(warm)}")
        every = [t for run in runs for t in run]
        print(f"  all   ({len(every)} tokens)  {percentiles(every)}")


if __name__ == "__main__":
    import asyncio

    sys.path.insert(0, "py")
    asyncio.run(main(sys.argv[1:]))
