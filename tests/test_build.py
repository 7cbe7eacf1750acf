"""build.py's bootstrap contract: the system Python runs it before .venv exists, so importing
it (and webgpt.tools.site, which does its work) needs the standard library only, and the
names the tests and scripts use (`import build`) stay on the build module."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the tests, tests/scripts/ and the README call on `import build`.
API = ("build", "make_server", "Server", "copy_model", "model_file_problem", "check_hub_endpoint",
       "write_shell_manifest", "SHELL_MANIFEST", "CHAT_WHEELS", "sha256_file", "main")


def test_build_py_imports_only_the_standard_library():
    """`python -S` (no site-packages, no .pth) imports build.py and the package it uses; every
    module loaded is the standard library's or the checkout's own."""
    code = ("import json, sys; import build; "
            f"print(json.dumps({{'api': [n for n in {API!r} if not hasattr(build, n)], "
            "'modules': sorted({m.split('.')[0] for m in sys.modules})}))")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["api"] == [], f"names missing on the build module: {out['api']}"
    foreign = [m for m in out["modules"] if m not in sys.stdlib_module_names
               and m not in ("build", "webgpt", "__main__")]
    assert foreign == [], f"build.py imported modules beyond the standard library: {foreign}"
