// The page's main thread: the controls, the text as it streams in, progress and stats, and
// the code panel (ide.js). All Python (Pyodide, the model, the GPU work) runs in worker.mjs,
// so this thread never blocks. The messages to the worker and from it, with their fields, are
// listed in protocol.mjs (TO_WORKER, FROM_WORKER); send() posts one, checked against the list.
//
// The form's values go to the worker as text, checked there (params_from_strings): a bad one,
// from the URL or typed, is said in #error and nothing runs. A lost GPU device (device-lost, or
// a run that ended on it) is said, and the model loads again on a new device.
//
// Generate runs the editor's scripts/generate.py (as edited) with the form's values; Run runs
// the script in the editor. Stop sets a flag the script reads between tokens; a script that
// goes on for another second is cancelled where it awaits and, where the page is cross-origin
// isolated (SharedArrayBuffer), interrupted: a KeyboardInterrupt through Pyodide's interrupt
// buffer, which stops any Python, even a loop that never awaits.
//
// Offline (offline.js): the model index comes through the model store (the server's, or the
// copy on this device when the server is gone); a model's files are saved on this device as
// the worker loads them (store.js, OPFS), and sw.js keeps the page's own files. Offline, only
// the models saved here can load.
//
// Chat (chat.js): with a model whose tokenizer has a chat template, each reply runs the editor's
// scripts/chat.py (as edited) as Generate runs generate.py, the conversation in its params;
// its pieces, notes and stats go to the chat view. ?mode=chat opens that view.
//
// The hub (hub.js): `owner/name[@revision]` typed in #hub-id, or ?hub= in the URL, is listed
// from the hub this site was built for (build.json's hub_endpoint) and loaded like a model of
// the site, from the hub's resolve URLs; once it runs, #hub-keep offers to keep it. Nothing
// reaches the hub unless a user asks for one of its models. A GGUF repository named without a
// quantization (owner/name:QUANT) is a choice, not an error: #hub-choices lists its files by
// tag and size (a sentence and one button each) with the page "ready", and a button loads
// owner/name:TAG as typing it would.
//
// Load as 4-bit (#quantize, ?quantize=q4): the worker loads a safetensors model of float
// weights with webgpt.load(..., quantize="q4"); a model already quantized (build.py quantize's
// q8/q4, a GGUF file) loads as it is, and the header says the option did nothing for it.

import { createChat } from "./chat.js";
import { createIDE } from "./ide.js";
import { HubChoice, HubError, DEFAULT_ENDPOINT, hubKey, listModel, parseHubId } from "./hub.js";
import { createOffline } from "./offline.js";
import { TO_WORKER, post } from "./protocol.mjs";
import { toEntry } from "./store.js";

const $ = (id) => document.getElementById(id);
const root = document.documentElement;
const params = new URLSearchParams(location.search);

const ui = {
  model: $("model"), modelSize: $("model-size"), prompt: $("prompt"),
  maxNew: $("max_new_tokens"), temperature: $("temperature"), topK: $("top_k"),
  topP: $("top_p"), seed: $("seed"), generate: $("generate"), stop: $("stop"),
  status: $("status"), adapter: $("adapter"), error: $("error"), echo: $("prompt-echo"),
  output: $("output"), stats: $("stats"), controls: $("controls"),
  hubId: $("hub-id"), hubLoad: $("hub-load"), hubKeep: $("hub-keep"),
  hubChoices: $("hub-choices"), quantize: $("quantize"),
};

let worker = null;
let booted = false;
let loadedModel = null; // name of the model the worker holds
let loading = null; // name of the model being loaded
let models = [];
const hubModels = new Map(); // name -> entry of each hub model listed (hub.js), this visit
let hubEndpoint = null; // build.json's hub_endpoint, read when a hub model is first asked for
let autorun = params.get("autorun") === "1";
let bootSeconds; // how long Python took to start
let bootParts = null; // its parts: {runtime_s, install_s, import_s}
let loadParts = null; // the last model load's parts: {files_s, weights_s, plan_s}
let openToFirstToken = null; // seconds from the page's opening to its first generated token
let modelsListed = false; // main() has listed the models: a booted worker can load one
let weightsFromDownload = false; // the weights bar follows the download's byte count
let halted = false; // a start-up error: wait for the user to pick a model
let running = null; // the run in the worker: {kind: "generate" | "run", path, prompt, fresh, timer}
let lastLoaded = null; // the "loaded" message of the model in the worker
// Cross-origin isolated pages share two flags with the worker: control[0] = 1 asks a script
// to stop; interrupt[0] = 2 is SIGINT for Pyodide (a KeyboardInterrupt at once).
const isolated = globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === "function";
let control = null;
let interrupt = null;
const STOP_GRACE_MS = 1000; // how long a script may take to stop by itself
const GENERATE_SCRIPT = "scripts/generate.py";
const CHAT_SCRIPT = "scripts/chat.py";

