"""The page's Python, run by worker.mjs in a Web Worker (imported as `webgpt_page`).

It loads a model with `webgpt.load` from the site's models/<name>/ URL and runs the scripts of
the page's code editor: the Generate button runs scripts/generate.py (as edited), the Run
button whichever script is open. A script sees these globals:

    model    the loaded model (webgpt.model.Model), kept across runs: the weights load once
    params   the form's values: prompt, max_new_tokens, temperature, top_k, top_p, seed;
             messages: the chat's conversation when the chat view runs scripts/chat.py, else None
    page     page.output(text), page.stop_requested(), page.bar_chart(...), page.tokens(...),
             page.logprobs(...), page.note(text)
    webgpt   the package, as edited

print() goes to the page's console as it happens; an exception's traceback goes there too.
Edited package modules and shaders are written over the installed ones before a run: the
package is imported afresh, and the re-imported Model class adopts the loaded weights
(`Model.adopt`: a new plan, with pipelines and bind groups made from the current code and
WGSL), all without loading the weights again.

The code panel's API menu shows the public API's signatures and docstrings, which api_docs()
reads from the package as it is imported now (API lists what it shows).

Messages to the page's main thread (main.js): web/protocol.mjs lists them (FROM_WORKER) with
their fields; post() sends one through worker.mjs, which checks it against that list.

Stop: the page sets a flag that page.stop_requested() reads (generation stops after the token
in flight). A script that does not stop within a second is cancelled (cancel(): a
CancelledError where it awaits) and, if it never awaits, interrupted: a KeyboardInterrupt
through Pyodide's interrupt buffer, which needs the page to be cross-origin isolated.
"""

import ast
import asyncio
import importlib
import importlib.util
import inspect
import io
import json
import linecache
import os
import sys
import time
import traceback
import types

import js
from pyodide.ffi import JsProxy, create_once_callable, to_js

import webgpt

sys.dont_write_bytecode = True  # edited modules are re-imported from their source

_model = None
_PACKAGE = os.path.dirname(os.path.abspath(webgpt.__file__))  # the installed package
_WORKER_FILE = os.path.abspath(__file__)

_applied = {}  # editor path -> text written over the installed file
_shipped = {}  # editor path -> the installed file's text, before the first edit of it
_import_failed = False  # the last import of the edited package failed: try again next run
_rebuild_needed = False  # the model's last rebuild failed: try again next run
_reload_hint = False  # the rebuild failed: loading the model again may be what the edit needs
_script_task = None  # the asyncio task of the running script


def post(kind, **fields):
    """Post a message of type `kind` to the page (web/protocol.mjs's FROM_WORKER): worker.mjs
    refuses a type or fields that the list does not have."""
    js.webgptPost(kind, to_js(fields, dict_converter=js.Object.fromEntries))


def _error(stage, message, hint=""):
    post("error", stage=stage, message=message, hint=hint)


def _progress(stage, done, total):
    post("progress", stage=stage, done=int(done), total=int(total))


def _pkg():
    """The webgpt package as it is now (re-imported after an edit)."""
    return sys.modules.get("webgpt") or importlib.import_module("webgpt")


# ---------------------------------------------------------------- loading


async def _float_weights(source, url):
    """Whether the folder at `url` holds float safetensors matrices, which webgpt.load's
    quantize= takes, from config.json alone (the load reads it again, from the model store):
    not a GGUF file (a hub GGUF entry's URL names it; a folder without config.json holds one,
    or fails to load all the same), not a folder build.py quantize wrote."""
    from webgpt.config import QUANTIZATION_KEY
    from webgpt.gguf_spec import is_gguf

    if is_gguf(url) or not await source.exists("config.json"):
        return False
    try:
        config = json.loads(await source.text("config.json"))
    except Exception:
        return True  # a bad config.json: the load says what is wrong with it
    return not (isinstance(config, dict) and config.get(QUANTIZATION_KEY))


