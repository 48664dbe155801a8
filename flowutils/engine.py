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
    LM head. Plans with the same ``t0`` share one batch that grows layer by layer: a plan
    joins at its own ``l0`` (:func:`batches`, :func:`_recompute`); the plans of a batch
    share the prefix keys/values, packed into one sequence where copying them per plan would take
    much memory (:mod:`flowutils.knockout.attention`). The logits of all batches stay on the device
    until the end, so the host never waits for a batch before queueing the next, and two batches run
    layer by layer in turn, a heavy one beside a light one (:func:`_interleaved`), so that the host
    launches the light one's small kernels while the GPU works through the heavy one's. Each plan's cut edges are kept as classes
    of positions (:class:`flowutils.knockout.plan.CompactCut`), not ``N x N`` masks. The
    vision tower runs once per question.

The decoder layers are the model's own modules, called in order with the model's own
rotary embedding; attention inside them goes through :mod:`flowutils.knockout.attention`.
What the model adds to the hidden states between two decoder layers outside them (Qwen3-VL's
DeepStack vision features) is not attention, so no plan changes it: the recomputation adds
the baseline's additions back (``Baseline.between``), as the model's own forward does.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import partial

import torch
from torch.profiler import record_function

from .models.flow_model import FlowModel, PreparedInput
from .knockout.plan import KnockoutPlan

BACKENDS = ("fast", "reference")


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

    # the hooks only record: left out of compiled layers (FlowModel.compile), which would recompile per layer
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
    state = fm.state(prepared, capture_kv=True, record_rows=record_rows)
    try:
        out = fm.forward(prepared, state, logits_to_keep=1)
    finally:
        for h in hooks:
            h.remove()
    # a layer's output passed on as the next one's input is the same tensor: no comparison, so no host
    # sync, and the host prepares the plans' batches while the GPU runs the baseline; otherwise one sync
    differ = [l for l in range(fm.n_layers - 1) if inputs[l + 1] is not outputs[l]]
    changed = torch.stack([inputs[l + 1].ne(outputs[l]).any() for l in differ]).tolist() if differ else []
    between = {l: inputs[l + 1] - outputs[l] for l, c in zip(differ, changed) if c}
    return Baseline([inputs[i] for i in range(fm.n_layers)], [outputs[i] for i in range(fm.n_layers)],
                    state.kv, out.logits[0, -1].float(), state.records, positions.get("ids"), positions.get("emb"),
                    between)


@torch.no_grad()
def _recompute(fm: FlowModel, prepared: PreparedInput, base: Baseline, plans, t0: int):
    """Logits ``[len(plans), vocab]`` at the last position, recomputing positions >= ``t0``: a generator
    that yields after each decoder layer and returns the logits (:func:`_interleaved` runs it).

    ``plans`` are sorted by first layer. A plan joins the batch at its first layer, with
    the baseline's input of that layer (nothing has changed before it), so every plan
    computes exactly the layers from its own first layer on.
    """
    first = [p.first_layer for p in plans]
    if base.position_embeddings is None:
        raise ValueError(f"{fm.name}: its decoder layers received no position_embeddings; the fast backend "
                         "needs the model's own rotary (cos, sin) to recompute a suffix (use backend='reference')")
    # the model's own positions of tokens t0..n-1 (1-D, or M-RoPE's 3-D positions from the video grid)
    rotary = tuple(x[..., t0:, :] for x in base.position_embeddings)
    positions = None if base.position_ids is None else base.position_ids[..., t0:]
    prefix = {l: (k[:, :, :t0], v[:, :, :t0]) for l, (k, v) in base.kv.items()}
    state = fm.state(prepared, mode="fast", prefix_kv=prefix)
    hidden = None
    name = f"flow_knockout.batch t0={t0} plans={len(plans)}"
    for l in range(first[0], fm.n_layers):
        with record_function(name):
            active, have = bisect.bisect_right(first, l), 0 if hidden is None else len(hidden)
            if active > have:
                joining = base.layer_inputs[l][:, t0:].expand(active - have, -1, -1)
                hidden = joining if hidden is None else torch.cat([hidden, joining])
            state.plans = plans[:active]
            out = fm.decoder.layers[l](hidden, attention_mask=None, position_ids=positions,
                                       position_embeddings=rotary, flow_knockout=state)
            hidden = out[0] if isinstance(out, tuple) else out
            if l in base.between:
                hidden = hidden + base.between[l][:, t0:]
        yield
    with record_function(name):
        return fm.lm_head(fm.decoder.norm(hidden[:, -1:]))[:, -1]


def _interleaved(jobs: list, work: list) -> list:
    """Run the generators ``jobs`` (:func:`_recompute`) to their results, two at a time, one layer of
    each in turn: the heaviest job left (by ``work``) beside the lightest left.

    A heavy batch queues GPU work faster than the GPU does it; a light one (e.g. 192 plans of one
    query each) launches many small kernels that the GPU finishes faster than the host launches them.
    In turn, the host launches the light batch's kernels while the GPU works through the heavy one's
    queue. The same operations run either way; only their order changes.
    """
    todo = sorted(range(len(jobs)), key=lambda i: -work[i])
    results: list = [None] * len(jobs)
    lanes = [None, None]  # heavy end, light end
    while todo or any(lane is not None for lane in lanes):
        for side in (0, 1):
            while lanes[side] is not None or todo:  # a job that ends hands its turn to the next one
                if lanes[side] is None:
                    lanes[side] = todo.pop(0) if side == 0 else todo.pop()
                try:
                    next(jobs[lanes[side]])
                    break
                except StopIteration as done:
                    results[lanes[side]], lanes[side] = done.value, None
    return results


