// Models from the Hugging Face hub, loaded by the page: `owner/name[@revision]` is listed with
// the hub's API and becomes a model entry (store.js's form) whose folder is the hub's resolve
// URL at the listed commit, so that every file comes from the same revision. The worker's loader
// then reads it as it reads the site's own models: the hub answers the small files itself and
// the weights (kept in LFS or Xet) with a redirect to its storage, another origin; both send
// CORS headers. Whether the model can run (its architecture, its size on this adapter) is
// webgpt.load's to say, as for any folder; what is decided here is only which files a folder
// needs, and sentences for the hub's answers.
//
// The hub (as py/webgpt/tools/hub.py documents it):
//   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true: {id, sha (the commit),
//     gated, siblings: [{rfilename, size, blobId (git blob sha1), lfs: {sha256, size}}]}
//   {endpoint}/{repo}/resolve/{commit}/{file}: the file, or a 302 to storage for LFS files.
//   Errors: 401 for a repository it does not show anonymous users (missing or private:
//   X-Error-Code RepoNotFound), 403 for a gated one (GatedRepo), 404 RevisionNotFound /
//   EntryNotFound.
//
// The endpoint is fixed when the site is built (python3 build.py --hub-endpoint URL; build.json's
// hub_endpoint): a page never asks an address it was given in a link. What the hub answers is
// read as input from anyone: the listing and the index at most MAX_LISTING and MAX_INDEX bytes
// (a body that never ends is cut there), the index exactly the size the listing gives it, the
// repository id and commit in their own characters; the files themselves the model store
// (store.js) reads no further than the sizes listed here.

export const DEFAULT_ENDPOINT = "https://huggingface.co";

// The files of a model folder, as transformers saves them, that the page reads where the
// repository has them (config.json is required; weights below).
const FOLDER_FILES = ["config.json", "generation_config.json", "tokenizer.json",
  "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
  "chat_template.jinja"];
const SINGLE = "model.safetensors";
const INDEX = "model.safetensors.index.json";
const MAX_INDEX = 32 << 20;
const MAX_LISTING = 64 << 20;
const REPO_PART = "[A-Za-z0-9][A-Za-z0-9._-]{0,95}";
const QUANT_TAG = "[A-Za-z0-9][A-Za-z0-9_]{0,31}";

/** An error for the user: `message` and `hint` are sentences; `offline`: the hub could not be
 * reached at all. */
export class HubError extends Error {
  constructor(message, hint = "", offline = false) {
    super(message);
    this.hint = hint;
    this.offline = offline;
  }
}

/** "owner/name", "owner/name:QUANT" (a GGUF repository's file of that quantization, as
 * llama.cpp's -hf takes it) or either with "@revision" (spaces around it ignored) as {repo,
 * revision}; repo keeps the ":QUANT" (listModel reads it: the model is that file). */
export function parseHubId(text) {
  const s = String(text).trim();
  const m = new RegExp(`^(${REPO_PART})/(${REPO_PART})(:${QUANT_TAG})?` +
    `(?:@([A-Za-z0-9][\\w./-]{0,199}))?$`).exec(s);
  if (!m || s.includes("..")) {
    throw new HubError(`\u201c${s}\u201d is not a model id from the hub: write it as owner/name ` +
      "(or owner/name:QUANT for a GGUF file) or owner/name@revision.",
    "For example openai-community/gpt2, or bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M, as " +
      "on the model's page.");
  }
  return { repo: `${m[1]}/${m[2]}${m[3] || ""}`, revision: m[4] || "main" };
}

/** The key and display name of a hub model, as store.js keeps it. */
export function hubKey(repo, revision) {
  return `hub:${repo}@${revision}`;
}

export function hubName(repo, revision) {
  return revision === "main" ? repo : `${repo}@${revision}`;
}

function reached(endpoint, repo) {
  return new HubError(`The hub (${endpoint}) cannot be reached, so ${repo} cannot be loaded.`,
    "Check the network connection. Models kept on this device (the Offline panel) load " +
    "without it.", true);
}

