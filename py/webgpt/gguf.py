"""The GGUF container (ggml's model file, as the hub's quantized repositories publish it): its
header read and checked, its tensors located, never their bytes read. Standard library only,
so it runs in Pyodide; a Source (webgpt.sources) gives the bytes, so the same code reads a
local file and, in the browser, a URL with Range requests.

A GGUF file (little-endian; versions 2 and 3, which differ only in that 3 allows big-endian
files, refused here):

    magic "GGUF", version u32, tensor count u64, metadata count u64
    metadata: count x (key: string, value type u32, value)
    tensor infos: count x (name: string, n_dims u32, n_dims x ne u64 (ne0 first: the values
                  of a row), ggml type u32, offset u64 from the start of the data)
    padding to general.alignment (32 by default), then the tensors' data

A string is a u64 byte length and UTF-8 bytes; a value is one of 13 types (u8, i8, u16, i16,
u32, i32, f32, bool, string, array, u64, i64, f64), an array a value type, a u64 count and
the values (arrays of arrays too). A model too large for one file is split into
NAME-00001-of-0000N.gguf files, each a GGUF of its own with some of the tensors; the first
holds the metadata, and split.count / split.tensors.count say how many files and tensors.

Everything is bounded before it is held (as webgpt.limits bounds the JSON files): the header
is read in growing windows up to MAX_HEADER bytes, counts and lengths are checked against the
bytes left in the file and against MAX_ITEMS values in all, so a hostile header (a billion
metadata entries, a 2 GB string, an array longer than the file) is one GGUFError sentence;
tensors that overlap, run past the end or have a type ggml does not know are too.
"""

import re
import struct

from .errors import ModelFolderError
from .ggml import type_of
from .limits import MiB, no_cycle_collection

__all__ = ["GGUFError", "GGUFFile", "GGUFTensor", "read_gguf", "read_gguf_files",
           "split_names", "MAX_HEADER", "MAX_ITEMS"]

MAGIC = b"GGUF"
MAX_HEADER = 256 * MiB      # bytes of header (metadata and tensor infos) read at most
MAX_ITEMS = 1 << 22         # metadata values held at most (Gemma's 256k-token vocabulary,
                            # its scores and token types are 0.8M)
MAX_STRING = 64 * MiB       # one string (a chat template is kilobytes)
MAX_TENSORS = 1 << 16
MAX_KEYS = 1 << 16
MAX_DIMS = 4
MAX_DEPTH = 3               # arrays of arrays of arrays at most
FIRST_WINDOW = 16 * MiB     # the first read of a header; real headers are 1-12 MB
DEFAULT_ALIGNMENT = 32

# Value types: id -> (name, struct code) for the fixed-size ones.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FIXED = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B",
          U64: "Q", I64: "q", F64: "d"}
TYPE_NAMES = ("u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64",
              "i64", "f64")

