"""Model folders into the site: every folder under weights/ with a config.json or one GGUF
model (and any the caller adds) is copied into models/<name>/, listed in models/index.json with each file's size
and sha256. The file policy lives here: which files of a folder go, and which links are
followed."""

import errno
import os
import stat

from .common import WEIGHTS, cached_sha256, copy_if_changed, inside, remove, shown, write_json

# Files of a model folder that go into the site (scripts, logs and caches stay behind).
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors.index.json",
               "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja"}
DEFAULT_MODEL = "shakespeare-char"
GGUF_MANIFEST = "gguf.json"    # the one file a GGUF model's folder in the site adds


def find_models(extra=None):
    """{name: folder} of every folder under weights/ with a config.json or a GGUF model (one
    .gguf file, or one split model's parts, as `build.py fetch OWNER/NAME:QUANT` leaves it),
    plus `extra`."""
    models = {}
    if os.path.isdir(WEIGHTS):
        for name in sorted(os.listdir(WEIGHTS)):
            folder = os.path.join(WEIGHTS, name)
            # Anything called config.json: copy_model says what is wrong with it if it is not
            # a file (a broken link, a pipe), rather than leaving the model out in silence.
            if os.path.isdir(folder) and (os.path.lexists(os.path.join(folder, "config.json"))
                                          or gguf_model_of(folder)):
                models[name] = folder
    models.update(extra or {})
    return models


def gguf_model_of(folder):
    """The first .gguf file of a folder that holds one GGUF model and no config.json, or None."""
    from ...gguf import split_names

    if os.path.lexists(os.path.join(folder, "config.json")):
        return None
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".gguf"))
    firsts = [n for n in names if split_names(n) is None or split_names(n)[1] == 1]
    return firsts[0] if len(firsts) == 1 else None


def model_file_problem(folder, name):
    """None when file `name` of model folder `folder` may go into the site, else a sentence.

    The symlink policy: a link is followed only where it stays inside the model folder, or, for
    a Hugging Face cache snapshot (<repo>/snapshots/<rev>/, whose files are links to
    ../../blobs/<hash>), inside that repository's blobs/. A link anywhere else would publish a
    file of this machine on the site. Only regular files are copied (a pipe would block the
    build, a link to /dev/zero never end)."""
    src = os.path.join(folder, name)
    root = os.path.realpath(folder)
    if os.path.islink(src):
        real = os.path.realpath(src)
        allowed = [root]
        if os.path.basename(os.path.dirname(root)) == "snapshots":
            allowed.append(os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(root)),
                                                         "blobs")))
        if not any(inside(real, a) for a in allowed):
            return (f"{shown(src)} is a symbolic link to {shown(os.readlink(src))}, outside the "
                    f"model folder (links are followed only inside it, or into the blobs/ of the "
                    f"Hugging Face cache repository it is a snapshot of); copy the file into the "
                    f"folder instead")
    try:
        st = os.stat(src)
    except OSError as e:
        if os.path.islink(src):
            why = "loops" if e.errno == errno.ELOOP else "leads nowhere"
            return f"{shown(src)} is a symbolic link that {why} ({e.strerror})"
        return f"{shown(src)} cannot be read ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else
                "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "not a regular file")
        return f"{shown(src)} is {kind}, not a file a model folder can hold"
    return None


def copy_model(folder, dst):
    """Copy model folder `folder`'s files (MODEL_FILES and the weights) into `dst`; returns
    {name: size}. A file the symlink policy refuses (model_file_problem) stops the build with
    its sentence."""
    files = {}
    os.makedirs(dst, exist_ok=True)
    gguf = gguf_model_of(folder)
    for name in sorted(os.listdir(folder)):
        if name not in MODEL_FILES and not name.endswith(".safetensors") and \
                not (gguf and name.lower().endswith(".gguf")):
            continue
        problem = model_file_problem(folder, name)
        if problem:
            raise SystemExit(f"build.py: {problem}")
        src = os.path.join(folder, name)
        copy_if_changed(src, os.path.join(dst, name))
        files[name] = os.path.getsize(src)
    if gguf:
        # The page reads a folder by URL and cannot list it: gguf.json names the file to read
        # (webgpt.folder follows it).
        write_json(os.path.join(dst, GGUF_MANIFEST), {"gguf": gguf})
        files[GGUF_MANIFEST] = os.path.getsize(os.path.join(dst, GGUF_MANIFEST))
    for name in os.listdir(dst):  # files removed from the source folder since the last build
        if name not in files:
            remove(os.path.join(dst, name))
    return files


def copy_models(models_dir, extra_models=None):
    """Every model (find_models) into models_dir/<name>/, with models_dir/index.json (the
    default model and each model's files, sizes and sha256); any other folder there goes.
    Returns {name: folder}."""
    os.makedirs(models_dir, exist_ok=True)
    index = []
    models = find_models(extra_models)
    for name, folder in models.items():
        files = copy_model(folder, os.path.join(models_dir, name))
        # Each file's sha256: the page keeps files on the device by it, and checks them.
        hashes = {f: cached_sha256(os.path.join(folder if f != GGUF_MANIFEST else
                                                os.path.join(models_dir, name), f))
                  for f in files}
        index.append({"name": name, "bytes": sum(files.values()), "files": files,
                      "sha256": hashes})
    for name in os.listdir(models_dir):
        path = os.path.join(models_dir, name)
        if (os.path.isdir(path) or os.path.islink(path)) and name not in models:
            remove(path)
    default = DEFAULT_MODEL if DEFAULT_MODEL in models else (index[0]["name"] if index else None)
    write_json(os.path.join(models_dir, "index.json"), {"default": default, "models": index})
    return models
