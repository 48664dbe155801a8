"""How the engine takes hold of a :class:`FlowModel`: through transformers' own seams, on first use.

:func:`arm` registers the ``flow_knockout`` attention function (:mod:`.attention`) with
transformers and switches the model's attention implementation to it; it behaves exactly like SDPA
until a :class:`KnockoutState` is passed. Every entry of the engine arms the model it is given, so
the model layer never imports the attention function. :func:`compile_layers` compiles the decoder
layers for the fast backend.
"""

from __future__ import annotations

from ..models.flow_model import FlowModel, PreparedInput
from .attention import ATTENTION_NAME, KnockoutState, register


def arm(fm: FlowModel) -> FlowModel:
    """Switch ``fm``'s attention to ``flow_knockout`` (idempotent)."""
    if fm.model.config._attn_implementation != ATTENTION_NAME:
        fm.model.set_attn_implementation(register())
    return fm


def check_plans(fm: FlowModel, prepared: PreparedInput, plans) -> list:
    """``plans`` as a list, each checked against ``fm``'s layers and ``prepared``'s layout (a ``ValueError``
    names the first invalid one): what every entry of the engine does before it runs a plan."""
    plans = list(plans)
    for plan in plans:
        plan.validate(fm.n_layers, prepared.layout.n, prepared.layout)
    return plans


def knockout_state(fm: FlowModel, prepared: PreparedInput, **kwargs) -> KnockoutState:
    """The state one forward call of ``fm`` on ``prepared`` carries (``backend``, ``plans``, captures); arms ``fm``."""
    arm(fm)
    return KnockoutState(layer_of=fm.layer_of, n_prompt=prepared.layout.n, **kwargs)


def compile_layers(fm: FlowModel) -> FlowModel:
    """Compile every decoder layer of ``fm`` in place with ``torch.compile`` (``nn.Module.compile``; dynamic
    shapes, since every question and batch of plans brings new lengths), so that Inductor fuses each layer's
    norms, rotary embedding and MLP activation; the knockout attention function stays eager (it is excluded
    from compilation). The same operations, so the same results up to float rounding; on a GPU the fast
    engine's elementwise work shrinks (the Performance page). The first questions pay the compilation.
    ``generate`` runs the layers eagerly (its KV cache would recompile them per layer and step)."""
    import torch._dynamo

    arm(fm)
    # a compilation per kind of call: one plan or several, one query or several, expanded inputs, the
    # baseline's mask or none: 7 on the tests' tiny model, against dynamo's default limit of 8
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for layer in fm.decoder.layers:
        layer.compile(dynamic=True)
    return fm