SPLIT = re.compile(r"^(?P<base>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class GGUFError(ModelFolderError):
    """A GGUF file that cannot be read: one sentence naming the file."""


class GGUFTensor:
    """One tensor's info: name, dims (ne0 first: ne0 values per row), GGMLType, the file it is in
    and its absolute byte range [start, end) there."""

    __slots__ = ("name", "dims", "type", "file", "start", "end")

    def __init__(self, name, dims, gtype, file, start, end):
        self.name, self.dims, self.type = name, dims, gtype
        self.file, self.start, self.end = file, start, end

    @property
    def shape(self):
        """The shape as numpy and torch write it (the last axis is ne0): (ne1, ne0) for a matrix."""
        return tuple(reversed(self.dims))

    @property
    def nbytes(self):
        return self.end - self.start

    def __repr__(self):
        return f"GGUFTensor({self.name!r}, {self.type.name}, {self.shape}, {self.file!r}@{self.start})"


class GGUFFile:
    """The header of one GGUF file: version, metadata {key: value} (arrays as lists, in file
    order), tensors [GGUFTensor] in the order of their data, data_start, alignment, size."""

    def __init__(self, name, version, metadata, tensors, data_start, alignment, size):
        self.name, self.version, self.metadata = name, version, metadata
        self.tensors, self.data_start, self.alignment, self.size = (tensors, data_start,
                                                                     alignment, size)


class _More(Exception):
    """The header runs past the bytes read so far: read at least `need` bytes and parse again."""

    def __init__(self, need):
        self.need = need


class _Parser:
    """A parse of the header in `buf` (the file's first bytes; `size` is the whole file's)."""

    def __init__(self, buf, size, where):
        self.buf, self.size, self.where = buf, size, where
        self.pos = 0
        self.items = 0

    def fail(self, message):
        raise GGUFError(f"{self.where}: {message}")

    def take(self, n, what):
        end = self.pos + n
        if end > self.size:
            self.fail(f"{what} at byte {self.pos} needs {n} bytes, but the file ends at byte "
                      f"{self.size} (a truncated or corrupt file?)")
        if end > len(self.buf):
            raise _More(end)
        piece = self.buf[self.pos:end]
        self.pos = end
        return piece

    def fixed(self, code, what):
        return struct.unpack("<" + code, self.take(struct.calcsize(code), what))[0]

    def count(self, n, each, what, limit):
        """Check that n items of at least `each` bytes fit in the file and within `limit`."""
        if n > limit:
            self.fail(f"{what} is {n:,}, more than the {limit:,} a model's GGUF may have (a "
                      f"corrupt or hostile file?)")
        if n * each > self.size - self.pos:
            self.fail(f"{what} is {n:,}, which would need {n * each:,} bytes, but only "
                      f"{self.size - self.pos:,} are left in the file (a corrupt or hostile file?)")

    def string(self, what):
        n = self.fixed("Q", what + "'s length")
        if n > MAX_STRING:
            self.fail(f"{what} is a string of {n:,} bytes, more than the {MAX_STRING:,} allowed "
                      f"(a corrupt or hostile file?)")
        data = self.take(n, what)
        try:
            return str(data, "utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} is not UTF-8 text")

    def value(self, vtype, what, depth=0):
        self.items += 1
        if self.items > MAX_ITEMS:
            self.fail(f"the metadata holds more than {MAX_ITEMS:,} values, more than a model's "
                      f"GGUF has (a corrupt or hostile file?)")
        if vtype in _FIXED:
            v = self.fixed(_FIXED[vtype], what)
            return bool(v) if vtype == BOOL else v
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY:
            return self.array(what, depth + 1)
        self.fail(f"{what} has value type {vtype}, which GGUF does not define (0 to 12)")

    def array(self, what, depth):
        if depth > MAX_DEPTH:
            self.fail(f"{what} nests arrays more than {MAX_DEPTH} deep")
        etype = self.fixed("I", what + "'s element type")
        n = self.fixed("Q", what + "'s length")
        if etype in _FIXED:
            code = _FIXED[etype]
            size = struct.calcsize(code)
            self.count(n, size, f"the length of {what}", MAX_ITEMS - self.items)
            self.items += n
            values = list(struct.unpack(f"<{n}{code}", self.take(n * size, what)))
            return [bool(v) for v in values] if etype == BOOL else values
        if etype not in (STRING, ARRAY):
            self.fail(f"{what} is an array of value type {etype}, which GGUF does not define")
        self.count(n, 8, f"the length of {what}", MAX_ITEMS - self.items)
        return [self.value(etype, f"{what}[{i}]", depth) for i in range(n)]

    def header(self, name):
        magic = self.take(4, "the magic number")
        if magic != MAGIC:
            self.fail(f"not a GGUF file (it starts with {bytes(magic)!r}, not b'GGUF')")
        raw = self.take(4, "the version")
        version = struct.unpack("<I", raw)[0]
        if version not in (2, 3):
            if struct.unpack(">I", raw)[0] in (2, 3):
                self.fail("is a big-endian GGUF file; webgpt reads the little-endian files the "
                          "hub publishes")
            if version == 1:
                self.fail("is a GGUF version 1 file (2023), which stored lengths differently; "
                          "convert the model again with a current llama.cpp")
            self.fail(f"has GGUF version {version}; webgpt reads versions 2 and 3")
        n_tensors = self.fixed("Q", "the tensor count")
        n_kv = self.fixed("Q", "the metadata count")
        self.count(n_kv, 8 + 4 + 1, "the metadata count", MAX_KEYS)
        self.count(n_tensors, 8 + 4 + 8 + 4 + 8, "the tensor count", MAX_TENSORS)
        metadata = {}
        for k in range(n_kv):
            key = self.string(f"metadata key {k}")
            vtype = self.fixed("I", f"the value type of {key!r}")
            if key in metadata:
                self.fail(f"has the metadata key {key!r} twice")
            metadata[key] = self.value(vtype, f"metadata {key!r}")
        infos = []
        for k in range(n_tensors):
            tname = self.string(f"tensor name {k}")
            n_dims = self.fixed("I", f"the dimension count of tensor {tname!r}")
            if not 1 <= n_dims <= MAX_DIMS:
                self.fail(f"tensor {tname!r} has {n_dims} dimensions; ggml has 1 to {MAX_DIMS}")
            dims = tuple(self.fixed("Q", f"a dimension of tensor {tname!r}")
                         for _ in range(n_dims))
            type_id = self.fixed("I", f"the type of tensor {tname!r}")
            offset = self.fixed("Q", f"the offset of tensor {tname!r}")
            infos.append((tname, dims, type_id, offset))
        return version, metadata, infos


def _alignment(metadata, where):
    a = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if isinstance(a, bool) or not isinstance(a, int) or a <= 0 or a & (a - 1) or a > 1 << 20:
        raise GGUFError(f"{where}: general.alignment must be a power of two, not {a!r}")
    return a


def _tensors(infos, name, where, data_start, size, alignment):
    """GGUFTensors of the infos, each checked: a known type, a whole number of blocks per row,
    aligned, inside the file, overlapping no other."""
    out, seen = [], set()
    for tname, dims, type_id, offset in infos:
        if tname in seen:
            raise GGUFError(f"{where}: tensor {tname!r} appears twice")
        seen.add(tname)
        gtype = type_of(type_id)
        if gtype is None:
            raise GGUFError(f"{where}: tensor {tname!r} has ggml type {type_id}, which ggml does "
                            f"not define (a corrupt file, or one newer than webgpt)")
        if any(d < 1 for d in dims):
            raise GGUFError(f"{where}: tensor {tname!r} has a dimension of 0 ({list(dims)})")
        numel = 1
        for d in dims:
            numel *= d
            if numel > 1 << 44:
                raise GGUFError(f"{where}: tensor {tname!r} has {list(dims)} values, more than "
                                f"any model's tensor")
        if dims[0] % gtype.block_values:
            raise GGUFError(f"{where}: tensor {tname!r} has rows of {dims[0]} values, not a "
                            f"multiple of {gtype.name}'s blocks of {gtype.block_values}")
        nbytes = numel // gtype.block_values * gtype.block_bytes
        if offset % alignment:
            raise GGUFError(f"{where}: tensor {tname!r} starts at data offset {offset}, not a "
                            f"multiple of the alignment {alignment}")
        start = data_start + offset
        if start + nbytes > size:
            raise GGUFError(f"{where}: tensor {tname!r} ({gtype.name}, {nbytes:,} bytes at byte "
                            f"{start:,}) runs past the end of the file ({size:,} bytes): a "
                            f"truncated download?")
        out.append(GGUFTensor(tname, dims, gtype, name, start, start + nbytes))
    out.sort(key=lambda t: t.start)
    for a, b in zip(out, out[1:]):
        if b.start < a.end:
            raise GGUFError(f"{where}: tensors {a.name!r} and {b.name!r} overlap (bytes "
                            f"{a.start:,}..{a.end:,} and {b.start:,}..{b.end:,})")
    return out


async def read_gguf(source, name):
    """The header of GGUF file `name` of `source` (a webgpt.sources Source), checked."""
    where = source.where(name)
    size = await source.size(name)
    window = min(size, FIRST_WINDOW)
    while True:
        buf = await source.read(name, 0, window)
        parser = _Parser(memoryview(buf), size, where)
        try:
            with no_cycle_collection():
                version, metadata, infos = parser.header(name)
            break
        except _More as more:
            if more.need > MAX_HEADER:
                raise GGUFError(f"{where}: its header runs past {MAX_HEADER // MiB} MiB, more "
                                f"than a model's GGUF has (a corrupt or hostile file?)") from None
            window = min(size, MAX_HEADER, max(2 * window, more.need + MiB))
    alignment = _alignment(metadata, where)
    data_start = -(-parser.pos // alignment) * alignment
    tensors = _tensors(infos, name, where, data_start, size, alignment)
    return GGUFFile(name, version, metadata, tensors, data_start, alignment, size)


def split_names(name):
    """(base, number, count) of a split file's name `NAME-0000k-of-0000n.gguf`, or None."""
    m = SPLIT.match(name)
    if m is None:
        return None
    return m["base"], int(m["no"]), int(m["count"])


async def read_gguf_files(source, name):
    """[GGUFFile] of a model: `name` alone, or, for a split file (any of its parts), every part
    in order. The metadata is the first part's; each part's split.no is checked."""
    split = split_names(name)
    if split is None:
        first = await read_gguf(source, name)
        count = first.metadata.get("split.count", 1)
        if count not in (0, 1):
            raise GGUFError(f"{source.where(name)}: it is part 1 of {count} of a split model, but "
                            f"its name is not NAME-00001-of-{count:05d}.gguf, so the other "
                            f"parts cannot be found")
        return [first]
    base, _, count = split
    if not 1 <= count <= 9999:
        raise GGUFError(f"{source.where(name)}: a split of {count} files is not possible")
    names = [f"{base}-{k:05d}-of-{count:05d}.gguf" for k in range(1, count + 1)]
    files = []
    for k, part in enumerate(names):
        if not await source.exists(part):
            raise GGUFError(f"{source.where(part)} is missing: it is part {k + 1} of the {count} "
                            f"files of this model")
        f = await read_gguf(source, part)
        no = f.metadata.get("split.no", k)
        if no != k:
            raise GGUFError(f"{source.where(part)}: its split.no is {no!r}, but its name makes "
                            f"it part {k + 1} of {count} (split.no {k})")
        files.append(f)
    total = files[0].metadata.get("split.tensors.count")
    found = sum(len(f.tensors) for f in files)
    if total is not None and total != found:
        raise GGUFError(f"{source.where(names[0])}: split.tensors.count is {total}, but the "
                        f"{count} files hold {found} tensors")
    return files