def batches(plans, n: int, batch_size: int = 256, max_batch_tokens: int = 8192) -> list[tuple[list[int], int]]:
    """How ``fast`` groups plans: ``[(plan indices, t0)]``.

    Plans that cut nothing are left out (their result is the baseline). The rest are
    grouped by first target ``t0`` (the paper's sweep: one group per target group, all
    windows of all flows into it), sorted by first layer (then last: in a layer, the rows that cut
    and those that no longer do then form few runs), and cut into batches of at most
    ``batch_size`` plans and ``max_batch_tokens`` recomputed positions.
    """
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(plans):
        if not p.is_empty:
            groups.setdefault(p.first_target, []).append(i)
    out = []
    for t0, idx in sorted(groups.items()):
        idx.sort(key=lambda i: (plans[i].first_layer, plans[i].last_layer))
        size = max(1, min(batch_size, max_batch_tokens // (n - t0)))
        out += [(idx[j:j + size], t0) for j in range(0, len(idx), size)]
    return out


@torch.no_grad()
def knockout_logits(fm: FlowModel, prepared: PreparedInput, plans, backend: str = "fast", batch_size: int = 256,
                    baseline: Baseline | None = None, max_batch_tokens: int = 8192) -> torch.Tensor:
    """Last-position logits ``[len(plans), vocab]`` (float32) of the model under each plan."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {BACKENDS}")
    plans = list(plans)
    for plan in plans:
        plan.validate(fm.n_layers, prepared.layout.n)
    shared = {}  # the sweep's plans of one flow share its cut edges

    def prepare():
        with record_function("flow_knockout.prepare"):
            for plan in plans:
                plan.prepare(prepared.layout.n, fm.device, shared)

    out = torch.empty(len(plans), fm.lm_head.out_features)
    if backend == "reference":
        prepare()
        for i, plan in enumerate(plans):
            state = fm.state(prepared, mode="reference", plans=[plan])
            out[i] = fm.forward(prepared, state, logits_to_keep=1).logits[0, -1].float().cpu()
        return out
    window = getattr(fm.decoder.config, "sliding_window", None)
    if window is not None and prepared.layout.n > window:  # fast attention is full causal attention
        raise ValueError(f"{fm.name}: question {prepared.sample_id or '(unnamed)'} has {prepared.layout.n} tokens, more "
                         f"than the model's sliding attention window ({window}), which backend='fast' does not apply; "
                         f"valid for it: backend='reference'")
    # named ranges for torch.profiler (benchmarks/knockout_sweep.py --profile times each one)
    with record_function("flow_knockout.baseline"):
        base = baseline or run_baseline(fm, prepared)
    prepare()  # while the GPU runs the baseline: nothing in it waits for the GPU (pinned copies)
    n = prepared.layout.n
    chunks = batches(plans, n, batch_size, max_batch_tokens)
    logits = _interleaved([_recompute(fm, prepared, base, [plans[i] for i in chunk], t0) for chunk, t0 in chunks],
                          [sum((fm.n_layers - plans[i].first_layer) * (n - t0) for i in chunk) for chunk, t0 in chunks])
    # copies at the end: no batch waits for the GPU to finish the one before
    with record_function("flow_knockout.copy"):
        out[:] = base.logits.cpu()
        if chunks:
            # in the model's dtype (float32 of it is exact) into pinned memory: a pageable copy is several times slower
            recomputed = torch.cat(logits)
            host = torch.empty(recomputed.shape, dtype=recomputed.dtype, pin_memory=recomputed.is_cuda)
            out[[i for chunk, _ in chunks for i in chunk]] = host.copy_(recomputed).float()
    return out


@torch.no_grad()
def generate(fm: FlowModel, prepared: PreparedInput, plan: KnockoutPlan | None = None, max_new_tokens: int = 16,
             mode: str = "fast") -> str:
    """Greedy open-ended continuation under ``plan``; decode steps inherit the last position's cuts.

    A plain greedy loop over the model's own forward with its KV cache (``generate()`` rejects
    keyword arguments it does not know, such as the knockout state). Eager even in compiled layers
    (:meth:`FlowModel.compile`): the cache's per-layer state would recompile them for every layer and step.
    """
    state = fm.state(prepared, mode=mode, plans=[plan] if plan is not None else None)
    new = []
    with torch.compiler.set_stance("force_eager"):
        out = fm.forward(prepared, state, use_cache=True, logits_to_keep=1)
        mask = prepared.inputs["attention_mask"]
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            new.append(int(token))
            if new[-1] == fm.tokenizer.eos_token_id:
                break
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            out = fm.model(input_ids=token, attention_mask=mask, past_key_values=out.past_key_values, use_cache=True,
                           flow_knockout=state)
    return fm.tokenizer.decode(new, skip_special_tokens=True)