async def load_model(name, url, quantize=None):
    """Load the model `name` from its folder's `url`; `quantize` "q4" (the page's Load as
    4-bit): a model of float safetensors weights is quantized as it loads, one already
    quantized (or a GGUF file) loads as it is and "loaded" says which it was."""
    global _model, _rebuild_needed
    if _model is not None:
        close = getattr(_model.device, "close", None)
        _model = None
        if close is not None:
            close()  # frees the previous model's GPU buffers now, not at garbage collection
    t0 = time.perf_counter()
    try:
        webgpt = _pkg()
        from webgpt.sources.fetch import FetchSource
        from webgpt.gpu import GPUError
    except Exception as e:
        traceback.print_exc()
        _error("load", f"The webgpt package does not import: {type(e).__name__}: {e}",
               "An edit of the package's code broke it: fix it or Reset it in the editor.")
        return
    seen = []  # when the first and the last progress report came: the weights' start and end

    def progress(stage, done, total):
        seen[1 if seen else 0:] = [time.perf_counter()]
        _progress(stage, done, total)

    source = FetchSource(url, progress=progress)
    try:
        quantize = str(quantize) if quantize else None
        if quantize is not None and not await _float_weights(source, url):
            quantize = None  # already quantized: loaded as it is
        model = await webgpt.load(source, progress=progress, quantize=quantize)
    except webgpt.ModelFolderError as e:
        if quantize is not None and "-bit blocks" in str(e):  # its rows do not fit the blocks
            _error("load", f"The model \u201c{name}\u201d cannot be loaded as 4-bit: {e}",
                   "Untick Load as 4-bit to load it as it is, or pick another model.")
            return
        _error("load", f"The model \u201c{name}\u201d could not be loaded: {e}",
               "A model folder needs config.json, model.safetensors (or shards with "
               "model.safetensors.index.json) and its tokenizer: vocab.json and merges.txt "
               "(GPT-2) or tokenizer.json (Llama, Qwen). Fix the folder under weights/, run "
               "python build.py again, or pick another model.")
        return
    except GPUError as e:
        _error("load", str(e), "The page needs WebGPU with a working adapter to run models.")
        return
    except MemoryError as e:
        _error("load", f"The model \u201c{name}\u201d does not fit this GPU: {e}",
               "Pick a smaller model.")
        return
    except Exception as e:
        traceback.print_exc()
        _error("load", f"The model \u201c{name}\u201d could not be loaded: {type(e).__name__}: {e}",
               "See the browser's console for details.")
        return
    finally:
        await source.close()
    _model = model
    if hasattr(model.device, "on_lost"):  # the browser backend: say so when the GPU goes
        model.device.on_lost = _on_device_lost
    _rebuild_needed = False  # made by the current code
    for path, text in _applied.items():  # edited shaders, as for a model loaded before
        if path.endswith(".wgsl"):
            model.kernels.sources[_shader_name(path)] = text
    cfg = model.config
    load_s = model.stats.get("load_s") or (time.perf_counter() - t0)
    first, last = (seen[0], seen[-1]) if seen else (t0, t0)
    # Files (config, tokenizer, headers) and the GPU device; the weights streamed in; the plan
    # (pipelines, bind groups) and the weights' check.
    parts = {"files_s": first - t0, "weights_s": last - first, "plan_s": t0 + load_s - last}
    weights = getattr(model, "weights", None) or ("f16" if model.uses_f16 else "f32")
    spec = model.spec
    at_load = getattr(spec, "load_quantization", None)
    post("loaded", name=name, device=model.device.describe(), has_f16=bool(model.device.has_f16),
         uses_f16=bool(model.uses_f16), weights=str(weights), load_s=load_s, parts=parts,
         # n_positions: the context the model keeps (n_ctx; a Llama's can be less than its
         # max_position_embeddings)
         config={**{k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "vocab_size",
                                                  "head_size")},
                 "n_positions": int(model.n_ctx),
                 "model_type": str(getattr(cfg, "model_type", "gpt2")),
                 "n_kv_head": int(getattr(cfg, "num_key_value_heads", cfg.n_head)),
                 "intermediate_size": int(getattr(cfg, "intermediate_size", 4 * cfg.n_embd))},
         layout={"prefill": str(model.layout.get("prefill")),
                 "fuse_ln": bool(model.layout.get("fuse_ln")),
                 "weights": str(model.layout.get("weights")),
                 "cpu": bool(getattr(model.device, "is_cpu", False))},
         plan=_plan_of(model), chat=getattr(model.tokenizer, "chat_template", None) is not None,
         source_weights="gguf" if getattr(spec, "gguf", None) is not None
         else "quantized" if spec.config.quantization is not None else "float",
         quantized_at_load=f"q{at_load.bits}" if at_load is not None else None)


