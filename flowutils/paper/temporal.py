"""Section 3.2: temporal interaction within video tokens (Figure 2, Table 2, Table B).

The cross-frame knockout forbids the tokens of frame ``i`` to attend to the tokens of every
earlier frame. The paper sweeps it over layers (window of ``k`` layers, Figure 2) for the
VideoLLM and its ImageLLM base, then blocks it in the first half of the layers at once and
counts how many of the questions answered correctly at baseline stay correct (Table 2; the
second half of the layers in Table B of the appendix). Table 2 also shows open-ended answers
at baseline and under the first-half knockout (:func:`open_ended_examples`).

The claims of the section are tested on those tables by the ``*_claim`` functions; the
paper's numbers are :data:`PAPER_TABLE_2` and :data:`PAPER_TABLE_B_SECOND_HALF`.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import replace

from ..data.synthetic import TASK_TITLES, opposite_answer
from ..engine import generate
from ..knockout.flows import CROSS_FRAME
from ..knockout.plan import KnockoutPlan
from .claims import (METRICS, Claim, all_of, decide, intervals_text, mean_estimate, metric, most_of, questions, range_means,
                     stability, verdict_word)
from ..analysis.runner import count_problems, layer_problems, run_questions
from ..analysis.sweep import Sweep, run_sweep
from ..analysis.uncertainty import accuracy
from ..data.video import NUM_FRAMES

SECTION = "3.2"
# Accuracy drop (percentage points) of LLaVA-NeXT-7B-Video-FT, cross-frame blocked in layers 1-16 of 32
# (Table 2) and in layers 17-32 (Table B), over the questions answered correctly at baseline.
PAPER_TABLE_2 = {"action_antonym": -24.1, "action_sequence": -20.2, "scene_transition": -18.0,
                 "moving_direction": -44.8, "object_count": -60.8}
PAPER_TABLE_B_SECOND_HALF = {"action_antonym": -0.5, "action_sequence": -0.7, "scene_transition": -0.8,
                             "moving_direction": -1.7, "object_count": -1.2}
PAPER_SMALLEST_DROP = -18.0  # "accuracy drops of at least 18%" (Sec. 3.2)
MARGINAL_DROP = -5.0  # Table B's "barely impacts": at most 5 points (the paper's largest is 1.7)
EXAMPLE_TOKENS = 10  # tokens generated per answer of Table 2's examples (one question per task)
ANSWER_TOKENS = 12  # tokens generated per answer of Table 2's counted answer changes
HALVES = ("first", "second")
# the curve metrics in a few words (a claim's row names both)
AXIS = {"relative_change_pct": "relative change of p(answer)", "logit_diff_change": "logit difference"}


def task_title(task: str) -> str:
    return TASK_TITLES.get(task, task)


def half_layers(n_layers: int, half: str) -> tuple[int, ...]:
    """0-based layers of the first (``0..L/2-1``) or second (``L/2..L-1``) half of the model."""
    if half not in HALVES:
        raise ValueError(f"unknown half {half!r}; valid: {HALVES}")
    mid = n_layers // 2
    return tuple(range(mid)) if half == "first" else tuple(range(mid, n_layers))


def half_knockout(fm, samples, half: str = "first", sample_mode: str = "correct", num_frames: int = NUM_FRAMES,
                  progress: bool = True, *, out=None, benchmark=None, shard: int | None = None,
                  num_shards: int | None = None):
    """Cross-frame attention blocked in one half of the layers at once: a sweep table with one row
    per question (column ``half``). The first half is the ``bottom_up`` window ending at layer
    ``L/2 - 1``, the second the ``top_down`` window starting at ``L/2``. ``out``, ``benchmark``,
    ``shard``/``num_shards``: as :func:`flowutils.analysis.run_sweep`'s."""
    layers = half_layers(fm.n_layers, half)
    style, point = ("bottom_up", layers[-1]) if half == "first" else ("top_down", layers[0])
    sweep = Sweep([CROSS_FRAME], style=style, layers=[point], sample_mode=sample_mode, num_frames=num_frames)
    table = run_sweep(fm, samples, sweep, out, progress, benchmark=benchmark, shard=shard, num_shards=num_shards)
    return table.assign(half=half)


