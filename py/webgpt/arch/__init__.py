"""The architectures webgpt runs, and the registry that picks one for a config.

    base.py    Architecture, the contract a family implements (its folder, its sizes, its
               forward pass), and Dims, its sizes
    fields.py  reading config.json's values (the checks every family's config shares)
    rope.py    rotary position embedding: settings and the table the kernel reads
    gpt2.py    GPT-2 (GPT2Config, GPT2Arch)
    llama.py   Llama, Qwen2, Qwen3, Mistral, SmolLM3 (LlamaConfig, LlamaArch)
    gemma.py   Gemma 2 and Gemma 3's language model (GemmaConfig, GemmaArch)
    phi3.py    Phi-3, Phi-3.5, Phi-4-mini (Phi3Config, Phi3Arch)

Nothing here touches the GPU: reading a model folder (webgpt.folder) and the tools that only
read folders import this package without the plan, the weights or webgpt.gpu.
"""

from ..errors import ModelFolderError
from .base import Architecture, Dims
from .gemma import GemmaArch
from .gpt2 import GPT2Arch
from .llama import LlamaArch
from .phi3 import Phi3Arch

__all__ = ["ARCHITECTURES", "Architecture", "Dims", "arch_for", "by_model_type",
           "supported_types"]

# Every family, in the order messages list them. A new family is a module beside gpt2.py
# (its config class and its Architecture subclass) and a line here.
ARCHITECTURES = (GPT2Arch, LlamaArch, GemmaArch, Phi3Arch)


def by_model_type(model_type):
    """The Architecture class that runs config.json's `model_type`, or None."""
    for arch in ARCHITECTURES:
        if model_type in arch.model_types:
            return arch
    return None


def supported_types():
    """"GPT-2 ('gpt2'), Llama/Qwen ('llama', 'qwen2', 'qwen3')": what messages list."""
    return ", ".join(f"{a.name} ({', '.join(map(repr, a.model_types))})" for a in ARCHITECTURES)


def arch_for(config, n_ctx=None):
    """The architecture of a parsed config (a family's config class), bound to it, keeping a
    context of `n_ctx` tokens (the most the config allows where None)."""
    arch = by_model_type(config.model_type)
    if arch is None:
        raise ModelFolderError(f"no architecture runs model_type {config.model_type!r}; "
                               f"webgpt runs {supported_types()}")
    return arch(config, n_ctx)
