// Offline use, on the page's side: it registers the service worker (sw.js keeps the page's
// own files), reads the model index through the model cache (modelcache.js: the server's, or
// the copy kept on this device when the server is gone), and fills the "Offline" panel: the
// models saved on this device with their sizes, a Delete button for each, and the storage the
// site uses. All text goes into the page as text.
//
// The service worker is registered once a model is in (start()), so that saving the page's
// files does not compete with the first boot (at once when the page came from them). That
// first visit runs from the server; the next one runs from the saved files. When a new build
// is on the server, its service worker installs beside the old one and the panel offers to
// reload into it.

import {
  available, deleteModel, keepModel, loadIndex, modelStatus, storageUse,
} from "./modelcache.js";

const $ = (id) => document.getElementById(id);

function mb(n) {
  return (n / 1e6).toFixed(n < 1e7 ? 2 : 1) + " MB";
}

export function createOffline() {
  const ui = {
    status: $("offline-status"), update: $("offline-update"), list: $("cached-models"),
    storage: $("storage-used"), note: $("offline-note"),
  };
  const sw = "serviceWorker" in navigator && globalThis.isSecureContext === true;
  let index = { models: [] };
  let offline = false;
  let status = []; // modelStatus(index)
  let started = false;
  let reloading = false;
  let refreshing = null;
  let again = false;

  function say(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
    ui.update.hidden = state !== "update";
  }

  function shellState() {
    if (!sw || !available) {
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

  /** The model index (see modelcache.loadIndex); also fills the panel. */
  async function load() {
    ({ index, offline } = await loadIndex());
    shellState();
    await refresh();
    return { index, offline };
  }

  /** Redraw the list of saved models and the storage line (one redraw at a time). */
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

  async function redraw() {
    try {
      status = await modelStatus(index);
    } catch (e) {
      status = [];
    }
    const saved = status.filter((s) => s.kept);
    ui.list.replaceChildren(...saved.map((s) => {
      const li = document.createElement("li");
      li.dataset.model = s.name;
      li.dataset.bytes = String(s.stored);
      li.dataset.complete = s.complete ? "1" : "0";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = s.name;
      const size = document.createElement("span");
      size.className = "size muted";
      size.textContent = s.complete ? mb(s.stored)
        : `${mb(s.stored)} of ${mb(s.bytes)} (incomplete)`;
      const del = document.createElement("button");
      del.type = "button";
      del.className = "secondary delete";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete ${s.name} from this device`);
      del.addEventListener("click", async () => {
        del.disabled = true;
        try {
          await deleteModel(index, s.name);
        } catch (e) {
          note(`${s.name} could not be deleted: ${e}`);
        }
        await refresh();
      });
      li.append(name, size, del);
      return li;
    }));
    if (saved.length === 0) {
      const li = document.createElement("li");
      li.className = "muted empty";
      li.textContent = available ? "No model is saved on this device yet: a model is saved " +
        "as it loads." : "Models are not kept on this device here.";
      ui.list.append(li);
    }
    const use = await storageUse();
    if (use) {
      ui.storage.dataset.usage = String(use.usage);
      ui.storage.textContent = `Storage used by this site: ${mb(use.usage)} (of ${mb(use.quota)} ` +
        "the browser allows it).";
    } else {
      ui.storage.textContent = "";
    }
  }

  function note(text) {
    ui.note.textContent = text;
    ui.note.hidden = !text;
  }

  /** A model loaded: list it as saved (its files are stored as it loads). */
  async function keep(name) {
    try {
      await keepModel(name);
    } catch (e) {
      console.warn(`${name} could not be listed as saved: ${e}`);
    }
    await refresh();
  }

  /** Whether every file of model `name` is saved on this device. */
  function isSaved(name) {
    const s = status.find((x) => x.name === name);
    return Boolean(s && s.complete);
  }

  /** What the worker's model cache reports: {event, model, file, detail}. */
  function cacheEvent(m) {
    if (m.event === "damaged") {
      note(`The saved copy of ${m.model}/${m.file} was damaged (${m.detail}): it was deleted ` +
        "and the file fetched from the server again.");
    } else if (m.event === "not-stored") {
      note(`${m.model}/${m.file} could not be saved on this device: ${m.detail}`);
    }
    refresh();
  }

  /** Register the service worker (once). */
  function start() {
    if (started || !sw || !available) return;
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
        reg.waiting.postMessage({ type: "skip-waiting" });
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
    load, refresh, start, keep, cacheEvent, isSaved,
    get offline() { return offline; },
  };
}