def accuracy_drop(table):
    """Per model, half and task: accuracy (%) at baseline and under the knockout, with Wilson 95%
    intervals and question counts, and the drop (knockout - baseline, percentage points).

    ``table``: rows of :func:`half_knockout` (one per question), concatenated over models/halves.
    """
    import pandas as pd

    rows = []
    for (model, half, task), g in table.groupby(["model", "half", "task"], sort=False):
        base, ko = accuracy(g["correct_baseline"]), accuracy(g["correct_knockout"])
        rows.append({"model": model, "half": half, "task": task, "questions": base["questions"],
                     "accuracy_baseline": base["accuracy"], "accuracy_knockout": ko["accuracy"],
                     "knockout_lo": ko["lo"], "knockout_hi": ko["hi"],
                     "drop": ko["accuracy"] - base["accuracy"]})
    return pd.DataFrame(rows)


def _metrics(table, decide_on: str) -> list[str]:
    """The curve metrics of :data:`flowutils.paper.claims.METRICS` the table has, ``decide_on`` first."""
    metric(decide_on)
    if decide_on not in table.columns:
        raise ValueError(f"decide_on={decide_on!r}: the table has no such column")
    return [decide_on] + [m for m in METRICS if m != decide_on and m in table.columns]


def _early_estimates(table, n_layers: int, value: str, seed: int = 0) -> list:
    """Per task: the first half's mean (below the metric's threshold) and first minus second half (below 0)."""
    _, threshold = metric(value)
    first, second = half_layers(n_layers, "first"), half_layers(n_layers, "second")
    out = []
    for task, g in table.groupby("task", sort=False):
        a, b = range_means(g, value, first), range_means(g, value, second)
        out += [mean_estimate(f"{task_title(task)}: L1-{len(first)}", a, threshold, "below", seed=seed),
                mean_estimate(f"{task_title(task)}: L1-{len(first)} minus L{len(first) + 1}-{n_layers}",
                              (a - b.reindex(a.index)), 0.0, "below", seed=seed)]
    return out


def _early(table, n_layers: int, value: str, seed: int = 0) -> bool | None:
    return all_of(e.holds for e in _early_estimates(table, n_layers, value, seed)) if len(table) else None


def early_cross_frame_claim(table, n_layers: int, decide_on: str = "relative_change_pct", seed: int = 0) -> Claim:
    """Figure 2: in every task, blocking cross-frame attention in the first half of the layers lowers the
    VideoLLM's answer below the metric's threshold (:data:`flowutils.paper.claims.METRICS`), and more than in the
    second half: per question, the mean of the curve over layers 1-L/2 and over L/2+1-L (interval means, as
    Table E reads layer ranges), bootstrapped over questions. One row with both metrics; the verdict is
    ``decide_on``'s, the other metric's verdict is in ``measured``.

    ``table``: the VideoLLM's cross-frame sweep (every layer, one model).
    """
    values = _metrics(table, decide_on)
    measured = "; ".join(f"{AXIS[v]}: {verdict_word(_early(table, n_layers, v, seed))}" for v in values)
    est = _early_estimates(table, n_layers, decide_on, seed)
    words, threshold = metric(decide_on)
    return Claim(SECTION, "Figure 2: early layers",
                 f"VideoLLM: in every task the mean {words} with cross-frame attention blocked around layers "
                 f"1-{n_layers // 2} is below {threshold:g} and below its mean around layers "
                 f"{n_layers // 2 + 1}-{n_layers} (decided on {AXIS[decide_on]})",
                 "early-to-middle layers (Figure 2)", measured, _early(table, n_layers, decide_on, seed),
                 questions(table), intervals_text(est),
                 stability(lambda t: _early(t, n_layers, decide_on, seed), table))


