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

from ..data.synthetic import TASK_TITLES
from ..engine import generate
from ..knockout.flows import CROSS_FRAME
from ..knockout.plan import KnockoutPlan
from .claims import Claim, largest_drop, metric
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
HALVES = ("first", "second")


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


def early_cross_frame_claim(table, n_layers: int, value: str = "relative_change_pct") -> Claim:
    """Figure 2: in every task, the VideoLLM's largest cross-frame drop lies in the first half of
    the layers and is below the metric's threshold (:data:`flowutils.paper.claims.METRICS`).

    ``table``: the VideoLLM's cross-frame sweep (every layer, one model).
    """
    words, threshold = metric(value)
    low = largest_drop(table, value, by=("task",))
    ok = (low["layer"] < n_layers // 2) & (low["drop"] < threshold)
    measured = "; ".join(f"{task_title(r.task)}: {r.drop:.2f} at L{r.layer + 1} (n={r.questions})"
                         for r in low.itertuples())
    return Claim(SECTION, f"Figure 2: early layers ({value})",
                 f"VideoLLM: the largest cross-frame drop of every task lies in layers 1-{n_layers // 2} "
                 f"(first half) and is below {threshold:g} [{words}]",
                 "early-to-middle layers (Figure 2)", measured, bool(ok.all()))


def video_vs_image_claim(video_table, image_table, value: str = "relative_change_pct") -> Claim:
    """Figure 2: the VideoLLM's largest cross-frame drop is larger than the ImageLLM's in most
    tasks (more than half of the tasks both models have questions for)."""
    words, _ = metric(value)
    v = largest_drop(video_table, value, by=("task",)).set_index("task")
    i = largest_drop(image_table, value, by=("task",)).set_index("task") if len(image_table) else None
    tasks = [t for t in v.index if i is not None and t in i.index]
    if not tasks:
        return Claim(SECTION, f"Figure 2: VideoLLM vs ImageLLM ({value})",
                     "the ImageLLM is mostly unaffected by the cross-frame knockout",
                     "", "the ImageLLM answered no question of these tasks correctly", None)
    larger = [t for t in tasks if v.loc[t, "drop"] < i.loc[t, "drop"]]
    measured = "; ".join(f"{task_title(t)}: video {v.loc[t, 'drop']:.2f} (n={v.loc[t, 'questions']}) vs image "
                         f"{i.loc[t, 'drop']:.2f} (n={i.loc[t, 'questions']})" for t in tasks)
    return Claim(SECTION, f"Figure 2: VideoLLM vs ImageLLM ({value})",
                 f"the VideoLLM's largest cross-frame drop exceeds the ImageLLM's in most tasks [{words}]",
                 "ImageLLM mostly unaffected (Figure 2)", f"{len(larger)}/{len(tasks)} tasks. {measured}",
                 len(larger) > len(tasks) / 2)


def table2_claims(drops, model: str) -> list[Claim]:
    """Table 2: one claim per task, the first-half knockout drops the accuracy of the analysed
    questions by at least the paper's smallest drop (18 points)."""
    claims = []
    for r in drops[(drops["model"] == model) & (drops["half"] == "first")].itertuples():
        paper = PAPER_TABLE_2.get(r.task)
        claims.append(Claim(SECTION, f"Table 2: {task_title(r.task)}",
                            f"blocking cross-frame attention in the first half of the layers drops accuracy by "
                            f"at least {-PAPER_SMALLEST_DROP:g} points",
                            "" if paper is None else f"{paper:+.1f}",
                            f"{r.drop:+.2f} ({r.accuracy_knockout:.2f}% of {r.questions} stay correct, 95% CI "
                            f"{r.knockout_lo:.2f}-{r.knockout_hi:.2f})", bool(r.drop <= PAPER_SMALLEST_DROP)))
    return claims


def second_half_claim(drops, model: str) -> Claim:
    """Table B: in every task the second-half knockout costs no more accuracy than the first-half one,
    and at most :data:`MARGINAL_DROP` points."""
    d = drops[drops["model"] == model].pivot_table(index="task", columns="half", values="drop", sort=False)
    if not set(HALVES) <= set(d.columns):
        raise ValueError(f"accuracy drops of both halves are needed; found halves {list(d.columns)}")
    paper = "; ".join(f"{task_title(t)}: {PAPER_TABLE_2[t]:+.1f} vs {PAPER_TABLE_B_SECOND_HALF[t]:+.1f}"
                      for t in d.index if t in PAPER_TABLE_2)
    measured = "; ".join(f"{task_title(t)}: {r['first']:+.2f} vs {r['second']:+.2f}" for t, r in d.iterrows())
    return Claim(SECTION, "Table B", "blocking cross-frame attention in the second half of the layers costs no more "
                 f"accuracy than in the first half and at most {-MARGINAL_DROP:g} points, in every task "
                 "(first vs second half)", paper, measured,
                 bool(((d["second"] >= d["first"]) & (d["second"] >= MARGINAL_DROP)).all()))


def _first_sentence(text: str) -> str:
    """A continuation up to its first full stop (the toy models go on with another option after it)."""
    head, dot, _ = text.partition(".")
    return (head + dot).strip()


def open_ended_rows(fm, question, layers, max_new_tokens: int = 10) -> list[dict]:
    """:func:`open_ended_examples`' row of one :class:`flowutils.analysis.runner.Question`."""
    sample = question.sample
    plan = KnockoutPlan.from_flows(question.prepared.layout, [CROSS_FRAME], layers)
    base = _first_sentence(generate(fm, question.prepared, None, max_new_tokens))
    ko = _first_sentence(generate(fm, question.prepared, plan, max_new_tokens))
    return [{"sample_id": question.sample_id, "task": task_title(sample.task), "question": sample.question,
             "true answer": f"({chr(65 + sample.answer_index)}) {sample.answer}",
             "baseline": base, "knockout": ko, "changed": base != ko}]


def open_ended_examples(fm, samples, layers, num_frames: int = NUM_FRAMES, max_new_tokens: int = 10, progress: bool = False,
                        *, out=None, benchmark=None, shard: int | None = None, num_shards: int | None = None):
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
