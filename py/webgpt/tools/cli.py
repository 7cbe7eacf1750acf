"""Command line: `python -m webgpt generate | chat | serve | info | bench | quantize | fetch |
import`.

The one implementation of every model command: build.py's `fetch`, `import` and `quantize`
call `main([...], prog="build.py")`, which only changes how messages start ("build.py:
quantize: ..." rather than "error: ...").

User mistakes (a bad folder, a bad parameter, no GPU, a model the hub does not have) print one
line and exit with status 1; only bugs show a traceback. fetch needs the standard library only
(build.py runs it before any virtual environment exists).
"""

import argparse
import asyncio
import logging
import os
import sys
import warnings

from ..errors import printable
from .bench import ALL_SHAPES, SHAPES as GPT2_SHAPES

DEFAULT_MODEL = "weights/shakespeare-char"


class _Parser(argparse.ArgumentParser):
    """A usage mistake (an unknown option, -n abc) is one line and status 1, like the others."""

    def error(self, message):
        self.exit(1, f"error: {printable(message)} (see '{self.prog} --help')\n")


class _QuietDeviceLost(logging.Filter):
    """wgpu logs a lost device on three lines of its own; the error we raise says it in one."""

    def filter(self, record):
        text = record.getMessage().lower()
        return "device lost" not in text and "device was lost" not in text