def _contrast_estimates(video_table, image_table, n_layers: int, value: str, seed: int = 0) -> dict:
    """Per task both models have: (the VideoLLM's first-half mean below the threshold, the ImageLLM's above it)."""
    _, threshold = metric(value)
    first = half_layers(n_layers, "first")
    out = {}
    for task, g in video_table.groupby("task", sort=False):
        h = image_table[image_table["task"] == task] if len(image_table) else image_table
        if not len(h):
            continue
        out[task] = (mean_estimate(f"{task_title(task)}: VideoLLM L1-{len(first)}", range_means(g, value, first),
                                   threshold, "below", seed=seed),
                     mean_estimate(f"{task_title(task)}: ImageLLM L1-{len(first)}", range_means(h, value, first),
                                   threshold, "above", seed=seed))
    return out


def _contrast(video_table, image_table, n_layers: int, value: str, seed: int = 0) -> bool | None:
    est = _contrast_estimates(video_table, image_table, n_layers, value, seed)
    return most_of(all_of((v.holds, i.holds)) for v, i in est.values())


def video_vs_image_claim(video_table, image_table, n_layers: int, decide_on: str = "relative_change_pct",
                         seed: int = 0) -> Claim:
    """Figure 2: in most tasks (more than half of those both models have questions for), cross-frame knockout
    in the first half of the layers hurts the VideoLLM (mean below the threshold) and leaves the ImageLLM
    unaffected (mean above it). Each model on its own analysed questions; a model with fewer than
    :data:`flowutils.paper.claims.MIN_QUESTIONS` in a task leaves that task undecided."""
    values = _metrics(video_table, decide_on)
    est = _contrast_estimates(video_table, image_table, n_layers, decide_on, seed)
    item, paper = "Figure 2: VideoLLM vs ImageLLM", "ImageLLM mostly unaffected (Figure 2)"
    words, threshold = metric(decide_on)
    finding = (f"in most tasks the VideoLLM's mean {words} with cross-frame attention blocked around layers "
               f"1-{n_layers // 2} is below {threshold:g} and the ImageLLM's above it (decided on {AXIS[decide_on]})")
    if not est:
        return Claim(SECTION, item, finding, paper, "the ImageLLM answered no question of these tasks correctly",
                     None, questions(video_table))
    measured = "; ".join(f"{AXIS[v]}: {verdict_word(_contrast(video_table, image_table, n_layers, v, seed))}"
                         for v in values)
    holds = _contrast(video_table, image_table, n_layers, decide_on, seed)
    return Claim(SECTION, item, finding, paper, measured, holds, questions(video_table, image_table), intervals_text(e for pair in est.values() for e in pair),
                 stability(lambda v, i: _contrast(v, i, n_layers, decide_on, seed), video_table, image_table))


GOLD_VALUE = "relative_change_gold_pct"


def image_all_questions_claim(image_table, n_layers: int, seed: int = 0) -> Claim:
    """Figure 2, a variant over *every* question (the ImageLLM answers few correctly): the mean relative change of
    the *gold* token's probability with cross-frame attention blocked around layers 1-L/2 stays above the -5%
    threshold, in every task. ``image_table``: the ImageLLM's cross-frame sweep with ``sample_mode="all"``."""
    _, threshold = metric("relative_change_pct")
    first = half_layers(n_layers, "first")

    def estimates(t):
        out = []
        for task, g in t.groupby("task", sort=False):
            e = mean_estimate(f"{task_title(task)}: L1-{len(first)}", range_means(g, GOLD_VALUE, first), threshold,
                              "above", seed=seed)
            out += [e, replace(e, threshold=-threshold, direction="below")]  # unaffected: neither down nor up
        return out

    def verdict(t):
        return all_of(e.holds for e in estimates(t)) if len(t) else None

    est = estimates(image_table)
    return Claim(SECTION, "Figure 2: ImageLLM, all questions (gold token)",
                 f"the ImageLLM is unaffected: over all questions (answered correctly or not), the mean relative "
                 f"change of the gold option's probability with cross-frame attention blocked around layers "
                 f"1-{n_layers // 2} lies between {threshold:g}% and {-threshold:g}% in every task (a variant: the "
                 "paper's curves are over correctly answered questions)", "ImageLLM mostly unaffected (Figure 2)",
                 f"{len(est) // 2} tasks", verdict(image_table), questions(image_table), intervals_text(est),
                 stability(verdict, image_table))