def _plan_of(model):
    """{pass kind: [[launch name, shader file], ...]} of the model's plan, for the page."""
    plan = getattr(model, "plan", None)
    if plan is None:
        return {}
    return {kind: [[str(name), str(shader)] for name, shader, _ in launches]
            for kind, launches in plan.describe().items()}


def tokenize(text):
    """How many tokens `text` is, for the page's "How it works" panel."""
    try:
        count = len(_model.encode_prompt(str(text))) if _model is not None else None
    except Exception:
        count = None
    post("tokenized", text=str(text), count=count)


# ---------------------------------------------------------------- running a script


class _Console(io.TextIOBase):
    """sys.stdout / sys.stderr during a run: text goes to the page's console as it comes,
    in batches of at most about 60 a second (and whenever the script awaits)."""

    def __init__(self, stream):
        self.stream = stream
        self._parts = []
        self._size = 0
        self._last = 0.0
        self._timer = False

    encoding = "utf-8"

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        if text:
            self._parts.append(text)
            self._size += len(text)
            if self._size > 16384 or ("\n" in text and time.monotonic() - self._last > 0.016):
                self.flush()
            elif not self._timer:  # runs when the worker's event loop is free again
                self._timer = True
                js.setTimeout(create_once_callable(self._on_timer), 30)
        return len(text)

    def _on_timer(self):
        self._timer = False
        self.flush()

    def flush(self):
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            self._size = 0
            self._last = time.monotonic()
            post("console", stream=self.stream, text=text)


_stdout = _Console("out")
_stderr = _Console("err")


def _flush():
    _stdout.flush()
    _stderr.flush()


def _sys(text):
    _flush()
    post("console", stream="sys", text=text)


# page.confirm's questions waiting for the person: id -> the future their answer resolves.
_questions = {}


class Page:
    """What a script can do on the page: its global `page`."""

    def __init__(self):
        self.pieces = 0

    def output(self, text):
        """Append `text` to the generated text under the prompt."""
        post("piece", text=str(text))
        self.pieces += 1

    def note(self, text):
        """Show a line for the user: under the reply in the chat, else in the console."""
        post("note", text=str(text))

    async def confirm(self, title, text):
        """Ask the person on the page: `title` above `text` (such as code a tool would run),
        with Run and Don't run buttons. True once they press Run, False for Don't run; the
        script waits for them (Stop ends it there)."""
        _flush()
        key = f"q{id(self)}-{len(_questions)}-{time.perf_counter_ns()}"
        _questions[key] = answer = asyncio.get_event_loop().create_future()
        post("confirm", id=key, title=str(title), text=str(text))
        try:
            return await answer
        finally:
            del _questions[key]

    def stop_requested(self):
        """True once the Stop button was pressed: end the loop, the run ends cleanly."""
        return bool(js.webgptControl[0])

    def bar_chart(self, labels, values, title=""):
        """Draw horizontal bars in the console: one per (label, value), values >= 0."""
        labels, values = [str(x) for x in labels], [float(v) for v in values]
        if len(labels) != len(values):
            raise ValueError(f"bar_chart needs as many labels as values, got {len(labels)} "
                             f"and {len(values)}")
        _flush()
        post("chart", title=str(title), labels=labels, values=values)

    def tokens(self, pieces, title=""):
        """Show text cut into tokens, each in its own colour: `pieces` is a list of strings
        or of (text, token_id) pairs."""
        out = []
        for p in pieces:
            text, token = (p, None) if isinstance(p, str) else (p[0], p[1])
            out.append([str(text), None if token is None else int(token)])
        _flush()
        post("tokens", title=str(title), pieces=out)

    def logprobs(self, logprobs, title=""):
        """Show generated tokens, each coloured by its probability, with the top alternatives
        the model gave at its step on hover: `logprobs` is a choice's log-probs as the API
        returns them (`choice.logprobs` of a chat completion, or its `.content` list, or of a
        completion), asked for with logprobs=True and top_logprobs=N (chat) or logprobs=N."""
        out = [[text, None, float(logprob), [[t, float(lp)] for t, lp in top]]
               for text, logprob, top in _token_logprobs(logprobs)]
        _flush()
        post("tokens", title=str(title), pieces=out)


