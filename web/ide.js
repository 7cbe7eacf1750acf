// The code panel: the editor's files and their edits, the examples menu, the API menu, the
// console and the "How it works" walk-through. main.js owns the worker; it asks this module
// what to run (runRequest) and hands it what the worker says (console, chart, tokens, the API's
// docstrings, ...).
//
// Files come from code/index.json (build.py copies them there, each with its sha256): the
// scripts (scripts/generate.py is the one the Generate button runs), the examples, the
// package's modules (webgpt/...) and the shaders (shaders/*.wgsl). Modules and shaders are
// read-only until the user asks to edit them. Every edit is kept in localStorage under the
// file's path with the sha256 of the shipped version it was made on: an edit made on an older
// shipped version is not mixed into the new one; the user is told, and picks.

import { createEditor } from "./editor.js";
import { el, renderHowto } from "./howto.js";

const STORE = "webgpt-py/edit/"; // + path: {base: sha256 of the shipped text, text}
const UI_STORE = "webgpt-py/ui"; // {open, target}: the file in view and the script Run runs
const CONSOLE_LIMIT = 400_000; // characters kept in the console; older output is dropped
const CHUNK = 16_384; // characters of output per element (so dropping old output is cheap)

const MODULE_ORDER = ["webgpt/arch/gpt2.py", "webgpt/arch/llama.py", "webgpt/arch/base.py",
  "webgpt/model/plan.py", "webgpt/model/generator.py", "webgpt/model/decode.py",
  "webgpt/model/weights.py", "webgpt/model/layout.py",
  "webgpt/kernels.py", "webgpt/sampling.py", "webgpt/tokenizer.py", "webgpt/__init__.py"];
const SHADER_ORDER = ["embedding", "layernorm", "gemv", "matvec", "matmul", "attention",
  "argmax", "sample"].map((n) => `shaders/${n}.wgsl`);

const $ = (id) => document.getElementById(id);