def _paired_drops(halves, model: str):
    """Per question (index ``task``, ``sample_id``), the accuracy change (knockout minus baseline, 0 or -100 points
    on correctly answered questions) of each half (columns)."""
    t = halves[halves["model"] == model]
    change = 100.0 * (t["correct_knockout"].astype(float) - t["correct_baseline"].astype(float))
    return t.assign(change=change).pivot_table(index=["task", "sample_id"], columns="half", values="change",
                                               aggfunc="mean", sort=False)


def _table2(rows, task: str, seed: int = 0):
    d = _paired_drops(rows, rows["model"].iloc[0]) if len(rows) else None
    if d is None or "first" not in d.columns or task not in d.index.get_level_values(0):
        return mean_estimate(task_title(task), [], PAPER_SMALLEST_DROP)
    return mean_estimate(f"{task_title(task)}: first half", d.loc[task]["first"], PAPER_SMALLEST_DROP, "below",
                         seed=seed)


def table2_claims(halves, model: str, seed: int = 0) -> list[Claim]:
    """Table 2: one claim per task, the first-half knockout lowers the accuracy of the analysed questions by at
    least the paper's smallest drop (18 points): the mean accuracy change over the task's questions, with its
    bootstrap interval over questions, below -18. ``halves``: rows of :func:`half_knockout` (one per question
    and half)."""
    rows = halves[halves["model"] == model]
    claims = []
    for task in dict.fromkeys(rows[rows["half"] == "first"]["task"]):
        paper = PAPER_TABLE_2.get(task)
        mine = rows[rows["task"] == task]
        est = _table2(mine, task, seed)
        claims.append(Claim(SECTION, f"Table 2: {task_title(task)}",
                            f"blocking cross-frame attention in the first half of the layers drops accuracy by "
                            f"at least {-PAPER_SMALLEST_DROP:g} points",
                            "" if paper is None else f"{paper:+.1f}", f"accuracy change {est.value:+.2f} points",
                            est.holds, est.n, str(est),
                            stability(lambda t, task=task: _table2(t, task, seed).holds, mine)))
    return claims


def _second_half_estimates(rows, seed: int = 0) -> list:
    """Per task: the first half has an effect (below 0), the second half's drop is at most ``MARGINAL_DROP``
    (above it) and no larger than the first half's (second minus first above 0)."""
    if not len(rows):
        return []
    d = _paired_drops(rows, rows["model"].iloc[0])
    if not set(HALVES) <= set(d.columns):
        raise ValueError(f"accuracy drops of both halves are needed; found halves {list(d.columns)}")
    out = []
    for task in dict.fromkeys(d.index.get_level_values(0)):
        g = d.loc[task]
        name = task_title(task)
        out += [mean_estimate(f"{name}: first half", g["first"], 0.0, "below", seed=seed),
                mean_estimate(f"{name}: second half", g["second"], MARGINAL_DROP, "above", seed=seed),
                mean_estimate(f"{name}: second minus first", g["second"] - g["first"], 0.0, "above", seed=seed)]
    return out


def _second_half(rows, seed: int = 0) -> bool | None:
    return all_of(e.holds for e in _second_half_estimates(rows, seed)) if len(rows) else None


