// The chat view: a conversation with an instruct model (one whose tokenizer has a chat
// template), beside the generator. main.js owns the worker and runs each reply as it runs
// Generate: the editor's scripts/chat.py (as edited), with the conversation in
// params.messages; this file keeps the conversation, draws it and hands main.js the messages.
//
// The DOM: #chat-log holds one element per message, class `user` or `assistant` (its text in
// .content, the reply's stats in .chat-stats, notes such as "old turns dropped" in .chat-note);
// #chat-input (Enter sends, Shift+Enter is a new line), #send, #chat-stop, #regenerate,
// #new-chat, #chat-system (the system prompt). Everything a user or the model wrote reaches
// the DOM as text nodes, never as HTML.
//
// The conversation is kept in this browser (localStorage, one entry per model) after each
// message and each reply, so a reload shows it again; New chat clears it. The root element's
// data-mode is "generate" or "chat" (?mode=chat opens the chat); CSS shows one view or the other.

const STORE = "webgpt-py/chat/"; // + the model's name
const $ = (id) => document.getElementById(id);
const root = document.documentElement;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(x, digits) {
  return Number.isFinite(x) ? x.toFixed(digits) : "–";
}

/**
 * hooks.send(messages) starts a reply to `messages` ([{role, content}], the system prompt
 * first) and returns whether it started; hooks.stop() stops it. main.js then calls piece(),
 * note() and done() as the worker reports, and update() whenever the page's state changes.
 */
