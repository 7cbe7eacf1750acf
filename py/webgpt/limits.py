"""Bounds on what a model folder can make this process hold, checked before it is held.

A folder is input from anyone: a 2 GB config.json, a vocab.json of ten million tiny nested
lists, or a config that declares more weights than the machine has memory must each end in one
sentence, not in the out-of-memory killer. Three checks, each made before the memory is spent:

- `text_limit(name)`: the largest model text file (config.json, tokenizer files, shard index)
  that the sources (webgpt.sources) read whole; they check the size before reading and never
  read past it.
- `parse_json(text, where)`: json.loads, after an estimate of what the parsed objects will take
  (json.loads can turn 1 MB of "[[],[],...]" into 25 MB of lists) is checked against a budget;
  too deep a nesting is the same one-sentence error, never a RecursionError.
- `check_host_memory(device, need, what)`: on a CPU adapter (lavapipe, SwiftShader) the GPU's
  buffers are host memory, so a model that needs more than the machine has free is refused
  before its upload starts, rather than streamed in until the kernel kills the process.
"""

import contextlib
import gc
import json
import os
import re
import sys

from .errors import ModelFolderError

MiB = 1 << 20

# name -> (largest file in bytes, memory budget for parsing it). The real files are far
# smaller: GPT-2's vocab.json is 1 MB, merges.txt 0.5 MB; Llama 3's and Qwen's tokenizer.json
# 7-11 MB, Gemma 3's 33 MB (262k tokens, 514k merges: estimated at 331 MiB to parse, 224 MiB
# at its peak measured); a config a few KB; the index of a model in 163 shards under 10 MB.
TEXT_FILES = {
    "config.json": (1 * MiB, 16 * MiB),
    "generation_config.json": (1 * MiB, 16 * MiB),
    "special_tokens_map.json": (1 * MiB, 16 * MiB),
    "tokenizer_config.json": (16 * MiB, 128 * MiB),
    "chat_template.jinja": (1 * MiB, 0),
    "model.safetensors.index.json": (64 * MiB, 128 * MiB),
    "vocab.json": (32 * MiB, 128 * MiB),
    "merges.txt": (32 * MiB, 0),
    "tokenizer.json": (64 * MiB, 384 * MiB),
}
DEFAULT_TEXT_FILE = (16 * MiB, 128 * MiB)

# What one item of parsed JSON costs at most, in bytes (CPython 3.11-3.14, 64-bit, measured
# with tracemalloc): an object with its first entry 184 (+8 for the reference to it), a list
# 56 + 8 and its growth, a string 49 + its characters, a float 24 and an int 28, each with an
# 8-byte reference, a key's slot in its object's table. Each item is counted by the character
# that opens or follows it, so the estimate is an upper bound, about 1.5-2.5x the real peak.
_COST_OBJECT, _COST_ARRAY, _COST_QUOTE, _COST_SEPARATOR = 192, 72, 44, 40
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_WIDE = re.compile("[^\x00-\xff]")


def text_limit(name):
    """The largest size in bytes a model text file called `name` may have."""
    return TEXT_FILES.get(os.path.basename(name), DEFAULT_TEXT_FILE)[0]


def json_budget(name):
    """The memory, in bytes, that parsing JSON file `name` may take."""
    return TEXT_FILES.get(os.path.basename(name), DEFAULT_TEXT_FILE)[1] or DEFAULT_TEXT_FILE[1]


def check_text_size(where, name, size, error=ModelFolderError):
    """Raise `error` when `size` bytes is more than a text file called `name` may have."""
    limit = text_limit(name)
    if size > limit:
        raise error(f"{where} is {_size(size)}, more than the {_size(limit)} a {name} may have; "
                    f"it is not a model's {name} (a corrupt or wrong file?)")


def json_cost(text):
    """An upper bound on the bytes json.loads(text) allocates, counted without parsing."""
    width = 1 if text.isascii() else 4 if _ASTRAL.search(text) else 2 if _WIDE.search(text) else 1
    return (4096 + len(text) * width + _COST_OBJECT * text.count("{")
            + _COST_ARRAY * text.count("[")
            + _COST_QUOTE * text.count('"')
            + _COST_SEPARATOR * (text.count(",") + text.count(":")))


