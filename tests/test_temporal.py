"""Section 3.2 criteria on hand-made tables whose verdicts are known, the half-layer plans, and
the first-half knockout against the reference engine."""

import pandas as pd
import pytest
import torch

from flowutils.paper import temporal
from flowutils.paper.claims import largest_drop
from flowutils.engine import knockout_logits, run_baseline
from flowutils.knockout.plan import KnockoutPlan


def sweep_table(drops, model="video", n_layers=4, questions=3, value="relative_change_pct"):
    """A sweep table: ``drops[task]`` is the per-layer value (the same for every question)."""
    rows = [{"model": model, "task": task, "sample_id": f"{task}/{q}", "layer": l, value: float(v)}
            for task, curve in drops.items() for q in range(questions) for l, v in enumerate(curve)]
    return pd.DataFrame(rows)


def test_largest_drop_is_the_lowest_mean_layer():
    t = sweep_table({"a": [0, -3, -9, -1], "b": [-20, 0, 0, 0]})
    t.loc[(t.task == "a") & (t.sample_id == "a/0") & (t.layer == 1), "relative_change_pct"] = -30  # mean -12
    low = largest_drop(t, by=("task",)).set_index("task")
    assert low.loc["a", "layer"] == 1 and low.loc["a", "drop"] == pytest.approx(-12)
    assert low.loc["b", "layer"] == 0 and low.loc["b", "questions"] == 3


def test_early_claim_holds_only_when_every_task_drops_early():
    early = sweep_table({"a": [0, -20, 0, 0], "b": [-8, 0, 0, 0]})
    assert temporal.early_cross_frame_claim(early, 4).holds
    late = sweep_table({"a": [0, -20, 0, 0], "b": [0, 0, -30, 0]})
    assert not temporal.early_cross_frame_claim(late, 4).holds
    too_small = sweep_table({"a": [0, -2, 0, 0]})  # above the -5% threshold
    assert not temporal.early_cross_frame_claim(too_small, 4).holds


def test_video_vs_image_claim_counts_tasks():
    video = sweep_table({"a": [-30, 0, 0, 0], "b": [-30, 0, 0, 0], "c": [0, 0, 0, 0]})
    image = sweep_table({"a": [-1, 0, 0, 0], "b": [-2, 0, 0, 0], "c": [-9, 0, 0, 0]}, model="image")
    claim = temporal.video_vs_image_claim(video, image)
    assert claim.holds and claim.measured.startswith("2/3")
    image_hurt = sweep_table({"a": [-50, 0, 0, 0], "b": [-50, 0, 0, 0], "c": [-9, 0, 0, 0]}, model="image")
    assert not temporal.video_vs_image_claim(video, image_hurt).holds
    assert temporal.video_vs_image_claim(video, image.iloc[:0]).holds is None


def half_rows(model, half, task, stays_correct):
    return [{"model": model, "half": half, "task": task, "sample_id": f"{task}/{i}", "correct_baseline": True,
             "correct_knockout": ok} for i, ok in enumerate(stays_correct)]


def test_accuracy_drop_and_table_claims():
    rows = (half_rows("v", "first", "action_antonym", [True] * 2 + [False] * 8)  # 20% stay correct: -80
            + half_rows("v", "first", "object_count", [True] * 9 + [False])  # -10
            + half_rows("v", "second", "action_antonym", [True] * 10)
            + half_rows("v", "second", "object_count", [True] * 10))
    drops = temporal.accuracy_drop(pd.DataFrame(rows))
    first = drops[drops.half == "first"].set_index("task")
    assert first.loc["action_antonym", "drop"] == pytest.approx(-80)
    assert first.loc["object_count", "drop"] == pytest.approx(-10)
    assert first.loc["object_count", "knockout_lo"] < 90 < first.loc["object_count", "knockout_hi"]
    verdicts = {c.item: c.holds for c in temporal.table2_claims(drops, "v")}
    assert verdicts == {"Table 2: Action Antonym": True, "Table 2: Object Count": False}
    assert temporal.second_half_claim(drops, "v").holds
    worse_late = drops.copy()
    worse_late.loc[(worse_late.half == "second") & (worse_late.task == "object_count"), "drop"] = -20
    assert not temporal.second_half_claim(worse_late, "v").holds


def test_half_layers_split_the_model():
    assert temporal.half_layers(12, "first") == tuple(range(6))
    assert temporal.half_layers(12, "second") == tuple(range(6, 12))
    with pytest.raises(ValueError, match="valid"):
        temporal.half_layers(12, "middle")


def test_half_knockout_matches_the_reference_engine(tiny, samples):
    """The first-half row equals a dense reference forward with cross-frame cut in layers 0..L/2-1."""
    table = temporal.half_knockout(tiny, samples[:2], "first", sample_mode="all", num_frames=4, progress=False)
    for sample, row in zip(samples[:2], table.itertuples()):
        p = tiny.prepare_sample(sample, 4)
        plan = KnockoutPlan.from_flows(p.layout, ["cross-frame"], range(tiny.n_layers // 2))
        probs = knockout_logits(tiny, p, [plan], backend="reference")[0].softmax(-1)
        base = run_baseline(tiny, p).probs
        pred = int(base.argmax())
        assert row.p_pred_knockout == pytest.approx(float(probs[pred]), abs=1e-4)
        assert row.correct_knockout == (int(probs.argmax()) == p.gold_id)
    assert set(table.window) == {f"0-{tiny.n_layers // 2 - 1}"}