def _plain(value):
    """An API object (webgpt.api's APIObject) as plain JSON values; others as they are."""
    return value.model_dump() if hasattr(value, "model_dump") else value


def _token_text(entry):
    """A chat log-probs entry's token as text: its bytes, a partial character as \\x.. escapes."""
    raw = entry.get("bytes")
    if raw is not None:
        return bytes(raw).decode("utf-8", "backslashreplace")
    return str(entry["token"])


def _token_logprobs(logprobs):
    """[(text, logprob, [(alternative, logprob), ...])] of a choice's log-probs, in OpenAI's
    chat form ({"content": [{token, logprob, bytes, top_logprobs}]} or that list) or its
    completions form ({tokens, token_logprobs, top_logprobs: [{token: logprob}]})."""
    logprobs = _plain(logprobs)
    if isinstance(logprobs, dict) and "logprobs" in logprobs and "index" in logprobs:
        logprobs = _plain(logprobs["logprobs"])  # a whole choice
    if logprobs is None:
        raise ValueError("page.logprobs: this choice has no log-probs; ask for them with "
                         "logprobs=True, top_logprobs=N (chat) or logprobs=N (completions)")
    if isinstance(logprobs, dict) and "tokens" in logprobs:
        tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
        return [(str(t), lp, list((top or {}).items()))
                for t, lp, top in zip(logprobs["tokens"], logprobs["token_logprobs"], tops)]
    if isinstance(logprobs, dict):
        logprobs = logprobs.get("content") or []
    if not isinstance(logprobs, list):
        raise ValueError(f"page.logprobs takes a choice's logprobs, not {type(logprobs).__name__}")
    return [(_token_text(e), e["logprob"],
             [(_token_text(a), a["logprob"]) for a in e.get("top_logprobs") or []])
            for e in map(_plain, logprobs)]


def confirmed(key, answer):
    """The person's answer to page.confirm (the page's Run or Don't run)."""
    question = _questions.get(key)
    if question is not None and not question.done():
        question.set_result(bool(answer))


def cancel():
    """End the running script where it awaits (the page's Stop, when the flag is not enough)."""
    if _script_task is not None and not _script_task.done():
        _script_task.cancel()


# Pyodide's event loop re-raises a KeyboardInterrupt or SystemExit that ends a task into
# JavaScript, as an uncaught error of the worker, unless it has these handlers (private
# attributes of pyodide.webloop.WebLoop, which has no setter for them). An interrupt that hit
# the loop's own code instead of the script ends the script all the same.
_loop = asyncio.get_event_loop()
_loop._keyboard_interrupt_handler = cancel
_loop._system_exit_handler = lambda code=None: None