/** A message to the worker (protocol.mjs's TO_WORKER). */
const send = (type, fields) => post(worker, TO_WORKER, type, fields);

const offline = createOffline({ loadHub: (id) => loadHub(id) });
const ide = createIDE({
  onRun: () => runScript(),
  onStop: () => stop(),
  requestTokens: () => requestTokens(),
  requestApiDocs: () => requestApiDocs(),
});
const chat = createChat({ send: (messages) => startChat(messages), stop: () => stop() });

function setState(state, status) {
  root.dataset.state = state;
  if (status !== undefined) ui.status.textContent = status;
  const busy = state === "loading" || state === "generating";
  ui.generate.disabled = busy || loadedModel === null;
  ui.stop.disabled = state !== "generating";
  ui.model.disabled = state === "generating" || (state === "loading" && booted);
  ide.setRunState({ canRun: booted && !busy, running: running !== null });
  chat.update({ ready: booted && loadedModel !== null && !busy && running === null });
}

function showError(message, hint, state = "error") {
  ui.error.replaceChildren();
  const p = document.createElement("p");
  p.className = "message";
  p.textContent = message;
  ui.error.append(p);
  if (hint) {
    const h = document.createElement("p");
    h.className = "hint";
    h.textContent = hint;
    ui.error.append(h);
  }
  ui.error.hidden = false;
  if (state === "error") setState("error", "Failed.");
  else setState(state);
}

function clearError() {
  ui.error.hidden = true;
  ui.error.replaceChildren();
}

function mb(n) {
  return (n / 1e6).toFixed(n < 1e7 ? 2 : 1) + " MB";
}

function setProgress(which, done, total) {
  const bar = $("progress-" + which);
  const text = $("progress-" + which + "-text");
  bar.max = Math.max(total, 1);
  bar.value = Math.min(done, bar.max);
  text.textContent = total ? `${mb(done)} / ${mb(total)}` : mb(done);
}

function fmt(x, digits) {
  return Number.isFinite(x) ? x.toFixed(digits) : "–";
}

function showStats(s) {
  const items = [];
  // Where the time to the first token went: Python's start (Pyodide, the wheel, the imports),
  // the model's load (files and device, weights, plan and checks), the first pass.
  const part = (key, seconds) => {
    if (Number.isFinite(seconds)) items.push([key, `${fmt(seconds, 2)} s`]);
  };
  if (bootSeconds !== undefined) items.push(["python start", `${fmt(bootSeconds, 2)} s`]);
  if (bootSeconds !== undefined && bootParts) {
    part("pyodide", bootParts.runtime_s);
    part("wheel", bootParts.install_s);
    part("imports", bootParts.import_s);
  }
  if (s.load_s !== undefined) items.push(["model load", `${fmt(s.load_s, 2)} s`]);
  if (s.load_s !== undefined && loadParts) {
    part("model files", loadParts.files_s);
    part("weights", loadParts.weights_s);
    part("plan", loadParts.plan_s);
  }
  if (s.first_token_s !== undefined) items.push(["first token", `${fmt(s.first_token_s * 1000, 0)} ms`]);
  if (openToFirstToken !== null) part("page open to first token", openToFirstToken);
  if (s.decode_tokens > 0 && s.decode_s > 0) {
    items.push(["ms/token", fmt((s.decode_s / s.decode_tokens) * 1000, 1)]);
    items.push(["tokens/s", fmt(s.decode_tokens / s.decode_s, 2)]);
  }
  if (s.tokens !== undefined) items.push(["tokens", String(s.tokens)]);
  if (s.seed !== undefined && s.seed !== null) items.push(["seed", String(s.seed)]);
  if (s.stopped) items.push(["stopped", "yes"]);
  ui.stats.replaceChildren(...items.map(([k, v]) => {
    const span = document.createElement("span");
    span.className = "stat";
    span.dataset.key = k;
    span.textContent = `${k}: ${v}`;
    return span;
  }));
}

