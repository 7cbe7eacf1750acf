"""config.json -> a typed config, by model_type.

`parse_config(text, where)` parses the file within webgpt.limits' budget and hands its object
to the config class of the architecture that runs its model_type (webgpt.arch: GPT2Config,
LlamaConfig), which checks every value and refuses, with a sentence naming the key, what the
kernels do not implement. The config classes and the quantization settings are imported here
too, under the names callers have always used.
"""

from .arch import by_model_type, supported_types
from .arch.fields import QUANT_BITS, QUANTIZATION_KEY, Quantization, check_quantization
from .arch.gpt2 import GPT2Config
from .arch.llama import LLAMA_TYPES, LlamaConfig
from .errors import ModelFolderError, short_repr
from .limits import json_budget, parse_json

__all__ = ["parse_config", "GPT2Config", "LlamaConfig", "LLAMA_TYPES", "Quantization",
           "QUANTIZATION_KEY", "QUANT_BITS", "check_quantization"]


def parse_config(text, where="config.json"):
    """The config of config.json's text (GPT2Config, LlamaConfig, ...) by its model_type;
    `where` (its path or URL) names the file in messages."""
    # Bounded: a config.json of a million nested lists is one sentence, not a traceback or
    # gigabytes of lists.
    d = parse_json(text, where, budget=json_budget("config.json"))
    if not isinstance(d, dict):
        raise ModelFolderError(f"{where} must hold a JSON object of model settings")
    model_type = d.get("model_type", "gpt2")
    arch = by_model_type(model_type) if isinstance(model_type, str) else None
    if arch is None:
        raise ModelFolderError(f"{where} describes a {short_repr(model_type)} model; webgpt runs "
                               f"{supported_types()}")
    archs = d.get("architectures")
    want = arch.model_types[model_type]
    if want is not None and isinstance(archs, list) and archs and archs[0] != want:
        raise ModelFolderError(
            f"{where}: architectures {short_repr(archs)} is not supported for model_type "
            f"{model_type!r} (webgpt runs {want})")
    return arch.config_class.from_dict(d, where)
