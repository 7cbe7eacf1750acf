"""Browser bench: decoding speed through the page, in headless Chromium (WebGPU on SwiftShader
on a machine without a GPU), the same way a user runs it.

    .venv/bin/python tests/scripts/bench_browser.py [--repeats 2] [--models NAME ...] [--json out.json]

Each model runs through the page's autorun link (index.html?model=...&prompt=...&autorun=1) in
a fresh page, and ms/token is read from #stats. Models with random weights, greedy from an
8-token prompt:
- "gpt2-124m-f32", "gpt2-124m-f16": GPT-2 124M's shape (12 layers, 768 wide, full
  vocabulary), 20 new tokens, from an f32 and an f16 file;
- "char-4l": a 4-layer, 4-head, 128-wide character model with context 64 and 65 symbols,
  50 new tokens (the shape of the original WebGPT's Shakespeare model).
The shipped models (weights/, 6 layers, 384 wide, 256 symbols), from the prompt "ROMEO:":
- "shakespeare-char" (f16 file), "shakespeare-char-q8", "shakespeare-char-q4" (block-quantized
  8 and 4 bits): greedy, 100 new tokens;
- "shakespeare-char-sampled": the f16 model sampled as the README's screenshot is (temperature
  0.8, top-k 40, seed 7, 200 new tokens).
A shipped model that is not under weights/ is left out, saying so.
--cold-start measures instead how long the page takes from its opening to the first token of
the shipped model (greedy, "ROMEO:", 20 tokens): with a fresh profile on disk (nothing saved:
the page's files and the model come from the server) and on a second visit in the same profile
(the service worker answers with the saved page files, the model comes from the page's model
store), `--repeats` times each, with the page's breakdown of that time (#stats: Python's start
as pyodide, wheel and imports; the model load as model files, weights and plan; the first
pass as first token).

For scale, the original WebGPT measured on this kind of machine (2 cores, SwiftShader):
1.7 s/token for the 124M shape (it recomputes the whole context every token) and 92 ms/token
for the character model. Not a test: timings are reported, not asserted.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
sys.path[:0] = [TESTS, os.path.dirname(TESTS)]

import refmodels  # noqa: E402
from conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

GPT2_124M = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024)
GREEDY = {"temperature": 0}

# name -> (random model's config or None for a shipped one, file dtype, prompt, new tokens,
# sampling parameters, the page's model name).
MODELS = {
    "gpt2-124m-f32": (GPT2_124M, "float32", "The quick brown fox jumps over the lazy", 20,
                      GREEDY, "gpt2-124m-f32"),
    "gpt2-124m-f16": (GPT2_124M, "float16", "The quick brown fox jumps over the lazy", 20,
                      GREEDY, "gpt2-124m-f16"),
    # 65 symbols: the first 65 byte symbols of GPT-2's table ('!' to 'a'), so an 8-character
    # prompt of capitals and punctuation is 8 tokens.
    "char-4l": (dict(n_layer=4, n_head=4, n_embd=128, vocab_size=65, n_positions=64),
                "float32", "ROMEO:AB", 50, GREEDY, "char-4l"),
    "shakespeare-char": (None, None, "ROMEO:", 100, GREEDY, "shakespeare-char"),
    "shakespeare-char-q8": (None, None, "ROMEO:", 100, GREEDY, "shakespeare-char-q8"),
    "shakespeare-char-q4": (None, None, "ROMEO:", 100, GREEDY, "shakespeare-char-q4"),
    "shakespeare-char-sampled": (None, None, "ROMEO:", 200,
                                 {"temperature": 0.8, "top_k": 40, "seed": 7},
                                 "shakespeare-char"),
}
# The larger GPT-2 shapes, f16 files, 5 new tokens: that the page runs them on a CPU adapter
# (SwiftShader holds them widened to f32: 1.4, 3.1 and 6.2 GB). Only when asked for by name.
LARGE = {
    name: (dict(n_layer=L, n_head=H, n_embd=C, vocab_size=50257, n_positions=1024), "float16",
           "The quick brown fox jumps over the lazy", 5, GREEDY, name)
    for name, L, H, C in (("gpt2-355m-f16", 24, 16, 1024), ("gpt2-774m-f16", 36, 20, 1280),
                          ("gpt2-1.5b-f16", 48, 25, 1600))
}


def run_page(browser, base, name, prompt, n, sampling=GREEDY, timeout_ms=900_000):
    from urllib.parse import urlencode

    page = browser.new_page()
    try:
        query = urlencode({"model": name, "prompt": prompt, "max_new_tokens": n, **sampling,
                           "autorun": 1})
        t0 = time.perf_counter()
        page.goto(base + "index.html?" + query)
        page.wait_for_function(
            "['done', 'error'].includes(document.documentElement.dataset.state)",
            timeout=timeout_ms)
        if page.evaluate("document.documentElement.dataset.state") == "error":
            raise RuntimeError(page.text_content("#error"))
        stats = page.evaluate("""() => Object.fromEntries(
            [...document.querySelectorAll('#stats .stat')].map(s => [s.dataset.key,
             s.textContent.slice(s.dataset.key.length + 2)]))""")
        stats["wall s"] = f"{time.perf_counter() - t0:.1f}"
        return stats
    finally:
        page.close()


# Record when #output first shows text (the first token), in ms since navigation start.
FIRST_TOKEN_JS = """
(() => {
  const seen = () => {
    const out = document.getElementById("output");
    if (out && out.textContent.length && window.__firstTokenMs === undefined) {
      window.__firstTokenMs = performance.now();
    }
  };
  new MutationObserver(seen).observe(document, {subtree: true, childList: true, characterData: true});
})();
"""


def page_stats(page):
    return page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('#stats .stat')].map(s => [s.dataset.key,
         s.textContent.slice(s.dataset.key.length + 2)]))""")