/** The header: the adapter, shader-f16, and how the GPU holds the loaded model's weights, with
 * what Load as 4-bit did (data-quantize: "q4" quantized at load, "skipped" where the model was
 * already quantized and the option, on, did nothing). */
function showWeights() {
  const m = lastLoaded;
  if (m === null) return;
  let how = `${m.weights} weights`;
  delete ui.adapter.dataset.quantize;
  if (m.quantized_at_load) {
    how += `, quantized to ${m.quantized_at_load === "q4" ? "4" : "8"} bits as they loaded`;
    ui.adapter.dataset.quantize = m.quantized_at_load;
  } else if (ui.quantize.checked && m.source_weights && m.source_weights !== "float") {
    how += ` (${m.source_weights === "gguf" ? "a GGUF file" : "a model"}, already quantized: ` +
      "Load as 4-bit does nothing for it)";
    ui.adapter.dataset.quantize = "skipped";
  }
  ui.adapter.textContent = `GPU: ${m.device} · shader-f16 ${m.has_f16 ? "available" : "not available"} · ${how}`;
  ui.adapter.dataset.f16 = m.uses_f16 ? "1" : "0";
  ui.adapter.dataset.weights = m.weights;
}

/** Load as 4-bit changed: the loaded model loads again where the option changes it (a
 * safetensors model of float weights); else the header says what it does. */
function quantizeChanged() {
  if (!booted || loadedModel === null || loading !== null || running || lastLoaded === null) {
    return; // taken at the next load
  }
  const floats = lastLoaded.source_weights === "float";
  if (floats && (ui.quantize.checked ? "q4" : null) !== (lastLoaded.quantized_at_load || null)) {
    loadModel(loadedModel);
  } else {
    showWeights();
  }
}

function loadModel(name, keepError = false) {
  const entry = hubModels.get(name) || models.find((m) => m.name === name);
  if (!entry) return;
  // Offline, a model of the site loads only if saved (a hub model's listing says, in loadHub).
  if (offline.offline && !entry.key && !offline.isSaved(name)) { // the model in the worker stays
    if (loadedModel !== null) ui.model.value = loadedModel;
    showError(`${name} is not saved on this device, and the server cannot be reached.`,
      "Pick a model that the Offline panel lists, or load this one again once the server is " +
      "back.", loadedModel !== null ? "ready" : "error");
    return;
  }
  loading = name;
  loadedModel = null;
  weightsFromDownload = false;
  if (!keepError) clearError();
  setProgress("weights", 0, entry.bytes || 0);
  setState("loading", `Loading ${name}…`);
  ui.hubKeep.hidden = true;
  ui.hubChoices.hidden = true;
  const url = entry.url || new URL(`models/${encodeURIComponent(name)}/`, location.href).href;
  const quantize = ui.quantize.checked ? "q4" : null;
  // Listed in the store first (its files, and a download cut short, stay while it is recent).
  offline.loading(toEntry(entry, url)).then(
    () => send("load", { name, url, entry, quantize }));
}

/** A GGUF repository listed without a tag (hub.js's HubChoice): its sentence, and a button
 * per quantization (tag and size, a split model's parts as one) that loads it. Names from the
 * hub go in as text. */
function showChoices(choice) {
  const note = document.createElement("p");
  note.textContent = choice.message;
  const suffix = choice.revision === "main" ? "" : `@${choice.revision}`;
  const buttons = choice.choices.map((c) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    b.dataset.quant = c.tag;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = c.tag;
    b.append(tag, ` \u00b7 ${mb(c.bytes)}${c.parts.length > 1 ? ` in ${c.parts.length} parts` : ""}`);
    b.title = c.parts.join(", ");
    if (c.pick === null) {
      b.disabled = true; // owner/name:TAG would not name this file alone
      b.title += ": no tag names this file alone; fetch it with build.py";
    } else {
      b.addEventListener("click", () => loadHub(`${choice.repo}:${c.pick}${suffix}`));
    }
    return b;
  });
  ui.hubChoices.replaceChildren(note, ...buttons);
  ui.hubChoices.hidden = false;
}

