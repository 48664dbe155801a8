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

:func:`run_sweep` writes the table as it goes (one CSV append per question) and, given the
same file again, skips the questions already in it, so a long run can be resumed. The
run's parameters are columns of every row; resuming with other parameters is an error.
"""

from __future__ import annotations

from pathlib import Path

from ..engine import knockout_logits, run_baseline
from ..knockout.flows import family_of, flow_label
from ..knockout.plan import KnockoutPlan
from ..knockout.windows import STYLES, scaled_window_size, sweep

SAMPLE_MODES = ("correct", "wrong", "all")
PARAMETERS = ("model", "k", "style", "backend", "sample_mode", "num_frames")


def sweep_plans(layout, flows, n_layers: int, k: int, style: str = "center", layers=None) -> list[KnockoutPlan]:
    """One plan per (flow, sweep layer); ``label`` holds flow, family, layer and the window's layers."""
    return [KnockoutPlan.from_flows(layout, [flow], window, flow=flow, layer=layer,
                                    window=f"{window[0]}-{window[-1]}" if window else "")
            for flow in flows for layer, window in sweep(n_layers, k, style, layers)]


def logit_difference(logits, option_ids, gold_index: int):
    """``[..., vocab]`` -> ``[...]``: logit of the true option's letter minus the best false option's."""
    letters = logits[..., list(option_ids)]
    false = [i for i in range(len(option_ids)) if i != gold_index]
    return letters[..., gold_index] - letters[..., false].max(-1).values


def _sample_id(sample, i: int) -> str:
    return getattr(sample, "sample_id", None) or f"{sample.task}/{i}"


def run_sweep(fm, samples, flows, k: int | None = None, style: str = "center", layers=None, backend: str = "fast",
              sample_mode: str = "correct", num_frames: int = 8, out=None, progress: bool = True):
    """Knock out each flow at each sweep layer for each question; returns a pandas DataFrame.

    ``samples``: :class:`flowutils.data.VideoQASample` or rendered synthetic samples. ``k``
    defaults to the paper's share of the depth (:func:`flowutils.knockout.windows.scaled_window_size`).
    Columns: the run's parameters, ``sample_id``, ``task``, ``flow`` (paper spelling), ``family``,
    ``layer``, ``window``, ``predicted``/``gold`` (tokens), ``p_pred_baseline``/``p_pred_knockout``,
    ``relative_change_pct``, ``p_gold_baseline``/``p_gold_knockout``, ``relative_change_gold_pct``,
    ``logit_diff_baseline``/``logit_diff_knockout``/``logit_diff_change`` (:func:`logit_difference`),
    ``argmax_knockout``, ``correct_baseline``/``correct_knockout``. Questions outside ``sample_mode`` give no rows.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if sample_mode not in SAMPLE_MODES:
        raise ValueError(f"unknown sample_mode {sample_mode!r}; valid: {SAMPLE_MODES}")
    if style not in STYLES:
        raise ValueError(f"unknown window style {style!r}; valid: {STYLES}")
    k = k or scaled_window_size(fm.n_layers)
    params = {"model": fm.name, "k": k, "style": style, "backend": backend, "sample_mode": sample_mode,
              "num_frames": num_frames}
    samples = list(samples)
    ids = [_sample_id(s, i) for i, s in enumerate(samples)]
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids must be unique to resume a sweep (give samples a sample_id)")
    done, frames = set(), []
    if out is not None and Path(out).exists() and Path(out).stat().st_size:
        old = pd.read_csv(out, dtype={"sample_id": str})
        for name, value in params.items():
            seen = set(old[name].astype(str))
            if seen != {str(value)}:
                raise ValueError(f"{out}: written with {name}={sorted(seen)}, this run has {name}={value!r}; "
                                 "use another file or the same parameters")
        done, frames = set(old["sample_id"]), [old]
    tok = fm.tokenizer
    for sample, sid in tqdm(list(zip(samples, ids)), desc=f"knockout {fm.name}", disable=not progress):
        if sid in done:
            continue
        prepared = fm.prepare_sample(sample, num_frames)
        prepared.sample_id = sid
        base = run_baseline(fm, prepared)
        p_base = base.probs.cpu()
        pred, gold = int(p_base.argmax()), prepared.gold_id
        correct = pred == gold
        rows = []
        if sample_mode == "all" or correct == (sample_mode == "correct"):
            plans = sweep_plans(prepared.layout, flows, fm.n_layers, k, style, layers)
            logits = knockout_logits(fm, prepared, plans, backend, baseline=base)
            probs = logits.softmax(-1)
            diffs = logit_difference(logits, prepared.option_ids, prepared.gold_index)
            diff_base = float(logit_difference(base.logits.cpu(), prepared.option_ids, prepared.gold_index))
            question = {**params, "sample_id": sid, "task": prepared.task, "predicted": tok.convert_ids_to_tokens(pred),
                        "gold": tok.convert_ids_to_tokens(gold), "p_pred_baseline": float(p_base[pred]),
                        "p_gold_baseline": float(p_base[gold]), "logit_diff_baseline": diff_base,
                        "correct_baseline": correct}
            for plan, p, diff in zip(plans, probs, diffs):
                top = int(p.argmax())
                rows.append({**question, "flow": flow_label(plan.label["flow"]),
                             "family": family_of(plan.label["flow"]) or "custom", "layer": plan.label["layer"],
                             "window": plan.label["window"], "p_pred_knockout": float(p[pred]),
                             "relative_change_pct": 100 * float((p[pred] - p_base[pred]) / p_base[pred]),
                             "p_gold_knockout": float(p[gold]),
                             "relative_change_gold_pct": 100 * float((p[gold] - p_base[gold]) / p_base[gold]),
                             "logit_diff_knockout": float(diff), "logit_diff_change": float(diff) - diff_base,
                             "argmax_knockout": tok.convert_ids_to_tokens(top),
                             "correct_knockout": top == gold})
        if rows:
            frame = pd.DataFrame(rows)
            frames.append(frame)
            if out is not None:
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                header = not Path(out).exists() or Path(out).stat().st_size == 0
                frame.to_csv(out, mode="a", header=header, index=False)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarize(table):
    """Per flow and layer: mean relative change of the predicted token's probability and accuracy
    before/after the knockout (%, over the table's questions)."""
    g = table.groupby(["flow", "layer"], sort=False)
    return g.agg(questions=("sample_id", "nunique"), relative_change_pct=("relative_change_pct", "mean"),
                 accuracy_baseline=("correct_baseline", "mean"), accuracy_knockout=("correct_knockout", "mean")
                 ).assign(accuracy_baseline=lambda d: 100 * d.accuracy_baseline,
                          accuracy_knockout=lambda d: 100 * d.accuracy_knockout).reset_index()
