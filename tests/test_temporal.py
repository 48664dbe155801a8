"""Section 3.2 criteria on hand-made tables whose verdicts are known, the half-layer plans, and
the first-half knockout against the reference engine."""

import pandas as pd
import pytest
import torch

from flowutils.paper import temporal
from flowutils.engine import knockout_logits, run_baseline
from flowutils.knockout.plan import KnockoutPlan


def sweep_table(drops, model="video", n_layers=4, questions=20, value="relative_change_pct", factors=(1,)):
    """A sweep table: ``drops[task]`` is the per-layer value, times ``factors[q % len(factors)]`` for question q."""
    rows = [{"model": model, "task": task, "sample_id": f"{task}/{q:02d}", "layer": l,
             value: float(v) * factors[q % len(factors)]}
            for task, curve in drops.items() for q in range(questions) for l, v in enumerate(curve)]
    return pd.DataFrame(rows)


def test_early_claim_reads_the_first_half_mean_per_question():
    early = sweep_table({"a": [0, -20, 0, 0], "b": [-12, 0, 0, 0]})  # first-half means -10 and -6, second 0
    c = temporal.early_cross_frame_claim(early, 4)
    assert c.holds is True and c.n == 40 and c.stability == "halves: holds / holds"
    assert "Action" not in c.interval and "a: L1-2 -10.00 [-10.00, -10.00] < -5" in c.interval
    late = sweep_table({"a": [0, -20, 0, 0], "b": [0, 0, -30, 0]})  # b: first half 0, cleared above -5
    assert temporal.early_cross_frame_claim(late, 4).holds is False
    # questions alternate between 0 and -10 in the first half: mean -5, the interval straddles -5
    straddle = sweep_table({"a": [0, -10, 0, 0]}, factors=(0, 2))
    assert temporal.early_cross_frame_claim(straddle, 4).verdict == "inconclusive"
    few = sweep_table({"a": [0, -20, 0, 0]}, questions=9)
    assert temporal.early_cross_frame_claim(few, 4).verdict == "inconclusive"


def test_early_claim_holds_both_metrics_in_one_row():
    t = sweep_table({"a": [0, -20, 0, 0]}).assign(logit_diff_change=0.0)  # the logit difference does not move
    c = temporal.early_cross_frame_claim(t, 4)
    assert c.holds is True and "relative change of p(answer): holds" in c.measured
    assert "logit difference: does not hold" in c.measured
    assert temporal.early_cross_frame_claim(t, 4, decide_on="logit_diff_change").holds is False


def test_video_vs_image_claim_counts_tasks():
    video = sweep_table({"a": [-30, 0, 0, 0], "b": [-30, 0, 0, 0], "c": [0, 0, 0, 0]})
    image = sweep_table({"a": [-1, 0, 0, 0], "b": [-2, 0, 0, 0], "c": [-9, 0, 0, 0]}, model="image")
    claim = temporal.video_vs_image_claim(video, image, 4)
    assert claim.holds is True and claim.stability == "halves: holds / holds"  # a and b of 3 tasks
    image_hurt = sweep_table({"a": [-50, 0, 0, 0], "b": [-50, 0, 0, 0], "c": [-9, 0, 0, 0]}, model="image")
    assert temporal.video_vs_image_claim(video, image_hurt, 4).holds is False
    few_image = sweep_table({"a": [-1, 0, 0, 0], "b": [-2, 0, 0, 0], "c": [-9, 0, 0, 0]}, model="image",
                            questions=4)  # below the minimum: a and b undecided, c fails: 2 of 3 could still hold
    assert temporal.video_vs_image_claim(video, few_image, 4).verdict == "inconclusive"
    assert temporal.video_vs_image_claim(video, image.iloc[:0], 4).holds is None