/** Load `text` (owner/name[@revision]) from the hub: listed (or, with the hub out of reach,
 * the copy kept on this device), then loaded as a model of the site is. */
async function loadHub(text) {
  if (!booted || running || loading !== null) {
    ui.status.textContent = running ? "A script is running: Stop it first."
      : "Wait until the page is ready.";
    return;
  }
  clearError();
  ui.hubChoices.hidden = true;
  let repo;
  let revision;
  try {
    ({ repo, revision } = parseHubId(text));
  } catch (e) {
    showError(e.message, e.hint, loadedModel !== null ? "ready" : "error");
    return;
  }
  ui.hubId.value = revision === "main" ? repo : `${repo}@${revision}`;
  setState("loading", `Listing the files of ${repo} on the hub…`);
  try {
    if (hubEndpoint === null) {
      const build = await (await fetch("build.json")).json();
      hubEndpoint = String(build.hub_endpoint || DEFAULT_ENDPOINT).replace(/\/+$/, "");
    }
    let entry;
    try {
      entry = await listModel(hubEndpoint, repo, revision);
    } catch (e) {
      entry = e instanceof HubError && e.offline ? await offline.keptEntry(hubKey(repo, revision))
        : null;
      if (!entry) throw e;
      offline.note(`The hub cannot be reached: ${entry.name} runs from its copy on this device.`);
    }
    hubModels.set(entry.name, entry);
    let option = [...ui.model.options].find((o) => o.value === entry.name);
    if (!option) {
      option = document.createElement("option");
      option.value = entry.name;
      option.dataset.hub = "1";
      ui.model.append(option);
    }
    option.textContent = `${entry.name} (hub, ${mb(entry.bytes)})`;
    ui.model.value = entry.name;
    loadModel(entry.name);
  } catch (e) {
    if (loadedModel !== null) ui.model.value = loadedModel;
    if (e instanceof HubChoice) { // a choice to make: the page waits for it, ready
      showChoices(e);
      setState("ready", `Pick a quantization of ${e.repo}` +
        (loadedModel !== null ? `; ${loadedModel} is still loaded.` : "."));
      return;
    }
    const hint = e instanceof HubError ? e.hint : "";
    showError(e.message || String(e), hint, loadedModel !== null ? "ready" : "error");
    if (loadedModel !== null) ui.status.textContent = `${loadedModel} is still loaded.`;
  }
}

// The form's values as typed (or as the URL gave them), as text: worker.py checks them with
// webgpt.sampling.params_from_strings, which says in a sentence what is wrong with a bad one.
// An empty field takes the page's default; an empty seed, a random one.
function readParams() {
  const text = (el, dflt) => (el.value.trim() === "" ? dflt : el.value);
  return {
    prompt: ui.prompt.value,
    max_new_tokens: text(ui.maxNew, "100"),
    temperature: text(ui.temperature, "0.8"),
    top_k: text(ui.topK, "0"),
    top_p: text(ui.topP, "1"),
    seed: text(ui.seed, String(Math.floor(Math.random() * 2 ** 31))),
  };
}

// The GPU device was lost (worker.py's "device-lost", or a run that ended on it): say so and
// load the model again, on a new device, without reloading the page.
let deviceLost = null; // the message, until the model is loaded again
// A stored file of the loaded model proved damaged after it loaded (store.js hashes stored
// files once the page is idle): the model loads again, its file from the network, once no
// run needs it.
let damaged = false;

/** A hub model is kept when the user asks for it: Keep is offered where its files are all on
 * this device and it is not kept yet. */
function offerKeep(name) {
  offline.refresh().then(() => {
    ui.hubKeep.hidden = loadedModel !== name || offline.isSaved(name) || !offline.isStored(name);
    ui.hubKeep.disabled = false;
  });
}

function reloadDamaged() {
  if (!damaged || running || loading !== null || loadedModel === null) return;
  damaged = false;
  loadModel(loadedModel);
}

