"""Why the toy differs from the paper's models: three measurements on the toy VideoLLM (Reproduction status page).

* **Where the question and the last position read the video** (:func:`frame_attention`): the attention of the
  non-option question's tokens and of the last position on each frame's tokens, averaged over heads, query
  positions and layers, per question (:func:`flowutils.analysis.attention_maps.attention_to_video`).
* **How much one frame answers** (:func:`single_frame_accuracy`): every frame but one knocked out in every layer
  (:func:`keep_one_frame_plan`: no later position may attend to another frame's tokens), the accuracy per task and
  kept frame against the full video, with Wilson 95% intervals.
* **Saturation** (:func:`saturation_table`): on a knockout sweep's rows, how often the paper's metric (the
  relative change of the answer's probability) stays within :data:`FLAT_PCT` while the logit difference (true vs
  best false option) moves by more than :data:`MOVED_LOGIT`, and how many questions start with the answer's
  probability above :data:`SATURATED_P`.

Every measurement runs through the one per-question runner (:func:`flowutils.analysis.runner.run_questions`).
"""

from __future__ import annotations

import functools

import torch

from ..analysis.attention_maps import attention_to_video
from ..analysis.runner import knockout_with_retry, run_questions
from ..analysis.uncertainty import accuracy
from ..data.synthetic import TASK_TITLES
from ..data.video import NUM_FRAMES
from ..knockout.plan import KnockoutPlan

QUERIES = {"non_option_question": "non-option question", "last": "last position"}
FULL = "full video"
FLAT_PCT = 1.0  # |relative change of p(answer)| below this (%): the paper's metric does not move
MOVED_LOGIT = 1.0  # |change of the logit difference| above this: the answer's margin moved by more than e-fold
SATURATED_P = 0.99  # a baseline probability above this: saturated


def _title(task: str) -> str:
    return TASK_TITLES.get(task, task)


def frame_attention_rows(fm, question, queries=tuple(QUERIES)) -> list[dict]:
    """One row per query group and frame: the attention its positions give the frame's tokens (summed over the
    frame's tokens), averaged over layers, heads and the group's positions."""
    lay = question.prepared.layout
    positions = {g: lay.group(g) for g in queries}
    flat = [p for g in queries for p in positions[g]]
    att = attention_to_video(fm, question.prepared, flat).sum(-1).mean(dim=(0, 1))  # [query, frame]
    rows, start = [], 0
    for g in queries:
        share = att[start:start + len(positions[g])].mean(0)
        start += len(positions[g])
        rows += [{"sample_id": question.sample_id, "task": question.sample.task, "query": QUERIES.get(g, g),
                  "frame": f + 1, "attention": float(v)} for f, v in enumerate(share.tolist())]
    return rows


def frame_attention(fm, samples, num_frames: int = NUM_FRAMES, per_task: int | None = None, progress: bool = False):
    """:func:`frame_attention_rows` of the questions the model answers correctly (at most ``per_task`` per task)."""
    return run_questions(fm, samples, functools.partial(frame_attention_rows, fm), analysis="frame_attention",
                         num_frames=num_frames, sample_mode="correct", per_task=per_task, progress=progress)


def frame_attention_table(rows):
    """Per query group: the mean over questions of the attention on each frame (%, columns ``frame 1`` ...), the
    attention on the whole video (their sum) and the questions."""
    import pandas as pd

    out = []
    for query, g in rows.groupby("query", sort=False):
        wide = g.pivot_table(index="sample_id", columns="frame", values="attention", aggfunc="mean")
        mean = 100 * wide.mean(0)
        out.append({"query": query, **{f"frame {f}": v for f, v in mean.items()}, "video": float(mean.sum()),
                    "questions": len(wide)})
    return pd.DataFrame(out)


def keep_one_frame_plan(layout, frame: int, layers) -> KnockoutPlan:
    """Every frame but ``frame`` knocked out in ``layers``: no position after a frame's tokens may attend to them
    (the kept frame's tokens, the question and the last position see only that frame of the video)."""
    blocks = []
    for f in range(layout.num_frames):
        if f == frame:
            continue
        src = layout.frame(f)
        targets = [p for p in range(max(src) + 1, layout.n)]
        blocks.append((torch.tensor(targets), torch.tensor(src)))
    return KnockoutPlan({l: blocks for l in layers}, {"kept": f"frame {frame + 1}"}, layout.fingerprint)


def single_frame_rows(fm, question) -> list[dict]:
    """One row per condition: the full video (the baseline) and each single kept frame
    (:func:`keep_one_frame_plan` in every layer), whether the model's answer is the true option's letter."""
    lay, gold = question.prepared.layout, question.prepared.gold_id
    plans = [keep_one_frame_plan(lay, f, range(fm.n_layers)) for f in range(lay.num_frames)]
    logits = knockout_with_retry(fm, question, plans, "fast", len(plans))
    common = {"sample_id": question.sample_id, "task": question.sample.task}
    return [{**common, "kept": FULL, "correct": question.correct}] + [
        {**common, "kept": p.label["kept"], "correct": int(i) == gold} for p, i in zip(plans, logits.argmax(-1))]


def single_frame_accuracy(fm, samples, num_frames: int = NUM_FRAMES, per_task: int | None = None,
                          progress: bool = False):
    """:func:`single_frame_rows` of every question (at most ``per_task`` per task)."""
    return run_questions(fm, samples, functools.partial(single_frame_rows, fm), analysis="single_frame_accuracy",
                         num_frames=num_frames, sample_mode="all", per_task=per_task, progress=progress)


def single_frame_table(rows):
    """Per task (and over all tasks) and condition (the full video, each kept frame): accuracy (%) with its
    Wilson 95% interval and the questions."""
    import pandas as pd

    out = []
    for task, g in [*rows.groupby("task", sort=False), ("all tasks", rows)]:
        for kept, h in g.groupby("kept", sort=False):
            a = accuracy(h["correct"].astype(bool))
            out.append({"task": _title(task), "kept": kept, "accuracy": a["accuracy"], "lo": a["lo"], "hi": a["hi"],
                        "questions": a["questions"]})
    return pd.DataFrame(out)


def saturation_table(sweep, flat_pct: float = FLAT_PCT, moved_logit: float = MOVED_LOGIT,
                     saturated_p: float = SATURATED_P):
    """Per task (and over all tasks), on a knockout sweep's rows (one per question, flow and layer): the rows, the
    share (%) where the relative change of p(answer) stays within ``flat_pct`` %, the share where it does *and*
    the logit difference moves by more than ``moved_logit`` (``hidden %``: effects the paper's metric hides), the
    questions, those whose baseline p(answer) exceeds ``saturated_p``, and the median baseline p(answer)."""
    import pandas as pd

    out = []
    for task, g in [*sweep.groupby("task", sort=False), ("all tasks", sweep)]:
        flat = g["relative_change_pct"].abs() < flat_pct
        hidden = flat & (g["logit_diff_change"].abs() > moved_logit)
        base = g.groupby("sample_id")["p_pred_baseline"].first()
        out.append({"task": _title(task), "rows": len(g), "flat %": 100 * flat.mean(), "hidden %": 100 * hidden.mean(),
                    "hidden": int(hidden.sum()), "questions": len(base), "saturated": int((base > saturated_p).sum()),
                    "median p": float(base.median())})
    return pd.DataFrame(out)
