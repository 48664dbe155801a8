"""Attention Knockout sweeps over questions: one tidy table row per sample x flow x layer.

For every question the paper reads the probability of the model's predicted answer token at
the last position, before and after blocking a flow in a window of layers, and reports the
relative change ``100 * (p_knockout - p_baseline) / p_baseline`` (Sec. 3, Figs. 2-4). It
analyses the questions the model answers correctly (``sample_mode="correct"``); ``"wrong"``
and ``"all"`` are there too.

A very confident model (the toy VideoLLM often puts more than 0.999 on its answer) hides
everything short of a flip from that metric, so every row also carries a saturation-robust
one: the logit difference between the true option's letter and the best false option's
letter (:func:`logit_difference`), before and after the knockout.

The questions go through the per-question runner (:mod:`.runner`), as every analysis's do:
every problem with the parameters is reported at once before any work
(:meth:`Sweep.problems`); a question whose video cannot be decoded, whose token spans
cannot be found, whose logits are NaN or inf, or that runs out of memory even with a batch of
one plan is skipped and recorded with its reason (``table.attrs["skipped"]``,
:func:`flowutils.analysis.store.skip_summary`); out of memory is first retried with half the batch.

Given ``out`` (a results directory), :func:`run_sweep` writes each finished question to the
crash-safe result store (:mod:`.store`) under ``out/<hash of the parameters>/``, skips the
questions already there, and returns the table read back from it; ``shard``/``num_shards``
(or torchrun's ``RANK``/``WORLD_SIZE``) split the questions between writers (:mod:`.shards`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..engine import BACKENDS
from ..knockout.flows import CROSS_FRAME, flow_blocks, flow_set_of, flow_label, parse_flow
from ..knockout.plan import KnockoutPlan
from ..knockout.windows import STYLES, layer_windows
from ..models.encoding import to_device, to_host_later
from .runner import choice_problems, is_integer, knockout_with_retry, layer_problems, require_finite_rows, run_questions
from ..data.video import NUM_FRAMES


def sweep_plans(layout, flows, n_layers: int, k: int, style: str = "center", layers=None) -> list[KnockoutPlan]:
    """One plan per (flow, sweep layer); ``label`` holds flow, flow set, layer and the window's layers."""
    blocks = {flow: flow_blocks(flow, layout) for flow in flows}  # a flow cuts the same edges in every window
    return [KnockoutPlan.from_blocks(layout, blocks[flow], window, flow=flow, layer=layer,
                                     window=f"{window[0]}-{window[-1]}" if window else "")
            for flow in flows for layer, window in layer_windows(n_layers, k, style, layers)]


def logit_difference(logits, option_ids, gold_index: int):
    """``[..., vocab]`` -> ``[...]``: logit of the true option's letter minus the best false option's."""
    # index tensors through pinned memory: a Python list as an index is copied to a GPU synchronously (the host would
    # wait for the device's whole queue)
    letters = logits.index_select(-1, to_device(torch.tensor(list(option_ids)), logits.device))
    false = torch.tensor([i for i in range(len(option_ids)) if i != gold_index], dtype=torch.long)
    return letters[..., gold_index] - letters.index_select(-1, to_device(false, logits.device)).max(-1).values


