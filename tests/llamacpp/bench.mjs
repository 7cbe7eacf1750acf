// llama.cpp's speed on a GGUF file, through node-llama-cpp (pinned 3.21.1), for
// `python -m webgpt bench --baselines llamacpp` (webgpt/tools/bench_llamacpp.py). Reads one JSON
// request on stdin, writes one JSON answer on stdout:
//   {"model": path, "backend": "vulkan" | "cuda" | "cpu",
//    "contexts": {"16": [16 ids], "1000": [1000 ids]}, "decode_tokens": N,
//    "prompt": [ids] (prefill), "greedy_prompt": [ids], "greedy": 8}
//   -> {"gpu": the backend that ran ("vulkan", "cuda", or false: the CPU), "build": llama.gpu,
//       "devices": [...], "gpu_layers",
//       "ms": {ctx: ms/token}, "perf_ms": {ctx: ms/token by llama_perf}, "prefill_tok_s",
//       "perf_prefill_tok_s", "greedy": [ids], "load_s", "context_size", "batch_size"}
// Decode: after the context's ids (one pass), greedy tokens one at a time through
// sequence.evaluate (llama.cpp's sampler, temperature 0); ms/token is the time between the
// tokens it yields after WARM warm-up tokens, as a user of node-llama-cpp sees it.
// llama.cpp's own counters (llama_perf_context_print: the decode calls alone) are read from
// its log through context.printTimings() where they print, as perf_ms. Prefill: the prompt in
// one evaluation (batch of its length), best of three, after a warm-up.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const WARM = 3;
let input = "";
for await (const chunk of process.stdin) input += chunk;
const req = JSON.parse(input);

const perfLines = [];
const gpu = req.backend === "cpu" ? false : req.backend;
const llama = await getLlama({
    gpu, build: "never", logLevel: LlamaLogLevel.info,
    logger(level, message) {
        if (/llama_perf_context_print/.test(message)) perfLines.push(message);
        else if (level === "error" || level === "fatal") process.stderr.write(message + "\n");
    },
});
const t0 = performance.now();
const model = await llama.loadModel({modelPath: req.model, gpuLayers: gpu ? "max" : 0});
const loadS = (performance.now() - t0) / 1e3;
const longest = Math.max(req.prompt.length, ...Object.values(req.contexts).map((ids) => ids.length));
const need = longest + req.decode_tokens + WARM + 8;
const contextSize = Math.ceil(need / 256) * 256;
const batchSize = Math.max(512, req.prompt.length);
const context = await model.createContext({contextSize, batchSize, flashAttention: "auto",
    ...(req.threads ? {threads: req.threads} : {}),
    performanceTracking: true});
const seq = context.getSequence();

// llama_perf's "eval time = X ms / N runs" (or "prompt eval time") since the last print.
async function perf(kind) {
    perfLines.length = 0;
    await context.printTimings();
    const re = kind === "prompt" ? /prompt eval time =\s*([\d.]+) ms \/\s*(\d+) tokens/
        : /\s eval time =\s*([\d.]+) ms \/\s*(\d+) runs/;
    for (const line of perfLines) {
        const m = re.exec(line);
        if (m) return {ms: Number(m[1]), n: Number(m[2])};
    }
    return null;
}

async function decode(ids, n) {
    await seq.clearHistory();
    await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, -1));
    const stamps = [];
    let reset = false;
    for await (const token of seq.evaluate(ids.slice(-1), {temperature: 0, yieldEogToken: true})) {
        stamps.push(performance.now());
        if (stamps.length === WARM + 1 && !reset) {
            await perf("eval");  // llama_perf from here on: the timed tokens only
            reset = true;
            stamps[WARM] = performance.now();
        }
        if (stamps.length >= WARM + 1 + n) break;
    }
    const p = await perf("eval");
    return {ms: (stamps.at(-1) - stamps[WARM]) / n, perf_ms: p ? p.ms / p.n : null};
}

async function prefill(ids) {
    await seq.clearHistory();
    await perf("prompt");
    const t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(ids);
    const s = (performance.now() - t) / 1e3;
    const p = await perf("prompt");
    return {tok_s: ids.length / s, perf_tok_s: p ? p.n / p.ms * 1e3 : null};
}

// llama.gpu names the build that loaded; with no device of its kind visible (or no layer
// offloaded) llama.cpp runs on the CPU all the same: then "gpu" is false.
const devices = await llama.getGpuDeviceNames();
const out = {gpu: devices.length && model.gpuLayers > 0 ? llama.gpu : false, build: llama.gpu,
    requested: req.backend, devices, gpu_layers: model.gpuLayers, load_s: loadS, context_size: contextSize, batch_size: batchSize, ms: {}, perf_ms: {}};
const greedy = [];
await seq.clearHistory();
for await (const token of seq.evaluate(req.greedy_prompt, {temperature: 0, yieldEogToken: true})) {
    greedy.push(token);
    if (greedy.length >= req.greedy) break;
}
out.greedy = greedy;
await prefill(req.prompt);
const runs = [];
for (let i = 0; i < 3; i++) runs.push(await prefill(req.prompt));
out.prefill_tok_s = Math.max(...runs.map((r) => r.tok_s));
out.perf_prefill_tok_s = Math.max(...runs.map((r) => r.perf_tok_s ?? 0)) || null;
for (const [ctx, ids] of Object.entries(req.contexts)) {
    await decode(ids, Math.min(4, req.decode_tokens));  // warm-up at this context
    const best = [await decode(ids, req.decode_tokens), await decode(ids, req.decode_tokens)];
    out.ms[ctx] = Math.min(...best.map((r) => r.ms));
    const perfs = best.map((r) => r.perf_ms).filter((v) => v != null);
    out.perf_ms[ctx] = perfs.length ? Math.min(...perfs) : null;
}
await context.dispose();
await model.dispose();
process.stdout.write(JSON.stringify(out));