def _parser(prog="python -m webgpt"):
    p = _Parser(prog=prog, description="LLM inference over WebGPU (wgpu-py): GPT-2, Llama, "
                "Qwen, Gemma, Phi-3, Mistral and SmolLM3 model folders and GGUF files; generate, "
                "chat, serve, bench, quantize, fetch, import.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="continue a prompt")
    _model_args(g)
    g.add_argument("--prompt", required=True, help="text to continue")
    _sampling_args(g, max_new_tokens=50, temperature=1.0)
    g.add_argument("--stats", action="store_true", help="print load time and speed to stderr")
    c = sub.add_parser("chat", help="chat with an instruction-tuned model (its chat template); "
                       "without --message a REPL: /reset starts over, /exit (or Ctrl+D) ends, "
                       "Ctrl+C stops the reply in flight")
    _model_args(c)
    c.add_argument("--system", help="a system message that starts the conversation")
    c.add_argument("--message", help="answer this one message, print the reply and exit")
    _sampling_args(c, max_new_tokens=512, temperature=0.7)
    sv = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (/v1/chat/completions, "
                        "/v1/completions, /v1/models) over model folders")
    sv.add_argument("--model", action="append", required=True,
                    help="a model folder, served under its folder's name (give it again for "
                         "more models)")
    sv.add_argument("--port", type=int, default=8080, help="the port (8080)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="the address to bind (127.0.0.1: this machine only)")
    sub.add_parser("info", help="the GPU adapter: name, features, limits")
    _bench_args(sub.add_parser("bench", help="speed of the published models' shapes (GPT-2, "
                               "Llama, Qwen, Gemma, Phi, SmolLM3) on this adapter, random "
                               "weights, beside PyTorch peers where CUDA is there"))
    _folder_commands(sub)
    return p


def _model_args(p):
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model folder or .gguf file (default {DEFAULT_MODEL})")
    p.add_argument("--quantize", choices=["q8", "q4"], default=None,
                   help="quantize a float model's matrices to 8 or 4 bits on the GPU as it loads")


def _sampling_args(p, max_new_tokens, temperature):
    p.add_argument("-n", "--max-new-tokens", type=int, default=max_new_tokens,
                   help=f"most tokens to generate ({max_new_tokens})")
    p.add_argument("--temperature", type=float, default=temperature,
                   help=f"0 is greedy (default {temperature})")
    p.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")


def _bench_args(b):
    b.add_argument("--shapes", nargs="+", default=list(GPT2_SHAPES), choices=ALL_SHAPES,
                   help="GPT-2 shapes (the default) and the other families', random weights")
    b.add_argument("--dtypes", nargs="+", default=["F32", "F16", "Q8", "Q4"],
                   choices=["F32", "F16", "Q8", "Q4", "Q4_0", "Q8_0", "Q4_K_M"],
                   help="weights in the file: f32, f16, or quantized to 8 or 4 bits (webgpt's "
                        "own), or a GGUF file's: Q4_0, Q8_0, a Q4_K_M mix")
    b.add_argument("--contexts", nargs="+", type=int, default=[16, 256, 1000])
    b.add_argument("--decode-tokens", type=int, default=20, help="tokens timed per context")
    b.add_argument("--prompt", type=int, default=512, help="prompt length for prefill")
    b.add_argument("--no-baseline", action="store_true", help="run no PyTorch peer")
    b.add_argument("--controls", action="store_true",
                   help="also time sampled decoding without and with an API request's logits "
                        "processors (penalties, min-p, logit bias, 5 top logprobs)")
    b.add_argument("--baselines", nargs="+", default=["hf", "hf_static", "graphs"],
                   choices=["hf", "hf_static", "graphs", "llamacpp"],
                   help="peers run beside ours: PyTorch's where CUDA is there, transformers' "
                        "generate eager (hf) and with its compiled static cache (hf_static), "
                        "and a CUDA-graph decode over a static cache (graphs); llama.cpp "
                        "(llamacpp: Llama/Qwen shapes, F16, Q8_0, Q4_0, Q4_K_M) on a GGUF file "
                        "of the shape that ours then loads too")
    b.add_argument("--llamacpp", metavar="DIR", help="folder whose node_modules has "
                   "node-llama-cpp and its llama.cpp build (default $WEBGPT_LLAMACPP, else "
                   "tests/llamacpp)")
    b.add_argument("--llamacpp-backend", choices=["vulkan", "cuda", "cpu"], default="vulkan",
                   help="llama.cpp's backend (the table says which one ran)")
    b.add_argument("--node", metavar="PATH", help="node for llama.cpp (default $WEBGPT_NODE, "
                   "else node on PATH)")
    b.add_argument("--gguf-dir", metavar="DIR", help="where the GGUF files for llama.cpp are "
                   "written and reused (default: a folder in the temporary directory)")
    b.add_argument("--json", help="write the results as JSON here")
    b.add_argument("--plot", help="write a PNG plot here (needs matplotlib)")
    b.add_argument("--profile", action="store_true", help="also time each decode op alone")


def _folder_commands(sub):
    """quantize, fetch and import: the commands that write model folders."""
    q = sub.add_parser("quantize", help="write a quantized copy of a model folder (8 or 4 bits)")
    q.add_argument("src", help="the model folder to quantize")
    q.add_argument("dst", help="the quantized model folder to write")
    q.add_argument("--bits", type=int, required=True, help="8 or 4")
    q.add_argument("--block", type=int, default=32, help="inputs per f16 scale (default 32)")
    q.add_argument("--max-shard", type=float, default=1024, metavar="MB",
                   help="largest weight file in MiB (default 1024)")
    q.add_argument("--force", action="store_true", help="write into a non-empty folder")
    f = sub.add_parser("fetch", help="download a model folder from the Hugging Face hub "
                       "(HF_ENDPOINT overrides https://huggingface.co); resumes when interrupted")
    f.add_argument("name", help="gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, or a hub "
                   "repository id (owner/name) with safetensors weights")
    f.add_argument("--dest", help="the model folder to write (default weights/NAME)")
    f.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    i = sub.add_parser("import", help="convert a model trained elsewhere into a model folder")
    kinds = i.add_subparsers(dest="kind", required=True)
    n = kinds.add_parser("nanogpt", help="a nanoGPT checkpoint (train.py's ckpt.pt)")
    n.add_argument("ckpt", help="the checkpoint file")
    n.add_argument("--meta", help="meta.pkl of a character-level model (default: beside the "
                   "checkpoint, or data/<dataset>/meta.pkl as nanoGPT's sample.py finds it)")
    w = kinds.add_parser("webgpt", help="an original WebGPT weight folder (params_gpt.json + "
                         "*_gpt.bin)")
    w.add_argument("dir", help="the weight folder")
    w.add_argument("--tokens", help="WebGPT's simple_tokens.json for a character-level model "
                   "(default: found in the folder or ../tokenization/)")
    for k in (n, w):
        k.add_argument("out", help="the model folder to write")
        k.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                       help="dtype of the written weights (default float32)")
        k.add_argument("--force", action="store_true", help="write into a non-empty folder")


def _quantize(a, say):
    from .quantize import quantize_folder

    summary = quantize_folder(a.src, a.dst, a.bits, a.block, int(a.max_shard * 2**20), a.force,
                              progress=say)
    worst = max((t["max_err_over_scale"] for t in summary["tensors"]), default=0)
    print(f"{printable(a.dst)}: {a.bits}-bit, block {a.block}: {summary['bytes'] / 1e6:.1f} MB in "
          f"{len(summary['files'])} file(s) (the source's weights: "
          f"{summary['source_bytes'] / 1e6:.1f} MB); largest |w - w'| {worst:.3f} of its scale")


def _fetch(a):
    from . import hub

    name = a.name.rstrip("/").rsplit("/", 1)[-1].replace(":", "-")  # NAME:Q4_K_M -> NAME-Q4_K_M
    dest = os.path.abspath(a.dest or os.path.join(a.weights_dir, name))
    try:
        hub.fetch(a.name, dest, a.revision)
    except KeyboardInterrupt:
        raise hub.HubError("interrupted; run it again to resume") from None


def _import(a, say):
    from . import importers

    if a.kind == "nanogpt":
        summary, notes = importers.import_nanogpt(a.ckpt, a.out, a.dtype, a.meta, a.force)
    else:
        summary, notes = importers.import_webgpt(a.dir, a.out, a.dtype, a.tokens, a.force)
    for note in notes:
        say(f"warning: {note}")
    print(printable(summary))


async def _generate(a):
    import webgpt
    from ..sampling import check_params

    check_params(a.max_new_tokens, a.temperature, a.top_k, a.top_p, a.seed)
    model = await webgpt.load(a.model, quantize=a.quantize)
    # A terminal whose encoding lacks a character the model wrote shows '?', not a traceback.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    # A hostile vocabulary can hold escape sequences: a terminal sees them escaped (newlines
    # and tabs kept); a pipe or a file gets the text exactly as the model wrote it.
    shown = _terminal_text if sys.stdout.isatty() else str
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            async for piece in model.stream(a.prompt, max_new_tokens=a.max_new_tokens,
                                            temperature=a.temperature, top_k=a.top_k,
                                            top_p=a.top_p, seed=a.seed):
                sys.stdout.write(shown(piece))
                sys.stdout.flush()
        finally:
            sys.stdout.write("\n")     # the error line, if any, goes below the text so far
            sys.stdout.flush()
    for w in caught:
        print(f"note: {printable(w.message)}", file=sys.stderr)
    if a.stats:
        s = model.stats
        print(f"adapter: {model.device.describe()}", file=sys.stderr)
        print(f"load: {s['load_s']:.2f} s", file=sys.stderr)
        if s["prefill_tokens"]:
            print(f"prefill: {s['prefill_tokens']} tokens in {s['prefill_s'] * 1e3:.1f} ms "
                  f"({s['prefill_tokens'] / s['prefill_s']:.0f} tokens/s)", file=sys.stderr)
        if s["decode_tokens"]:
            ms = s["decode_s"] / s["decode_tokens"] * 1e3
            print(f"decode: {s['decode_tokens']} tokens, {ms:.2f} ms/token ({1e3 / ms:.1f} tokens/s)",
                  file=sys.stderr)


def _chat(a):
    """`chat`: one reply (--message), or a REPL. Each reply runs in its own event loop, so that
    Ctrl+C (KeyboardInterrupt) ends that reply and the REPL goes on; the device then settles
    (read-backs that were under way finish) before the next one."""
    import webgpt
    from ..chat_template import ChatTemplateError
    from ..sampling import check_params

    check_params(a.max_new_tokens, a.temperature, a.top_k, a.top_p, a.seed)
    model = asyncio.run(webgpt.load(a.model, quantize=a.quantize))
    if getattr(model.tokenizer, "chat_template", None) is None:
        raise ChatTemplateError(f"{a.model} has no chat template (tokenizer_config.json's "
                                f"chat_template or chat_template.jinja): it is not a chat "
                                f"model; use 'generate' with a prompt")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    shown = _terminal_text if sys.stdout.isatty() else str
    start = [{"role": "system", "content": a.system}] if a.system else []
    messages = list(start)

    async def reply(out):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async for piece in model.chat_stream(messages, max_new_tokens=a.max_new_tokens,
                                                 temperature=a.temperature, top_k=a.top_k,
                                                 top_p=a.top_p, seed=a.seed):
                out.append(piece)
                sys.stdout.write(shown(piece))
                sys.stdout.flush()
        for w in caught:
            print(f"note: {printable(w.message)}", file=sys.stderr)

    def turn(text):
        messages.append({"role": "user", "content": text})
        out = []
        try:
            asyncio.run(reply(out))
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
            asyncio.run(model.device.settle())
        finally:
            sys.stdout.write("\n")
            sys.stdout.flush()
        messages.append({"role": "assistant", "content": "".join(out)})

    if a.message is not None:
        turn(a.message)
        return
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"{a.model}: chat ({model.device.describe()}). /reset starts over, /exit ends.",
              file=sys.stderr)
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:  # Ctrl+C at the prompt: a fresh prompt, as shells do
            print(file=sys.stderr)
            continue
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            messages[:] = start
            print("(a new conversation)", file=sys.stderr)
            continue
        turn(line)