let recovering = false;

function recoverDevice() {
  const name = loadedModel || loading || ui.model.value;
  const message = deviceLost || "The GPU device was lost.";
  deviceLost = null;
  recovering = true;
  showError(message[0].toUpperCase() + message.slice(1),
    `Loading ${name} again on a new GPU device; Generate works again once it is in.`, "loading");
  loadModel(name, true);
}

function generate() {
  if (!booted || loadedModel === null || running || chat.active) return;
  if (loadedModel !== ui.model.value) {
    autorun = true; // generate once the picked model is in
    loadModel(ui.model.value);
    return;
  }
  startRun("generate", GENERATE_SCRIPT);
}

/** Run: the script in the editor (or the last one opened), with the form's values. */
function runScript() {
  const state = root.dataset.state;
  if (!booted || running || state === "loading") {
    ui.status.textContent = running ? "A script is running: Stop it first." : "Python is not ready yet.";
    return;
  }
  startRun("run", ide.target);
}

/** A chat reply to `messages` (chat.js): scripts/chat.py with them in its params. */
function startChat(messages) {
  if (!booted || loadedModel === null || running || root.dataset.state === "loading") return false;
  startRun("chat", CHAT_SCRIPT, { messages });
  return true;
}

async function startRun(kind, path, extra = {}) {
  clearError();
  const p = { ...readParams(), ...extra };
  running = { kind, path, prompt: p.prompt, fresh: true, timer: null };
  setState("generating", kind === "generate" ? "Generating…" : kind === "chat" ? "Replying…"
    : `Running ${path}…`);
  let req;
  try {
    await ide.ready;
    req = ide.runRequest(path);
  } catch (e) {
    running = null;
    showError(`The code could not be loaded: ${e.message}`, "Run python build.py again.");
    return;
  }
  if (kind === "generate") {
    ui.echo.textContent = p.prompt;
    ui.output.textContent = "";
    ui.stats.replaceChildren();
    running.fresh = false;
  }
  if (control) {
    Atomics.store(control, 0, 0);
    Atomics.store(interrupt, 0, 0);
  }
  ide.console.begin(kind === "generate" ? `Generate: ${path}` : kind === "chat" ? `Chat: ${path}`
    : `Run ${path}`);
  send("run", { code: req.code, filename: req.filename, params: p, files: req.files });
}

function stop() {
  if (!running) return;
  ui.status.textContent = "Stopping…";
  if (control) Atomics.store(control, 0, 1);
  send("stop"); // without shared memory, read once Python awaits
  const r = running;
  clearTimeout(r.timer);
  const later = (ms, fn) => { r.timer = setTimeout(() => running === r && fn(), ms); };
  // Not stopped after a second: cancel it where it awaits (the worker takes the message when
  // Python is idle) and, if Python is busy in a loop, interrupt it (shared memory only).
  later(STOP_GRACE_MS, () => {
    send("cancel");
    if (interrupt) {
      later(300, () => {
        Atomics.store(interrupt, 0, 2); // SIGINT: a KeyboardInterrupt wherever Python is
        later(5000, () => offerRestart("Python does not stop."));
      });
    } else {
      later(4000, () => offerRestart("The script goes on: this page is not cross-origin " +
        "isolated, so Stop cannot interrupt Python that never awaits."));
    }
  });
}

function offerRestart(why) {
  ide.console.action(why, "Restart Python (the model loads again)", restart);
}

function restart() {
  if (worker) worker.terminate();
  if (running) clearTimeout(running.timer);
  running = null;
  booted = false;
  loadedModel = null;
  ide.console.end("stopped", NaN, null);
  setProgress("pyodide", 0, 1);
  setState("loading", "Restarting Python…");
  startWorker();
}

function requestTokens() {
  if (booted && loadedModel !== null) send("tokenize", { text: ui.prompt.value });
}

// The API menu's docstrings, from the worker's Python (asked for again each time the menu
// opens: an edit of the package changes them); before Python is up, once it is.
let apiDocsWanted = false;

function requestApiDocs() {
  apiDocsWanted = !booted;
  if (booted) send("api-docs");
}

