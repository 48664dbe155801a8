"""Why the toy differs (Reproduction status page): frame attention, single-frame accuracy, saturation, their texts."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from flowutils.analysis.attention_maps import attention_rows
from flowutils.analysis.runner import Question
from flowutils.analysis.uncertainty import wilson_interval
from flowutils.book import status
from flowutils.data import synthetic
from flowutils.engine import knockout_logits
from flowutils.paper import toy_differs as td


def test_frame_attention_table_means_over_questions():
    rows = pd.DataFrame([
        {"sample_id": s, "task": "t", "query": q, "frame": f, "attention": a}
        for s, q, f, a in [("a", "last position", 1, 0.1), ("a", "last position", 2, 0.3),
                           ("b", "last position", 1, 0.2), ("b", "last position", 2, 0.1),
                           ("a", "non-option question", 1, 0.4), ("a", "non-option question", 2, 0.4)]])
    t = td.frame_attention_table(rows).set_index("query")
    assert t.loc["last position", "frame 1"] == pytest.approx(100 * (0.1 + 0.2) / 2)
    assert t.loc["last position", "frame 2"] == pytest.approx(100 * (0.3 + 0.1) / 2)
    assert t.loc["last position", "video"] == pytest.approx(35.0)
    assert t.loc["non-option question", "video"] == pytest.approx(80.0)
    assert list(t["questions"]) == [2, 1]
    text = status.attention_text(t.reset_index())
    assert "35.0% of its attention" in text and "between 15.0% (frame 1) and 20.0% (frame 2)" in text
    assert "1.33 times" in text


def test_keep_one_frame_plan_cuts_every_other_frame_for_every_later_position():
    frames = [[2, 3], [4, 5], [6, 7]]
    layout = SimpleNamespace(num_frames=3, n=10, frame=lambda f: frames[f], fingerprint=None)
    plan = td.keep_one_frame_plan(layout, 1, [0, 2])
    assert sorted(plan.blocks) == [0, 2] and plan.label == {"kept": "frame 2"}
    cut = plan.dense(0, 10)
    expected = torch.zeros(10, 10, dtype=torch.bool)
    for t in range(10):
        for s in range(10):
            owner = next((f for f, fr in enumerate(frames) if s in fr), None)
            expected[t, s] = owner is not None and owner != 1 and t > max(frames[owner])
    assert torch.equal(cut, expected)


def test_single_frame_table_wilson_per_task_and_condition():
    rows = pd.DataFrame([{"sample_id": f"{t}/{i}", "task": t, "kept": k, "correct": c}
                         for t, i, k, c in [("action_antonym", 0, "full video", True), ("action_antonym", 0, "frame 1", False),
                                            ("action_antonym", 1, "full video", True), ("action_antonym", 1, "frame 1", True),
                                            ("object_count", 2, "full video", False), ("object_count", 2, "frame 1", False)]])
    t = td.single_frame_table(rows)
    row = t[(t["task"] == "Action Antonym") & (t["kept"] == "frame 1")].iloc[0]
    assert row["accuracy"] == 50.0 and row["questions"] == 2
    assert (row["lo"], row["hi"]) == pytest.approx(wilson_interval(1, 2))
    every = t[(t["task"] == "all tasks") & (t["kept"] == "full video")].iloc[0]
    assert every["accuracy"] == pytest.approx(200 / 3) and every["questions"] == 3
    wide = status.single_frame_wide(t)
    assert list(wide.columns) == ["task", "full video", "frame 1", "questions"]
    assert wide.iloc[0]["frame 1"].startswith("50.0 (")
    text = status.single_frame_text(t)
    assert "- Action Antonym: 100.0%" in text and "to 50.0% (frame 1" in text


def test_saturation_table_counts_flat_rows_where_the_logit_difference_moves():
    sweep = pd.DataFrame({
        "task": ["a"] * 4 + ["b"] * 2,
        "sample_id": ["q1", "q1", "q2", "q2", "q3", "q3"],
        "relative_change_pct": [-0.5, -0.2, -30.0, 0.9, -2.0, 0.0],
        "logit_diff_change": [-3.0, -0.5, -4.0, 1.5, -5.0, -2.0],
        "p_pred_baseline": [0.999, 0.999, 0.95, 0.95, 0.9999, 0.9999]})
    t = td.saturation_table(sweep).set_index("task")
    # independently: |rel| < 1 and |logit| > 1
    flat = sweep["relative_change_pct"].abs() < 1
    hidden = flat & (sweep["logit_diff_change"].abs() > 1)
    assert t.loc["all tasks", "hidden"] == int(hidden.sum()) == 3
    assert t.loc["all tasks", "hidden %"] == pytest.approx(50.0)
    assert t.loc["all tasks", "flat %"] == pytest.approx(100 * flat.mean())
    assert t.loc["a", "hidden"] == 2 and t.loc["b", "hidden %"] == pytest.approx(50.0)
    assert t.loc["all tasks", "saturated"] == 2 and t.loc["all tasks", "questions"] == 3
    assert t.loc["all tasks", "median p"] == pytest.approx(0.999)
    text = status.saturation_text(t.reset_index(), 3)
    assert "In 50.0% of the rows (3)" in text and "2 of 3 questions start with p(answer) above 0.99" in text


@pytest.fixture(scope="module")
def toy():
    import flowutils as fu

    return fu.load("toy-videollm")


def _question(fm, task):
    sample = next(synthetic.generate(task, 1, seed=0, split="test"))
    sample.sample_id = f"{task}/0"
    prepared = fm.prepare_sample(sample, 8)
    prepared.sample_id = sample.sample_id
    return Question(fm, sample, 0, prepared)


def test_frame_attention_rows_sum_each_frames_weights(toy):
    q = _question(toy, "action_antonym")
    rows = pd.DataFrame(td.frame_attention_rows(toy, q))
    lay = q.prepared.layout
    for group, name in td.QUERIES.items():
        w = attention_rows(toy, q.prepared, lay.group(group))  # [layer, head, query, n]
        for f in range(lay.num_frames):
            expected = float(w[..., lay.frame(f)].sum(-1).mean())
            got = rows[(rows["query"] == name) & (rows["frame"] == f + 1)]["attention"].item()
            assert got == pytest.approx(expected, rel=1e-5)


def test_single_frame_rows_match_the_reference_engine(toy):
    q = _question(toy, "moving_direction")
    rows = td.single_frame_rows(toy, q)
    assert rows[0] == {"sample_id": q.sample_id, "task": "moving_direction", "kept": "full video",
                       "correct": q.correct}
    plans = [td.keep_one_frame_plan(q.prepared.layout, f, range(toy.n_layers)) for f in range(8)]
    ref = knockout_logits(toy, q.prepared, plans, backend="reference").argmax(-1)
    assert [r["correct"] for r in rows[1:]] == [int(i) == q.prepared.gold_id for i in ref]
    assert [r["kept"] for r in rows[1:]] == [f"frame {f}" for f in range(1, 9)]