function refused(resp, endpoint, repo, revision) {
  const code = resp.headers.get("X-Error-Code");
  const status = resp.status;
  if (code === "GatedRepo" || status === 403) {
    return new HubError(`${repo} is gated or private (HTTP ${status}): the hub gives its files ` +
      "only to signed-in users it allows, and this page does not sign in.",
    "Pick a model that is open to everyone.");
  }
  if (code === "RevisionNotFound") {
    return new HubError(`${repo} has no revision \u201c${revision}\u201d (HTTP ${status}).`,
      "Use one of its branches, tags or commits (main by default).");
  }
  if (code === "RepoNotFound" || status === 401 || status === 404) {
    return new HubError(`There is no model ${repo} on the hub, or it is private (HTTP ` +
      `${status}).`, "Check the id (owner/name, as on the model's page at " +
      `${endpoint}). Private models need a sign-in, which this page does not do.`);
  }
  return new HubError(`The hub answered HTTP ${status} for ${repo}.`,
    status === 429 || status >= 500 ? "Try again in a while." : "");
}

/**
 * List `repo` at `revision` and make its model entry: {key, name, source: "hub", repo,
 * revision, commit, endpoint, url, files: {name: {size, hash}}, listing, bytes}. `files` are
 * the ones a model folder needs (config, tokenizer, generation settings, chat template,
 * safetensors weights: the single file, or the index and the shards it names). Throws HubError.
 */
export async function listModel(endpoint, repo, revision, fetchFn = fetch) {
  let tag = "";
  [repo, tag = ""] = repo.split(":");
  const api = `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  let resp;
  try {
    resp = await fetchFn(api, { cache: "no-store" });
  } catch (e) {
    throw reached(endpoint, repo);
  }
  if (!resp.ok) throw refused(resp, endpoint, repo, revision);
  let info;
  try {
    info = JSON.parse(await bodyText(resp, MAX_LISTING, null, `The hub's listing of ${repo}`));
  } catch (e) {
    if (e instanceof HubError) throw e;
    info = null;
  }
  if (!info || !Array.isArray(info.siblings)) {
    throw new HubError(`${endpoint} did not list the files of ${repo}: is it a Hugging Face hub?`);
  }
  if (info.gated || info.private) {
    throw new HubError(`${repo} is ${info.gated ? "gated" : "private"}: the hub gives its ` +
      "files only to signed-in users it allows, and this page does not sign in.",
    "Pick a model that is open to everyone.");
  }
  const id = typeof info.id === "string" && new RegExp(`^${REPO_PART}/${REPO_PART}$`).test(info.id)
    && !info.id.includes("..") ? info.id : repo;
  const commit = /^[0-9a-f]{40}$/.test(info.sha || "") ? info.sha : revision;
  const url = `${endpoint}/${id}/resolve/${encodeURIComponent(commit)}/`;
  const siblings = new Map();
  for (const s of info.siblings) {
    if (s && typeof s.rfilename === "string" && !s.rfilename.includes("/")) {
      siblings.set(s.rfilename, s);
    }
  }
  const where = revision === "main" ? id : `${id} at ${revision}`;
  if (tag || (!siblings.has("config.json") && ggufModels(siblings).size)) {
    return ggufEntry(siblings, where, id, tag, revision, commit, endpoint, url);
  }
  if (!siblings.has("config.json")) {
    throw new HubError(`${where} has no config.json: it is not a model folder the page can load.`,
      "A model folder holds config.json, safetensors weights and its tokenizer files.");
  }
  let weights;
  if (siblings.has(SINGLE)) {
    weights = [SINGLE];
  } else if (siblings.has(INDEX)) {
    weights = [INDEX, ...await shardsOf(fetchFn, url, siblings, where, endpoint, id)];
  } else {
    const other = [...siblings.keys()].find((n) => /\.(bin|pt|pth|h5|msgpack|gguf|onnx)$/.test(n));
    throw new HubError(`${where} has no safetensors weights${other ? ` (only ${other})` : ""}: ` +
      "the page reads model.safetensors, or its shards with model.safetensors.index.json.",
    "Pick a repository with safetensors weights.");
  }
  const files = {};
  for (const name of [...FOLDER_FILES.filter((n) => siblings.has(n)), ...weights]) {
    files[name] = fileOf(siblings.get(name), where);
  }
  return {
    key: hubKey(id, revision), name: hubName(id, revision), source: "hub", repo: id, revision,
    commit, endpoint, url, files, listing: [...siblings.keys()],
    bytes: Object.values(files).reduce((sum, f) => sum + f.size, 0),
  };
}

