"""A model on the GPU, in parts with one job each:

    layout.py     Layout: kernel shapes and storage choices for an adapter, resolved once for
                  a model (an immutable value); the checks that say why a model cannot run here
    weights.py    Weights: every tensor streamed from the folder into GPU buffers (matrices as
                  row parts, transposed or widened on the GPU), the memory plan, release
    plan.py       Plan: activations, bind groups and each pass kind's flat list of launch
                  records (name, shader, pipeline, bind group, grid); Forward, the recorder
                  that turns an architecture's ops into launches
    generator.py  Model: logits, the pipelined decode loop, the text API, rebuild and adopt
                  (the editor's reload over the same weights)
    gpt2.py       GPT-2: which ops run in which order with which weights (the forward pass)
    llama.py      Llama, Qwen2, Qwen3: the same, with RMSNorm, rotary embedding, grouped-query
                  attention and SwiGLU

An architecture is a module with the same names: NAME, PREFIX, TOKENIZER_FILES (its folder),
expected_shapes, quantized_names, tied_head, ignored (what folder.py checks), dims, activations,
matrix_storage, is_matrix, is_table (its weights), forward (its ops), and optionally groups,
constants and context. `arch_for(config)` picks one.
"""

from . import gpt2, llama


def arch_for(config):
    """The architecture module of a parsed config.json (config.GPT2Config or LlamaConfig)."""
    return llama if isinstance(config, llama.CONFIG) else gpt2


from .generator import GPT2, Model  # noqa: E402  (it uses arch_for)
from .layout import Layout, layouts
from .plan import PIPELINE, Launch, Plan
from .weights import Matrix

__all__ = ["GPT2", "Model", "Layout", "layouts", "Plan", "Launch", "Matrix", "PIPELINE", "gpt2",
           "llama", "arch_for"]

