// "How it works": one forward pass of GPT-2, step by step, each step linked to its line in
// the Python (found by the text of the line, so the links follow edits of the code) and to
// the WGSL files the loaded model's plan runs for it (the launch records the worker sends:
// one hop from an op to its kernel), with the tensor shapes of the loaded model. ide.js
// calls renderHowto.

// Shapes are written with these names; sizes() gives their values for the loaded model.
function sizes(model, T) {
  const c = model ? model.config : null;
  if (!c) return { T };
  const C = c.n_embd;
  const hd = c.head_size || C / c.n_head;
  const G = c.n_kv_head || c.n_head;
  return {
    T, C, "3C": 3 * C, "4C": 4 * C, V: c.vocab_size, n_ctx: c.n_positions,
    n_head: c.n_head, hs: C / c.n_head, pos: T === "T" ? "pos" : T,
    H: c.n_head, G, hd, "H hd": c.n_head * hd, "(H+2G) hd": (c.n_head + 2 * G) * hd,
    "G hd": G * hd, I: c.intermediate_size, "2I": 2 * c.intermediate_size,
  };
}

const isLlama = (model) => !!(model && model.config && model.config.model_type &&
  model.config.model_type !== "gpt2");
// The module whose forward pass a model runs: Gemma's own, else Llama's (Qwen, Mistral, Phi-3
// and SmolLM3 use it too).
const archFile = (model) => /^gemma/.test((model && model.config && model.config.model_type) || "")
  ? "webgpt/arch/gemma.py" : "webgpt/arch/llama.py";

// The steps of a Llama-family forward pass (arch/llama.py; Gemma's arch/gemma.py differs in
// its norms' (1 + w), the norms after each branch, GeGLU and soft-capping).
function llamaSteps(model) {
  const LLAMA = archFile(model);
  const c = model && model.config;
  const L = c ? c.n_layer : "n_layer";
  const qwen3 = c && c.model_type === "qwen3";
  const fused = model && model.layout && model.layout.fuse_ln;
  const normNote = fused ? " On this GPU the one-token pass does it inside the next product (one dispatch fewer)." : "";
  return [
    {
      title: "Tokens", shapes: [["ids", ["T"]]],
      text: "tokenizer.json's byte-level BPE cuts the text into tokens; special tokens such as <|im_start|> are matched first.",
      py: [[GEN, ["def encode_prompt"]], ["webgpt/hf_tokenizer.py", ["def encode("]]],
    },
    {
      title: "Embedding", shapes: [["embed", ["V", "C"]], ["x", ["T", "C"]]],
      text: "Each token's row of the token table: the residual stream x. There is no position table: positions enter through the rotary embedding below.",
      py: [[LLAMA, ["# x = embed[ids]"]]], wgsl: planShaders(model, "embedding", ["shaders/embedding.wgsl"]),
    },
    { block: `Then ${L} decoder layers; each does:` },
    {
      title: "input_layernorm: RMSNorm", shapes: [["ln", ["T", "C"]]],
      text: "Each token's vector divided by its root mean square, times learned weights (no mean, no bias)." + normNote,
      py: [[LLAMA, ["# ln = rms(x) w", "# ln = rms(x) (1 + w)"]]], wgsl: planShaders(model, "layers.0.input_layernorm", ["shaders/layernorm.wgsl"]),
    },
    {
      title: "q, k, v in one product", shapes: [["W", ["(H+2G) hd", "C"]], ["qkv", ["T", "(H+2G) hd"]]],
      text: "Queries for every head, keys and values for each of the fewer key/value heads (grouped-query attention)" + (c && c.model_type === "qwen2" ? ", with their biases." : "."),
      py: [[LLAMA, ["# qkv = ln @ Wqkv^T"]]], wgsl: planShaders(model, "layers.0.self_attn.qkv_proj", ["shaders/gemv.wgsl"]),
    },
    {
      title: "Rotary embedding", shapes: [["k, v cache", ["n_ctx", "G hd"]]],
      text: (qwen3 ? "Each q and k head RMS-normalised (Qwen3), then q" : "q") + " and k rotated by angles that grow with the position (a cos/sin table made at load); rotated keys and the values go into this layer's KV cache, stored once per key/value head.",
      py: [[LLAMA, ["# q, k rotated"]]], wgsl: planShaders(model, "layers.0.self_attn.rope", ["shaders/rope.wgsl"]),
    },
    {
      title: "Attention", shapes: [["att", ["T", "H hd"]]],
      text: "Each query head scores against the keys of its key/value head (H / G query heads share one), softmax, weighted sum of values.",
      py: [[LLAMA, ["# att = attention"]]], wgsl: planShaders(model, "layers.0.self_attn.attn", ["shaders/attention.wgsl"]),
    },
    {
      title: "o_proj, added to x", shapes: [["x", ["T", "C"]]],
      text: "The heads mixed back to C channels and added to the residual stream.",
      py: [[LLAMA, ["# x += att @ Wo^T", "# ln = att @ Wo^T"]]], wgsl: planShaders(model, "layers.0.self_attn.o_proj", ["shaders/gemv.wgsl"]),
    },
    {
      title: "post_attention_layernorm: RMSNorm", shapes: [["ln", ["T", "C"]]],
      text: "As before, with its own weights, before the MLP." + normNote,
      py: [[LLAMA, ["# ln = rms(x) w", "# x += rms(ln) (1 + w)"]]], wgsl: planShaders(model, "layers.0.post_attention_layernorm", ["shaders/layernorm.wgsl"]),
    },
    {
      title: "MLP: gate and up", shapes: [["fc", ["T", "2I"]]],
      text: "Two projections up to I channels each, as one product.",
      py: [[LLAMA, ["# fc = ln @ [Wg; Wu]^T"]]], wgsl: planShaders(model, "layers.0.mlp.gate_up_proj", ["shaders/gemv.wgsl"]),
    },
    {
      title: "MLP: SwiGLU and down, added to x", shapes: [["x", ["T", "C"]]],
      text: "silu(gate) * up, computed as the down projection reads its input, back to C channels and added to the residual stream.",
      py: [[LLAMA, ["# x += (silu(g) u)", "# ln = (gelu(g) u)"]]], wgsl: planShaders(model, "layers.0.mlp.down_proj", ["shaders/gemv.wgsl"]),
    },
    { block: "After the last layer:" },
    {
      title: "norm and LM head: logits", shapes: [["logits", ["1", "V"]]],
      text: "A final RMSNorm, then a score for every token of the vocabulary (the token table again where the model ties them).",
      py: [[LLAMA, ["# logits = ln @ W^T", "# logits = cap(ln @ W^T)"]]], wgsl: planShaders(model, "lm_head", ["shaders/gemv.wgsl"]),
    },
    {
      title: "The next token", shapes: [["next id", ["1"]]],
      text: "Greedy or sampled on the GPU, as for GPT-2; generation stops at the model's end-of-turn ids.",
      py: [[PLAN, ["ids[0] = argmax"]], [PLAN, ["ids[0] ~ softmax"]]],
      wgsl: ["shaders/argmax.wgsl", "shaders/sample.wgsl"],
    },
  ];
}

