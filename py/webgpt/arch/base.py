"""What an architecture is: the contract every family module (gpt2.py, llama.py) implements.

An architecture says three things about a model, and nothing about the GPU:

1. Its folder: which tensors a checkpoint holds under which names and shapes
   (`expected_shapes`), which of them are the matrices the products read and how the file lays
   them out (`matrix_storage`: rows [out, in] or columns [in, out]), which a quantized folder
   stores quantized (`quantized_names`), which saved tensors are not weights (`ignored`), an
   output projection tied to the token table (`tied_head`), the tokenizer files it needs.
2. Its sizes: `dims` (a Dims: widths, heads, the context kept), the activation buffers a pass
   writes (`activations`), tensors that run as one product (`groups`), tables written once
   (`constants`), and how much context to keep on an adapter (`context`).
3. Its forward pass: `forward(f)` calls the recorder `f` (webgpt.model.plan.Forward) once per
   op, in order, with buffer and tensor names: `f.layer_norm`, `f.rms_norm`, `f.linear`,
   `f.rope`, `f.attention`, `f.embedding`, `f.lm_head`. The recorder picks the kernels.

An architecture is bound to one parsed config (and the context kept): `GPT2Arch(config)`.
`webgpt.arch.arch_for(config)` picks the class by config.json's model_type. Adding a family is
a module beside gpt2.py with its config class (parsed from config.json's dict, refusing the
keys it does not implement) and its Architecture subclass, listed in webgpt/arch/__init__.py.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Dims:
    """The sizes the plan, the layout and the kernels read.

    C: the residual stream's width (n_embd, hidden_size); V: the vocabulary; n_ctx: the context
    kept (the KV cache's length); n_head query heads and n_kv key/value heads (equal without
    grouped-query attention) of head_size values each; eps: the norms' epsilon; widest: values
    in the widest activation row (f32), `widest_what` says which it is, for messages;
    biggest_matrix: bytes of the largest matrix as f32.
    """
    C: int
    V: int
    n_ctx: int
    n_layer: int
    n_head: int
    n_kv: int
    head_size: int
    eps: float
    widest: int
    widest_what: str
    biggest_matrix: int

    @property
    def q_cols(self):
        """Columns of the queries (and of the attention's output): n_head head_size."""
        return self.n_head * self.head_size

    @property
    def kv_cols(self):
        """Columns of the keys, and of the values: n_kv head_size."""
        return self.n_kv * self.head_size

    @property
    def qkv_cols(self):
        """Columns of the fused q | k | v product."""
        return self.q_cols + 2 * self.kv_cols


class Architecture:
    """The contract (see the module docstring). Subclasses set the class attributes and
    implement the methods that raise NotImplementedError; the others have defaults.

    Class attributes:
        name             the family's name in messages ("GPT-2", "Llama/Qwen")
        model_types      {config.json model_type: the transformers class config.json's
                         "architectures" must name first, or None for any}, for every
                         model_type this family runs
        config_class     parses config.json: config_class.from_dict(d, where), a dataclass
                         with a `model_type`
        prefix           what a *ForCausalLM checkpoint puts before the base model's tensor
                         names ("transformer.", "model."), stripped at load
        tokenizer_files  the files the folder must hold for the tokenizer
        layers_key       config.json's key for the number of layers, for messages
    """

    name = None
    model_types = {}
    config_class = None
    prefix = ""
    tokenizer_files = ()
    layers_key = "n_layer"

    def __init__(self, config, n_ctx=None):
        """Bound to `config`, keeping a context of `n_ctx` tokens (the most the config allows
        where None)."""
        self.config = config
        self.n_ctx = n_ctx or self.max_context()

    def with_context(self, n_ctx):
        """The same architecture keeping a context of `n_ctx` tokens."""
        return type(self)(self.config, n_ctx)

    # ------------------------------------------------------------ the folder

    def expected_shapes(self):
        """{canonical tensor name: shape} of every weight the folder must hold."""
        raise NotImplementedError

    def matrix_storage(self, name):
        """How the file stores a matrix the products read: "rows" ([out, in]), "cols"
        ([in, out], transposed on the GPU where the layout wants rows), or None for a tensor
        that is not such a matrix."""
        raise NotImplementedError

    def is_matrix(self, name):
        return self.matrix_storage(name) is not None

    def is_table(self, name):
        """A position table: kept as f16 halves where the layout keeps halves."""
        return False

    def quantized_names(self):
        """The weights a quantized folder stores quantized: every matrix, in file order."""
        return [n for n in self.expected_shapes() if self.is_matrix(n)]

    def tied_head(self):
        """The name of an output projection the file may hold that is tied to the token table
        (skipped when its shape matches), or None."""
        return None

    def ignored(self):
        """Names of saved tensors that are not weights (buffers older versions saved)."""
        return set()

    def canonical(self, saved):
        """The canonical name of a tensor as a checkpoint saved it (`prefix` stripped), or None
        for a tensor of the checkpoint that is not this model's (a vision tower beside the
        language model)."""
        return saved[len(self.prefix):] if saved.startswith(self.prefix) else saved

    # ------------------------------------------------------------ sizes

    def max_context(self):
        """The longest context the config allows (position table, max_position_embeddings)."""
        raise NotImplementedError

    def context(self, device, layout):
        """The context to keep on `device` with `layout` (webgpt.model.layout.Layout)."""
        return self.n_ctx

    @property
    def dims(self):
        """A Dims of this config at the context kept."""
        raise NotImplementedError

    def activations(self):
        """{buffer name: bytes} of the activations and the KV cache, for the whole context."""
        raise NotImplementedError

    # activations() names beginning so are sized for the context kept whatever a pass holds:
    # the KV cache (read and written at positions pos0 + t) and the tables of positions. The
    # others hold a pass's rows, one per token.
    context_buffers = ("k_cache.", "v_cache.", "rope")

    def pass_activations(self, tokens):
        """activations(), with the buffers that hold a pass's rows sized for passes of at most
        `tokens` tokens (a prompt runs in chunks of that many) rather than the whole context;
        the KV cache and the tables keep the context's size."""
        chunk = self.with_context(tokens).activations()
        return {name: nbytes if name.startswith(self.context_buffers) else chunk[name]
                for name, nbytes in self.activations().items()}

    def binding_context(self, max_binding):
        """The longest context, at most the one kept, whose context-sized buffers (one layer's
        keys or values, a table of positions) each fit one storage binding of `max_binding`
        bytes; 0 where not even one position does."""
        sizes = [nbytes for name, nbytes in self.activations().items()
                 if name.startswith(self.context_buffers)]
        per_position = -(-max(sizes, default=0) // self.n_ctx)  # bytes, rounded up
        return min(self.n_ctx, max_binding // per_position) if per_position else self.n_ctx

    def groups(self):
        """[(logical name, [tensor names])]: tensors that run as one product (their rows
        stacked in this order), and their biases likewise."""
        return []

    def constants(self):
        """{buffer name: bytes} written once when the plan is built (tables the kernels read)."""
        return {}

    # ------------------------------------------------------------ the forward pass

    def forward(self, f):
        """One forward pass of T tokens at positions pos0..pos0+T-1, recorded op by op into
        `f` (webgpt.model.plan.Forward)."""
        raise NotImplementedError
