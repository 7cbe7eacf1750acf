// llama.cpp itself (the npm package node-llama-cpp, pinned in package.json beside this file, with
// its prebuilt CPU build) on a GGUF file, for tests/test_gguf_llamacpp.py. Reads one JSON request
// on stdin and writes one JSON answer on stdout:
//   {"model": path, "texts": [...]}                 -> {"tokens": [[ids of each text]]}
//     (tokenize with special tokens parsed, as webgpt's encode() parses them)
//   {"model": path, "prompt": [ids], "n": N, "greedy_prompt": [ids]}
//                                                   -> {"top1": [greedy next id after each prompt
//     position], "greedy": [N ids generated greedily after greedy_prompt (default: prompt)]}
import {getLlama} from "node-llama-cpp";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const req = JSON.parse(input);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: req.model, vocabOnly: !req.prompt, gpuLayers: 0});
const out = {};
if (req.texts) {
    out.tokens = req.texts.map((t) => Array.from(model.tokenize(t, true)));
}
if (req.prompt) {
    // An f32 KV cache and no flash attention: the only rounding left is llama.cpp's own (8-bit
    // activations in quantized products).
    const context = await model.createContext({contextSize: req.ctx ?? 256, threads: 2,
        flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"});
    const seq = context.getSequence();
    const results = await seq.controlledEvaluate(
        req.prompt.map((t) => [t, {generateNext: {token: true, options: {temperature: 0}}}]));
    out.top1 = results.map((r) => r?.next?.token ?? null);
    await seq.clearHistory();
    out.greedy = [];
    for await (const t of seq.evaluate(req.greedy_prompt ?? req.prompt, {temperature: 0})) {
        out.greedy.push(t);
        if (out.greedy.length >= req.n) break;
    }
    await context.dispose();
}
await model.dispose();
process.stdout.write(JSON.stringify(out));
