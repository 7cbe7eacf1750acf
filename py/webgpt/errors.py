"""The package's user-facing error types, in one place.

Each carries one sentence for the user; the command line prints it on one line and the page
shows it in #error. GPUError (no adapter, a lost device) lives with the GPU layer in
webgpt.gpu, and TokenizerError (text the vocabulary cannot encode) with the tokenizer: both are
re-exported here so that callers can import every error from one module.
"""


class ModelFolderError(ValueError):
    """A model folder that cannot be used: missing file, bad config, bad or truncated weights.

    The message is one sentence for the user, naming the file (and tensor where there is one).
    """


def __getattr__(name):
    # Lazy, so that importing the errors does not import the GPU layer or the tokenizer.
    if name == "GPUError":
        from .gpu.base import GPUError
        return GPUError
    if name == "TokenizerError":
        from .tokenizer import TokenizerError
        return TokenizerError
    raise AttributeError(name)