// The service worker saves the page's files when it starts (tens of MB fetched and hashed):
// once the page is idle, not while the generation an autorun link starts is running beside it
// on the same cores.
let offlinePending = false;

function startOffline() {
  if (running || autorun) offlinePending = true;
  else offline.start();
}

function runDone(m) {
  const r = running;
  running = null;
  if (r) clearTimeout(r.timer);
  if (offlinePending) {
    offlinePending = false;
    offline.start();
  }
  if (interrupt) Atomics.store(interrupt, 0, 0); // an interrupt that came too late
  ide.console.end(m.status, m.seconds, m.error);
  if (r && r.kind === "chat") chat.done(m);
  if (m.bad_params) { // nothing ran: the form's values need a change
    showError(`A parameter is not usable: ${m.error}`,
      "Change it in the form (or in the page's address) and press Generate again.", "ready");
    ui.status.textContent = "Nothing ran: a parameter is not usable.";
    return;
  }
  if (m.lost || deviceLost) {
    if (!deviceLost) deviceLost = m.error || "The GPU device was lost.";
    recoverDevice();
    return;
  }
  if (m.reload && loadedModel !== null) {
    const name = loadedModel;
    ide.console.action("An edit that changes what the model sets up as it loads (its __init__ " +
      "or upload) takes effect once the model loads again.", `Load ${name} again`,
    () => { if (!running) loadModel(name); });
  }
  if (m.stats && !(r && r.kind === "chat")) showStats(m.stats);
  const stopped = m.status === "stopped" || (m.stats && m.stats.stopped);
  if (r && r.kind === "chat" && m.status === "error") {
    showError(`Cannot reply: ${m.error}`, "The traceback is in the console under the code. " +
      "Change the parameter or fix scripts/chat.py (Reset puts back the shipped one), then " +
      "press Regenerate.");
    return;
  }
  if (r && r.kind === "generate" && m.status === "error") {
    showError(`Cannot generate: ${m.error}`, "The traceback is in the console under the code. " +
      "Change the parameter or fix the script (Reset puts back the shipped one), then try again.");
    return;
  }
  const name = r ? r.path : "the script";
  setState("done", stopped ? "Stopped." : m.status === "error"
    ? `${name} failed: ${m.error} (the traceback is in the console).`
    : r && r.kind === "generate" ? "Done." : r && r.kind === "chat" ? "Replied."
      : `${name} done.`);
}

// Python has started and the models are listed: the self-test, or the model to load.
function afterBoot() {
  if (params.get("selftest") === "1") {
    setState("generating", "GPU self-test…");
    send("selftest");
  } else if (params.has("hub")) {
    loadHub(params.get("hub"));
  } else if (ui.model.value && !halted) {
    loadModel(ui.model.value);
  }
  if (!autorun && PARAM_NAMES.some((k) => params.has(k))) {
    send("check", { params: readParams() }); // said before Generate
  }
  const quantize = params.get("quantize");
  if (quantize !== null && !["q4", "none", ""].includes(quantize)) { // said; the model loads
    showError(`quantize=${quantize} is not an option of this page: quantize=q4 loads a ` +
      "safetensors model as 4-bit, quantize=none as it is.",
    "Tick Load as 4-bit to load it as 4-bit.", root.dataset.state);
  }
}