// ---- GGUF repositories: one file per quantization (Q4_K_M, Q8_0, ...; split ones as
// NAME-00001-of-0000N.gguf parts), of which the tag picks one.

const SPLIT = /-(\d{5})-of-(\d{5})\.gguf$/i;

/** Map of each GGUF model of a repository (split parts under the first's name without the
 * part number) to its files in order; multimodal projectors (mmproj) are not models. */
function ggufModels(siblings) {
  const models = new Map();
  for (const name of [...siblings.keys()].sort()) {
    if (!/\.gguf$/i.test(name) || /mmproj/i.test(name)) continue;
    const m = SPLIT.exec(name);
    const key = m ? `${name.slice(0, m.index)}.gguf` : name;
    if (!models.has(key)) models.set(key, []);
    models.get(key).push(name);
  }
  return models;
}

/** The quantization a GGUF file's name ends with ("...-Q4_K_M.gguf" -> "Q4_K_M"). */
function tagOf(model) {
  const stem = model.replace(/\.gguf$/i, "");
  const m = /[-_.]((?:I?Q\d[A-Z0-9_]*)|(?:BF16)|(?:F\d\d))$/i.exec(stem);
  return m ? m[1] : stem;
}

function mb(n) {
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : `${(n / 1e6).toFixed(0)} MB`;
}

// The models of `models` (ggufModels) that `tag` names: those whose quantization is the tag
// (case aside), else those whose file name holds it.
function ggufPick(models, tag) {
  const t = tag.toLowerCase();
  const found = [...models.keys()].filter((m) => tagOf(m).toLowerCase() === t);
  return found.length ? found : [...models.keys()].filter((m) => m.toLowerCase().includes(t));
}

/** The repository's GGUF models to pick from: [{tag, bytes, parts, pick}], `bytes` the sum of
 * a split model's parts; `pick`: the tag when `owner/name:TAG` loads this model and no other,
 * else null (two files of one quantization, or a name with no tag a model id can hold). */
export function ggufList(siblings) {
  const models = ggufModels(siblings);
  const size = (n) => fileOf(siblings.get(n), "").size;
  return [...models].map(([model, parts]) => {
    const tag = tagOf(model);
    const picked = new RegExp(`^${QUANT_TAG}$`).test(tag) ? ggufPick(models, tag) : [];
    return { tag, bytes: parts.reduce((sum, p) => sum + size(p), 0), parts,
      pick: picked.length === 1 && picked[0] === model ? tag : null };
  });
}

/** "Q4_K_M (808 MB), Q8_0 (1.3 GB), ...": the repository's GGUF models by tag and size. */
export function ggufChoices(siblings) {
  return ggufList(siblings).map((c) => `${c.tag} (${mb(c.bytes)})`).join(", ");
}

/** A GGUF repository named without a tag: not an error but a choice. `message` says so in a
 * sentence; `choices` are ggufList's, `repo` and `revision` what to load them from (as
 * `${repo}:${pick}`, with `@${revision}` unless "main"). */
export class HubChoice extends HubError {
  constructor(message, hint, repo, revision, choices) {
    super(message, hint);
    this.repo = repo;
    this.revision = revision;
    this.choices = choices;
  }
}