/** The docstring's first line of a script, "Title: what it does." -> [title, description]. */
function describe(text, fallback) {
  const m = /^\s*(?:"""|''')\s*([^\n]*)/.exec(text);
  const line = m ? m[1].replace(/("""|''')\s*$/, "").trim() : "";
  const i = line.indexOf(":");
  if (i > 0) return [line.slice(0, i).trim(), line.slice(i + 1).trim()];
  return [fallback, line];
}

function load(key) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch (e) {
    return null;
  }
}

export function createIDE({ onRun, onStop, requestTokens, requestApiDocs }) {
  const ui = {
    file: $("file"), examplesMenu: $("examples-menu"), examplesList: $("examples-list"),
    run: $("run"), stop: $("run-stop"), target: $("run-target"), editToggle: $("edit-toggle"),
    reset: $("reset"), download: $("download"), downloadEdits: $("download-edits"),
    howtoToggle: $("howto-toggle"), howto: $("howto"), note: $("file-note"),
    console: $("console"), clear: $("console-clear"), isolation: $("isolation-note"),
    apiMenu: $("api-menu"), apiList: $("api-list"), apiDoc: $("api-doc"),
  };
  const files = new Map(); // path -> {path, kind, sha256, shipped, stale, unlocked, title, about}
  const current = new Map(); // path -> the text as edited (or shipped)
  let target = "scripts/generate.py"; // the script Run runs
  let storageError = null;
  let model = null; // {name, config, layout, uses_f16} of the loaded model
  let promptTokens = null; // {text, count}
  let apiDocs = null; // the API menu's entries (worker.py's api_docs): [{name, call, doc, ...}]
  let apiShown = null; // the name of the entry #api-doc shows

  const editor = createEditor($("editor"), {
    onChange: changed,
    onRun: () => onRun(),
    onReadOnlyKey: () => showNote(),
  });

  // ------------------------------------------------------------ files

  const ready = (async () => {
    const resp = await fetch("code/index.json");
    if (!resp.ok) throw new Error(`code/index.json: HTTP ${resp.status}`);
    const index = (await resp.json()).files;
    const texts = await Promise.all(index.map(async (f) => {
      const r = await fetch(`code/${f.path}`);
      if (!r.ok) throw new Error(`code/${f.path}: HTTP ${r.status}`);
      return r.text();
    }));
    index.forEach((f, i) => {
      const name = f.path.split("/").pop();
      const [title, about] = describe(texts[i], name.replace(/\.py$/, "").replace(/_/g, " "));
      const entry = { ...f, shipped: texts[i], stale: null, unlocked: false, title, about };
      const saved = load(STORE + f.path);
      current.set(f.path, texts[i]);
      if (saved && typeof saved.text === "string") {
        if (saved.base === f.sha256) {
          current.set(f.path, saved.text);
          entry.unlocked = true;
        } else {
          entry.stale = saved; // made on another shipped version: the user decides
        }
      }
      files.set(f.path, entry);
    });
    fillFileList();
    fillExamples();
    const ui0 = load(UI_STORE) || {};
    if (files.has(ui0.target) && isScript(files.get(ui0.target))) target = ui0.target;
    open(files.has(ui0.open) ? ui0.open : target);
  })();
  ready.catch((e) => {
    ui.note.hidden = false;
    ui.note.textContent = `The code could not be loaded: ${e.message}. Run python build.py again.`;
  });

  const isScript = (f) => f.kind === "script" || f.kind === "example";
  const isEdited = (path) => current.get(path) !== files.get(path).shipped;
  const readOnly = (f) => !isScript(f) && !f.unlocked;

  function sortKey(f) {
    const order = f.kind === "module" ? MODULE_ORDER : f.kind === "shader" ? SHADER_ORDER : [];
    const i = order.indexOf(f.path);
    return [i < 0 ? order.length : i, f.path];
  }

  function sorted(kind) {
    return [...files.values()].filter((f) => f.kind === kind).sort((a, b) => {
      const [ia, pa] = sortKey(a);
      const [ib, pb] = sortKey(b);
      return ia - ib || (pa < pb ? -1 : pa > pb ? 1 : 0);
    });
  }

  // What runs the shipped scripts: Generate runs generate.py, each chat reply runs chat.py.
  const SCRIPT_BUTTONS = { "scripts/generate.py": "the Generate button",
    "scripts/chat.py": "the chat's Send button" };

  function optionLabel(f) {
    const runBy = SCRIPT_BUTTONS[f.path] || "a script";
    let label = f.kind === "script" ? `${f.path.split("/").pop()} (${runBy})`
      : f.kind === "example" ? `${f.title} (${f.path})` : f.path;
    if (isEdited(f.path)) label += " \u2022 edited";
    else if (f.stale) label += " \u2022 old edit kept";
    return label;
  }

  function fillFileList() {
    const groups = [["script", "Scripts"], ["example", "Examples"],
      ["module", "Package: webgpt (Python)"], ["shader", "Shaders (WGSL)"]];
    ui.file.replaceChildren(...groups.map(([kind, label]) => {
      const g = el("optgroup", { label });
      g.append(...sorted(kind).map((f) => el("option", { value: f.path }, optionLabel(f))));
      return g;
    }));
    ui.file.value = editor.path || target;
  }

  function refreshLabels() {
    for (const o of ui.file.querySelectorAll("option")) {
      o.textContent = optionLabel(files.get(o.value));
    }
  }

  function fillExamples() {
    ui.examplesList.replaceChildren(...sorted("example").map((f) => el("button", {
      type: "button", role: "menuitem", class: "menu-item", dataset: { path: f.path },
      onclick: () => {
        ui.examplesMenu.open = false;
        open(f.path);
      },
    }, el("strong", {}, f.title), el("span", { class: "muted" }, f.about))));
  }

  function open(path, line) {
    const f = files.get(path);
    if (!f) return;
    editor.open(path, current.get(path), {
      language: path.endsWith(".wgsl") ? "wgsl" : "python", readOnly: readOnly(f),
    });
    if (isScript(f)) target = path;
    ui.file.value = path;
    saveUI();
    update();
    if (line) editor.gotoLine(line);
    if (!ui.howto.hidden) drawHowto(); // its line numbers follow edits
  }

  function saveUI() {
    try {
      localStorage.setItem(UI_STORE, JSON.stringify({ open: editor.path, target }));
    } catch (e) { /* storage full or off: only the view is not remembered */ }
  }

  function changed(path, text) {
    const f = files.get(path);
    current.set(path, text);
    const key = STORE + path;
    try {
      if (text === f.shipped) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify({ base: f.sha256, text }));
      f.stale = null; // the old edit (if any) is replaced by this one
      storageError = null;
    } catch (e) {
      storageError = `This edit is not saved in the browser (${e.name}): download it to keep it.`;
    }
    update();
  }

  function reset(path) {
    const f = files.get(path);
    try { localStorage.removeItem(STORE + path); } catch (e) { /* nothing kept */ }
    f.stale = null;
    if (current.get(path) !== f.shipped) editor.replace(path, f.shipped); // -> changed()
    current.set(path, f.shipped);
    update();
  }

  function useStale(path) {
    const f = files.get(path);
    const text = f.stale.text;
    f.stale = null;
    f.unlocked = true;
    editor.setReadOnly(path, false);
    editor.replace(path, text); // -> changed(): saved on this shipped version from now on
    update();
  }

  function showNote() {
    const path = editor.path;
    const f = files.get(path);
    const parts = [];
    if (storageError) parts.push(storageError);
    if (f.stale) {
      parts.push(el("span", {}, "You edited this file when the site shipped an older version " +
        "of it. The new shipped version is shown; your edit is kept until you choose. "),
      el("button", { type: "button", class: "link", id: "use-old-edit", onclick: () => useStale(path) },
        "Use my old edit"), " \u00b7 ",
      el("button", { type: "button", class: "link", id: "discard-old-edit", onclick: () => reset(path) },
        "Discard it"));
    } else if (readOnly(f)) {
      parts.push(`Read-only: ${f.kind === "shader" ? "a shader" : "a module"} of the package as ` +
        "the page runs it. Press Edit to change it; the change takes effect at the next run.");
    } else if (!isScript(f) && isEdited(path)) {
      parts.push("Edited: the next run (Run or Generate) uses it. Reset puts back the shipped version.");
    }
    ui.note.replaceChildren(...parts.flatMap((p, i) => (i ? [" ", p] : [p])));
    ui.note.hidden = parts.length === 0;
    ui.note.classList.toggle("warn", Boolean(f.stale || storageError));
  }

  function update() {
    const path = editor.path;
    if (!path) return;
    const f = files.get(path);
    ui.editToggle.hidden = isScript(f);
    ui.editToggle.textContent = readOnly(f) ? "Edit" : "Lock";
    ui.editToggle.title = readOnly(f) ? "Make this file editable" : "Make this file read-only again";
    ui.reset.disabled = !isEdited(path) && !f.stale;
    ui.downloadEdits.disabled = ![...files.keys()].some(isEdited);
    ui.target.textContent = `runs ${target.split("/").pop()}`;
    ui.target.title = `Run and Ctrl+Enter run ${target}`;
    ui.run.title = `Run ${target} (Ctrl+Enter in the editor)`;
    refreshLabels();
    showNote();
  }

  ui.file.addEventListener("change", () => open(ui.file.value));
  ui.editToggle.addEventListener("click", () => {
    const f = files.get(editor.path);
    f.unlocked = readOnly(f);
    editor.setReadOnly(f.path, readOnly(f));
    update();
    if (!readOnly(f)) editor.focus();
  });
  ui.reset.addEventListener("click", () => reset(editor.path));
  ui.download.addEventListener("click", () => {
    const path = editor.path;
    save(new Blob([current.get(path)], { type: "text/plain" }), path.split("/").pop());
  });
  ui.downloadEdits.addEventListener("click", () => {
    const edited = [...files.keys()].filter(isEdited).map((p) => ({ name: p, text: current.get(p) }));
    if (edited.length) save(zip(edited), "webgpt-edits.zip");
  });
  ui.run.addEventListener("click", () => onRun());
  ui.stop.addEventListener("click", () => onStop());
  ui.clear.addEventListener("click", () => clearConsole());
  function showHowto(show) {
    ui.howto.hidden = !show;
    ui.howtoToggle.setAttribute("aria-expanded", String(show));
    ui.howtoToggle.classList.toggle("on", show);
    if (show) {
      showApiDoc(null); // one side panel at a time
      drawHowto();
      requestTokens();
    }
  }

  ui.howtoToggle.addEventListener("click", () => showHowto(ui.howto.hidden));
  document.addEventListener("click", (e) => { // close the menus on a click outside them
    for (const menu of [ui.examplesMenu, ui.apiMenu]) {
      if (menu.open && !menu.contains(e.target)) menu.open = false;
    }
  });

  // ------------------------------------------------------------ the API menu

  // The public API (webgpt.load, the model's methods, webgpt.Client and its calls, the
  // parameters, the script's `page`), each shown with its signature and docstring as the
  // worker's Python reads them from the package (worker.py's API): asked for each time the
  // menu opens, so an edited docstring shows after the next run.
  ui.apiMenu.addEventListener("toggle", () => {
    if (!ui.apiMenu.open) return;
    if (!apiDocs) {
      ui.apiList.replaceChildren(el("p", { class: "muted menu-wait" }, "Reading the docstrings\u2026"));
    }
    requestApiDocs();
  });

  function fillApiMenu() {
    ui.apiList.replaceChildren(...apiDocs.map((d) => el("button", {
      type: "button", role: "menuitem", class: "menu-item", dataset: { name: d.name },
      onclick: () => {
        ui.apiMenu.open = false;
        showApiDoc(d.name);
      },
    }, el("strong", {}, d.name), el("span", { class: "muted" }, firstLine(d.doc)))));
  }

  function firstLine(doc) {
    const line = doc.split("\n\n")[0].replace(/\s+/g, " ").trim();
    return line.length > 110 ? `${line.slice(0, 109)}\u2026` : line;
  }

  /** A docstring as blocks: its prose (unindented lines, wrapped at 100 columns in the
   * source) as paragraphs that flow to the panel's width; indented lines (code, lists) as they
   * are, dedented. */
  function docBlocks(doc) {
    const out = [];
    for (const block of doc.split(/\n\s*\n/)) {
      let run = [];
      const flush = () => {
        if (!run.length) return;
        if (/^\s/.test(run[0])) {
          const indent = Math.min(...run.map((l) => /^\s*/.exec(l)[0].length));
          out.push(el("pre", {}, run.map((l) => l.slice(indent)).join("\n")));
        } else {
          out.push(el("p", {}, run.join(" ")));
        }
        run = [];
      };
      for (const line of block.split("\n")) {
        if (run.length && /^\s/.test(line) !== /^\s/.test(run[0])) flush();
        run.push(line);
      }
      flush();
    }
    return out;
  }

  /** Show the entry `name` in #api-doc (null: close it). */
  function showApiDoc(name) {
    const d = name && apiDocs && apiDocs.find((x) => x.name === name);
    apiShown = d ? name : null;
    ui.apiDoc.hidden = !d;
    if (!d) return;
    if (!ui.howto.hidden) showHowto(false);
    const head = el("div", { class: "api-head" }, el("h3", {}, d.name),
      el("button", { type: "button", class: "link", id: "api-doc-close",
        onclick: () => showApiDoc(null) }, "Close"));
    const parts = [head];
    if (d.kind) parts.push(el("p", { class: "muted api-kind" }, d.kind));
    if (d.call) parts.push(el("pre", { class: "api-call" }, `${d.name}${d.call}`));
    parts.push(el("div", { class: "api-text" }, ...docBlocks(d.doc)));
    if (d.path && files.has(d.path)) {
      parts.push(el("button", { type: "button", class: "link api-source",
        onclick: () => open(d.path, d.line) }, `Source: ${d.path}, line ${d.line}`));
    }
    ui.apiDoc.replaceChildren(...parts);
    ui.apiDoc.scrollTop = 0;
  }

  // ------------------------------------------------------------ how it works

  function lineOf(path, anchors) {
    const text = current.get(path);
    if (text === undefined) return null;
    for (const a of anchors) {
      const i = text.indexOf(a);
      if (i >= 0) return text.slice(0, i).split("\n").length;
    }
    return null;
  }

  function drawHowto() {
    const scroll = ui.howto.scrollTop;
    renderHowto(ui.howto, {
      model, promptTokens,
      has: (path) => files.has(path),
      lineOf,
      open: (path, line) => open(path, line),
    });
    ui.howto.scrollTop = scroll;
  }

  // ------------------------------------------------------------ console

  let chars = 0;
  // The console follows new output unless the user scrolled up. Scrolling waits for the next
  // frame, so a flood of output costs one layout per frame, not one per message.
  let follow = true;
  let scrollQueued = false;
  ui.console.addEventListener("scroll", () => {
    const c = ui.console;
    follow = c.scrollHeight - c.scrollTop - c.clientHeight < 40;
    for (const card of c.querySelectorAll(".tok-card:not([hidden])")) place(card); // page.logprobs
  });

  function scroll() {
    if (scrollQueued || !follow) return;
    scrollQueued = true;
    requestAnimationFrame(() => {
      scrollQueued = false;
      if (follow) ui.console.scrollTop = ui.console.scrollHeight;
    });
  }

  function add(node, size) {
    ui.console.append(node);
    chars += size;
    trim();
    scroll();
  }

  function trim() {
    let dropped = false;
    while (chars > CONSOLE_LIMIT && ui.console.childNodes.length > 1) {
      const first = ui.console.firstChild;
      if (first.classList && first.classList.contains("dropped")) {
        first.remove();
        continue;
      }
      chars -= (first.textContent || "").length;
      first.remove();
      dropped = true;
    }
    if (dropped) {
      ui.console.prepend(el("div", { class: "sys dropped" }, "\u2026 (earlier output dropped)"));
    }
  }

  function write(stream, text) {
    if (stream === "tb") return traceback(text);
    if (stream === "sys") return add(el("div", { class: "sys" }, text), text.length);
    // Output streams into the last element of its stream while that is not too long.
    const last = ui.console.lastElementChild;
    if (last && last.dataset.stream === stream && last.firstChild &&
        last.firstChild.length + text.length <= CHUNK) {
      last.firstChild.appendData(text);
      chars += text.length;
      trim();
      scroll();
      return;
    }
    add(el("span", { class: stream, dataset: { stream } }, text), text.length);
  }

  /** A traceback, its "File ..., line N" lines linked to the file in the editor. */
  function traceback(text) {
    const pre = el("div", { class: "tb" });
    for (const line of text.replace(/\n$/, "").split("\n")) {
      const m = /^\s*File "([^"]+)", line (\d+)/.exec(line);
      if (m && files.has(m[1])) {
        pre.append(el("a", {
          href: "#", class: "src", dataset: { path: m[1], line: m[2] },
          onclick: (e) => { e.preventDefault(); open(m[1], Number(m[2])); },
        }, line), "\n");
      } else {
        pre.append(line + "\n");
      }
    }
    add(pre, text.length);
  }

  function chart({ title, labels, values }) {
    const NS = "http://www.w3.org/2000/svg";
    const svgEl = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      if (text !== undefined) e.textContent = text;
      return e;
    };
    const rowH = 22, labelW = 120, barW = 360, valueW = 70;
    const max = Math.max(...values.map((v) => (Number.isFinite(v) ? v : 0)), 1e-12);
    const asPercent = values.every((v) => v >= 0 && v <= 1);
    const svg = svgEl("svg", {
      class: "chart", width: labelW + barW + valueW, height: rowH * labels.length + 4,
      viewBox: `0 0 ${labelW + barW + valueW} ${rowH * labels.length + 4}`, role: "img",
      "aria-label": title || "bar chart",
    });
    labels.forEach((label, i) => {
      const y = i * rowH + 2;
      const v = Number.isFinite(values[i]) ? Math.max(values[i], 0) : 0;
      const w = Math.max(1, (v / max) * barW);
      const g = svgEl("g", { class: "bar" });
      g.append(
        svgEl("text", { x: labelW - 8, y: y + rowH * 0.68, "text-anchor": "end", class: "label" },
          label.length > 18 ? label.slice(0, 17) + "\u2026" : label),
        svgEl("rect", { x: labelW, y: y + 3, width: w, height: rowH - 6, rx: 3 }),
        svgEl("text", { x: labelW + w + 6, y: y + rowH * 0.68, class: "value" },
          asPercent ? `${(v * 100).toFixed(v < 0.001 ? 3 : 1)}%` : String(+v.toPrecision(4))),
        svgEl("title", {}, `${label}: ${values[i]}`),
      );
      svg.append(g);
    });
    add(el("figure", { class: "chart-figure" }, ...(title ? [el("figcaption", {}, title)] : []), svg),
      labels.join("").length);
  }

  // A token's text as shown: line ends and tabs marked, other control characters as \x..
  // escapes (they would be invisible), an empty token as ∅.
  const escaped = (code) => `\\x${code.toString(16).padStart(2, "0")}`;
  const shownText = (text) => text.replace(/\n/g, "\u21b5\n").replace(/\t/g, "\u2192\t")
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => escaped(c.charCodeAt(0))) || "\u2205";
  // ... and on one line, in quotes (a token card's rows).
  const quoted = (text) => `\u201c${shownText(text).replace(/[\n\t]/g, "")}\u201d`;

  function tokens({ title, pieces }) {
    if (pieces.some((p) => p.length > 2)) return tokenProbs(title, pieces);
    const box = el("div", { class: "tokens" });
    pieces.forEach(([text, id], i) => {
      const span = el("span", { class: `tok c${i % 6}`, dataset: { id: String(id) } },
        shownText(text));
      if (id !== null) span.title = `token ${id}: ${JSON.stringify(text)}`;
      box.append(span);
    });
    add(el("figure", { class: "tokens-figure" }, ...(title ? [el("figcaption", {}, title)] : []), box),
      pieces.length);
  }

  // page.logprobs: each token coloured by its probability (five bands: classes prob0 to prob4),
  // its top alternatives in a card while it is hovered or focused. One card per figure, outside
  // the text (which stays the tokens' text alone), placed beside the token with fixed
  // coordinates (so the console's scrolling box does not clip it).
  const PROB_BANDS = [0.9, 0.6, 0.3, 0.1]; // prob4 from 0.9 up, ... prob0 below 0.1
  const band = (p) => 4 - PROB_BANDS.filter((b) => p < b).length;
  const percent = (p) => (p >= 0.1 ? `${(p * 100).toFixed(0)}%`
    : p >= 0.001 ? `${(p * 100).toFixed(1)}%` : "<0.1%");

  function bar(p) {
    const fill = el("span", { class: `prob${band(p)}` });
    fill.style.width = `${Math.max(2, p * 100).toFixed(1)}%`;
    return fill;
  }

  const cards = new WeakMap(); // a token card -> the token it is for

  /** Put a token's card under its token (above it near the window's bottom); hide it once
   * the token is neither hovered nor focused (the console scrolled it away). */
  function place(card) {
    const span = cards.get(card);
    if (!span || !span.matches(":hover, :focus")) {
      card.hidden = true;
      return;
    }
    const r = span.getBoundingClientRect();
    const below = r.bottom + 4 + card.offsetHeight < innerHeight;
    card.style.left = `${Math.max(4, Math.min(r.left, innerWidth - card.offsetWidth - 4))}px`;
    card.style.top = `${below ? r.bottom + 4 : Math.max(4, r.top - card.offsetHeight - 4)}px`;
  }

  function tokenProbs(title, pieces) {
    const box = el("div", { class: "tokens probs" });
    const card = el("div", { class: "tok-card", role: "tooltip", hidden: "" });
    const hide = () => { card.hidden = true; };
    pieces.forEach(([text, , logprob, top], i) => {
      const p = Math.exp(logprob);
      const span = el("span", {
        class: `tok prob${band(p)}`, tabindex: "0",
        dataset: { p: p.toPrecision(4), logprob: String(logprob) },
        "aria-label": `${quoted(text)}: ${percent(p)}`,
      }, shownText(text));
      const show = () => {
        // The token itself among the alternatives: the same text and log-prob (two tokens can
        // show the same text: partial UTF-8 bytes are each "\ufffd" in the completions form).
        const mine = (top || []).findIndex(([alt, lp]) => alt === text &&
          Math.abs(lp - logprob) <= 1e-6 * Math.max(1, Math.abs(logprob)));
        const rows = (top || []).map(([alt, lp], j) => {
          const q = Math.exp(lp);
          return el("div", { class: `alt${j === mine ? " chosen" : ""}` },
            el("span", { class: "alt-text" }, quoted(alt)),
            el("span", { class: "alt-bar" }, bar(q)),
            el("span", { class: "alt-p" }, percent(q)));
        });
        const head = `token ${i + 1}: ${quoted(text)}, ${percent(p)} ` +
          `(logprob ${logprob.toFixed(3)})`;
        const sub = rows.length ? `the ${rows.length} likeliest at this step:`
          : "no alternatives asked for (top_logprobs)";
        card.replaceChildren(el("div", { class: "card-head" }, head),
          el("div", { class: "card-sub muted" }, sub), ...rows);
        cards.set(card, span);
        card.hidden = false;
        place(card);
      };
      span.addEventListener("mouseenter", show);
      span.addEventListener("focus", show);
      span.addEventListener("mouseleave", hide);
      span.addEventListener("blur", hide);
      box.append(span);
    });
    const legend = el("span", { class: "prob-legend" }, ...["<10%", "10\u201330%", "30\u201360%",
      "60\u201390%", "\u226590%"].map((label, b) => el("span", { class: `tok prob${b}` }, label)));
    add(el("figure", { class: "tokens-figure" },
      el("figcaption", {}, ...(title ? [title, " "] : []), legend), box, card), pieces.length);
  }

  function clearConsole() {
    ui.console.replaceChildren();
    chars = 0;
    follow = true;
  }

  const console_ = {
    begin(label) {
      ui.console.dataset.status = "running";
      add(el("div", { class: "sys run-start" }, `\u25b6 ${label}`), label.length);
    },
    write, chart, tokens,
    end(status, seconds, error) {
      const s = Number.isFinite(seconds) ? ` in ${seconds.toFixed(2)} s` : "";
      const text = status === "ok" ? `\u2713 Done${s}.`
        : status === "stopped" ? `\u25a0 Stopped${s}.` : `\u2717 Failed${s}: ${error || "error"}.`;
      for (const b of ui.console.querySelectorAll(".confirm button")) b.disabled = true;
      add(el("div", { class: `sys end ${status}` }, text), text.length);
      ui.console.dataset.status = status;
      ui.console.dataset.runs = String(Number(ui.console.dataset.runs || 0) + 1);
    },
    /** page.confirm: `title` and `text` (code a tool would run) with Run and Don't run;
     * answer(true or false) once, then both buttons are off (and at the run's end). */
    confirm({ title, text }, answer) {
      const decide = (yes) => {
        for (const b of box.querySelectorAll("button")) b.disabled = true;
        box.dataset.answer = yes ? "run" : "declined";
        answer(yes);
      };
      const box = el("div", { class: "confirm" }, el("div", { class: "confirm-title" }, title),
        el("pre", { class: "confirm-text" }, text),
        el("button", { type: "button", class: "confirm-run", onclick: () => decide(true) }, "Run"),
        el("button", { type: "button", class: "confirm-no", onclick: () => decide(false) },
          "Don\u2019t run"));
      add(box, title.length + text.length);
    },
    /** A line with a button, e.g. to restart Python. */
    action(text, label, fn) {
      const b = el("button", { type: "button", class: "link", onclick: () => { b.disabled = true; fn(); } }, label);
      add(el("div", { class: "sys warn" }, text + " ", b), text.length);
    },
    clear: clearConsole,
  };

  // ------------------------------------------------------------ the API for main.js

  return {
    ready,
    console: console_,
    get target() { return target; },

    /** What to send the worker to run `path` (default: the current script). */
    runRequest(path = target) {
      const edits = {};
      for (const f of files.values()) {
        if (!isScript(f) && isEdited(f.path)) edits[f.path] = current.get(f.path);
      }
      return { code: current.get(path), filename: path, files: edits };
    },

    setRunState({ canRun, running }) {
      ui.run.disabled = !canRun || running;
      ui.stop.disabled = !running;
    },

    setIsolation(isolated) {
      ui.isolation.hidden = isolated;
      ui.isolation.textContent = isolated ? "" : "Not cross-origin isolated: Stop ends " +
        "generation between tokens but cannot interrupt Python that never awaits (see the README).";
    },

    setModel(info) {
      model = info;
      if (!ui.howto.hidden) drawHowto();
    },

    /** The worker's answer to "api-docs": the API menu's entries. */
    setApiDocs(entries) {
      apiDocs = entries;
      fillApiMenu();
      if (apiShown) showApiDoc(apiShown); // the text as the package has it now
    },

    setPromptTokens(text, count) {
      promptTokens = { text, count };
      if (!ui.howto.hidden) drawHowto();
    },

    howtoVisible: () => !ui.howto.hidden,
    open,
    editor,
  };
}

// ---------------------------------------------------------------- downloads

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A .zip of text files (stored, not compressed: they are small). */
function zip(entries) {
  const enc = new TextEncoder();
  const now = new Date();
  const time = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
  const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const { name, text } of entries) {
    const nameBytes = enc.encode(name);
    const data = enc.encode(text);
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [8, 0, 2], [10, time, 2], [12, date, 2],
      [14, crc, 4], [18, data.length, 4], [22, data.length, 4], [26, nameBytes.length, 2],
      [28, 0, 2]].forEach(([at, v, n]) => (n === 4 ? local.setUint32(at, v, true) : local.setUint16(at, v, true)));
    const dir = new DataView(new ArrayBuffer(46));
    [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [10, 0, 2], [12, time, 2],
      [14, date, 2], [16, crc, 4], [20, data.length, 4], [24, data.length, 4],
      [28, nameBytes.length, 2], [30, 0, 2], [32, 0, 2], [34, 0, 2], [36, 0, 2], [38, 0, 4],
      [42, offset, 4]].forEach(([at, v, n]) => (n === 4 ? dir.setUint32(at, v, true) : dir.setUint16(at, v, true)));
    parts.push(local, nameBytes, data);
    central.push(dir, nameBytes);
    offset += 30 + nameBytes.length + data.length;
  }
  const size = central.reduce((s, p) => s + p.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  [[0, 0x06054b50, 4], [4, 0, 2], [6, 0, 2], [8, entries.length, 2], [10, entries.length, 2],
    [12, size, 4], [16, offset, 4], [20, 0, 2]].forEach(([at, v, n]) => (n === 4 ? end.setUint32(at, v, true) : end.setUint16(at, v, true)));
  return new Blob([...parts, ...central, end], { type: "application/zip" });
}