def test_image_all_questions_claim_reads_the_gold_token():
    v = temporal.GOLD_VALUE
    assert temporal.image_all_questions_claim(sweep_table({"a": [-1, -1, 0, 0]}, value=v), 4).holds is True
    assert temporal.image_all_questions_claim(sweep_table({"a": [-30, 0, 0, 0]}, value=v), 4).holds is False
    assert temporal.image_all_questions_claim(sweep_table({"a": [300, 0, 0, 0]}, value=v), 4).holds is False  # +150%
    straddle = sweep_table({"a": [-10, 0, 0, 0]}, value=v, factors=(0, 2))  # per question 0 or -10: mean -5
    assert temporal.image_all_questions_claim(straddle, 4).verdict == "inconclusive"


def half_rows(model, half, task, stays_correct):
    return [{"model": model, "half": half, "task": task, "sample_id": f"{task}/{i:02d}", "correct_baseline": True,
             "correct_knockout": ok} for i, ok in enumerate(stays_correct)]


def test_accuracy_drop_and_table2_claims():
    rows = (half_rows("v", "first", "action_antonym", [True] * 2 + [False] * 8)  # 20% stay correct: -80
            + half_rows("v", "first", "object_count", [True] * 10)  # 0: cleared above -18
            + half_rows("v", "first", "scene_transition", [True] * 8 + [False] * 2))  # -20, spread over 0..-60
    drops = temporal.accuracy_drop(pd.DataFrame(rows))
    first = drops[drops.half == "first"].set_index("task")
    assert first.loc["action_antonym", "drop"] == pytest.approx(-80)
    assert first.loc["scene_transition", "drop"] == pytest.approx(-20)
    found = {c.item: c for c in temporal.table2_claims(pd.DataFrame(rows), "v")}
    assert {k: c.verdict for k, c in found.items()} == {
        "Table 2: Action Antonym": "holds", "Table 2: Object Count": "does not hold",
        "Table 2: Scene Transition": "inconclusive"}
    assert found["Table 2: Action Antonym"].n == 10 and "-80.00" in found["Table 2: Action Antonym"].interval
    assert found["Table 2: Object Count"].stability == "halves: inconclusive / inconclusive"  # 5 questions a half


def test_second_half_claim_needs_an_effect_of_the_first_half():
    first = half_rows("v", "first", "action_antonym", [False] * 12)  # -100
    marginal = half_rows("v", "second", "action_antonym", [True] * 12)  # 0
    assert temporal.second_half_claim(pd.DataFrame(first + marginal), "v").holds is True
    nothing = half_rows("v", "first", "action_antonym", [True] * 12)  # 0 against 0: no effect to compare with
    assert temporal.second_half_claim(pd.DataFrame(nothing + marginal), "v").verdict == "inconclusive"
    worse = half_rows("v", "second", "action_antonym", [False] * 12)  # -100 in the second half too
    assert temporal.second_half_claim(pd.DataFrame(first + worse), "v").holds is False


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


# ----------------------------------------------------------------------------- Table 2: answers that change
def test_opposite_answer_is_the_time_reversed_videos_answer():
    from flowutils.data import synthetic

    for task in ("action_antonym", "action_sequence", "scene_transition", "moving_direction"):
        for s in synthetic.generate(task, 6, seed=1, split="test"):
            assert synthetic.opposite_answer(task, s.answer, s.candidates) == synthetic.reverse_answer(s)
    assert synthetic.opposite_answer("object_count", "2", ["0", "1", "2", "3"]) is None
    assert synthetic.opposite_answer("action_antonym", "Dim.", ["Dim.", "Light up."]) == "Light up."


def test_named_answer_reads_the_candidate_after_an_option_letter():
    cands = ["Up and to the left.", "Up and to the right.", "Down and to the left."]
    assert temporal.named_answer("C ) Down and to the left .", cands) == "Down and to the left."
    assert temporal.named_answer("(A) Up and to the right", cands) == "Up and to the right."
    assert temporal.named_answer("up and to the left . B )", cands) == "Up and to the left."
    assert temporal.named_answer("left up to Appear .", cands) is None
    assert temporal.named_answer("A ) 0 to the right .", ["0", "1", "2"]) == "0"