async def run(code, filename, params, files):
    """Run one script of the page's editor; posts its output and then "run-done"."""
    global _script_task, _reload_hint
    _reload_hint = False
    t0 = time.perf_counter()
    page = Page()
    status, error = "ok", None
    stats_before = _model.stats if _model is not None else None
    try:
        params = _params(params)
    except ValueError as e:  # a bad form or URL value: say so, run nothing
        post("run-done", status="error", seconds=0.0, error=str(e), stats=None, reload=False,
             lost=False, bad_params=True)
        return
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _stdout, _stderr
    try:
        if not await _apply(files.to_py() if isinstance(files, JsProxy) else dict(files or {})):
            status, error = "error", "an edited file has an error (see the console)"
        else:
            if params.messages is not None or "chat" in code or "jinja2" in code:
                await chat_packages()
            compiled = compile(code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                               dont_inherit=True)
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            env = {"__name__": "__main__", "__file__": filename, "__builtins__": __builtins__,
                   "model": _model, "params": params, "page": page,
                   "webgpt": sys.modules.get("webgpt")}
            if _model is None:
                _sys("No model is loaded: `model` is None.")

            async def main():
                result = eval(compiled, env)
                if inspect.iscoroutine(result):
                    await result

            _script_task = asyncio.ensure_future(main())
            await _script_task
    except KeyboardInterrupt as e:
        status = "stopped"
        _print_traceback(e, "tb")
    except asyncio.CancelledError:  # cancel(), or an interrupt that hit the event loop
        status = "stopped"
        _sys("Stopped where the script was waiting.")
    except SystemExit as e:  # exit(): the script ends, the page stays
        if e.code not in (None, 0):
            status, error = "error", f"SystemExit: {e.code}"
            _print_traceback(e, "tb")
    except BaseException as e:
        status, error = "error", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        _print_traceback(e, "tb")
    finally:
        _script_task = None
        _flush()
        sys.stdout, sys.stderr = old_out, old_err
    if status != "ok":
        await _heal()
    stats = None
    if _model is not None and _model.stats is not stats_before:  # the script generated
        s = _model.stats
        stats = {k: v for k, v in s.items() if isinstance(v, (int, float)) or v is None}
        stats["tokens"] = stats.get("decode_tokens", 0) + (1 if stats.get("first_token_s") else 0)
        stats["pieces"] = page.pieces
        stats["stopped"] = status == "stopped" or page.stop_requested()
        stats["seed"] = params.seed
    lost = _device_lost()
    if lost is not None and status == "error":
        error = str(lost)
    post("run-done", status=status, seconds=time.perf_counter() - t0, error=error, stats=stats,
         reload=_reload_hint, lost=lost is not None, bad_params=False)


def _params(p):
    """The form's values (strings, as typed or as the URL gave them) as the script's `params`,
    checked by webgpt.sampling.params_from_strings: a bad value raises ValueError with a
    sentence. top_k 0 and top_p 1 are None (off)."""
    p = p.to_py() if isinstance(p, JsProxy) else dict(p or {})
    sampling = importlib.import_module("webgpt.sampling")
    values = sampling.params_from_strings(
        {k: p.get(k) for k in ("max_new_tokens", "temperature", "top_k", "top_p", "seed")})
    top_p = values["top_p"]
    return types.SimpleNamespace(
        prompt=str(p.get("prompt", "")), max_new_tokens=values["max_new_tokens"],
        temperature=values["temperature"], top_k=values["top_k"] or None,
        top_p=None if top_p is None or top_p >= 1 else top_p, seed=values["seed"],
        messages=p.get("messages"))  # the chat's conversation (scripts/chat.py), else None


def check_params(p):
    """Check the form's values (e.g. from the URL) before anything runs: posts an error with
    the sentence if one is bad."""
    try:
        _params(p)
    except ValueError as e:
        _error("params", f"A parameter is not usable: {e}",
               "Change it in the form (or in the page's address) and press Generate.")


# ---------------------------------------------------------------- the API menu