def cold_visit(context, base, query, timeout_ms=300_000):
    """One visit: {"first token ms": ..., **#stats} (the first token counted from the page's
    navigation start)."""
    page = context.new_page()
    try:
        page.goto(base + "index.html?" + query)
        page.wait_for_function(
            "['done', 'error'].includes(document.documentElement.dataset.state)",
            timeout=timeout_ms)
        if page.evaluate("document.documentElement.dataset.state") == "error":
            raise RuntimeError(page.text_content("#error"))
        out = {"open to first token ms": round(page.evaluate("window.__firstTokenMs"))}
        out.update(page_stats(page))
        # The next visit should find the page's files saved: wait for the service worker.
        page.wait_for_function("""async () => {
            const reg = await navigator.serviceWorker.getRegistration();
            return !!(reg && reg.active && reg.active.state === 'activated');
        }""", timeout=timeout_ms, polling=250)
        return out
    finally:
        page.close()


def cold_start(a):
    """The shipped model's first token from a fresh profile and on a second visit."""
    import build
    from urllib.parse import urlencode
    from playwright.sync_api import sync_playwright

    site = build.build(os.path.join(tempfile.mkdtemp(prefix="webgpt-cold-"), "dist"))
    srv = build.make_server(site, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}/"
    query = urlencode({"model": "shakespeare-char", "prompt": "ROMEO:", "max_new_tokens": 20,
                       "temperature": 0, "autorun": 1})
    results = {"uncached": [], "cached": []}
    with sync_playwright() as pw:
        for _ in range(a.repeats):
            # A new profile on disk, as a user's browser has (Playwright's own new contexts are
            # off the record: their storage lives in memory, where writes cost far more).
            profile = tempfile.mkdtemp(prefix="webgpt-profile-")
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            context.add_init_script(FIRST_TOKEN_JS)
            try:
                for visit in ("uncached", "cached"):
                    r = cold_visit(context, base, query)
                    results[visit].append(r)
                    print(f"{visit}: " + ", ".join(f"{k} {v}" for k, v in r.items()), flush=True)
            finally:
                context.close()
                shutil.rmtree(profile, ignore_errors=True)
    srv.shutdown()
    shutil.rmtree(os.path.dirname(site), ignore_errors=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS) + list(LARGE))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--cold-start", action="store_true",
                    help="time from opening the page to the shipped model's first token")
    a = ap.parse_args()
    if a.cold_start:
        results = cold_start(a)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)
        return

    tmp = tempfile.mkdtemp(prefix="webgpt-bench-")
    try:
        results = bench(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the random models: up to 750 MB (3.1 GB large)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


def bench(a, tmp):
    import build
    from playwright.sync_api import sync_playwright

    folders = {}
    MODELS.update(LARGE)
    for name in list(a.models):
        cfg, dtype, _, _, _, page_name = MODELS[name]
        if cfg is None:
            if not os.path.exists(os.path.join(os.path.dirname(TESTS), "weights", page_name,
                                               "config.json")):
                print(f"{name}: weights/{page_name} is not there, left out", flush=True)
                a.models.remove(name)
            continue
        print(f"writing {name} ...", flush=True)
        folders[name] = refmodels.write_folder(os.path.join(tmp, name), cfg,
                                               refmodels.make_weights(cfg, 1), dtype=dtype)
    site = build.build(os.path.join(tmp, "dist"), extra_models=folders)
    srv = build.make_server(site, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}/"
    results = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for name in a.models:
            _, _, prompt, n, sampling, page_name = MODELS[name]
            runs = [run_page(browser, base, page_name, prompt, n, sampling)
                    for _ in range(a.repeats)]
            results[name] = runs
            for r in runs:
                print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in r.items()), flush=True)
        browser.close()
    srv.shutdown()
    return results


if __name__ == "__main__":
    main()