async def _info():
    from .. import gpu

    dev = await gpu.request_device()
    print(f"adapter: {dev.describe()}")
    print(f"features: {', '.join(sorted(dev.features))}")
    print("limits:")
    for k in sorted(dev.limits):
        print(f"  {k}: {dev.limits[k]}")


def main(argv=None, prog=None, weights_dir="weights"):
    """Run one command; returns the exit status. `prog="build.py"` makes messages start with
    "build.py: COMMAND: " (build.py delegates its model commands here); `fetch` writes into
    weights_dir/NAME unless --dest says where."""
    a = _parser(prog or "python -m webgpt").parse_args(argv)
    a.weights_dir = weights_dir
    if prog:
        lead = f"{prog}: {a.command}: "
        a.error_lead, a.note_lead = lead, lead
    else:
        a.error_lead, a.note_lead = "error: ", ""
    if a.command == "fetch":  # the standard library only: no GPU, numpy or wgpu imports
        return _run(a, _mistakes(a.command))
    try:
        import wgpu  # noqa: F401  (first: wgpu checks that its logger is of its own class)
    except ImportError:
        return _run(a, _mistakes(a.command))  # GPU commands will say so in one line
    quiet = _QuietDeviceLost()
    logging.getLogger("wgpu").addFilter(quiet)
    try:
        return _run(a, _mistakes(a.command))
    finally:
        logging.getLogger("wgpu").removeFilter(quiet)


