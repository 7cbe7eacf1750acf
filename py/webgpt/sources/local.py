"""A model folder on the local file system (or in Pyodide's virtual one).

`open_regular` and `read_text_file` are the one way a local model file is opened: only a
regular file is read (a folder, a named pipe, a device such as a link to /dev/zero, or a broken
or looping link in a file's place is named for what it is, and a pipe never blocks), and a text
file is read whole only up to webgpt.limits.text_limit of its name. The command-line tools use
them too, with their own error types.
"""

import errno
import os
import stat

from ..errors import ModelFolderError
from ..limits import check_text_size, text_limit
from .base import Source

# Opening a named pipe for reading would wait for a writer: O_NONBLOCK returns at once (and
# changes nothing for a regular file); the file's kind is checked before anything is read.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_BINARY", 0)


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _link_target(path):
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def os_error(path, e, error=ModelFolderError):
    """`error` with the sentence for OSError `e`, met opening or reading file `path`."""
    if isinstance(e, FileNotFoundError):
        if os.path.islink(path):
            return error(f"{path} is a broken symbolic link (to {_link_target(path)}, which does "
                         f"not exist)")
        return error(f"{path} does not exist")
    if e.errno == errno.ELOOP:
        return error(f"{path} is a symbolic link that loops (it never reaches a file)")
    if isinstance(e, IsADirectoryError):
        return error(f"{path} is a folder, not a file")
    # Permission denied, an I/O error of the disk.
    return error(f"{path} cannot be read: {e.strerror or e}")


def _check_kind(path, st, error):
    """Raise `error` unless `st` (the file's stat) is a regular file's."""
    if stat.S_ISREG(st.st_mode):
        return
    kind = _kind(st.st_mode)
    if os.path.islink(path):
        kind += f" (it links to {_link_target(path)})"
    raise error(f"{path} is {kind}, not a regular file; a model folder holds plain files")


def stat_regular(path, error=ModelFolderError):
    """os.stat of `path`, which must be a regular file (else `error` saying what it is)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise os_error(path, e, error) from None
    except ValueError:  # a NUL in the name
        raise error(f"{path} is not a file name (it holds a NUL character)") from None
    _check_kind(path, st, error)
    return st


def open_regular(path, error=ModelFolderError):
    """The regular file `path` open for binary reading; never blocks (a pipe is refused)."""
    stat_regular(path, error)   # before opening: opening a device can have effects of its own
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        raise os_error(path, e, error) from None
    try:
        _check_kind(path, os.fstat(fd), error)   # the file that was opened, not a swap
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text_file(path, name=None, error=ModelFolderError):
    """The whole of local text file `path`, at most limits.text_limit(name) bytes (`name`: the
    file's role, by default its base name), decoded as UTF-8; anything wrong is `error`."""
    name = name or os.path.basename(path)
    limit = text_limit(name)
    with open_regular(path, error) as f:
        check_text_size(path, name, os.fstat(f.fileno()).st_size, error)
        try:
            data = f.read(limit + 1)    # it may have grown since
        except OSError as e:
            raise os_error(path, e, error) from None
    check_text_size(path, name, len(data), error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 text") from None


class LocalSource(Source):
    """A model folder on the local file system (or in Pyodide's virtual one).

    Reads are plain blocking file calls inside async methods: they are short (one chunk at a
    time), Pyodide has no threads to push them to, and the event loop has nothing else to do
    while weights load. Only regular files are read (see open_regular).
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"LocalSource({self.path!r})"

    def where(self, name):
        return os.path.join(self.path, name)

    async def exists(self, name):
        """Whether anything is there: a folder or a pipe in a file's place is then read, and
        the read says what it is (rather than "missing")."""
        return os.path.lexists(self.where(name))

    async def text(self, name):
        """The whole of a small text file, at most limits.text_limit(name) bytes."""
        return read_text_file(self.where(name), name)

    async def size(self, name):
        return stat_regular(self.where(name)).st_size

    async def read(self, name, start, end):
        path = self.where(name)
        with open_regular(path) as f:
            try:
                f.seek(start)
                data = f.read(end - start)
            except OSError as e:
                raise os_error(path, e) from None
        if len(data) != end - start:
            raise _short(path, start, end, start + len(data))
        return data

    async def chunks(self, name, start, end, chunk_size=8 << 20):
        """Chunks of at most chunk_size bytes, each a memoryview of its own fresh buffer.

        A fresh buffer per chunk (not one reused buffer) keeps a chunk valid after the next
        is read, as fetch's chunks are; memory stays bounded because consumers copy each chunk
        to the GPU and drop it. readinto avoids the extra copy that read() would make.
        """
        with open_regular(self.where(name)) as f:
            f.seek(start)
            pos = start
            while pos < end:
                buf = bytearray(min(chunk_size, end - pos))
                view = memoryview(buf)
                got = 0
                while got < len(buf):
                    n = f.readinto(view[got:])
                    if not n:
                        raise _short(self.where(name), start, end, pos + got)
                    got += n
                pos += got
                yield view


def _short(where, start, end, reached):
    return ModelFolderError(
        f"{where} is truncated: bytes {start}..{end} were expected, "
        f"but the file ends at byte {reached}")