// Where each step is in the code: [file, [texts to look for, first found wins]].
const MODEL = "webgpt/arch/gpt2.py"; // the forward pass, one line per op
const GEN = "webgpt/model/generator.py"; // generation and the text API
const PLAN = "webgpt/model/plan.py"; // pass kinds and their launch lists

// The shader files the plan runs for an op (launches named like "h.0.attn.c_attn", or
// "h.0.ln_1 + h.0.attn.c_attn" where a norm is fused into the product), over every pass.
function planShaders(model, op, fallback) {
  const plan = model && model.plan;
  if (!plan || !op) return fallback;
  const files = [];
  for (const launches of Object.values(plan)) {
    for (const [name, shader] of launches) {
      const parts = name.split(" + ").map((n) => n.replace(/^h\.0\./, ""));
      if (parts.includes(op) && !files.includes(`shaders/${shader}`)) files.push(`shaders/${shader}`);
    }
  }
  return files.length ? files : fallback;
}

function steps(model) {
  if (isLlama(model)) return llamaSteps(model);
  const c = model && model.config;
  const L = c ? c.n_layer : "n_layer";
  const H = c ? c.n_head : "n_head";
  const hs = c ? c.n_embd / c.n_head : "C / n_head";
  const gpuPrompt = model && model.layout && model.layout.prefill === "matmul";
  const fused = model && model.layout && model.layout.fuse_ln;
  const rows = model && model.layout && model.layout.weights === "rows";
  const oneToken = rows ? "shaders/gemv.wgsl" : "shaders/matvec.wgsl";
  const linear = gpuPrompt ? [oneToken, "shaders/matmul.wgsl"] : [oneToken];
  const name = oneToken.slice("shaders/".length);
  const quantized = model && /^q\d+$/.test(model.weights || "");
  const linearNote = (quantized
    ? ` W is stored as rows of ${model.weights.slice(1)}-bit integers with one f16 scale per block (a quantized folder): one row per output, widened to f32 in the kernel.`
    : rows
    ? " W was transposed at load (transpose.wgsl) to one row per output, so a GPU spreads the rows over all its cores."
    : " W stays [in, out] as the file stores it: on a CPU adapter each invocation streams 4 neighbouring columns.")
    + (gpuPrompt
      ? ` One token runs through ${name}; the prompt's T rows through matmul.wgsl's tiles.`
      : ` Every row goes through ${name} (on a CPU adapter the prompt too: tiles that need barriers cost more there than they save).`);
  const lnNote = fused ? " On this GPU the one-token pass does it inside the next matvec (one dispatch fewer)." : "";
  return [
    {
      title: "Tokens", shapes: [["ids", ["T"]]],
      text: "The tokenizer cuts the prompt into tokens of its vocabulary and the model sees only their ids.",
      py: [[GEN, ["def encode_prompt"]], ["webgpt/tokenizer.py", ["def encode("]]],
    },
    {
      title: "Embedding", shapes: [["wte", ["V", "C"]], ["wpe", ["n_ctx", "C"]], ["x", ["T", "C"]]],
      text: "Each token's row of the token table wte plus its position's row of wpe: the residual stream x, one vector of C numbers per token, which every block reads and adds to.",
      py: [[MODEL, ["# x = wte[ids] + wpe"]]], wgsl: planShaders(model, "embedding", ["shaders/embedding.wgsl"]),
    },
    { block: `Then ${L} transformer blocks, one after the other; each does:` },
    {
      title: "ln_1: layer norm", shapes: [["ln", ["T", "C"]]],
      text: "Each token's vector rescaled to mean 0 and variance 1, then by learned weights and biases." + lnNote,
      py: [[MODEL, ["# ln = ln_1(x)"]]], wgsl: planShaders(model, "ln_1", ["shaders/layernorm.wgsl"]),
    },
    {
      title: "c_attn: queries, keys, values", shapes: [["W", ["C", "3C"]], ["qkv", ["T", "3C"]], ["k, v cache", ["n_ctx", "C"]]],
      text: "One matrix product gives every token a query, a key and a value for each head. Keys and values also go into this layer's KV cache at their positions, so later tokens need not compute them again." + linearNote,
      py: [[MODEL, ["# qkv = ln @ W + b"]]], wgsl: planShaders(model, "attn.c_attn", linear),
    },
    {
      title: "Attention", shapes: [["scores", ["n_head", "T", "pos"]], ["att", ["T", "C"]]],
      text: `Each of the ${H} heads (${hs} channels each) scores its query against the keys of this position and every earlier one (never a later one), turns the scores into weights with a softmax, and sums the values with those weights.`,
      py: [[MODEL, ["# att = attention"]]], wgsl: planShaders(model, "attn", ["shaders/attention.wgsl"]),
    },
    {
      title: "attn.c_proj, added to x", shapes: [["W", ["C", "C"]], ["x", ["T", "C"]]],
      text: "The heads' outputs mixed by one more matrix and added to the residual stream.",
      py: [[MODEL, ["# x += att @ W + b"]]], wgsl: planShaders(model, "attn.c_proj", linear),
    },
    {
      title: "ln_2: layer norm", shapes: [["ln", ["T", "C"]]],
      text: "As ln_1, with its own weights, before the MLP.",
      py: [[MODEL, ["# ln = ln_2(x)"]]], wgsl: planShaders(model, "ln_2", ["shaders/layernorm.wgsl"]),
    },
    {
      title: "MLP: c_fc and GELU", shapes: [["W", ["C", "4C"]], ["fc", ["T", "4C"]]],
      text: "Each token on its own: up to 4C channels, then the GELU non-linearity (fused into the same kernel).",
      py: [[MODEL, ["# fc = gelu("]]], wgsl: planShaders(model, "mlp.c_fc", linear),
    },
    {
      title: "MLP: c_proj, added to x", shapes: [["W", ["4C", "C"]], ["x", ["T", "C"]]],
      text: "Back down to C channels, added to the residual stream: the block's output.",
      py: [[MODEL, ["# x += fc @ W + b"]]], wgsl: planShaders(model, "mlp.c_proj", linear),
    },
    { block: "After the last block:" },
    {
      title: "ln_f: final layer norm", shapes: [["ln", ["T", "C"]]],
      text: "One more layer norm.",
      py: [[MODEL, ["# ln = ln_f(x)"]]], wgsl: planShaders(model, "ln_f", ["shaders/layernorm.wgsl"]),
    },
    {
      title: "LM head: logits", shapes: [["wte\u1d40", ["C", "V"]], ["logits", ["1", "V"]]],
      text: "A score for every token of the vocabulary: the vector times the token table again (GPT-2 ties the two). Generating needs only the last position's row; model.logits computes all T.",
      py: [[MODEL, ["# logits = ln @ wte^T"]]], wgsl: planShaders(model, "lm_head", ["shaders/gemv.wgsl"]),
    },
    {
      title: "The next token", shapes: [["next id", ["1"]]],
      text: "Greedy (temperature 0): the largest logit. Sampling: softmax of logits / temperature, cut to the top-k and top-p, and a seeded draw. It happens on the GPU, so only the chosen id is read back; it is the next pass's input.",
      py: [[PLAN, ["ids[0] = argmax"]], [PLAN, ["ids[0] ~ softmax"]], ["webgpt/sampling.py", ["def candidates(", "def sample("]]],
      wgsl: ["shaders/argmax.wgsl", "shaders/sample.wgsl"],
    },
    {
      title: "And again", shapes: [["x", ["1", "C"]]],
      text: "The text of the token is streamed out, and the new token runs through the whole model alone (T = 1), its attention reading the earlier keys and values from the cache.",
      py: [[GEN, ["for produced in range(", "async def stream_ids"]], [GEN, ["async def stream("]]],
    },
  ];
}