def _changes(task_counts, form="open-ended"):
    """Rows of answer_changes: per task (answered correctly at baseline, of them changed, of them opposite), plus
    two questions answered wrongly at baseline (never counted)."""
    rows = []
    for task, (n, changed, opposite) in task_counts.items():
        for i in range(n + 2):
            ok = i < n
            rows.append({"sample_id": f"{form}/{task}/{i}", "task": task, "form": form, "opposite": "x",
                         "correct_baseline": ok, "changed": (i < changed) if ok else True,
                         "opposite_knockout": (i < opposite) if ok else True})
    return pd.DataFrame(rows)


def test_answer_change_table_counts_wilson_intervals():
    from flowutils.analysis.uncertainty import wilson_interval

    t = temporal.answer_change_table(_changes({"action_antonym": (10, 7, 3), "action_sequence": (4, 0, 0)}))
    r = t[t["task"] == "Action Antonym"].iloc[0]
    assert (r["questions"], r["answered"], r["changed"], r["opposite"]) == (12, 10, 7, 3)
    assert (r["changed lo"], r["changed hi"]) == pytest.approx(wilson_interval(7, 10))
    assert r["opposite %"] == pytest.approx(30.0)
    every = t[t["task"] == "all tasks"].iloc[0]
    assert (every["answered"], every["changed"]) == (14, 7)


@pytest.mark.parametrize("counts, verdict", [
    ({"action_antonym": (20, 18, 5), "object_count": (20, 16, 0)}, "holds"),  # both tasks' intervals above 18%
    ({"action_antonym": (20, 18, 5), "object_count": (20, 0, 0)}, "does not hold"),  # 0/20: [0, 16.1] below 18%
    ({"action_antonym": (20, 18, 5), "object_count": (6, 6, 0)}, "inconclusive"),  # too few answered
    ({"action_antonym": (20, 5, 0)}, "inconclusive"),  # 25% [11.2, 46.9] straddles 18%
])
def test_answer_change_claim_three_ways(counts, verdict):
    rows = pd.concat([_changes(counts), _changes({"action_antonym": (20, 0, 0)}, "multiple-choice")])
    c = temporal.answer_change_claim(rows)
    assert c.verdict == verdict
    assert c.n == sum(n for n, _, _ in counts.values())
    assert c.stability.startswith("halves: ") and "multiple-choice: 20 of 22" in c.measured


def test_answer_changes_run_both_forms_through_the_runner():
    import flowutils as fu
    from flowutils.data import synthetic
    from flowutils.engine import generate
    from flowutils.paper.open_ended import OpenEndedSample, completion_prefix

    fm = fu.load("toy-videollm")
    s = next(synthetic.generate("moving_direction", 1, seed=0, split="test"))
    s.sample_id = "moving_direction/0"
    layers = temporal.half_layers(fm.n_layers, "first")
    rows = temporal.answer_changes(fm, [s], layers, max_new_tokens=12)
    assert list(rows["form"]) == list(temporal.FORMS)
    assert rows["sample_id"].tolist() == ["open-ended/moving_direction/0", "moving_direction/0"]
    for form, sample in (("multiple-choice", s), ("open-ended", OpenEndedSample(s, completion_prefix(s.task), "x"))):
        p = fm.prepare_sample(sample, 8)
        plan = KnockoutPlan.from_flows(p.layout, ["cross-frame"], layers)
        row = rows[rows["form"] == form].iloc[0]
        # without a stop token, the first sentence of a longer continuation is the same text
        assert row["baseline"] == temporal._first_sentence(generate(fm, p, None, 30))
        assert row["knockout"] == temporal._first_sentence(generate(fm, p, plan, 30))
        assert row["baseline answer"] == (temporal.named_answer(row["baseline"], s.candidates) or "")
        assert row["opposite"] == synthetic.reverse_answer(s)


def test_answer_change_claim_names_tasks_without_an_answered_question():
    rows = _changes({"action_antonym": (12, 12, 0), "object_count": (0, 0, 0)})
    c = temporal.answer_change_claim(rows)
    assert "Object Count: no question answered correctly at baseline" in c.interval and "nan" not in c.interval
    assert c.verdict == "inconclusive"
