#!/usr/bin/env python3
"""One entry point: build the static site, serve it, run the tests.

    python3 build.py                      build the site into dist/
    python3 build.py serve [--port N]     build, then serve dist/ on http://127.0.0.1:8000/
        (both take --hub-endpoint URL: the hub the page loads owner/name models from;
         default https://huggingface.co)
    python3 build.py test [pytest args]   the whole test suite (browser tests included)
    python3 build.py fetch NAME [--dest D] download gpt2 (-medium, -large, -xl), distilgpt2
                                          or a hub repo from Hugging Face into weights/NAME
    python3 build.py import nanogpt CKPT OUT | import webgpt DIR OUT
                                          convert a nanoGPT ckpt.pt or a WebGPT weight folder
    python3 build.py quantize SRC DST --bits 8|4 [--block 32] [--max-shard MB] [--force]
                                          write a quantized copy of a model folder

A fresh machine runs this with the system Python before anything is installed, so it (and
the modules it imports) uses the standard library only. Each command first makes what it
needs, once (stamp files make the checks fast when nothing changed):

- a virtual environment at .venv with requirements.txt (requirements-test.txt for `test`),
  then re-runs itself inside it;
- `npm ci` in web/ (Pyodide, CodeMirror, hash-wasm and esbuild, pinned in
  web/package-lock.json);
- for `test`, as root and where missing: `apt-get install chromium mesa-vulkan-drivers`.

The site (dist/): the page (web/), Pyodide's runtime files, the pure wheels packaging and
micropip (pinned by sha256 in wheels.py), this project's own wheel built from py/ and
shaders/, and every model folder under weights/ that has a config.json, in models/<name>/ with
models/index.json listing them (each file's size and sha256). Nothing on the page comes from
anywhere else, except a model from the hub when a user asks for one: the hub's address is
fixed here (build.json's hub_endpoint). For offline use, sw.js (a service worker) keeps the
files that sw-shell.js lists, with their sha256 and a version named by them; the page keeps
models in the browser's Origin Private File System by their hash (SHA-256, or the hub's git
SHA-1, from hash-wasm, bundled into sha256.js). The page's code editor is CodeMirror,
bundled from web/editor/ into editor.js by esbuild; the files it shows (web/scripts/,
web/examples/, py/webgpt/, shaders/) are copied into code/, listed with their sha256 in
code/index.json.

This file parses the command line, makes the virtual environment and dispatches; the work is
done by py/webgpt/tools/site/, one module per job (its __init__ lists them): standard library
only, like this file, since they are imported before .venv exists.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys

# The checkout's own package (build.py runs before .venv exists, and the venv's .pth may not
# be in effect): webgpt.tools.site does the work.
_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "py")
if _PY not in sys.path:
    sys.path.insert(0, _PY)

from webgpt.tools.site.common import (  # noqa: E402
    CACHE, DIST, ROOT, VENV, WEB, WEIGHTS, log, read_stamp, run, sha256_file, tree_digest,
    write_stamp)
from webgpt.tools.site.deps import apt_install, ensure_browser, ensure_npm  # noqa: E402
from webgpt.tools.site.dist import DEFAULT_HUB, build, check_hub_endpoint  # noqa: E402
from webgpt.tools.site.models import (  # noqa: E402
    DEFAULT_MODEL, MODEL_FILES, copy_model, find_models, model_file_problem)
from webgpt.tools.site.server import MIME, Handler, Server, make_server, parse_range  # noqa: E402
from webgpt.tools.site.shell import SHELL_MANIFEST, write_shell_manifest  # noqa: E402
from webgpt.tools.site.wheels import CHAT_WHEELS, PURE_WHEELS  # noqa: E402

# The names above are build.py's API for the tests and scripts (`import build`:
# build.build, build.make_server, build.copy_model, build.SHELL_MANIFEST, ...).
__all__ = ["CACHE", "CHAT_WHEELS", "DEFAULT_HUB", "DEFAULT_MODEL", "DIST", "Handler", "MIME",
           "MODEL_FILES", "PURE_WHEELS", "ROOT", "SHELL_MANIFEST", "Server", "WEB", "WEIGHTS",
           "build", "check_hub_endpoint", "copy_model", "find_models", "main", "make_server",
           "model_file_problem", "parse_range", "sha256_file", "write_shell_manifest"]


# ---------------------------------------------------------------- the virtual environment


def requirements_for(command):
    return "requirements-test.txt" if command == "test" else "requirements.txt"


def requirement_files(name):
    """The requirements file and the ones it includes with -r."""
    out, todo = [], [os.path.join(ROOT, name)]
    while todo:
        path = todo.pop()
        out.append(path)
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
                    todo.append(os.path.join(os.path.dirname(path), parts[1]))
    return out


def venv_python():
    return os.path.join(VENV, "bin", "python")


def in_venv():
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def ensure_venv(command):
    """Create .venv, install the requirements (once per change), then re-run inside it."""
    req = requirements_for(command)
    if not os.path.exists(venv_python()):
        log(f"creating the virtual environment {VENV}")
        try:
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        except subprocess.CalledProcessError:
            shutil.rmtree(VENV, ignore_errors=True)
            apt_install("python3-venv")  # Debian's Python has venv without ensurepip
            run([sys.executable, "-m", "venv", VENV])
    stamp = os.path.join(VENV, f".installed-{req}")
    digest = tree_digest(requirement_files(req))
    if read_stamp(stamp) != digest:
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        run([venv_python(), "-m", "pip", "install", "-q", "-r", os.path.join(ROOT, req)], env=env)
        write_stamp(stamp, digest)
    # The package itself, from py/ as it is (an editable install, without a build step):
    # `.venv/bin/python -m webgpt` runs the working tree.
    for site_packages in glob.glob(os.path.join(VENV, "lib", "python*", "site-packages")):
        pth = os.path.join(site_packages, "webgpt-src.pth")
        if read_stamp(pth) != os.path.join(ROOT, "py"):
            write_stamp(pth, os.path.join(ROOT, "py"))
    if not in_venv():
        env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        env.pop("PYTHONHOME", None)
        os.execve(venv_python(), [venv_python(), os.path.abspath(__file__), *sys.argv[1:]], env)


# ---------------------------------------------------------------- commands


def cmd_build(args):
    build(args.out, hub_endpoint=args.hub_endpoint)


def cmd_serve(args):
    out = build(args.out, hub_endpoint=args.hub_endpoint)
    try:
        server = make_server(out, args.host, args.port, quiet=not args.verbose)
    except OSError as e:
        raise SystemExit(f"build.py: cannot listen on {args.host}:{args.port}: {e.strerror}; "
                         f"try another port with --port") from None
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"Serving {out} at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def cmd_test(pytest_args):
    ensure_browser()
    ensure_npm()
    os.chdir(ROOT)
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *pytest_args])


# ---------------------------------------------------------------- models: fetch, import


def cmd_model(command, argv):
    """fetch, import, quantize: webgpt's own command line (py/webgpt/tools/cli.py) runs them,
    with messages that start "build.py: COMMAND: " and models written under weights/."""
    from webgpt.tools import cli
    return cli.main([command, *argv], prog="build.py", weights_dir=WEIGHTS)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(__doc__.split("\n\n")[1])
        return 0
    command = argv[0] if argv and not argv[0].startswith("-") else "build"
    if command not in ("build", "serve", "test", "fetch", "import", "quantize"):
        print(f"build.py: unknown command {command!r}; commands:", file=sys.stderr)
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    # fetch needs the standard library only: it runs before (or without) the venv.
    if not os.environ.get("WEBGPT_NO_VENV") and command != "fetch":
        ensure_venv(command)  # returns only inside the venv
    if command in ("fetch", "import", "quantize"):
        return cmd_model(command, argv[1:])
    if command == "test":
        cmd_test(argv[1:])
        return 0
    p = argparse.ArgumentParser(prog=f"build.py {command}")
    p.add_argument("--out", default=DIST, help="where to build the site (default dist/)")
    p.add_argument("--hub-endpoint", default=DEFAULT_HUB, metavar="URL",
                   help=f"the hub the page loads owner/name models from (default {DEFAULT_HUB})")
    if command == "serve":
        p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv[1:] if argv and argv[0] == command else argv)
    args.out = os.path.abspath(args.out)
    {"build": cmd_build, "serve": cmd_serve}[command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