def second_half_claim(halves, model: str, seed: int = 0) -> Claim:
    """Table B: in every task the first-half knockout has an effect (its accuracy change is below 0) and the
    second-half one is marginal (above ``MARGINAL_DROP``) and smaller (second minus first above 0); a task where
    neither half changes anything (0 against 0) leaves the claim inconclusive, not holding."""
    rows = halves[halves["model"] == model]
    est = _second_half_estimates(rows, seed)
    paper = "; ".join(f"{task_title(t)}: {PAPER_TABLE_2[t]:+.1f} vs {PAPER_TABLE_B_SECOND_HALF[t]:+.1f}"
                      for t in dict.fromkeys(rows["task"]) if t in PAPER_TABLE_2)
    measured = "; ".join(f"{e.name} {e.value:+.2f}" for e in est if "minus" not in e.name)
    return Claim(SECTION, "Table B", "blocking cross-frame attention in the first half of the layers lowers accuracy, "
                 f"in the second half by at most {-MARGINAL_DROP:g} points and less than in the first, in every task "
                 "(first vs second half)", paper, measured, _second_half(rows, seed), questions(rows),
                 intervals_text(est), stability(lambda t: _second_half(t, seed), rows))


def _first_sentence(text: str) -> str:
    """A continuation up to its first full stop (the toy models go on with another option after it)."""
    head, dot, _ = text.partition(".")
    return (head + dot).strip()


def open_ended_rows(fm, question, layers, max_new_tokens: int = EXAMPLE_TOKENS) -> list[dict]:
    """:func:`open_ended_examples`' row of one :class:`flowutils.analysis.runner.Question`."""
    sample = question.sample
    plan = KnockoutPlan.from_flows(question.prepared.layout, [CROSS_FRAME], layers)
    base = _first_sentence(generate(fm, question.prepared, None, max_new_tokens))
    ko = _first_sentence(generate(fm, question.prepared, plan, max_new_tokens))
    return [{"sample_id": question.sample_id, "task": task_title(sample.task), "question": sample.question,
             "true answer": f"({chr(65 + sample.answer_index)}) {sample.answer}",
             "baseline": base, "knockout": ko, "changed": base != ko}]


def open_ended_examples(fm, samples, layers, num_frames: int = NUM_FRAMES, max_new_tokens: int = EXAMPLE_TOKENS,
                        progress: bool = False, *, out=None, benchmark=None, shard: int | None = None,
                        num_shards: int | None = None):
    """One question per task (the first one answered correctly at baseline): the model's greedy
    continuation of the prompt at baseline and with cross-frame attention blocked in ``layers``,
    up to its first full stop.

    Returns a DataFrame: task, question, true answer, baseline, knockout (generated texts), changed.
    ``out``, ``benchmark``, ``shard``/``num_shards`` (each shard picks its own question per task),
    ``attrs``: as :func:`flowutils.analysis.run_sweep`'s (:mod:`.runner`).
    """
    layers = list(layers)
    problems = layer_problems("layers", layers, fm.n_layers) + count_problems("max_new_tokens", max_new_tokens)
    measure = functools.partial(open_ended_rows, fm, layers=layers, max_new_tokens=max_new_tokens)
    rows = run_questions(fm, samples, measure, analysis="open_ended_examples", num_frames=num_frames,
                         params={"layers": layers, "max_new_tokens": max_new_tokens}, sample_mode="correct",
                         per_task=1, problems=problems, out=out, benchmark=benchmark, shard=shard,
                         num_shards=num_shards, progress=progress)
    return rows.drop(columns="sample_id", errors="ignore")  # no column at all when no question was answered