def parse_json(text, where, error=ModelFolderError, budget=None, subject=None, hook=None):
    """json.loads(text) within a memory budget (default: json_budget of `where`'s file name).

    Anything wrong is `error` with one sentence: not JSON, nested too deeply, or too costly to
    parse. `subject` ("x.safetensors's header") names what is parsed; by default `where`.
    `hook` is json.loads' object_pairs_hook.
    """
    subject = subject or where
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{subject} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    budget = json_budget(where) if budget is None else budget
    cost = json_cost(text)
    if cost > budget:
        raise error(
            f"{subject} would take about {_size(cost)} of memory to parse ({_size(len(text))} of "
            f"JSON with {text.count('{') + text.count('[')} objects and arrays), more than the "
            f"{_size(budget)} allowed: it is not a model's file (a corrupt or hostile one?)")
    with no_cycle_collection():
        try:
            return json.loads(text, object_pairs_hook=hook)
        except RecursionError:
            raise error(f"{subject} is not valid JSON for a model: it is nested too deeply") \
                from None
        except ValueError as e:
            raise error(f"{subject} is not valid JSON: {e}") from None


@contextlib.contextmanager
def no_cycle_collection():
    """Python's cyclic garbage collector paused for the block. Parsed JSON has no reference
    cycles, and hundreds of thousands of new containers would run the collector over and over:
    without this, half the time a large safetensors header takes."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _size(n):
    if n >= 10 * MiB:
        return f"{n / MiB:.0f} MiB"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    return f"{n} bytes"


# ---------------------------------------------------------------- host memory


def host_memory_bytes():
    """Bytes of memory this process can still take, or None where that is not knowable
    (Pyodide, a platform without /proc or sysconf): MemAvailable from /proc/meminfo (or the
    physical memory, without it), lowered to what a cgroup memory limit leaves."""
    if sys.platform == "emscripten":
        return None
    free = _meminfo_available()
    if free is None:
        try:
            free = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            free = None
    left = _cgroup_left()
    if left is not None:
        free = left if free is None else min(free, left)
    return free if free is not None and free > 0 else None


def _meminfo_available():
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except (OSError, ValueError):
        return None
    for key in ("MemAvailable", "MemTotal"):
        value = fields.get(key, "").split()
        if value and value[0].isdigit():
            return int(value[0]) * 1024  # kB
    return None


def _read_int(path):
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_left():
    """Bytes a cgroup memory limit still leaves this process (v2, else v1), or None."""
    for limit_file, usage_file in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_int(limit_file)   # "max" (v2, no limit) is not a number: None
        if limit is None or limit >= 1 << 60:   # v1 writes no limit as about 2**63
            continue
        usage = _read_int(usage_file) or 0
        return max(limit - usage, 0)
    return None


def check_host_memory(device, need_bytes, what="this model"):
    """On a CPU adapter, raise MemoryError when `need_bytes` is more than the host has free.

    A CPU adapter's buffers live in the host's memory, so there the limit is knowable; a GPU's
    own memory is checked by the GPU when buffers are made. Nothing is checked where the host's
    memory is unknown (host_memory_bytes() is None, as in the browser).
    """
    if not getattr(device, "is_cpu", False):
        return
    free = host_memory_bytes()
    if free is None or need_bytes <= free:
        return
    describe = getattr(device, "describe", None)
    adapter = describe() if callable(describe) else "a CPU adapter"
    raise MemoryError(
        f"{what} needs about {need_bytes / MiB:,.0f} MiB of memory, but this machine has "
        f"{free / MiB:,.0f} MiB free, and the adapter ({adapter}) runs on the CPU, in that "
        f"memory; use a smaller model, smaller weights (f16, or 8 or 4 bits: python build.py "
        f"quantize), or a machine with a GPU")

