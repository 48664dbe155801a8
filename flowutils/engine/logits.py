"""The two backends: the last position's logits of a question under each of many knockout plans.

``reference`` runs one full forward per plan (the paper's method, the oracle). ``fast`` starts from
the recorded baseline (:mod:`.baseline`) and recomputes, per batch of plans with the same first
target position ``t0``, only positions ``t0..N-1`` of the layers from each plan's first cut layer
on (:func:`batches`, :func:`_recompute`), or from the layer where it stops cutting what another plan of the
batch cuts (:func:`joins`); two batches run layer by layer in turn (:func:`_interleaved`).
:mod:`flowutils.engine` explains why this is exact.
"""

from __future__ import annotations

import torch
from torch.profiler import record_function

from ..models.encoding import to_device, to_host_later
from ..models.flow_model import FlowModel, PreparedInput
from .arm import check_plans, knockout_state
from .attention import BACKENDS
from .baseline import Baseline, run_baseline
from .cuts import prepare_cuts


def joins(plans) -> list[tuple[int, int | None]]:
    """Where each plan of a batch joins it: ``(layer, source)``, one per plan. ``plans``: plans of one first target
    position ``t0`` (a batch of :func:`batches`; plans of different ``t0`` recompute different positions). From
    ``layer`` on the plan is recomputed, starting from the baseline's input of that layer (``source`` None; ``layer``:
    its first cut layer, before which nothing has changed) or from the row of plan ``source`` (an index into
    ``plans``) at that layer: a plan with the same first layer that cuts the same blocks (equal
    :attr:`~flowutils.knockout.plan.KnockoutPlan.cut_digests`) as this one in every layer before ``layer``, so its
    hidden states there are this plan's own. ``source`` joins before ``layer``. Cuts are compared up to each plan's
    last cut layer: a plan that stops cutting shares nothing with one that cuts the same and then cuts again later,
    beyond the first one's last cut layer (a gap in the windows), though the two states agree until the second one's
    next cut; and equal edges spelled in other blocks are not found equal. Both only cost time.

    So the windows of one flow clipped at layer 0 (the paper's ``[0, 4]``, ``[0, 5]``, ... ``[0, 8]`` of 32 layers)
    compute their shared layers once, as do bottom-up windows (all of them start at 0) and inverse ones. A plan
    equal to another joins at its last cut layer (the later layers are recomputed, not copied).

    Sorted by their cuts layer by layer (:func:`_cut_sequence`), a plan shares the longest run
    of equal layers with the plan just before it; where that plan joins only after the run's end, the plan it joined
    from shares the run too, and so on back to one that joined before it."""
    cuts = [_cut_sequence(p) for p in plans]
    out: list = [None] * len(plans)
    previous = None
    for i in sorted(range(len(plans)), key=lambda i: (plans[i].first_layer, cuts[i])):
        first = plans[i].first_layer
        out[i] = (first, None)
        if previous is not None and plans[previous].first_layer == first:
            shared = next((j for j, (a, b) in enumerate(zip(cuts[i], cuts[previous])) if a != b),
                          min(len(cuts[i]), len(cuts[previous])))
            layer, source = min(first + shared, plans[i].last_layer), previous  # equal plans: from the last cut layer
            while source is not None and out[source][0] >= layer:
                source = out[source][1]
            if layer > first and source is not None:
                out[i] = (layer, source)
        previous = i
    return out


def _cut_sequence(plan) -> tuple:
    """What ``plan`` cuts in each layer from its first cut layer to its last: the blocks' digests, ``b""`` where
    it cuts nothing; compared and sorted (a plan's own layers first) to find where plans stop cutting alike."""
    return tuple(plan.cut_digests.get(l, b"") for l in range(plan.first_layer, plan.last_layer + 1))