# ----------------------------------------------------------------------------- Table 2: answers that change
FORMS = ("open-ended", "multiple-choice")  # the open-ended prompt (Appendix C.1), the multiple-choice prompt's text
CHANGED_SHARE = 18.0  # % of answers that change: the paper's smallest accuracy drop under the same knockout


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def named_answer(text: str, candidates) -> str | None:
    """The candidate a generated continuation names: the one whose words the continuation's words start with,
    after an option letter (``A )``, ``(B)``) if there is one; None where it names none."""
    words = _words(text)
    if len(words) > 1 and re.match(r"\s*\(?[A-Z]\s*\)", text):
        words = words[1:]
    named = [c for c in candidates if _words(c) and words[:len(_words(c))] == _words(c)]
    return max(named, key=lambda c: len(_words(c))) if named else None


def answer_change_rows(fm, question, layers, max_new_tokens: int = ANSWER_TOKENS) -> list[dict]:
    """One row of :func:`answer_changes`: the greedy continuation (up to its first full stop) at baseline and with
    cross-frame attention blocked in ``layers``, the candidate each names (:func:`named_answer`), whether the
    baseline's names the true answer, whether the knockout's answer differs from the baseline's and whether it is
    the opposite of the true answer (:func:`flowutils.data.synthetic.opposite_answer`)."""
    sample, prepared = question.sample, question.prepared
    plan = KnockoutPlan.from_flows(prepared.layout, [CROSS_FRAME], layers)
    stop = [i for i in fm.tokenizer.convert_tokens_to_ids(["."]) if i is not None]
    base, ko = (_first_sentence(generate(fm, prepared, p, max_new_tokens, stop_ids=stop)) for p in (None, plan))
    named_base, named_ko = named_answer(base, sample.candidates), named_answer(ko, sample.candidates)
    opposite = opposite_answer(sample.task, sample.answer, sample.candidates)
    form = FORMS[0] if getattr(sample, "open_ended_prefix", None) is not None else FORMS[1]
    return [{"sample_id": question.sample_id, "task": sample.task, "form": form, "true answer": sample.answer,
             "opposite": opposite or "", "baseline": base, "knockout": ko, "baseline answer": named_base or "",
             "knockout answer": named_ko or "", "correct_baseline": named_base == sample.answer,
             "changed": named_ko != named_base, "opposite_knockout": opposite is not None and named_ko == opposite}]


def answer_changes(fm, samples, layers, num_frames: int = NUM_FRAMES, max_new_tokens: int = ANSWER_TOKENS,
                   per_task: int | None = None, forms=FORMS, progress: bool = False, *, out=None, benchmark=None):
    """Table 2's open-ended answers, counted: every question (at most ``per_task`` per task) asked in each of
    ``forms``: ``"open-ended"`` (the options left out, a sentence to complete:
    :class:`flowutils.paper.open_ended.OpenEndedSample`) and ``"multiple-choice"`` (the paper's prompt; the
    continuation after ``Best option:(`` names a letter and the option's text). One row per question and form
    (:func:`answer_change_rows`), through the one per-question runner; ``out``/``benchmark``: its result store."""
    from .open_ended import OpenEndedSample, completion_prefix
    from ..analysis.runner import sample_id

    import pandas as pd

    layers = list(layers)
    bad = [f for f in forms if f not in FORMS]
    problems = layer_problems("layers", layers, fm.n_layers) + count_problems("max_new_tokens", max_new_tokens)
    problems += [f"unknown form {f!r}; valid: {FORMS}" for f in bad]
    measure = functools.partial(answer_change_rows, fm, layers=layers, max_new_tokens=max_new_tokens)
    tables = []
    for form in forms:
        asked = samples if form == FORMS[1] else [OpenEndedSample(s, completion_prefix(s.task), sample_id(s, i))
                                                  for i, s in enumerate(samples)]
        tables.append(run_questions(fm, asked, measure, analysis="answer_changes", num_frames=num_frames,
                                    params={"layers": layers, "max_new_tokens": max_new_tokens, "form": form},
                                    sample_mode="all", per_task=per_task, problems=problems, out=out,
                                    benchmark=benchmark, progress=progress))
    return pd.concat(tables, ignore_index=True)


