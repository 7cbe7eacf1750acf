// Python's start, saved: a memory snapshot of Pyodide with this project's wheel installed and
// the modules the page imports already imported. build.py runs it (Node, at build time):
//
//   node web/snapshot/make.mjs PYODIDE_DIR WHEEL OUT.gz
//
// The page's worker (worker.mjs) gives it to loadPyodide, which then restores memory instead of
// starting Python and importing (about 1 s against 4 on a 2-core machine), and unpacks the
// wheel's files again (a snapshot holds memory, not the file system). It is made with the
// site's own pyodide.asm.wasm and wheel, and only used with them (build.json names it); where
// it cannot be used the worker starts Python as without it. Gzipped: 31 MB of memory, 7 MB.
//
// Pyodide's snapshots are its own (loadPyodide's _makeSnapshot/_loadSnapshot, which Pyodide
// documents as internal): pinned Pyodide, checked by tests/test_web.py and tests/test_dawn.py.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import zlib from "node:zlib";

const [pyodideDir, wheel, out] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(path.join(pyodideDir, "pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL: path.resolve(pyodideDir) + "/", _makeSnapshot: true });
const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
pyodide.unpackArchive(new Uint8Array(fs.readFileSync(wheel)), "wheel", { extractDir: sitePackages });
// What worker.py and a model's load import (modules that hold no JavaScript object yet).
pyodide.runPython(`
import ast, asyncio, importlib, importlib.util, inspect, io, json, linecache, struct, traceback, types
import pyodide._package_loader, shutil, tempfile, zipfile  # the wheel's unpacking after a restore
import webgpt, webgpt.model, webgpt.gpu.browser, webgpt.sources.fetch, webgpt.tokenizer
import webgpt.sampling, webgpt.finite, webgpt.kernels
`);
const snapshot = pyodide.makeMemorySnapshot();
fs.writeFileSync(out + ".tmp", zlib.gzipSync(snapshot, { level: 6 }));
fs.renameSync(out + ".tmp", out);
process.exit(0);
