// The messages between the page's main thread (main.js, with chat.js, offline.js and hub.js
// behind it) and its Python worker (worker.mjs, which runs worker.py), and the one the page
// sends its service worker (sw.js): one list per direction, each message's type with its
// fields. A message is {type, ...fields}; a field written "name?" may be left out.
//
// Every message is posted through post() below (worker.py's post() calls worker.mjs's, which
// calls this one), which refuses a type that is not listed or fields that are not the listed
// ones. sw.js is a classic script and cannot import this module: it reads its one type by
// name. tests/test_web.py checks every type posted or handled in web/ against these lists.

/** main.js -> worker.mjs (worker.py does the work of load, run, tokenize, check, selftest). */
export const TO_WORKER = {
  // Only on a cross-origin isolated page: two SharedArrayBuffers of one Int32 each. control[0]
  // = 1 asks the running script to stop (page.stop_requested()); interrupt is Pyodide's
  // interrupt buffer (2 = SIGINT: a KeyboardInterrupt wherever Python is).
  init: ["control", "interrupt"],
  // Load a model from `url` (its folder); `entry`: its models/index.json entry, with each
  // file's size and sha256, or a hub model's entry from hub.js (the model store keeps it);
  // quantize: "q4" (Load as 4-bit: webgpt.load's quantize= for a safetensors model of float
  // weights; a model already quantized loads as it is) or null.
  load: ["name", "url", "entry", "quantize?"],
  // Run an editor script: its text and the name tracebacks give it; params: the form's values
  // as text (prompt, max_new_tokens, temperature, top_k, top_p, seed), and `messages` for a
  // chat reply; files: {editor path: text} of the edited package modules and shaders.
  run: ["code", "filename", "params", "files"],
  // Stop: sets control[0] once Python awaits (without shared memory the only way).
  stop: [],
  // The person's answer to "confirm" (page.confirm): true to go on (Run), false not to.
  confirmed: ["id", "answer"],
  // End a script that did not stop by itself, where it awaits (sent a second after Stop).
  cancel: [],
  // How many tokens `text` is (for "How it works"); answered by "tokenized".
  tokenize: ["text"],
  // Run webgpt.gpu's self-test (?selftest=1); answered by "selftest".
  selftest: [],
  // Check the form's values (params, as in "run") before anything runs: "error" if one is bad.
  check: ["params"],
  // The code panel's API menu: the public API's signatures and docstrings, read from the
  // package as it is imported now (edits included); answered by "api-docs".
  "api-docs": [],
};

