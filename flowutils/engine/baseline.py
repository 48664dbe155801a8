"""The unmodified forward pass of one question, recorded for the fast backend.

Every decoder layer's input and output and its keys/values, the model's own positions and rotary
embedding, the last position's logits, and what the model adds between two layers outside them
(Qwen3-VL's DeepStack): what a plan's recomputation starts from (:mod:`.logits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch

from ..models.flow_model import FlowModel, PreparedInput
from .arm import knockout_state


@dataclass
class Baseline:
    """One question's unmodified forward pass.

    ``layer_inputs[l]``: ``[1, n, d_model]`` input of decoder layer ``l``;
    ``layer_outputs[l]``: its output; ``kv[l]``: keys/values ``[1, kv_heads, n, head_dim]``;
    ``logits``: ``[vocab]`` at the last position (float32);
    ``position_ids`` / ``position_embeddings``: what the model itself passed to its decoder
    layers (1-D ``[1, n]``, or M-RoPE ``[3, 1, n]``; rotary ``(cos, sin)`` with positions on
    dim -2), so that a recomputed suffix gets exactly its own tokens' positions;
    ``between[l]``: ``[1, n, d_model]`` what the model added to layer ``l``'s output before layer
    ``l + 1`` (only layers where it added something: DeepStack).
    """

    layer_inputs: list
    layer_outputs: list
    kv: dict
    logits: torch.Tensor
    records: dict  # layer -> recorded attention weights (see KnockoutState.record_rows)
    position_ids: torch.Tensor | None = None
    position_embeddings: tuple | None = None
    between: dict = field(default_factory=dict)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, -1)


@torch.no_grad()
def run_baseline(fm: FlowModel, prepared: PreparedInput, record_rows=None) -> Baseline:
    """The unmodified forward, capturing every decoder layer's input, output and keys/values."""
    inputs, outputs, positions = {}, {}, {}
    hooks = []

    # the hooks only record: left out of compiled layers (compile_layers), which would recompile per layer
    @torch.compiler.disable
    def pre_hook(module, args, kwargs, i):
        inputs[i] = (args[0] if args else kwargs["hidden_states"]).detach()
        if i == 0:  # the positions the model computed itself (M-RoPE: from the video's grid)
            positions.update(ids=kwargs.get("position_ids"), emb=kwargs.get("position_embeddings"))

    @torch.compiler.disable
    def post_hook(module, args, out, i):
        outputs[i] = (out[0] if isinstance(out, tuple) else out).detach()

    for i, layer in enumerate(fm.decoder.layers):
        hooks.append(layer.register_forward_pre_hook(partial(pre_hook, i=i), with_kwargs=True))
        hooks.append(layer.register_forward_hook(partial(post_hook, i=i)))
    state = knockout_state(fm, prepared, capture_kv=True, record_rows=record_rows)
    try:
        out = fm.forward(prepared, state, logits_to_keep=1)
    finally:
        for h in hooks:
            h.remove()
    # a layer's output passed on as the next one's input is the same memory (``detach`` makes a new tensor of the
    # same memory): no comparison, so no host sync, and the host prepares the plans' batches while the GPU runs
    # the baseline; otherwise one sync
    differ = [l for l in range(fm.n_layers - 1) if not _same_memory(inputs[l + 1], outputs[l])]
    changed = torch.stack([inputs[l + 1].ne(outputs[l]).any() for l in differ]).tolist() if differ else []
    between = {l: inputs[l + 1] - outputs[l] for l, c in zip(differ, changed) if c}
    return Baseline([inputs[i] for i in range(fm.n_layers)], [outputs[i] for i in range(fm.n_layers)],
                    state.kv, out.logits[0, -1].float(), state.records, positions.get("ids"), positions.get("emb"),
                    between)


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are views of the same elements (so equal, with no device read)."""
    return (a.device == b.device and a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype)