@dataclass(frozen=True)
class Sweep:
    """What one knockout sweep measures, as one value: its defaults are declared here and nowhere else.

    ``flows``: flow names (e.g. ``"video->last"``, ``"cross-frame"``, or a flow set's,
    :data:`flowutils.knockout.flows.FLOW_SETS`); ``k``: window size (None: the model's protocol,
    ``fm.protocol.window_size``: the paper's 9 on its models, scaled to the depth on the others);
    ``style``: window style (:data:`flowutils.knockout.windows.STYLES`); ``layers``: sweep layers,
    0-based (None: every layer); ``backend``: ``fast`` or ``reference``; ``sample_mode``: which
    questions give rows (``correct``, the paper's, ``wrong`` or ``all``); ``num_frames``: frames per video.
    """

    flows: tuple[str, ...]
    k: int | None = None
    style: str = "center"
    layers: tuple[int, ...] | None = None
    backend: str = "fast"
    sample_mode: str = "correct"
    num_frames: int = NUM_FRAMES

    def __post_init__(self):
        # lists are accepted and kept as tuples, so that a sweep is hashable and compares by value
        if isinstance(self.flows, (list, tuple)):
            object.__setattr__(self, "flows", tuple(self.flows))
        if isinstance(self.layers, (list, tuple, range)):
            object.__setattr__(self, "layers", tuple(self.layers))

    def problems(self, n_layers: int) -> list[str]:
        """Every problem with this sweep for a model of ``n_layers`` layers (empty: all valid); the sample mode
        and the frames are checked by the runner."""
        problems = self.flow_problems()
        if self.k is not None and not (is_integer(self.k) and 1 <= self.k <= n_layers):
            problems.append(f"window size k must be an integer in 1..{n_layers} (the model's depth) or None for "
                            f"the paper's share of the depth, got {self.k!r}")
        problems += choice_problems("window style", self.style, STYLES)
        if self.layers is not None:
            problems += layer_problems("sweep layers", self.layers, n_layers)
        return problems + choice_problems("backend", self.backend, BACKENDS)

    def flow_problems(self) -> list[str]:
        """The problems with this sweep's flows: what can be checked before a model is loaded."""
        problems = []
        flows = self.flows
        if isinstance(flows, str) or not isinstance(flows, tuple) or not flows:
            problems.append(f"flows must be a non-empty list of flow names, got {flows!r}; e.g. ['video->last'] "
                            "(or a flow set's: flowutils.knockout.flows.FLOW_SETS)")
        else:
            for f in flows:
                if not isinstance(f, str):
                    problems.append(f"flow {f!r}: a flow is a string such as 'video->last' or {CROSS_FRAME!r}")
                    continue
                try:
                    if f != CROSS_FRAME:
                        parse_flow(f)
                except ValueError as err:
                    problems.append(f"flow {f!r}: {err}")
            if len(set(map(str, flows))) != len(flows):
                problems.append(f"flows contain duplicates: {list(flows)}")
        return problems

    def key(self, k: int) -> dict:
        """The store key's part of this sweep, with the window size ``k`` the model's protocol resolved."""
        return {"flows": list(self.flows), "k": k, "style": self.style,
                "layers": None if self.layers is None else list(self.layers), "backend": self.backend}


def sweep_rows(fm, question, flows, k: int, style: str = "center", layers=None, backend: str = "fast",
               params: dict | None = None, batch_size: int = 256) -> list[dict]:
    """The sweep's rows of one :class:`flowutils.analysis.runner.Question`: every flow at every sweep layer,
    each row led by ``params`` (the run's parameters)."""
    return launch_sweep(fm, question, flows, k, style, layers, backend, params, batch_size)()