/** worker.mjs and worker.py -> main.js. */
export const FROM_WORKER = {
  // Bytes or tensors coming in: stage "pyodide" (the boot's files, worker.mjs), "download"
  // (a model's bytes, smooth) or the loader's own stages (tensors uploaded).
  progress: ["stage", "done", "total"],
  // Python is ready: its version, seconds since the worker started, and the parts of that
  // time {runtime_s, install_s, import_s, snapshot} (Pyodide's start, the wheel's install,
  // the imports; snapshot: true when Python was restored from the saved start).
  booted: ["python", "boot_s", "parts"],
  // The model store (store.js): event "stored", "damaged" (a bad copy replaced: detail says
  // why), "not-stored" (detail), "waiting" (another tab downloads the file), "no-room" (need,
  // free, bytes: the room it takes and what is left), "resumed" (from, size: a download goes
  // on from byte `from`).
  cache: ["event", "model", "file", "detail?", "need?", "free?", "bytes?", "from?", "size?"],
  // The model is in. device: the adapter described; has_f16: the adapter offers shader-f16,
  // uses_f16: the model uses it; weights: how the GPU holds the matrices ("f32", "f16", "q8",
  // "q4"); load_s and its parts {files_s, weights_s, plan_s} (files and device, weights
  // streaming in, plan and checks); config {n_layer, n_head, n_embd, vocab_size, n_positions
  // (the context the model keeps), head_size, model_type, n_kv_head, intermediate_size};
  // layout {prefill, fuse_ln, weights, cpu}; plan {pass kind: [[launch name, shader file],
  // ...]}; chat: the tokenizer has a chat template. source_weights: what the files hold,
  // "float" (safetensors f32/f16/bf16: what Load as 4-bit quantizes), "quantized" (build.py
  // quantize's q8/q4) or "gguf"; quantized_at_load: "q4" where the load quantized them, else
  // null.
  loaded: ["name", "device", "has_f16", "uses_f16", "weights", "load_s", "parts", "config",
    "layout", "plan", "chat", "source_weights?", "quantized_at_load?"],
  // page.confirm(title, text): ask the person, showing `text` (code a tool would run) with
  // Run and Don't run; answered by "confirmed" with the same id.
  confirm: ["id", "title", "text"],
  // page.output(text): generated text.
  piece: ["text"],
  // page.note(text): a line for the user (the chat shows it under the reply).
  note: ["text"],
  // Script output: stream "out", "err", "tb" (a traceback) or "sys" (what the page did).
  console: ["stream", "text"],
  // page.bar_chart(labels, values, title).
  chart: ["title", "labels", "values"],
  // page.tokens(pieces, title): pieces [[text, token id or null], ...]. page.logprobs(...)
  // sends it too, each piece [text, null, logprob, [[alternative, logprob], ...]].
  tokens: ["title", "pieces"],
  // A run ended. status "ok", "error" or "stopped"; error: a sentence, or null; stats: the
  // generation's numbers if the script generated, else null; reload: loading the model again
  // may be what an edit needs; lost: the GPU device was lost; bad_params: a form value failed
  // params_from_strings (error says which) and nothing ran.
  "run-done": ["status", "seconds", "error", "stats", "reload", "lost", "bad_params"],
  // The answer to "tokenize": count is null without a model.
  tokenized: ["text", "count"],
  // The answer to "selftest".
  selftest: ["ok", "text"],
  // The answer to "api-docs": entries [{name, call, kind, doc, path, line}]: the name the menu
  // shows, its parameters as a call writes them, "coroutine: await it" or "async generator:
  // ...", the docstring, and the editor's file and line of its source (call, kind, path and
  // line are None in Python, so undefined here, where there is none).
  "api-docs": ["entries"],
  // A sentence for the user and what to do. stage: "boot", "load" or "params".
  error: ["stage", "message", "hint"],
  // The model's GPU device was lost: the page loads the model again (a new device).
  "device-lost": ["message"],
};

/** offline.js -> sw.js. */
export const TO_SERVICE_WORKER = {
  // Take over from the service worker in use (the page reloads on the new version).
  "skip-waiting": [],
};

// {type: {required, known}} of each list, for check().
const FIELDS = new Map([TO_WORKER, FROM_WORKER, TO_SERVICE_WORKER].map((list) => [list,
  Object.fromEntries(Object.entries(list).map(([type, names]) => [type, {
    required: names.filter((n) => !n.endsWith("?")),
    known: new Set(names.map((n) => n.replace(/\?$/, ""))),
  }]))]));

/** The message {type, ...fields} if `list` (TO_WORKER, ...) has `type` with these fields; else
 * an Error saying what is wrong (logged too: a worker's errors reach the page's console). */
export function message(list, type, fields = {}) {
  const specs = FIELDS.get(list);
  const spec = specs && Object.hasOwn(specs, type) ? specs[type] : null;
  let problem = null;
  if (!spec) {
    problem = `unknown message type ${JSON.stringify(type)}`;
  } else {
    const missing = spec.required.filter((n) => !(n in fields));
    const unknown = Object.keys(fields).filter((n) => !spec.known.has(n));
    if (missing.length) problem = `"${type}" lacks ${missing.join(", ")}`;
    else if (unknown.length) problem = `"${type}" has no field ${unknown.join(", ")}`;
  }
  if (problem) {
    const err = new Error(`Message refused (web/protocol.mjs): ${problem}`);
    console.error(err.message);
    throw err;
  }
  return { type, ...fields };
}

/** Post message(list, type, fields) to `target` (a Worker, the worker's self, a ServiceWorker). */
export function post(target, list, type, fields = {}) {
  target.postMessage(message(list, type, fields));
}