@torch.no_grad()
def _recompute(fm: FlowModel, prepared: PreparedInput, base: Baseline, plans, t0: int, where: list):
    """Logits ``[len(plans), vocab]`` at the last position, recomputing positions >= ``t0``: a generator
    that yields after each decoder layer and returns the logits (:func:`_interleaved` runs it).

    A plan joins the batch where ``where`` (:func:`joins` of ``plans``) says: at its first layer with the baseline's input of that layer
    (nothing has changed before it), after the rows there; or later with a copy of the row of a plan that has cut
    the same edges so far, right after that row (the rows that cut in a layer and those that do not then form few
    runs, as in :func:`batches`). The logits are returned in the order of ``plans``.
    """
    if base.position_embeddings is None:
        raise ValueError(f"{fm.name}: its decoder layers received no position_embeddings; the fast backend "
                         "needs the model's own rotary (cos, sin) to recompute a suffix (use backend='reference')")
    # the model's own positions of tokens t0..n-1 (1-D, or M-RoPE's 3-D positions from the video grid)
    rotary = tuple(x[..., t0:, :] for x in base.position_embeddings)
    positions = None if base.position_ids is None else base.position_ids[..., t0:]
    prefix = {l: (k[:, :, :t0], v[:, :, :t0]) for l, (k, v) in base.kv.items()}
    state = knockout_state(fm, prepared, backend="fast", prefix_kv=prefix)
    hidden, rows = None, []  # rows: the plan (index into ``plans``) of each row of ``hidden``
    joining: dict = {}  # layer -> the plans that join there
    for i, (layer, _) in enumerate(where):
        joining.setdefault(layer, []).append(i)
    name = f"flow_knockout.batch t0={t0} plans={len(plans)}"
    for l in range(min(joining), fm.n_layers):
        with record_function(name):
            if l in joining:
                hidden, rows = _join(hidden, rows, joining[l], where, base.layer_inputs[l][:, t0:])
            state.plans = [plans[i] for i in rows]
            out = fm.decoder.layers[l](hidden, attention_mask=None, position_ids=positions,
                                       position_embeddings=rotary, flow_knockout=state)
            hidden = out[0] if isinstance(out, tuple) else out
            if l in base.between:
                hidden = hidden + base.between[l][:, t0:]
        yield
    with record_function(name):
        logits = fm.lm_head(fm.decoder.norm(hidden[:, -1:]))[:, -1]
        if rows == sorted(rows):
            return logits
        # back to the order of ``plans``, through pinned memory (a list index would wait for the queue)
        back = torch.tensor(sorted(range(len(rows)), key=rows.__getitem__))
        return logits.index_select(0, to_device(back, logits.device))


def _join(hidden, rows: list, joining: list, where: list, inputs: torch.Tensor):
    """``(hidden, rows)`` with the plans ``joining`` added (:func:`_recompute`): a copy of its source's row right after
    that row (``where[i] = (layer, source)``), or, joining from the baseline, ``inputs`` (``[1, positions, d_model]``) at
    the end. ``hidden``: ``[rows, positions, d_model]`` or None (no row yet)."""
    after: dict = {}  # row -> the plans that copy it
    for i in joining:
        if where[i][1] is not None:
            after.setdefault(rows.index(where[i][1]), []).append(i)
    parts, new_rows, a = [], [], 0
    for r in sorted(after):
        parts += [hidden[a:r + 1]] + [hidden[r:r + 1]] * len(after[r])
        new_rows += rows[a:r + 1] + after[r]
        a = r + 1
    fresh = [i for i in joining if where[i][1] is None]
    if hidden is not None and a < len(rows):
        parts.append(hidden[a:])
        new_rows += rows[a:]
    if fresh:
        parts.append(inputs.expand(len(fresh), -1, -1))
        new_rows += fresh
    return (parts[0] if len(parts) == 1 else torch.cat(parts)), new_rows


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


def work(n_layers: int, where: list, positions: int) -> int:
    """Position-layers that ``fast`` recomputes for one batch whose plans join it where ``where`` (:func:`joins`) says,
    ``positions`` each."""
    return sum((n_layers - layer) * positions for layer, _ in where)


def batches(plans, n: int, batch_size: int = 256, max_batch_tokens: int = 8192) -> list[tuple[list[int], int]]:
    """How ``fast`` groups plans: ``[(plan indices, t0)]``.

    Plans that cut nothing are left out (their result is the baseline). The rest are
    grouped by first target ``t0`` (the paper's sweep: one group per target group, all
    windows of all flows into it), sorted by what they cut layer by layer (plans that cut alike in their
    first layers then share a batch and compute those layers once: :func:`joins`), and cut into batches of at most
    ``batch_size`` plans and ``max_batch_tokens`` recomputed positions; in a batch, sorted by first layer (then
    last: in a layer, the rows that cut and those that no longer do then form few runs).
    """
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(plans):
        if not p.is_empty:
            groups.setdefault(p.first_target, []).append(i)
    out = []
    for t0, idx in sorted(groups.items()):
        # plans that cut alike in their first layers side by side, so that they share a batch (:func:`joins`)
        idx.sort(key=lambda i: (plans[i].first_layer, _cut_sequence(plans[i])))
        size = max(1, min(batch_size, max_batch_tokens // (n - t0)))
        out += [(sorted(idx[j:j + size], key=lambda i: (plans[i].first_layer, plans[i].last_layer)), t0)
                for j in range(0, len(idx), size)]
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
    members = [[plans[i] for i in chunk] for chunk, _ in chunks]
    wheres = [joins(m) for m in members]  # once a batch: its recomputation and its weight
    logits = _interleaved([_recompute(fm, prepared, base, m, t0, where)
                           for m, (_, t0), where in zip(members, chunks, wheres)],
                          [work(fm.n_layers, where, n - t0) for (_, t0), where in zip(chunks, wheres)])
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
