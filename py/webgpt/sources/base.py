"""The interface of a model folder's byte source (`Source`), which webgpt.sources implements
for a directory (LocalSource) and, in the browser, for a URL (FetchSource).

Every method is async because the browser has no blocking I/O: there a Source is backed by
`fetch`, and the same loader code awaits it. File names are relative to the folder
("config.json", "model-00001-of-00002.safetensors"); `where(name)` gives the full path or URL
for messages.
"""


class Source:
    """The interface every source implements (LocalSource here, FetchSource in the browser)."""

    def where(self, name):
        """Path or URL of file `name`, for messages."""
        raise NotImplementedError

    async def exists(self, name):
        raise NotImplementedError

    async def text(self, name):
        """The whole of a small text file (JSON, vocabulary), decoded as UTF-8.

        Bounded: a file larger than webgpt.limits.text_limit(name) is a ModelFolderError
        naming it, its size and the limit, and is never read past that limit.
        """
        raise NotImplementedError

    async def json(self, name):
        """A small JSON file, parsed within webgpt.limits' memory budget for its name."""
        from ..limits import parse_json
        return parse_json(await self.text(name), self.where(name))

    async def size(self, name):
        raise NotImplementedError

    async def read(self, name, start, end):
        """Bytes [start, end) of a file: a small range, such as a safetensors header."""
        raise NotImplementedError

    async def chunks(self, name, start, end, chunk_size=8 << 20):
        """Async generator of bytes-like chunks that cover [start, end) in order."""
        raise NotImplementedError
        yield