# The code panel's API menu: the name it shows, and how to reach the object from the package
# (and this module, for `page`). What it shows of each is its signature and docstring, read
# here from the package as it is imported now, edits included: the docstrings are the source.
API = [
    ("webgpt.load", lambda w: w.load),
    ("model.generate", lambda w: w.model.Model.generate),
    ("model.stream", lambda w: w.model.Model.stream),
    ("model.chat", lambda w: w.model.Model.chat),
    ("model.chat_stream", lambda w: w.model.Model.chat_stream),
    ("model.stream_steps", lambda w: w.model.Model.stream_steps),
    ("model.logits", lambda w: w.model.Model.logits),
    ("webgpt.Client", lambda w: w.api.Client),   # with its module's docstring: the usage
    ("client.chat.completions.create", lambda w: w.api.client._ChatCompletions.create),
    ("client.completions.create", lambda w: w.api.client._Completions.create),
    ("client.models.list", lambda w: w.api.client._Models.list),
    ("stream (stream=True)", lambda w: w.api.Stream),
    ("parameters", lambda w: w.api.params),
    ("page", lambda w: Page),
]


def _call(func):
    """The parameters of `func` as written in a call, "(prompt, max_new_tokens=50, ...)"
    (without self); None where Python cannot tell."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return f"({', '.join(str(p) for p in params)})"


def _kind(func):
    if inspect.isasyncgenfunction(func):
        return "async generator: async for ... in it"
    if inspect.iscoroutinefunction(func):
        return "coroutine: await it"
    return None


def _doc_of(name, obj):
    """{name, call, kind, doc, path, line} of one entry of the API menu."""
    doc = inspect.getdoc(obj)
    call = kind = None
    func = obj.__init__ if inspect.isclass(obj) else obj
    if inspect.isfunction(obj) or obj is _pkg().api.Client:   # how it is called
        call, kind = _call(func), _kind(func)
    if not doc and inspect.isfunction(obj) and "." in obj.__qualname__:
        owner = inspect.getmodule(obj)  # a method without a docstring: its class's says
        for part in obj.__qualname__.split(".")[:-1]:
            owner = getattr(owner, part, None)
        doc = inspect.getdoc(owner) if owner is not None else None
    if obj is _pkg().api.Client:
        doc = f"{doc}\n\n{inspect.getdoc(inspect.getmodule(obj))}"
    if obj is Page:  # the script's `page`: each method with its docstring
        doc = "\n\n".join([doc or ""] + [
            f"page.{n}{_call(f)}: {inspect.getdoc(f) or ''}"
            for n, f in vars(Page).items() if not n.startswith("_") and inspect.isfunction(f)])
    path = line = None
    try:
        source = os.path.abspath(inspect.getsourcefile(obj))
        if source.startswith(_PACKAGE + os.sep):  # the file as the editor names it
            path = "webgpt/" + os.path.relpath(source, _PACKAGE).replace(os.sep, "/")
            line = 1 if inspect.ismodule(obj) else inspect.getsourcelines(obj)[1]
    except (TypeError, OSError):
        pass
    return {"name": name, "call": call, "kind": kind, "doc": doc or "(no docstring)",
            "path": path, "line": line}


def api_docs():
    """Post the API menu's entries (API): each one's signature and docstring."""
    entries = []
    for name, find in API:
        try:
            webgpt = _pkg()
            for sub in ("model", "api"):  # imported with the first model or client
                importlib.import_module(f"webgpt.{sub}")
            entries.append(_doc_of(name, find(webgpt)))
        except Exception as e:  # an edit removed it, or the edited package does not import
            entries.append({"name": name, "call": None, "kind": None, "path": None,
                            "line": None, "doc": f"Not found: {type(e).__name__}: {e}"})
    post("api-docs", entries=entries)


# ---------------------------------------------------------------- chat


_chat_wheels_loaded = False


async def chat_packages():
    """Jinja2 and MarkupSafe, which chat templates render with: the site's pinned wheels
    (build.json's chat_wheels), loaded the first time a run may chat (the chat view's script, or
    code that mentions chat or jinja2), so that Generate alone never fetches them."""
    global _chat_wheels_loaded
    if _chat_wheels_loaded:
        return
    import pyodide_js

    base = js.location.href  # worker.mjs, at the site's root
    build = (await (await js.fetch(js.URL.new("build.json", base).href)).json()).to_py()
    urls = [js.URL.new(f"wheels/{name}", base).href for name in build.get("chat_wheels", [])]
    if urls:
        await pyodide_js.loadPackage(to_js(urls))
        importlib.invalidate_caches()
    _chat_wheels_loaded = True


def _device_lost():
    """The GPUError of the loaded model's lost device, or None while it is alive."""
    dev = getattr(_model, "device", None)
    return getattr(dev, "lost", None)