// The model entry of the GGUF file tagged `tag` (its parts: the worker's loader reads the
// first and finds the others beside it); no tag is a HubChoice, a tag no file has a sentence
// listing the repository's quantizations.
function ggufEntry(siblings, where, id, tag, revision, commit, endpoint, url) {
  const models = ggufModels(siblings);
  if (!models.size) {
    throw new HubError(`${where} has no GGUF files, so no \u201c${tag}\u201d.`,
      "Drop the :QUANT to load a repository of safetensors weights.");
  }
  const choices = ggufChoices(siblings);
  if (!tag) {
    throw new HubChoice(`${where} holds GGUF files, one per quantization: pick one as ` +
      `${id}:QUANT.`, `It has ${choices}. Q4_K_M is a good size for a browser.`, id, revision,
    ggufList(siblings));
  }
  const found = ggufPick(models, tag);
  if (found.length !== 1) {
    throw new HubError(`${where} has ${found.length ? "several GGUF files" : "no GGUF file"} ` +
      `for \u201c${tag}\u201d.`, `It has ${choices}.`);
  }
  const parts = models.get(found[0]);
  const files = {};
  for (const name of parts) files[name] = fileOf(siblings.get(name), where);
  const name = `${id}:${tag}`;
  return {
    key: hubKey(name, revision), name: hubName(name, revision), source: "hub", repo: id,
    revision, commit, endpoint, url: url + parts[0], files, listing: parts,
    bytes: Object.values(files).reduce((sum, f) => sum + f.size, 0),
  };
}

// Size and hash of a listed file: LFS files have a sha256, the others a git blob sha1.
function fileOf(s, where) {
  const lfs = s.lfs && typeof s.lfs === "object" ? s.lfs : null;
  const size = lfs && Number.isInteger(lfs.size) ? lfs.size : s.size;
  if (!Number.isInteger(size) || size < 0) {
    throw new HubError(`The hub did not say the size of ${where}/${s.rfilename}.`);
  }
  if (lfs && /^[0-9a-f]{64}$/.test(lfs.sha256 || "")) return { size, hash: `sha256-${lfs.sha256}` };
  if (!lfs && /^[0-9a-f]{40}$/.test(s.blobId || "")) return { size, hash: `sha1-${s.blobId}` };
  throw new HubError(`The hub published no hash of ${where}/${s.rfilename}, so it cannot be ` +
    "checked.");
}

// The shards that model.safetensors.index.json names (each a file of the repository).
async function shardsOf(fetchFn, url, siblings, where, endpoint, repo) {
  const size = fileOf(siblings.get(INDEX), where).size;
  if (size > MAX_INDEX) throw new HubError(`${where}: ${INDEX} is too large to be an index.`);
  let index;
  try {
    const resp = await fetchFn(url + INDEX);
    if (!resp.ok) throw refused(resp, endpoint, repo, "");
    index = JSON.parse(await bodyText(resp, size, size, `${where}: ${INDEX}`));
  } catch (e) {
    if (e instanceof HubError) throw e;
    if (e instanceof TypeError) throw reached(endpoint, repo);
    throw new HubError(`${where}: ${INDEX} is not JSON (${e.message}).`);
  }
  const map = index && typeof index.weight_map === "object" ? index.weight_map : null;
  const shards = map ? [...new Set(Object.values(map).map(String))].sort() : [];
  if (shards.length === 0) throw new HubError(`${where}: ${INDEX} has no weight_map.`);
  const missing = shards.find((s) => !siblings.has(s));
  if (missing) {
    throw new HubError(`${where}: ${INDEX} names the shard ${missing}, which the repository ` +
      "does not have.");
  }
  return shards;
}

// The text of a response's body, read no further than `limit` bytes (a body that goes on is
// cancelled there); with `exact`, it must be that many bytes. Else a HubError naming `what`.
async function bodyText(resp, limit, exact, what) {
  const reader = resp.body.getReader();
  const pieces = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new HubError(`${what} is longer than the ${limit} bytes ${exact === null
        ? "a listing may have" : "the hub lists for it"}: it is not what the hub should send.`);
    }
    pieces.push(value);
  }
  if (exact !== null && size !== exact) {
    throw new HubError(`${what} is ${size} bytes, but the hub lists ${exact}: it is not the ` +
      "file the hub listed.");
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const piece of pieces) {
    bytes.set(piece, at);
    at += piece.length;
  }
  return new TextDecoder().decode(bytes);
}
