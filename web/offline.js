// Offline use, on the page's side: it registers the service worker (sw.js keeps the page's
// own files), reads the model index through the model store (store.js: the server's, or the
// copy kept on this device when the server is gone), and fills the "Offline" panel: every model
// kept on this device (built in, or from the hub) with its size and source and a Delete button,
// the storage the site uses and has free, and whether the browser granted persistent storage.
// All text goes into the page as text.
//
// The service worker is registered once a model is in (start()), so that saving the page's
// files does not compete with the first boot (at once when the page came from them). That
// first visit runs from the server; the next one runs from the saved files. When a new build
// is on the server, its service worker installs beside the old one and the panel offers to
// reload into it.

import { TO_SERVICE_WORKER, post } from "./protocol.mjs";
import * as store from "./store.js";

const $ = (id) => document.getElementById(id);
const { mb } = store;

/** `loadHub(id)`: load a hub model (the panel's Load button of a kept one). */
export function createOffline({ loadHub = () => {} } = {}) {
  const ui = {
    status: $("offline-status"), update: $("offline-update"), list: $("cached-models"),
    storage: $("storage-used"), persisted: $("storage-persisted"), note: $("offline-note"),
  };
  const sw = "serviceWorker" in navigator && globalThis.isSecureContext === true;
  let index = { models: [] };
  let offline = false;
  let models = []; // store.listModels()
  let started = false;
  let reloading = false;
  let refreshing = null;
  let again = false;
  let persistAsked = false;
  const noRoom = new Set(); // models the store had no room for: not kept

  function say(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
    ui.update.hidden = state !== "update";
  }

  function shellState() {
    if (!sw || !store.available) {
      return say("unsupported", "Not available here: keeping the page on this device needs " +
        "https, or http://localhost.");
    }
    if (offline) {
      return say("offline", "The server cannot be reached: the page runs from its copy on " +
        "this device.");
    }
    if (!started) return say("pending", "Once a model is in, the page's files are saved on " +
      "this device, so that it opens without the server.");
    return undefined;
  }

  /** The model index (see store.loadIndex), then the store tidied (store.prepare; `current`:
   * the key of the hub model this page opens, whose files stay); also fills the panel. */
  async function load(current = null) {
    ({ index, offline } = await store.loadIndex());
    shellState();
    try {
      await store.prepare(index, offline, current);
    } catch (e) {
      console.warn(`The model store could not be tidied: ${e}`);
    }
    await refresh();
    return { index, offline };
  }

  /** Redraw the list of kept models and the storage lines (one redraw at a time). */
  async function refresh() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      do {
        again = false;
        await redraw();
      } while (again);
    })();
    try {
      await refreshing;
    } finally {
      refreshing = null;
    }
    return undefined;
  }

  function source(s) {
    if (s.source !== "hub") return "built in";
    const at = s.revision && s.revision !== "main" ? ` at ${s.revision}` : "";
    return `from the hub${at}${s.commit ? `, commit ${s.commit.slice(0, 7)}` : ""}`;
  }

  async function redraw() {
    try {
      models = await store.listModels();
    } catch (e) {
      models = [];
    }
    const kept = models.filter((s) => s.kept);
    ui.list.replaceChildren(...kept.map((s) => {
      const li = document.createElement("li");
      li.dataset.model = s.name;
      li.dataset.source = s.source;
      li.dataset.bytes = String(s.stored);
      li.dataset.complete = s.complete ? "1" : "0";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = s.name;
      const from = document.createElement("span");
      from.className = "source muted";
      from.textContent = source(s);
      const size = document.createElement("span");
      size.className = "size muted";
      size.textContent = s.complete ? mb(s.stored)
        : `${mb(s.stored)} of ${mb(s.bytes)} (incomplete)`;
      const buttons = [];
      if (s.source === "hub") {
        const open = document.createElement("button");
        open.type = "button";
        open.className = "secondary load";
        open.textContent = "Load";
        open.setAttribute("aria-label", `Load ${s.name}`);
        open.addEventListener("click", () => loadHub(s.name));
        buttons.push(open);
      }
      const del = document.createElement("button");
      del.type = "button";
      del.className = "secondary delete";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete ${s.name} from this device`);
      del.addEventListener("click", async () => {
        del.disabled = true;
        try {
          const r = await store.deleteModel(s.key);
          if (r.inUse) {
            note(`${s.name} is being downloaded or loaded in another tab (or in this one): ` +
              "delete it once that load is done.");
          }
        } catch (e) {
          note(`${s.name} could not be deleted: ${e}`);
        }
        await refresh();
      });
      buttons.push(del);
      li.append(name, from, size, ...buttons);
      return li;
    }));
    if (kept.length === 0) {
      const li = document.createElement("li");
      li.className = "muted empty";
      li.textContent = store.available ? "No model is kept on this device yet: the site's " +
        "models are kept as they load; one from the hub when you keep it."
        : "Models are not kept on this device here.";
      ui.list.append(li);
    }
    const use = await store.storageInfo();
    if (use) {
      ui.storage.dataset.usage = String(use.usage);
      ui.storage.dataset.quota = String(use.quota);
      ui.storage.textContent = `Storage used by this site: ${mb(use.usage)}; free: ` +
        `${mb(Math.max(0, use.quota - use.usage))} (of ${mb(use.quota)} the browser allows it).`;
      ui.persisted.dataset.persisted = use.persisted ? "1" : "0";
      ui.persisted.textContent = use.persisted
        ? "Persistent storage: granted. The browser keeps these models until you delete them."
        : persistAsked
          ? "Persistent storage: not granted. The browser may delete these models when the " +
            "disk runs short of space."
          : "Persistent storage: not asked for yet (the page asks once a model is kept).";
    } else {
      ui.storage.textContent = "";
      ui.persisted.textContent = "";
    }
  }

  function note(text) {
    ui.note.textContent = text;
    ui.note.hidden = !text;
  }

  /** A model starts loading (its files are stored as it loads): listed, not kept yet. */
  async function loading(entry) {
    noRoom.delete(entry.name); // said again by the worker if there is still no room
    try {
      await store.loading(entry);
    } catch (e) {
      console.warn(`${entry.name} could not be listed: ${e}`);
    }
  }

  /** Keep a model on this device, and ask the browser to keep the site's storage. */
  async function keep(entry) {
    if (noRoom.has(entry.name)) return;
    try {
      await store.keep(entry);
      persistAsked = true;
      await store.askPersist();
    } catch (e) {
      console.warn(`${entry.name} could not be kept: ${e}`);
    }
    await refresh();
  }

  /** Whether every file of model `name` (the site's, or a hub model's name) is on this device. */
  function isSaved(name) {
    const s = models.find((x) => x.name === name && x.kept);
    return Boolean(s && s.complete);
  }

  /** Whether every file of a model being loaded is on this device (kept or not). */
  function isStored(name) {
    const s = models.find((x) => x.name === name);
    return Boolean(s && s.complete);
  }

  /** The kept entry of a hub model (offline: loaded without listing the hub), or null. */
  function keptEntry(key) {
    return store.keptEntry(key).catch(() => null);
  }

  /** What the worker's model store reports: {event, model, file, detail, ...}. */
  function cacheEvent(m) {
    const file = m.file ? `${m.model}/${m.file}` : m.model;
    if (m.event === "damaged") {
      note(`The saved copy of ${file} was damaged (${m.detail}): it was deleted and the file ` +
        "fetched again.");
    } else if (m.event === "not-stored") {
      note(`${file} could not be saved on this device (${m.detail}); the model runs from the ` +
        "network.");
    } else if (m.event === "no-room") {
      noRoom.add(m.model);
      note(`${m.model} needs ${mb(m.need)} more to be kept on this device, but this site has ` +
        `only ${mb(m.free)} of storage free: it runs from the network and is not kept.`);
    } else if (m.event === "waiting") {
      note(`Another tab is downloading ${file}: this tab waits for it, then reads it from ` +
        "this device.");
    } else if (m.event === "resumed") {
      note(`The download of ${file} goes on where it stopped, at ${mb(m.from)} of ` +
        `${mb(m.size)}.`);
    }
    if (m.event !== "waiting") refresh();
  }

  /** Register the service worker (once). */
  function start() {
    if (started || !sw || !store.available) return;
    started = true;
    if (!offline && !navigator.serviceWorker.controller) {
      say("saving", "Saving the page's files on this device…");
    }
    navigator.serviceWorker.addEventListener("controllerchange", () => {
      if (reloading) location.reload();
    });
    ui.update.addEventListener("click", async () => {
      const reg = await navigator.serviceWorker.getRegistration();
      if (reg && reg.waiting) {
        reloading = true;
        post(reg.waiting, TO_SERVICE_WORKER, "skip-waiting");
      } else {
        location.reload();
      }
    });
    navigator.serviceWorker.register("sw.js", { updateViaCache: "none" }).then((reg) => {
      const settle = () => {
        if (reg.waiting && navigator.serviceWorker.controller) {
          say("update", "A new version of the page is saved and ready.");
        } else if (reg.installing) {
          if (!offline) {
            say("saving", navigator.serviceWorker.controller
              ? "Saving a new version of the page on this device…"
              : "Saving the page's files on this device…");
          }
        } else if (reg.active && !offline) {
          say("ready", navigator.serviceWorker.controller
            ? "The page's files are saved on this device: it opens without the server."
            : "The page's files are saved on this device: from the next visit on, it opens " +
              "without the server.");
        }
      };
      const watch = (w) => w && w.addEventListener("statechange", () => {
        if (w.state === "redundant" && !reg.active && !reg.waiting) {
          say("failed", "The page's files could not be saved on this device (see the " +
            "browser's console); the next visit tries again.");
        } else {
          settle();
        }
      });
      watch(reg.installing);
      reg.addEventListener("updatefound", () => { watch(reg.installing); settle(); });
      settle();
    }, (e) => {
      if (!offline) {
        say("failed", `The page's files could not be saved on this device: ${e.message || e}`);
      }
    });
  }

  shellState();
  // Opened from the saved files: the service worker is there already (registering it again
  // costs nothing and keeps the panel told of a new build).
  if (sw && navigator.serviceWorker.controller) start();
  return {
    load, refresh, start, loading, keep, cacheEvent, isSaved, isStored, keptEntry, note,
    get offline() { return offline; },
  };
}