def launch_sweep(fm, question, flows, k: int, style: str = "center", layers=None, backend: str = "fast",
                 params: dict | None = None, batch_size: int = 256):
    """Queue the knockouts of :func:`sweep_rows` on the device, and the copies of what their rows need, and return a
    function that reads the rows.

    Nothing here waits for the device (no value is read back), so the runner can launch the next question's
    work before it asks for these rows (:func:`flowutils.analysis.runner.pipelines`); the function keeps the
    copies on their way to the host, not the baseline's layers nor the question's inputs."""
    prepared, base = question.prepared, question.baseline
    plans = sweep_plans(prepared.layout, flows, fm.n_layers, k, style, layers)
    sid, task, gold, option_ids, gold_index = (question.sample_id, prepared.task, prepared.gold_id,
                                               prepared.option_ids, prepared.gold_index)
    pred_at = base.logits.argmax().view(1)  # the baseline's answer, where the logits are (reading it would wait)
    knocked = knockout_with_retry(fm, question, plans, backend, batch_size, wait=False,
                                  reduce=functools.partial(_row_columns, pred_at=pred_at, gold=gold,
                                                           option_ids=option_ids, gold_index=gold_index))
    # the baseline's answer and probabilities, computed where the logits are and copied now, before the next
    # question's work is queued behind them (the rows then wait for nothing else)
    base_probs, base_logits = to_host_later(torch.softmax(base.logits, -1)), to_host_later(base.logits)
    base_pred = to_host_later(pred_at)
    labels = [f"{p.label['flow']}@{p.label['layer']}" for p in plans]
    labels_of = [(flow_label(p.label["flow"]), flow_set_of(p.label["flow"]) or "custom", p.label["layer"],
                  p.label["window"]) for p in plans]

    def rows() -> list[dict]:
        knocked_out = knocked()
        require_finite_rows(knocked_out["finite"], "knockout logits", labels)
        tok = fm.tokenizer
        p_base, pred = base_probs(), int(base_pred())
        diff_base = float(logit_difference(base_logits(), option_ids, gold_index))
        common = {**(params or {}), "sample_id": sid, "task": task,
                  "predicted": tok.convert_ids_to_tokens(pred), "gold": tok.convert_ids_to_tokens(gold),
                  "p_pred_baseline": float(p_base[pred]), "p_gold_baseline": float(p_base[gold]),
                  "logit_diff_baseline": diff_base, "correct_baseline": pred == gold}
        # whole columns at once (the same float32 operations as element by element, so the same numbers): a
        # rank's CPU work per question stays small next to its GPU work, on torchrun's one thread too
        p_pred, p_gold = knocked_out["p_pred"], knocked_out["p_gold"]
        columns = {"p_pred_knockout": p_pred, "p_gold_knockout": p_gold,
                   "change_pred": (p_pred - p_base[pred]) / p_base[pred],
                   "change_gold": (p_gold - p_base[gold]) / p_base[gold],
                   "logit_diff_knockout": knocked_out["logit_diff"], "top": knocked_out["top"]}
        columns = {name: column.tolist() for name, column in columns.items()}
        tops = tok.convert_ids_to_tokens(columns["top"])
        out = []
        for j, (flow, flow_set, layer, window) in enumerate(labels_of):
            diff = columns["logit_diff_knockout"][j]
            out.append({**common, "flow": flow, "flow_set": flow_set, "layer": layer, "window": window,
                        "p_pred_knockout": columns["p_pred_knockout"][j],
                        "relative_change_pct": 100 * columns["change_pred"][j],
                        "p_gold_knockout": columns["p_gold_knockout"][j],
                        "relative_change_gold_pct": 100 * columns["change_gold"][j],
                        "logit_diff_knockout": diff, "logit_diff_change": diff - diff_base,
                        "argmax_knockout": tops[j], "correct_knockout": columns["top"][j] == gold})
        return out

    return rows


def _row_columns(logits, pred_at, gold: int, option_ids, gold_index: int) -> dict:
    """What a sweep row reads of the knockout logits ``[plans, vocab]`` (float32), per plan: ``finite`` (no NaN or
    inf), the probabilities of the baseline's answer (``pred_at``: its token, a one-element tensor) and of the gold
    token, the :func:`logit_difference` and the ``top`` token; computed where the logits are
    (:func:`flowutils.engine.knockout_logits`'s ``reduce``)."""
    probs = logits.softmax(-1)
    return {"finite": torch.isfinite(logits).all(-1), "p_pred": probs.index_select(1, pred_at.to(probs.device))[:, 0],
            "p_gold": probs[:, gold], "logit_diff": logit_difference(logits, option_ids, gold_index),
            "top": probs.argmax(-1)}