def _on_device_lost(err):
    post("device-lost", message=str(err))


def _print_traceback(exc, stream):
    """The traceback without this file's frames, with the package's files named as the
    editor names them (webgpt/arch/gpt2.py), to the console."""
    te = traceback.TracebackException.from_exception(exc)
    for t in _chain(te):
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if os.path.abspath(f.filename) != _WORKER_FILE
             and "/pyodide/" not in f.filename and "/_pyodide/" not in f.filename])
    text = "".join(te.format())
    text = text.replace(f'File "{_PACKAGE}/shaders/', 'File "shaders/')
    text = text.replace(f'File "{_PACKAGE}/', 'File "webgpt/')
    _flush()
    post("console", stream=stream, text=text)


def _chain(te):
    seen = []
    while te is not None and all(te is not t for t in seen):
        seen.append(te)
        te = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
    return seen


async def _heal():
    """After a run that ended by surprise: read-backs that were under way are let finish
    (unmapping them early would reject a promise nobody awaits any more), then unmapped, so
    the next read can map them again (the device's settle())."""
    if _model is not None and getattr(_model.device, "lost", None) is None:
        await _model.device.settle()


# ---------------------------------------------------------------- edited files


def _installed(path):
    """The installed file of an editor path: webgpt/... or shaders/<name>.wgsl."""
    top, _, rest = path.partition("/")
    parts = [p for p in rest.split("/") if p not in ("", ".", "..")]
    if top == "webgpt" and path.endswith(".py"):
        return os.path.join(_PACKAGE, *parts)
    if top == "shaders" and path.endswith(".wgsl") and len(parts) == 1:
        return os.path.join(_PACKAGE, "shaders", parts[0])
    raise ValueError(f"{path} is not a file of the package")


def _shader_name(path):
    return path.rsplit("/", 1)[-1][:-len(".wgsl")]


def _write(target, text):
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    cached = importlib.util.cache_from_source(target) if target.endswith(".py") else None
    if cached and os.path.exists(cached):
        os.remove(cached)


async def _apply(files):
    """Make the installed package match the editor: `files` {path: text} are the edited
    modules and shaders; a file edited before and not in `files` goes back to its shipped
    text. Returns False (and says why in the console) when an edit cannot be used."""
    global _model, _import_failed, _rebuild_needed, _reload_hint
    changed = sorted(p for p in set(files) | set(_applied) if files.get(p) != _applied.get(p))
    if not changed and not _import_failed and not _rebuild_needed:
        return True
    shaders = [p for p in changed if p.endswith(".wgsl")]
    bad = await _shader_errors({p: files[p] for p in shaders if p in files})
    if bad:
        for path, messages in bad.items():
            for line, col, kind, message in messages:
                post("console", stream="tb", text=f'File "{path}", line {line}, column {col}\n'
                                                  f"  {kind}: {message}\n")
        _sys("The script did not run: fix the shader, or Reset it to the shipped version.")
        return False
    for path in changed:
        target = _installed(path)
        if path not in _shipped:
            with open(target, encoding="utf-8") as f:
                _shipped[path] = f.read()
        text = files.get(path, _shipped[path])
        _write(target, text)
        if path in files:
            _applied[path] = text
        else:
            _applied.pop(path, None)
    if changed:
        _sys("Applied: " + ", ".join(
            f"{p} ({'edited' if p in _applied else 'shipped'})" for p in changed))
    reimport = any(p.endswith(".py") for p in changed) or _import_failed
    try:
        if reimport:
            _reimport()
        _import_failed = False
    except BaseException as e:
        _import_failed = True
        _print_traceback(e, "tb")
        _sys("The script did not run: an edited module does not import. Fix it, or Reset it "
             "to the shipped version.")
        return False
    if _model is None or not (reimport or shaders or _rebuild_needed):
        return True
    try:
        for path in shaders:
            name = _shader_name(path)
            if path in _applied:
                _model.kernels.sources[name] = _applied[path]
            else:
                _model.kernels.sources.pop(name, None)
        if reimport:
            # The re-imported Model class takes over the uploaded weights with a new plan.
            _model = _pkg().model.Model.adopt(_model)
        else:
            _model.rebuild()
        _rebuild_needed = False
    except BaseException as e:
        _rebuild_needed = _reload_hint = True
        _print_traceback(e, "tb")
        _sys("The script did not run: the loaded model cannot be rebuilt with the edited code.")
        return False
    _sys("The model's pipelines and bind groups are rebuilt from the current code (its "
         "weights stay loaded).")
    return True


