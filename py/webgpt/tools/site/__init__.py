"""What build.py does, one module per job: build.py itself parses the command line, makes the
virtual environment and dispatches to these.

    common.py       the checkout's paths (ROOT, dist/, web/, weights/, build/) and file helpers
                    shared by the others: log, run, hashes, stamps, copies, printable names
    deps.py         what comes from outside Python: `npm ci` in web/, apt packages (nodejs,
                    chromium, mesa-vulkan-drivers, python3-venv)
    wheels.py       the wheels the page installs: Pyodide's missing pure wheels, the chat's
                    Jinja2 + MarkupSafe (built from its sdist), this project's own wheel
    snapshot.py     the Pyodide memory snapshot (web/snapshot/make.mjs under Node)
    bundles.py      the page's JavaScript from npm, bundled by esbuild (editor.js, sha256.js)
    editor_code.py  the files the page's editor shows (code/ with its index.json)
    models.py       model folders into the site (models/ with its index.json) and the
                    symlink / file policy
    shell.py        the service worker's list of the page's files (sw-shell.js)
    dist.py         build(): the static site, from all of the above
    server.py       the dev server: Range, If-Modified-Since, COOP/COEP, no listing

Why here: these are CPython-only tools, and DESIGN puts those in webgpt.tools. The page never
has them: pyproject.toml's wheel excludes py/webgpt/tools, and the editor's code/ leaves out
the same folder (editor_code.RUNTIME_EXCLUDE). They exist only in a checkout, so paths are
computed from this folder's place in it (common.ROOT).

build.py runs with the system Python before .venv exists, and imports this package then: every
module here uses the standard library only, and none uses the runtime package's internals
(importing webgpt.tools runs webgpt/__init__.py, which is pure standard library as the page
requires). Messages keep build.py's name: they are build.py's.
"""
