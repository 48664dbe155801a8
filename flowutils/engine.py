"""The Attention Knockout engine: run a question once, then query it under many knockout plans.

Two backends give the same probabilities (tested to 1e-4 in fp32):

``reference``
    One full forward of the unchanged model per plan, eager attention with a dense
    ``-inf`` mask: the paper's method, kept as the oracle and the speed baseline.

``fast``
    One baseline forward stores, for every decoder layer, its input hidden states and its
    keys/values (:class:`Baseline`). Under causal attention a plan whose earliest cut edge
    targets position ``t0`` and whose earliest cut layer is ``l0`` cannot change any position
    ``< t0`` nor any layer ``< l0``; so a plan only recomputes positions ``t0..N-1`` of layers
    ``l0..L-1``, starting from the stored hidden states, with the stored keys/values of the
    earlier positions as a prefix. Only the last position goes through the final norm and
    LM head, and plans are batched (sorted by ``(t0, l0)``, each batch from its smallest
    ``t0`` and ``l0``). The vision tower runs once per question.

The decoder layers are the model's own modules, called in order with the model's own
rotary embedding; attention inside them goes through :mod:`flowutils.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models.flow_model import FlowModel, PreparedInput
from .plan import KnockoutPlan

BACKENDS = ("fast", "reference")


@dataclass
class Baseline:
    """One question's unmodified forward pass.

    ``layer_inputs[l]``: ``[1, n, d_model]`` input of decoder layer ``l``;
    ``layer_outputs[l]``: its output; ``kv[l]``: keys/values ``[1, kv_heads, n, head_dim]``;
    ``logits``: ``[vocab]`` at the last position (float32).
    """

    layer_inputs: list
    layer_outputs: list
    kv: dict
    logits: torch.Tensor
    records: dict  # layer -> recorded attention weights (see KnockoutState.record_rows)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, -1)


@torch.no_grad()
def run_baseline(fm: FlowModel, prepared: PreparedInput, record_rows=None) -> Baseline:
    """The unmodified forward, capturing every decoder layer's input, output and keys/values."""
    inputs, outputs = {}, {}
    hooks = []
    for i, layer in enumerate(fm.decoder.layers):
        hooks.append(layer.register_forward_pre_hook(
            lambda m, a, kw, i=i: inputs.__setitem__(i, (a[0] if a else kw["hidden_states"]).detach()), with_kwargs=True))
        hooks.append(layer.register_forward_hook(
            lambda m, a, out, i=i: outputs.__setitem__(i, (out[0] if isinstance(out, tuple) else out).detach())))
    state = fm.state(prepared, capture_kv=True, record_rows=record_rows)
    try:
        out = fm.forward(prepared, state, logits_to_keep=1)
    finally:
        for h in hooks:
            h.remove()
    return Baseline([inputs[i] for i in range(fm.n_layers)], [outputs[i] for i in range(fm.n_layers)],
                    state.kv, out.logits[0, -1].float(), state.records)


@torch.no_grad()
def _recompute(fm: FlowModel, prepared: PreparedInput, base: Baseline, plans, t0: int, l0: int) -> torch.Tensor:
    """Logits ``[len(plans), vocab]`` at the last position, recomputing positions >= t0 of layers >= l0."""
    b, n = len(plans), prepared.layout.n
    hidden = base.layer_inputs[l0][:, t0:].expand(b, -1, -1)
    positions = torch.arange(t0, n, device=hidden.device)[None].expand(b, -1)
    rotary = fm.decoder.rotary_emb(hidden, positions)
    prefix = {l: (k[:, :, :t0], v[:, :, :t0]) for l, (k, v) in base.kv.items()}
    state = fm.state(prepared, mode="fast", plans=list(plans), prefix_kv=prefix)
    for layer in fm.decoder.layers[l0:]:
        out = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=rotary,
                    flow_knockout=state)
        hidden = out[0] if isinstance(out, tuple) else out
    return fm.lm_head(fm.decoder.norm(hidden[:, -1:]))[:, -1].float()


def batches(plans, n: int, batch_size: int = 16, max_batch_tokens: int = 4096) -> list[tuple[list[int], int, int]]:
    """How ``fast`` groups plans: ``[(plan indices, t0, l0)]``.

    Plans that cut nothing are left out (their result is the baseline). The rest are sorted
    by (first target, first layer) and cut into batches of at most ``batch_size`` plans and
    at most ``max_batch_tokens`` recomputed positions, so that long recomputations (e.g.
    cross-frame) are not padded by many windows starting at different layers.
    """
    live = sorted((i for i, p in enumerate(plans) if not p.is_empty),
                  key=lambda i: (plans[i].first_target, plans[i].first_layer))
    out, chunk = [], []
    for i in live:
        t0 = min([plans[j].first_target for j in chunk] + [plans[i].first_target])
        if chunk and (len(chunk) == batch_size or (len(chunk) + 1) * (n - t0) > max_batch_tokens):
            out.append(chunk)
            chunk = []
        chunk.append(i)
    if chunk:
        out.append(chunk)
    return [(c, min(plans[i].first_target for i in c), min(plans[i].first_layer for i in c)) for c in out]


@torch.no_grad()
def knockout_logits(fm: FlowModel, prepared: PreparedInput, plans, backend: str = "fast", batch_size: int = 16,
                    baseline: Baseline | None = None, max_batch_tokens: int = 4096) -> torch.Tensor:
    """Last-position logits ``[len(plans), vocab]`` (float32) of the model under each plan."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {BACKENDS}")
    plans = list(plans)
    out = torch.empty(len(plans), fm.lm_head.out_features)
    if backend == "reference":
        for i, plan in enumerate(plans):
            state = fm.state(prepared, mode="reference", plans=[plan])
            out[i] = fm.forward(prepared, state, logits_to_keep=1).logits[0, -1].float().cpu()
        return out
    base = baseline or run_baseline(fm, prepared)
    out[:] = base.logits.cpu()
    for chunk, t0, l0 in batches(plans, prepared.layout.n, batch_size, max_batch_tokens):
        out[chunk] = _recompute(fm, prepared, base, [plans[i] for i in chunk], t0, l0).cpu()
    return out


@torch.no_grad()
def generate(fm: FlowModel, prepared: PreparedInput, plan: KnockoutPlan | None = None, max_new_tokens: int = 16,
             mode: str = "fast") -> str:
    """Greedy open-ended continuation under ``plan``; decode steps inherit the last position's cuts.

    A plain greedy loop over the model's own forward with its KV cache (``generate()`` rejects
    keyword arguments it does not know, such as the knockout state).
    """
    state = fm.state(prepared, mode=mode, plans=[plan] if plan is not None else None)
    out = fm.forward(prepared, state, use_cache=True, logits_to_keep=1)
    mask = prepared.inputs["attention_mask"]
    new = []
    for _ in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        new.append(int(token))
        if new[-1] == fm.tokenizer.eos_token_id:
            break
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)
        out = fm.model(input_ids=token, attention_mask=mask, past_key_values=out.past_key_values, use_cache=True,
                       flow_knockout=state)
    return fm.tokenizer.decode(new, skip_special_tokens=True)
