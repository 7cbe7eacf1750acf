"""A model on the GPU, in parts with one job each:

    layout.py     Layout: kernel shapes and storage choices for an adapter, resolved once for
                  a model (an immutable value); the checks that say why a model cannot run here
    weights.py    Weights: every tensor streamed from the folder into GPU buffers (matrices as
                  row parts, transposed or widened on the GPU), the memory plan, release
    plan.py       Plan: activations, bind groups and each pass kind's flat list of launch
                  records (name, shader, pipeline, bind group, grid); Forward, the recorder
                  that turns an architecture's ops into launches
    decode.py     generation in steps: Generation (queue a pass, read a token back, slide the
                  window) and KVCache (which tokens the KV cache holds)
    generator.py  Model: logits, generation, the text API, rebuild and adopt (the editor's
                  reload over the same weights)
    chat.py       chat turns: template, KV-cache reuse across turns, stop ids and strings

What each architecture computes (its tensors, sizes and forward pass) is webgpt.arch, which
touches no GPU.
"""

from .generator import GPT2, Model
from .layout import Layout, layouts
from .plan import PIPELINE, Launch, Plan
from .weights import Matrix

__all__ = ["GPT2", "Model", "Layout", "layouts", "Plan", "Launch", "Matrix", "PIPELINE"]