export function createChat(hooks) {
  const ui = {
    modeGenerate: $("mode-generate"), modeChat: $("mode-chat"), view: $("chat"),
    unavailable: $("chat-unavailable"), body: $("chat-body"), system: $("chat-system"),
    log: $("chat-log"), input: $("chat-input"), send: $("send"), stop: $("chat-stop"),
    regenerate: $("regenerate"), newChat: $("new-chat"),
  };
  let model = null; // the loaded model's name
  let hasTemplate = false;
  let conv = { system: "", messages: [] }; // messages: {role, content, stats?, stopped?, notes?}
  let current = null; // the reply being written: {msg, el, undo}
  let idle = false; // the page can start a reply now (a model is in, nothing runs)

  // ---------------------------------------------------------------- mode

  function setMode(mode) {
    root.dataset.mode = mode === "chat" ? "chat" : "generate";
    ui.modeGenerate.setAttribute("aria-selected", String(mode !== "chat"));
    ui.modeChat.setAttribute("aria-selected", String(mode === "chat"));
    const url = new URL(location.href);
    if (mode === "chat") url.searchParams.set("mode", "chat");
    else url.searchParams.delete("mode");
    if (url.href !== location.href) history.replaceState(history.state, "", url.href);
  }

  // ---------------------------------------------------------------- storage

  function load(name) {
    try {
      const v = JSON.parse(localStorage.getItem(STORE + name) || "null");
      if (v && Array.isArray(v.messages)) {
        return {
          system: typeof v.system === "string" ? v.system : "",
          messages: v.messages.filter((m) => m && (m.role === "user" || m.role === "assistant")
            && typeof m.content === "string"),
        };
      }
    } catch (e) {
      // unreadable: start afresh
    }
    return { system: "", messages: [] };
  }

  function save() {
    if (model === null) return;
    const messages = conv.messages.filter((m) => !current || m !== current.msg);
    try {
      if (messages.length === 0 && !conv.system) localStorage.removeItem(STORE + model);
      else localStorage.setItem(STORE + model, JSON.stringify({ system: conv.system, messages }));
    } catch (e) {
      // storage full or off: the conversation stays on the page only
    }
  }

  // ---------------------------------------------------------------- drawing

  function statsOf(msg) {
    const s = msg.stats;
    const items = [];
    if (s) {
      if (Number.isFinite(s.prefill_tokens)) {
        items.push(["prefill tokens", String(s.prefill_tokens)]);
      }
      if (Number.isFinite(s.prefill_s)) items.push(["prefill", `${fmt(s.prefill_s * 1000, 0)} ms`]);
      if (s.decode_tokens > 0 && s.decode_s > 0) {
        items.push(["ms/token", fmt((s.decode_s / s.decode_tokens) * 1000, 1)]);
      }
      if (Number.isFinite(s.tokens)) items.push(["tokens", String(s.tokens)]);
    }
    if (msg.stopped) items.push(["stopped", "yes"]);
    return items.map(([k, v]) => {
      const span = el("span", "stat", `${k}: ${v}`);
      span.dataset.key = k;
      return span;
    });
  }

  function messageEl(msg) {
    const box = el("div", `message ${msg.role}`);
    box.append(el("div", "role", msg.role === "user" ? "You" : "Assistant"));
    box.append(el("div", "content", msg.content));
    box.append(el("div", "chat-stats"));
    box.lastChild.append(...statsOf(msg));
    for (const n of msg.notes || []) box.append(el("p", "chat-note", n));
    if (msg.stopped) box.dataset.stopped = "1";
    if (current && msg === current.msg) box.classList.add("pending");
    return box;
  }

  function render() {
    ui.system.value = conv.system;
    ui.log.replaceChildren(...conv.messages.map((m) => {
      const e = messageEl(m);
      if (current && m === current.msg) current.el = e;
      return e;
    }));
    ui.log.scrollTop = ui.log.scrollHeight;
    update();
  }

  function nearBottom() {
    return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  }

  // ---------------------------------------------------------------- replies

  function canReply() {
    return idle && hasTemplate && current === null;
  }

  function forModel() {
    const out = conv.system.trim() ? [{ role: "system", content: conv.system }] : [];
    for (const m of conv.messages) {
      if (current && m === current.msg) break;
      out.push({ role: m.role, content: m.content });
    }
    return out;
  }

  function reply(undo) {
    const msg = { role: "assistant", content: "" };
    conv.messages.push(msg);
    current = { msg, el: null, undo };
    save();
    render();
    if (!hooks.send(forModel())) { // the page was busy after all
      conv.messages.pop();
      current = null;
      undo();
      render();
    }
  }

  function send() {
    const text = ui.input.value;
    if (!text.trim() || !canReply()) return;
    const user = { role: "user", content: text };
    conv.messages.push(user);
    ui.input.value = "";
    reply(() => { // a reply that could not start: the message goes back into the input
      conv.messages.splice(conv.messages.indexOf(user), 1);
      if (!ui.input.value) ui.input.value = text;
      save();
    });
  }

  function regenerate() {
    if (!canReply() || !conv.messages.some((m) => m.role === "user")) return;
    const last = conv.messages[conv.messages.length - 1];
    let removed = null;
    if (last.role === "assistant") removed = conv.messages.pop();
    reply(() => {
      if (removed) conv.messages.push(removed);
      save();
    });
  }

  function newChat() {
    if (current !== null) return;
    conv.messages = [];
    save();
    render();
    ui.input.focus();
  }

  /** A piece of the reply in flight. */
  function piece(text) {
    if (!current) return;
    current.msg.content += text;
    const stick = nearBottom();
    current.el.querySelector(".content").append(text);
    if (stick) ui.log.scrollTop = ui.log.scrollHeight;
  }

  /** page.note(text) during a reply: shown under it (and kept with it). */
  function note(text) {
    if (!current) return;
    (current.msg.notes ||= []).push(String(text));
    current.el.append(el("p", "chat-note", String(text)));
  }

  /** The worker's run-done for a reply: its stats, or an error (said by main.js in #error). */
  function done(m) {
    if (!current) return;
    const { msg, undo } = current;
    current = null;
    if ((m.status === "error" || m.bad_params || m.lost) && msg.content === "") {
      conv.messages.splice(conv.messages.indexOf(msg), 1); // nothing came: as before the try
      undo();
    } else {
      if (m.stats) msg.stats = m.stats;
      if (m.status === "stopped" || (m.stats && m.stats.stopped)) msg.stopped = true;
      if (m.status === "error") {
        (msg.notes ||= []).push(`The reply ended with an error: ${m.error}`);
      }
    }
    save();
    render();
  }

  // ---------------------------------------------------------------- state

  /** The page's state changed: {ready: a model is loaded and nothing runs, replying}. */
  function update(page) {
    if (page) idle = page.ready;
    const replying = current !== null;
    ui.unavailable.hidden = model === null || hasTemplate;
    ui.body.hidden = model !== null && !hasTemplate;
    ui.send.disabled = !canReply();
    ui.input.disabled = model !== null && !hasTemplate;
    ui.stop.disabled = !replying;
    ui.regenerate.disabled = !canReply() || !conv.messages.some((x) => x.role === "user");
    ui.newChat.disabled = replying || conv.messages.length === 0;
  }

  /** The model the worker now holds, and whether its tokenizer has a chat template. */
  function setModel(name, template) {
    if (current !== null) return;
    model = name;
    hasTemplate = Boolean(template);
    conv = load(name);
    ui.unavailable.replaceChildren(
      el("span", "", `${name} has no chat template: it is not an instruct model, so it ` +
        "continues text rather than answering messages. "),
    );
    const open = el("button", "link", "Continue text in Generate");
    open.type = "button";
    open.addEventListener("click", () => setMode("generate"));
    ui.unavailable.append(open);
    render();
  }

  // ---------------------------------------------------------------- events

  ui.modeGenerate.addEventListener("click", () => setMode("generate"));
  ui.modeChat.addEventListener("click", () => setMode("chat"));
  ui.send.addEventListener("click", send);
  ui.stop.addEventListener("click", () => { if (current) hooks.stop(); });
  ui.regenerate.addEventListener("click", regenerate);
  ui.newChat.addEventListener("click", newChat);
  ui.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  ui.system.addEventListener("input", () => {
    conv.system = ui.system.value;
    save();
  });

  setMode(new URLSearchParams(location.search).get("mode") === "chat" ? "chat" : "generate");
  update();

  return {
    get active() { return root.dataset.mode === "chat"; },
    get replying() { return current !== null; },
    setMode, setModel, update, piece, note, done,
  };
}