function onMessage(e) {
  const m = e.data;
  switch (m.type) {
    case "progress":
      // Weights: the byte count of the download where the source tells it (smooth), else
      // the loader's count of tensors uploaded.
      if (m.stage === "download") weightsFromDownload = true;
      if (m.stage === "pyodide") setProgress("pyodide", m.done, m.total);
      else if (m.stage === "download" || !weightsFromDownload) setProgress("weights", m.done, m.total);
      break;
    case "booted":
      booted = true;
      bootSeconds = m.boot_s;
      bootParts = m.parts || null;
      ui.status.textContent = `Python ${m.python} ready (${fmt(m.boot_s, 1)} s).`;
      if (apiDocsWanted) requestApiDocs();
      if (modelsListed) afterBoot();
      break;
    case "loaded": {
      loadParts = m.parts || null;
      startOffline();
      if (hubModels.has(m.name)) {
        offerKeep(m.name);
      } else {
        const entry = models.find((x) => x.name === m.name);
        if (entry) offline.keep(toEntry(entry));
      }
      const bar = $("progress-weights");
      setProgress("weights", bar.max, bar.max);
      loading = null;
      loadedModel = m.name;
      // How the GPU holds the weights: f32, f16, q8 or q4 (a worker of before q8/q4: uses_f16).
      const weights = m.weights || (m.uses_f16 ? "f16" : "f32");
      ide.setModel({ name: m.name, config: m.config, layout: m.layout, uses_f16: m.uses_f16, weights });
      if (ide.howtoVisible()) requestTokens();
      lastLoaded = { ...m, weights };
      showWeights();
      showStats({ load_s: m.load_s });
      chat.setModel(m.name, m.chat === true);
      if (recovering) {
        recovering = false;
        ui.error.hidden = true;
        setState("ready", `${m.name} is loaded again (the GPU device had been lost), in ` +
          `${fmt(m.load_s, 1)} s.`);
      } else {
        setState("ready", `${m.name} loaded in ${fmt(m.load_s, 1)} s.`);
      }
      if (autorun) {
        autorun = false;
        generate();
      }
      break;
    }
    case "piece":
      if (openToFirstToken === null) openToFirstToken = performance.now() / 1000;
      if (running && running.kind === "chat") {
        chat.piece(m.text);
        break;
      }
      if (running && running.fresh) { // a Run's first piece replaces the last text
        ui.echo.textContent = running.prompt;
        ui.output.textContent = "";
        running.fresh = false;
      }
      ui.output.append(m.text);
      break;
    case "note":
      if (running && running.kind === "chat") chat.note(m.text);
      else ide.console.write("sys", m.text);
      break;
    case "console":
      ide.console.write(m.stream, m.text);
      break;
    case "confirm":
      ide.console.confirm(m, (answer) => send("confirmed", { id: m.id, answer }));
      break;
    case "chart":
      ide.console.chart(m);
      break;
    case "tokens":
      ide.console.tokens(m);
      break;
    case "run-done":
      runDone(m);
      reloadDamaged();
      break;
    case "tokenized":
      ide.setPromptTokens(m.text, m.count);
      break;
    case "cache":
      offline.cacheEvent(m);
      if (m.event === "damaged" && m.model === loadedModel) {
        damaged = true;
        reloadDamaged();
      } else if (m.event === "stored" && hubModels.has(loadedModel)) {
        offerKeep(loadedModel); // its downloads are checked and kept once its run is over
      }
      break;
    case "api-docs":
      ide.setApiDocs(m.entries);
      break;
    case "selftest":
      offline.start();
      ui.output.textContent = m.text;
      setState(m.ok ? "done" : "error", m.ok ? "GPU self-test passed." : "GPU self-test failed.");
      if (!m.ok) showError(m.text);
      break;
    case "error":
      if (m.stage === "load") {
        // A hub model's folder: its hint, not the one about weights/ and build.py.
        if (hubModels.has(loading) && /weights\//.test(m.hint || "")) {
          m.hint = "The page cannot run this repository's model, for the reason above: try " +
            "another repository, or a model of the list.";
        }
        loading = null;
        recovering = false;
        offline.start();
      }
      // A bad parameter from the URL: said, while the model loads all the same.
      showError(m.message, m.hint, m.stage === "params" ? root.dataset.state : "error");
      break;
    case "device-lost":
      deviceLost = m.message;
      if (!running && loadedModel !== null) recoverDevice(); // else once the run ends
      break;
    default:
      break;
  }
}

async function fetchModels() {
  let current = null; // a hub model opened by ?hub=: its files stay while the store is tidied
  try {
    if (params.has("hub")) {
      const { repo, revision } = parseHubId(params.get("hub"));
      current = hubKey(repo, revision);
    }
  } catch (e) {
    current = null; // a bad id: said when the page loads it
  }
  try {
    const { index } = await offline.load(current);
    return index.models || [];
  } catch (e) {
    return [];
  }
}

const PARAM_NAMES = ["max_new_tokens", "temperature", "top_k", "top_p", "seed"];

