"""The two backends: the last position's logits of a question under each of many knockout plans.

``reference`` runs one full forward per plan (the paper's method, the oracle). ``fast`` starts from
the recorded baseline (:mod:`.baseline`) and recomputes, per batch of plans with the same first
target position ``t0``, only positions ``t0..N-1`` of the layers from each plan's first cut layer
on (:func:`batches`, :func:`_recompute`); two batches run layer by layer in turn
(:func:`_interleaved`). :mod:`flowutils.engine` explains why this is exact.
"""

from __future__ import annotations

import bisect

import torch
from torch.profiler import record_function

from ..models.encoding import to_device, to_host_later
from ..models.flow_model import FlowModel, PreparedInput
from .arm import check_plans, knockout_state
from .attention import BACKENDS
from .baseline import Baseline, run_baseline
from .cuts import prepare_cuts


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
    state = knockout_state(fm, prepared, backend="fast", prefix_kv=prefix)
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
                    baseline: Baseline | None = None, max_batch_tokens: int = 8192, wait: bool = True,
                    reduce=None):
    """Last-position logits ``[len(plans), vocab]`` (float32, on the host) of the model under each plan.

    ``wait=False``: return once the work and the logits' copies to the host are queued on the device, as a
    function that waits for those copies and returns the logits, so that the caller can queue more work first
    (:func:`flowutils.analysis.runner.pipelines`); reading them does not wait for that later work.

    ``reduce``: a function of rows of those logits (``[rows, vocab]`` float32, where they were computed) to a dict
    of tensors whose first dimension is the rows, computed row by row (it is applied batch by batch); then that dict,
    on the host and for every plan, is returned instead of the logits, and only it is copied. A sweep reads a few
    columns of each row: reduced on the GPU, the host neither receives nor scans ``plans x vocab`` floats (a
    quarter of a gigabyte a question at Qwen's vocabulary)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {BACKENDS}")
    plans = check_plans(fm, prepared, plans)
    shared = {}  # the sweep's plans of one flow share its cut edges

    def prepare():
        with record_function("flow_knockout.prepare"):
            for plan in plans:
                prepare_cuts(plan, prepared.layout.n, fm.device, shared)

    out = torch.empty(len(plans), fm.lm_head.out_features)
    if backend == "reference":
        prepare()
        for i, plan in enumerate(plans):
            state = knockout_state(fm, prepared, backend="reference", plans=[plan])
            out[i] = fm.forward(prepared, state, logits_to_keep=1).logits[0, -1].float().cpu()
        if reduce is not None:
            out = reduce(out)
        return out if wait else lambda: out
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
    # copies at the end, queued now: no batch waits for the GPU to finish the one before, and the logits are read
    # without waiting for what the caller queues next; the knockouts' in the model's dtype (float32 of it is
    # exact), into pinned memory (a pageable copy is several times slower)
    with record_function("flow_knockout.copy"):
        if reduce is not None:
            return _reduced(base.logits, logits, [i for chunk, _ in chunks for i in chunk], len(plans), reduce, wait)
        base_host = to_host_later(base.logits)
        recomputed = to_host_later(torch.cat(logits)) if chunks else None

    def copy() -> torch.Tensor:
        out[:] = base_host()
        if recomputed is not None:
            out[[i for chunk, _ in chunks for i in chunk]] = recomputed().float()
        return out

    return copy() if wait else copy


def _reduced(base_logits: torch.Tensor, recomputed: list, order: list[int], n_plans: int, reduce, wait: bool):
    """``reduce`` of every plan's logits, computed where they are and batch by batch (``reduce`` works row by row:
    each output's first dimension is the rows), so that no ``[plans, vocab]`` float32 copy is made; its outputs in plan
    order: the baseline's row for a plan that cuts nothing, ``recomputed`` (one tensor a batch) in ``order`` for the
    others. Only the outputs are queued to the host (:func:`knockout_logits`)."""
    outputs = {name: x.expand(n_plans, *x.shape[1:]).clone() for name, x in reduce(base_logits.float()[None]).items()}
    if recomputed:
        parts = [reduce(logits.float()) for logits in recomputed]
        index = to_device(torch.tensor(order), base_logits.device)
        for name, x in outputs.items():
            x.index_copy_(0, index, torch.cat([part[name] for part in parts]))
    copies = {name: to_host_later(x) for name, x in outputs.items()}

    def read() -> dict:
        return {name: copy() for name, copy in copies.items()}

    return read() if wait else read
