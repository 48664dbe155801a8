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

Everything that can be checked before a long run is checked first, every problem at once
(:func:`check_sweep_arguments`). During the run a question whose video cannot be decoded,
whose token spans cannot be found, whose logits are NaN or inf, or that runs out of memory
even with a batch of one plan is skipped and recorded with its reason (``table.attrs["skipped"]``,
:func:`flowutils.analysis.store.skip_summary`); out of memory is first retried with half the batch.

Given ``out`` (a results directory), :func:`run_sweep` writes each finished question to the
crash-safe result store (:mod:`.store`) under ``out/<hash of the parameters>/``, skips the
questions already there, and returns the table read back from it; ``shard``/``num_shards``
(or torchrun's ``RANK``/``WORLD_SIZE``) split the questions between writers (:mod:`.shards`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..data.video import BenchmarkError
from ..engine import BACKENDS, knockout_logits, run_baseline
from ..knockout.flows import CROSS_FRAME, family_of, flow_label, parse_flow
from ..knockout.plan import KnockoutPlan
from ..inputs.layout import LayoutError
from ..knockout.windows import STYLES, sweep
from .shards import resolve_shard, shard_indices
from .store import ResultStore, hash_cache, load_results, model_identity, skipped_frame, source_sha256

SAMPLE_MODES = ("correct", "wrong", "all")


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


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_sweep_arguments(n_layers: int, flows, k, style, layers, backend, sample_mode, num_frames) -> list[str]:
    """Every problem with a sweep's parameters for a model of ``n_layers`` layers (empty: all valid)."""
    problems = []
    if isinstance(flows, str) or not list(flows or []):
        problems.append(f"flows must be a non-empty list of flow names, got {flows!r}; e.g. ['video->last'] "
                        "(or a family's: flowutils.knockout.flows.FAMILIES)")
    else:
        flows = list(flows)
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
            problems.append(f"flows contain duplicates: {flows}")
    if k is not None and not (_is_int(k) and 1 <= k <= n_layers):
        problems.append(f"window size k must be an integer in 1..{n_layers} (the model's depth) or None for "
                        f"the paper's share of the depth, got {k!r}")
    if style not in STYLES:
        problems.append(f"unknown window style {style!r}; valid: {STYLES}")
    if layers is not None:
        bad = [l for l in layers if not (_is_int(l) and 0 <= l < n_layers)] if not isinstance(layers, str) else [layers]
        if bad or not len(layers):
            problems.append(f"sweep layers must be a non-empty list of integers in 0..{n_layers - 1}, "
                            f"got {layers!r} (bad: {bad})")
        elif len(set(layers)) != len(layers):
            problems.append(f"sweep layers contain duplicates: {list(layers)}")
    if backend not in BACKENDS:
        problems.append(f"unknown backend {backend!r}; valid: {BACKENDS}")
    if sample_mode not in SAMPLE_MODES:
        problems.append(f"unknown sample_mode {sample_mode!r}; valid: {SAMPLE_MODES}")
    if not (_is_int(num_frames) and num_frames >= 1):
        problems.append(f"num_frames must be an integer >= 1, got {num_frames!r}")
    return problems


def check_samples(samples, ids, num_frames) -> list[str]:
    """Problems with the question list itself: empty, duplicate ids, in-memory videos too short."""
    if not samples:
        return ["the sample list is empty: nothing to sweep (check tasks / n_per_task)"]
    problems = []
    seen, dup = set(), []
    for sid in ids:
        (dup.append(sid) if sid in seen else seen.add(sid))
    if dup:
        problems.append(f"sample ids must be unique (the store resumes by id), duplicated: {sorted(set(dup))[:10]}; "
                        "give samples distinct sample_id attributes")
    if isinstance(num_frames, int):
        short = [f"{sid} ({len(s.frames)} frames)" for s, sid in zip(samples, ids)
                 if getattr(s, "frames", None) is not None and len(s.frames) < num_frames]
        if short:
            problems.append(f"{len(short)} in-memory video(s) have fewer frames than num_frames={num_frames}: "
                            f"{short[:10]}")
    return problems


def sample_fingerprint(sample) -> str:
    """sha256 of what a question is: its text, candidates, answer, interval and video (the frames of an
    in-memory video; the file name and size of a video on disk)."""
    h = hashlib.sha256()
    for part in (sample.task, sample.question, *sample.candidates, "|", sample.answer, str(getattr(sample, "bound", None))):
        h.update(str(part).encode() + b"\0")
    if hasattr(sample, "video_path"):
        path = Path(sample.video_path)
        h.update(f"{path.name}|{path.stat().st_size if path.exists() else -1}".encode())
    else:
        h.update(memoryview(sample.frames.tobytes()))
    return h.hexdigest()


def sweep_parameters(fm, flows, k, style, layers, backend, sample_mode, num_frames, benchmark=None,
                     cache_file=None) -> dict:
    """What a result set's key hashes (see :mod:`.store`)."""
    from .. import __version__

    return {"model": model_identity(fm, cache_file), "benchmark": benchmark, "flows": list(flows), "k": k,
            "style": style, "layers": None if layers is None else list(layers), "backend": backend,
            "sample_mode": sample_mode, "num_frames": num_frames, "flowutils": __version__,
            "flowutils_source": source_sha256(), "bypasses": list(fm.adapter.bypasses)}


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _knockout_with_retry(fm, prepared, plans, backend, base, batch_size):
    """Knockout logits; on out-of-memory, free the cache and retry with half the batch, down to 1."""
    while True:
        try:
            return knockout_logits(fm, prepared, plans, backend, batch_size=batch_size, baseline=base)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not _is_oom(err) or batch_size <= 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size //= 2


def _question(fm, sample, sid, flows, k, style, layers, backend, sample_mode, num_frames, params, batch_size):
    """``(status, rows, reason)`` of one question (see :data:`flowutils.analysis.store.STATUSES`)."""
    try:
        prepared = fm.prepare_sample(sample, num_frames)
    except BenchmarkError as err:
        return "skipped", [], f"video: {err}"
    except LayoutError as err:
        return "skipped", [], f"spans: {err}"
    prepared.sample_id = sid
    try:
        base = run_baseline(fm, prepared)
        if not torch.isfinite(base.logits).all():
            return "skipped", [], "non-finite: baseline logits contain NaN or inf"
        p_base = base.probs.cpu()
        pred, gold = int(p_base.argmax()), prepared.gold_id
        correct = pred == gold
        if not (sample_mode == "all" or correct == (sample_mode == "correct")):
            return "excluded", [], ""
        plans = sweep_plans(prepared.layout, flows, fm.n_layers, k, style, layers)
        logits = _knockout_with_retry(fm, prepared, plans, backend, base, batch_size)
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not _is_oom(err):
            raise
        return "skipped", [], f"oom: out of memory even with one plan per batch ({str(err).splitlines()[0]})"
    bad = [f"{p.label['flow']}@{p.label['layer']}" for p, row in zip(plans, logits) if not torch.isfinite(row).all()]
    if bad:
        return "skipped", [], f"non-finite: knockout logits contain NaN or inf under {bad[:5]}"
    tok = fm.tokenizer
    probs = logits.softmax(-1)
    diff_base = float(logit_difference(base.logits.cpu(), prepared.option_ids, prepared.gold_index))
    question = {**params, "sample_id": sid, "task": prepared.task, "predicted": tok.convert_ids_to_tokens(pred),
                "gold": tok.convert_ids_to_tokens(gold), "p_pred_baseline": float(p_base[pred]),
                "p_gold_baseline": float(p_base[gold]), "logit_diff_baseline": diff_base, "correct_baseline": correct}
    # whole columns at once (the same float32 operations as element by element, so the same numbers): a
    # rank's CPU work per question stays small next to its GPU work, on torchrun's one thread too
    columns = {"p_pred_knockout": probs[:, pred], "p_gold_knockout": probs[:, gold],
               "change_pred": (probs[:, pred] - p_base[pred]) / p_base[pred],
               "change_gold": (probs[:, gold] - p_base[gold]) / p_base[gold],
               "logit_diff_knockout": logit_difference(logits, prepared.option_ids, prepared.gold_index),
               "top": probs.argmax(-1)}
    columns = {name: column.tolist() for name, column in columns.items()}
    tops = tok.convert_ids_to_tokens(columns["top"])
    rows = []
    for j, plan in enumerate(plans):
        diff = columns["logit_diff_knockout"][j]
        rows.append({**question, "flow": flow_label(plan.label["flow"]),
                     "family": family_of(plan.label["flow"]) or "custom", "layer": plan.label["layer"],
                     "window": plan.label["window"], "p_pred_knockout": columns["p_pred_knockout"][j],
                     "relative_change_pct": 100 * columns["change_pred"][j],
                     "p_gold_knockout": columns["p_gold_knockout"][j],
                     "relative_change_gold_pct": 100 * columns["change_gold"][j],
                     "logit_diff_knockout": diff, "logit_diff_change": diff - diff_base,
                     "argmax_knockout": tops[j], "correct_knockout": columns["top"][j] == gold})
    return "done", rows, ""


def run_sweep(fm, samples, flows, k: int | None = None, style: str = "center", layers=None, backend: str = "fast",
              sample_mode: str = "correct", num_frames: int = 8, out=None, progress: bool = True, *,
              benchmark=None, shard: int | None = None, num_shards: int | None = None, batch_size: int = 256):
    """Knock out each flow at each sweep layer for each question; returns a pandas DataFrame.

    ``samples``: :class:`flowutils.data.VideoQASample` or rendered synthetic samples (unique
    ``sample_id``, else ``task/index``). ``k`` (None: the paper's share of the depth,
    :func:`flowutils.knockout.windows.scaled_window_size`). ``out``: a results directory; the
    sweep's rows go to ``out/<key>/`` (:mod:`.store`), finished questions are not recomputed.
    ``benchmark``: what the samples come from (e.g. manifest name and hash), part of the key.
    ``shard``/``num_shards``: run only this shard's questions (default: torchrun's
    ``RANK``/``WORLD_SIZE``, else all); the table then holds this shard's questions.
    ``batch_size``: plans per batch of the fast backend (halved on out-of-memory).

    Columns: the run's parameters, ``bypasses`` (the model's known paths from the video to the LM
    that attention knockout does not block, e.g. Qwen3-VL's DeepStack; empty if none), ``sample_id``, ``task``, ``flow`` (paper spelling), ``family``,
    ``layer``, ``window``, ``predicted``/``gold`` (tokens), ``p_pred_baseline``/``p_pred_knockout``,
    ``relative_change_pct``, ``p_gold_baseline``/``p_gold_knockout``, ``relative_change_gold_pct``,
    ``logit_diff_baseline``/``logit_diff_knockout``/``logit_diff_change`` (:func:`logit_difference`),
    ``argmax_knockout``, ``correct_baseline``/``correct_knockout``, in the order of ``samples``.
    Questions outside ``sample_mode`` give no rows. ``attrs["skipped"]``: records (``sample_id``,
    ``task``, ``kind``, ``reason``) of the skipped questions; ``attrs["store"]``: the result set's directory (None without ``out``).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    samples = list(samples)
    ids = [_sample_id(s, i) for i, s in enumerate(samples)]
    problems = check_sweep_arguments(fm.n_layers, flows, k, style, layers, backend, sample_mode, num_frames)
    problems += check_samples(samples, ids, num_frames)
    if problems:
        raise ValueError(f"run_sweep on {fm.name}: {len(problems)} problem(s):\n- " + "\n- ".join(problems))
    flows = list(flows)
    k = fm.protocol.window_size if k is None else k
    shard, num_shards = resolve_shard(shard, num_shards)
    mine = shard_indices(len(samples), shard, num_shards)
    params = {"model": fm.name, "k": k, "style": style, "backend": backend, "sample_mode": sample_mode,
              "num_frames": num_frames, "bypasses": "; ".join(fm.adapter.bypasses)}
    store = None
    if out is not None:
        key = sweep_parameters(fm, flows, k, style, layers, backend, sample_mode, num_frames, benchmark,
                               cache_file=hash_cache(out))
        store = ResultStore(out, key, shard, num_shards, fm.device)
    done = store.finished() if store is not None else {}
    frames, skipped = [], []
    bar = tqdm(mine, desc=f"knockout {fm.name}" + (f" shard {shard}/{num_shards}" if num_shards > 1 else ""),
               disable=not progress)
    try:
        for i in bar:
            sample, sid = samples[i], ids[i]
            fingerprint = sample_fingerprint(sample)
            if sid in done:
                if done[sid] != fingerprint:
                    raise ValueError(f"{store.dir}: question {sid!r} is stored with other content (question, "
                                     "candidates, answer or video changed); use another results directory")
                continue
            status, rows, reason = _question(fm, sample, sid, flows, k, style, layers, backend, sample_mode,
                                             num_frames, params, batch_size)
            if store is not None:
                store.record(sid, sample.task, fingerprint, status, rows, reason)
            elif rows:
                frames.append(pd.DataFrame(rows))
            elif status == "skipped":
                skipped.append((sid, sample.task, reason))
    finally:
        if store is not None:
            store.close()
    if store is None:
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        frame = skipped_frame(*zip(*skipped)) if skipped else skipped_frame([], [], [])
        table.attrs["skipped"] = frame.to_dict("records")
        table.attrs["store"] = None
        return table
    wanted = {ids[i]: n for n, i in enumerate(mine)}
    stored = load_results(store.dir, sample_ids=wanted)
    if len(stored):
        order = stored.sample_id.map(wanted)
        stored = stored.iloc[order.argsort(kind="stable")].reset_index(drop=True)
    stored.attrs["skipped"] = [r for r in stored.attrs["skipped"] if r["sample_id"] in wanted]
    stored.attrs["store"] = str(store.dir)
    return stored


def summarize(table):
    """Per flow and layer: mean relative change of the predicted token's probability and accuracy
    before/after the knockout (%, over the table's questions)."""
    missing = [c for c in ("sample_id", "flow", "layer", "relative_change_pct", "correct_baseline", "correct_knockout")
               if c not in table]
    if not len(table) or missing:
        raise ValueError(f"summarize needs a non-empty sweep table (run_sweep's); got {len(table)} row(s)"
                         + (f", missing columns {missing}" if missing else "")
                         + " (all questions excluded by sample_mode or skipped? see table.attrs['skipped'])")
    g = table.groupby(["flow", "layer"], sort=False)
    return g.agg(questions=("sample_id", "nunique"), relative_change_pct=("relative_change_pct", "mean"),
                 accuracy_baseline=("correct_baseline", "mean"), accuracy_knockout=("correct_knockout", "mean")
                 ).assign(accuracy_baseline=lambda d: 100 * d.accuracy_baseline,
                          accuracy_knockout=lambda d: 100 * d.accuracy_knockout).reset_index()