def answer_change_table(rows):
    """Per form and task (and over all tasks): the questions, those whose baseline answer names the true answer
    (``answered``), and of those the share whose answer changes under the knockout and the share that becomes the
    opposite answer (tasks with an opposite only), in % with Wilson 95% intervals."""
    import pandas as pd

    from ..analysis.uncertainty import wilson_interval

    out = []
    for form, f in rows.groupby("form", sort=False):
        for task, g in [*f.groupby("task", sort=False), ("all tasks", f)]:
            ok = g[g["correct_baseline"].astype(bool)]
            row = {"form": form, "task": task_title(task), "questions": len(g), "answered": len(ok)}
            with_opposite = ok[ok["opposite"].astype(str) != ""]
            for name, part, hits in (("changed", ok, ok["changed"]), ("opposite", with_opposite,
                                                                       with_opposite["opposite_knockout"])):
                k, n = int(hits.astype(bool).sum()), len(part)
                lo, hi = wilson_interval(k, n) if n else (math.nan, math.nan)
                lo, hi = max(lo, 0.0), min(hi, 100.0)  # a rounding error outside [0, 100] at 0% or 100%
                row.update({name: k, f"{name} of": n, f"{name} %": 100 * k / n if n else math.nan, f"{name} lo": lo,
                            f"{name} hi": hi})
            out.append(row)
    return pd.DataFrame(out)


def _changes_verdict(rows, form: str) -> bool | None:
    t = answer_change_table(rows[rows["form"] == form]) if len(rows) else None
    if t is None or not len(t):
        return None
    tasks = t[t["task"] != "all tasks"]
    return all_of(decide(r["changed lo"], r["changed hi"], CHANGED_SHARE, "above", r["answered"])
                  for _, r in tasks.iterrows())


def answer_change_claim(rows, form: str = FORMS[0]) -> Claim:
    """Table 2: with cross-frame attention blocked in the first half of the layers the answers become incorrect or
    opposite: in every task, of the questions whose baseline answer (in ``form``) names the true answer, the share
    whose answer changes has a Wilson 95% interval above :data:`CHANGED_SHARE` (holds), below it in some task
    (does not hold), else (or with fewer than :data:`flowutils.paper.claims.MIN_QUESTIONS` answered in a task)
    inconclusive. ``measured`` gives each form's counts, the opposite answers among them."""
    t = answer_change_table(rows) if len(rows) else None
    measured, intervals = [], []
    for f in FORMS:
        part = t[(t["form"] == f) & (t["task"] == "all tasks")] if t is not None else []
        if len(part):
            r = part.iloc[0]
            measured.append(f"{f}: {r['answered']} of {r['questions']} answered correctly at baseline; of those "
                            f"{r['changed']} changed ({r['changed %']:.1f}%), {r['opposite']} of the {r['opposite of']} with "
                            f"an opposite answer became it")
    if t is not None:
        intervals = [f"{r['task']}: changed {r['changed']}/{r['answered']} [{r['changed lo']:.1f}, "
                     f"{r['changed hi']:.1f}] > {CHANGED_SHARE:g}%" if r["answered"] else
                     f"{r['task']}: no question answered correctly at baseline"
                     for _, r in t[(t["form"] == form) & (t["task"] != "all tasks")].iterrows()]
    mine = rows[rows["form"] == form] if len(rows) else rows
    answered = int(mine["correct_baseline"].astype(bool).sum()) if len(mine) else 0
    return Claim(SECTION, "Table 2: open-ended answers",
                 f"blocking cross-frame attention in the first half of the layers changes the answers ({form} form) "
                 f"of more than {CHANGED_SHARE:g}% of the questions answered correctly at baseline, in every task "
                 "(incorrect or opposite answers)", "incorrect or even opposite answers in every task (Table 2)",
                 "; ".join(measured) or "no answer", _changes_verdict(rows, form) if len(rows) else None, answered,
                 "; ".join(intervals), stability(lambda r: _changes_verdict(r, form), mine) if len(mine) else "")