def _mistakes(command):
    """The exceptions that mean a user mistake (one line, status 1) for `command`."""
    from ..errors import ModelFolderError

    if command == "fetch":
        from .hub import HubError
        return (HubError, ModelFolderError)
    from ..gpu import GPUError
    from ..tokenizer import TokenizerError

    mistakes = (ModelFolderError, GPUError, TokenizerError, ValueError, MemoryError)
    if command == "import":
        from .importers import ConversionError
        mistakes += (ConversionError,)
    elif command == "quantize":
        from .quantize import QuantizeError
        mistakes += (QuantizeError,)
    return mistakes


def _run(a, mistakes):
    def say(line):
        print(f"{a.note_lead}{printable(line)}", file=sys.stderr, flush=True)

    try:
        if a.command == "generate":
            asyncio.run(_generate(a))
        elif a.command == "bench":
            for c in a.contexts:  # the timed runs need at least 4 tokens after the context
                if not 1 <= c <= 1014:
                    raise ValueError("--contexts must be in 1..1014 (GPT-2's context is 1024)")
            if not 1 <= a.prompt <= 1024 or a.decode_tokens < 1:
                raise ValueError("--prompt must be in 1..1024 and --decode-tokens at least 1")
            from .bench import main as bench
            bench(a)
        elif a.command == "quantize":
            _quantize(a, say)
        elif a.command == "chat":
            _chat(a)
        elif a.command == "fetch":
            _fetch(a)
        elif a.command == "import":
            _import(a, say)
        elif a.command == "serve":
            if not 0 <= a.port <= 65535:
                raise ValueError(f"--port must be in 0..65535, not {a.port}")
            from .serve import main as serve
            asyncio.run(serve(a.model, a.host, a.port, say))
        else:
            asyncio.run(_info())
    except mistakes as e:
        print(f"{a.error_lead}{_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (| head): stop quietly, as other tools do, with
        # stdout pointed at /dev/null so that the interpreter's last flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if type(e).__module__.split(".")[0] != "wgpu":
            raise   # a bug: its traceback is wanted
        # A wgpu error the backend did not translate (the GPU API failed under us).
        print(f"error: WebGPU: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0


def _terminal_text(piece):
    """Generated text for a terminal: escape sequences escaped, lines and tabs as they are."""
    return "\n".join("\t".join(printable(part) for part in line.split("\t"))
                     for line in piece.split("\n"))


def _one_line(e):
    """An error as one line: wgpu's messages span several, the last of which says why. Control
    characters (a name from a hostile folder) are escaped, whatever raised it."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if len(lines) <= 1:
        return printable(lines[0] if lines else type(e).__name__)
    return printable(lines[-1] if type(e).__module__.split(".")[0] == "wgpu" else " ".join(lines))
