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

A new architecture is a module beside gpt2.py with the same functions (dims, activations,
matrix_storage, is_matrix, is_table, forward).
"""

from . import gpt2
from .generator import GPT2, Model
from .layout import Layout, layouts
from .plan import PIPELINE, Launch, Plan
from .weights import Matrix

__all__ = ["GPT2", "Model", "Layout", "layouts", "Plan", "Launch", "Matrix", "PIPELINE", "gpt2"]