// An element with attributes, listeners and children (ide.js uses it too).
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  e.append(...children); // strings become text nodes: never HTML
  return e;
}

function shapeText(names, dims) {
  const sym = `(${names.join(", ")})`;
  const values = names.map((n) => (n in dims ? dims[n] : n));
  const num = `(${values.join(", ")})`;
  return num === sym ? sym : `${sym} = ${num}`;
}

/** Fill `box` with the walk-through. ctx: {model, promptTokens, has(path), lineOf(path,
 * anchors), open(path, line)}. */
export function renderHowto(box, ctx) {
  const { model, promptTokens } = ctx;
  const T = promptTokens && Number.isInteger(promptTokens.count) ? promptTokens.count : "T";
  const dims = sizes(model, T);
  const parts = [el("h3", {}, "How it works: one forward pass")];
  if (model && model.config) {
    const c = model.config;
    parts.push(el("p", { class: "muted" }, isLlama(model)
      ? `${model.name} (${c.model_type}): ${c.n_layer} layers, ${c.n_head} query heads over ` +
        `${c.n_kv_head} key/value heads of ${c.head_size}, C = hidden_size = ${c.n_embd}, ` +
        `V = ${c.vocab_size}, n_ctx = ${c.n_positions}; ` +
        `${model.weights || (model.uses_f16 ? "f16" : "f32")} weights.`
      :
      `${model.name}: ${c.n_layer} layers, ${c.n_head} heads, C = n_embd = ${c.n_embd}, ` +
      `V = vocab_size = ${c.vocab_size}, n_ctx = n_positions = ${c.n_positions}; ` +
      `${model.weights || (model.uses_f16 ? "f16" : "f32")} weights.`));
  } else {
    parts.push(el("p", { class: "muted" }, "Load a model to see its sizes."));
  }
  parts.push(el("p", { class: "muted" }, T === "T"
    ? "T is the number of tokens in a pass: the whole prompt in the first one, then 1 per new token."
    : `T = ${T}: the prompt ${JSON.stringify(promptTokens.text.length > 40 ? promptTokens.text.slice(0, 40) + "\u2026" : promptTokens.text)} in the first pass; then T = 1 for each new token.`));

  const list = el("ol", { class: "steps" });
  for (const s of steps(model)) {
    if (s.block) {
      list.append(el("li", { class: "block" }, s.block));
      continue;
    }
    const links = el("div", { class: "links" });
    for (const [path, anchors] of s.py || []) {
      if (!ctx.has(path)) continue;
      const line = ctx.lineOf(path, anchors);
      const label = `${path.split("/").pop()}${line ? `:${line}` : ""}`;
      links.append(el("button", {
        type: "button", class: "link py", dataset: { path, line: String(line || 1) },
        title: `Open ${path}${line ? ` at line ${line}` : ""}`,
        onclick: () => ctx.open(path, ctx.lineOf(path, anchors) || 1), // the line now
      }, label));
    }
    for (const path of s.wgsl || []) {
      if (!ctx.has(path)) continue;
      links.append(el("button", {
        type: "button", class: "link wgsl", dataset: { path, line: "1" },
        title: `Open ${path} (its header gives the math, bindings and dispatch)`,
        onclick: () => ctx.open(path, 1),
      }, path.split("/").pop()));
    }
    list.append(el("li", {},
      el("strong", {}, s.title),
      el("p", {}, s.text),
      el("div", { class: "shapes" }, ...s.shapes.map(([name, names]) =>
        el("code", {}, `${name} ${shapeText(names, dims)}`))),
      links));
  }
  parts.push(list);
  box.replaceChildren(...parts);
}