def run_sweep(fm, samples, sweep: Sweep, out=None, progress: bool = True, *, benchmark=None,
              shard: int | None = None, num_shards: int | None = None, batch_size: int = 256):
    """Knock out each flow of ``sweep`` at each sweep layer for each question; returns a pandas DataFrame.

    ``samples``: :class:`flowutils.data.VideoQASample` or rendered synthetic samples (unique
    ``sample_id``, else ``task/index``). ``sweep``: what is measured (:class:`Sweep`). ``out``: a results
    directory; the sweep's rows go to ``out/<key>/`` (:mod:`.store`), finished questions are not recomputed.
    ``benchmark``: what the samples come from (e.g. manifest name and hash), part of the key.
    ``shard``/``num_shards``: run only this shard's questions (default: torchrun's
    ``RANK``/``WORLD_SIZE``, else all); the table then holds this shard's questions.
    ``batch_size``: plans per batch of the fast backend (halved on out-of-memory).

    Columns: the run's parameters, ``bypasses`` (the model's known paths from the video to the LM
    that attention knockout does not block, e.g. Qwen3-VL's DeepStack; empty if none), ``sample_id``, ``task``,
    ``flow`` (paper spelling), ``flow_set``, ``layer``, ``window``, ``predicted``/``gold`` (tokens),
    ``p_pred_baseline``/``p_pred_knockout``, ``relative_change_pct``, ``p_gold_baseline``/``p_gold_knockout``,
    ``relative_change_gold_pct``, ``logit_diff_baseline``/``logit_diff_knockout``/``logit_diff_change``
    (:func:`logit_difference`), ``argmax_knockout``, ``correct_baseline``/``correct_knockout``, in the order of
    ``samples``. Questions outside ``sweep.sample_mode`` give no rows. ``attrs["skipped"]``: records
    (``sample_id``, ``task``, ``kind``, ``reason``) of the skipped questions; ``attrs["store"]``: the result
    set's directory (None without ``out``).
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"run_sweep takes a Sweep (flowutils.analysis.sweep.Sweep), got {type(sweep).__name__}: "
                        f"e.g. Sweep(flows=['video->last'], k=9)")
    problems = sweep.problems(fm.n_layers)
    k = fm.protocol.window_size if sweep.k is None else sweep.k
    columns = {"model": fm.name, "k": k, "style": sweep.style, "backend": sweep.backend,
               "sample_mode": sweep.sample_mode, "num_frames": sweep.num_frames,
               "bypasses": "; ".join(fm.adapter.bypasses)}
    flows = list(sweep.flows) if isinstance(sweep.flows, tuple) else []
    measure = functools.partial(launch_sweep, fm, flows=flows, k=k, style=sweep.style, layers=sweep.layers,
                                backend=sweep.backend, params=columns, batch_size=batch_size)
    return run_questions(fm, samples, measure, analysis="run_sweep", params=sweep.key(k),
                         num_frames=sweep.num_frames, sample_mode=sweep.sample_mode, problems=problems, out=out,
                         benchmark=benchmark, shard=shard, num_shards=num_shards, progress=progress, pipelined=True)


# the columns of run_sweep's table that say which run a row is from (its parameters, not its measurement)
RUN_COLUMNS = ("model", "k", "style", "backend", "sample_mode", "num_frames", "bypasses")


def summarize(table):
    """Per flow and layer: mean relative change of the predicted token's probability and accuracy
    before/after the knockout (%, over the table's questions). The table must hold one run: one value
    in each of :data:`RUN_COLUMNS` (tables of several sweeps concatenated are summarized one by one)."""
    missing = [c for c in ("sample_id", "flow", "layer", "relative_change_pct", "correct_baseline", "correct_knockout")
               if c not in table]
    if not len(table) or missing:
        raise ValueError(f"summarize needs a non-empty sweep table (run_sweep's); got {len(table)} row(s)"
                         + (f", missing columns {missing}" if missing else "")
                         + " (all questions excluded by sample_mode or skipped? see table.attrs['skipped'])")
    mixed = {c: sorted(table[c].astype(str).unique()) for c in RUN_COLUMNS if c in table and table[c].nunique() > 1}
    if mixed:
        raise ValueError("summarize averages one run, and this table mixes runs that differ in "
                         + "; ".join(f"{c}: {values}" for c, values in mixed.items())
                         + f"; summarize each: {{run: summarize(t) for run, t in table.groupby({list(mixed)})}}")
    g = table.groupby(["flow", "layer"], sort=False)
    return g.agg(questions=("sample_id", "nunique"), relative_change_pct=("relative_change_pct", "mean"),
                 accuracy_baseline=("correct_baseline", "mean"), accuracy_knockout=("correct_knockout", "mean")
                 ).assign(accuracy_baseline=lambda d: 100 * d.accuracy_baseline,
                          accuracy_knockout=lambda d: 100 * d.accuracy_knockout).reset_index()