async function main() {
  // URL parameters fill the form: index.html?model=NAME&prompt=TEXT&max_new_tokens=N&...
  const fields = { prompt: ui.prompt, max_new_tokens: ui.maxNew, temperature: ui.temperature,
    top_k: ui.topK, top_p: ui.topP, seed: ui.seed };
  for (const [key, el] of Object.entries(fields)) {
    if (params.has(key)) el.value = params.get(key);
  }
  setState("loading", "Starting Python…");
  // ?quantize=q4: Load as 4-bit (off by default, and with quantize=none).
  ui.quantize.checked = params.get("quantize") === "q4";

  if (!navigator.gpu) {
    showError(
      "This browser does not offer WebGPU, which this page needs to run the model.",
      "Use a recent Chrome or Edge (version 113 or later) or another browser with WebGPU " +
      "turned on, and open the page over http://localhost or https.");
    return;
  }

  startWorker(); // Python starts while the models are listed
  models = await fetchModels();
  ui.model.replaceChildren(...models.map((m) => {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (${mb(m.bytes)})`;
    return o;
  }));
  const wanted = params.get("model");
  const names = models.map((m) => m.name);
  if (wanted && !names.includes(wanted)) {
    showError(`There is no model named "${wanted}" on this site.`,
      names.length ? `Models here: ${names.join(", ")}. Pick one in the list.`
        : "Put a model folder under weights/ and run python build.py again.");
    halted = true;
  } else if (names.length === 0 && params.has("hub")) {
    halted = true; // the hub's model only
  } else if (names.length === 0 && offline.offline) {
    showError("The server cannot be reached, and no model is saved on this device.",
      "Open the page once while the server is up: the models it loads are saved for offline use.");
    halted = true;
  } else if (names.length === 0) {
    showError("This site has no model.",
      "Put a model folder (config.json, model.safetensors, tokenizer files) under weights/ " +
      "and run python build.py again.");
    halted = true;
  }
  // Offline, the default is a model saved on this device.
  const usable = offline.offline ? names.filter((n) => offline.isSaved(n)) : names;
  ui.model.value = wanted && names.includes(wanted) ? wanted
    : usable.includes("shakespeare-char") ? "shakespeare-char" : (usable[0] || names[0] || "");

  ui.model.addEventListener("change", () => { if (booted) loadModel(ui.model.value); });
  ui.quantize.addEventListener("change", quantizeChanged);
  ui.hubLoad.addEventListener("click", () => loadHub(ui.hubId.value));
  ui.hubId.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault(); // not the form's Generate
    loadHub(ui.hubId.value);
  });
  ui.hubKeep.addEventListener("click", async () => {
    const entry = hubModels.get(loadedModel);
    if (!entry) return;
    ui.hubKeep.disabled = true;
    await offline.keep(toEntry(entry));
    ui.hubKeep.hidden = true;
    ui.status.textContent = offline.isSaved(entry.name)
      ? `${entry.name} is kept on this device: the Offline panel lists it.`
      : `${entry.name} is listed in the Offline panel; some of its files are not on this ` +
        "device (see the note there).";
  });
  ui.controls.addEventListener("submit", (e) => { e.preventDefault(); generate(); });
  ui.stop.addEventListener("click", () => stop());
  let tokenTimer = null;
  ui.prompt.addEventListener("input", () => {
    if (!ide.howtoVisible()) return;
    clearTimeout(tokenTimer);
    tokenTimer = setTimeout(requestTokens, 400);
  });
  ide.setIsolation(isolated);
  modelsListed = true;
  if (booted) afterBoot();
}

function startWorker() {
  worker = new Worker(new URL("worker.mjs", import.meta.url), { type: "module" });
  worker.onmessage = onMessage;
  worker.onerror = (e) => {
    if (booted) { // an error in a script's JavaScript callbacks: the page goes on
      e.preventDefault();
      ide.console.write("err", `${e.message || e}\n`);
      return;
    }
    showError(`The Python worker failed to start: ${e.message || e}`,
      "Reload the page; if it happens again, the site may be incomplete (run python build.py).");
  };
  if (isolated) {
    control = new Int32Array(new SharedArrayBuffer(4));
    interrupt = new Int32Array(new SharedArrayBuffer(4));
    send("init", { control: control.buffer, interrupt: interrupt.buffer });
  }
}

main();