async def _shader_errors(shaders):
    """{path: [(line, column, kind, message)]} of the WGSL compile errors of edited shaders
    (compiled on the model's device; nothing is checked while no model is loaded)."""
    device = getattr(_model, "device", None)
    if device is None:
        return {}
    bad = {}
    for path, text in shaders.items():
        errors = await device.shader_errors(text, label=path)
        if errors:
            bad[path] = errors
    return bad


def _is_package(name):
    return name == "webgpt" or name.startswith("webgpt.")


def _reimport():
    """Import the package afresh from its (edited) files: every webgpt module loaded now is
    imported again, in order; if one fails, the previous modules stay and the error rises."""
    names = sorted(n for n in sys.modules if _is_package(n))
    old = {n: sys.modules.pop(n) for n in names}
    importlib.invalidate_caches()
    try:
        for name in names:
            importlib.import_module(name)
    except BaseException:
        for n in [n for n in sys.modules if _is_package(n)]:
            del sys.modules[n]
        sys.modules.update(old)
        raise


# ---------------------------------------------------------------- GPU self-test


SELFTEST_WGSL = """
// y[i] = x[i] * SCALE + 1 for i < N: checks buffers, writes, override constants, read-back.
override N: u32;
override SCALE: f32 = 1.0;
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < N) { y[id.x] = x[id.x] * SCALE + 1.0; }
}
"""


async def gpu_selftest():
    """One compute shader through webgpt.gpu's browser backend; posts what it found."""
    import struct

    try:
        dev = await _pkg().gpu.request_device()
        n = 1000
        x = dev.buffer(n * 4, "x")
        y = dev.buffer(n * 4, "y")
        values = [float(i) - 500.0 for i in range(n)]
        data = struct.pack(f"<{n}f", *values)
        # The first half as Python bytes, the second as a JS Uint8Array (as fetch gives).
        half = n // 2 * 4
        dev.write(x, 0, data[:half])
        dev.write(x, half, js.Uint8Array.new(to_js(data[half:])))
        pipe = dev.pipeline(SELFTEST_WGSL, {"N": n, "SCALE": 3}, "selftest")
        enc = dev.encoder()
        enc.dispatch(pipe, dev.bind_group(pipe, [x, y]), (n + 63) // 64)
        enc.submit()
        got = struct.unpack(f"<{n}f", await dev.read(y, 0, n * 4))
        bad = [i for i in range(n) if got[i] != values[i] * 3 + 1]
        ok = not bad
        text = (f"GPU self-test {'passed' if ok else 'FAILED'} on {dev.describe()}: "
                f"{n - len(bad)}/{n} values right; features: {', '.join(sorted(dev.features)) or 'none'}; "
                f"max storage binding {dev.limits.get('max-storage-buffer-binding-size')}; "
                f"Python {sys.version.split()[0]}")
        dev.close()
    except Exception as e:
        traceback.print_exc()
        ok, text = False, f"GPU self-test failed: {type(e).__name__}: {e}"
    post("selftest", ok=ok, text=text)
