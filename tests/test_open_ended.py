"""Appendix C.1: the open-ended prompt, its first-sub-token targets and the analyses read through it."""

import pandas as pd
import pytest
import torch

from conftest import rendered_questions, tiny_llava_next_video, unmodified_logits
from flowutils.analysis.sweep import Sweep, run_sweep
from flowutils.data import synthetic
from flowutils.engine import knockout_logits
from flowutils.knockout.plan import KnockoutPlan
from flowutils.paper import answer, open_ended


@pytest.fixture(scope="module")
def fm():
    return tiny_llava_next_video()


@pytest.fixture(scope="module")
def questions():
    return rendered_questions(synthetic.VIDEO_TASKS, 3)


def first_word(answer_text):
    return synthetic._split_words(answer_text)[0]  # the toy tokenizer is word-level


def test_only_questions_with_distinct_first_sub_tokens_are_kept(fm, questions):
    kept, table = open_ended.open_ended_samples(fm, questions)
    expected = [s for s in questions if len({first_word(c) for c in s.candidates}) == len(s.candidates)]
    assert [k.sample_id for k in kept] == [f"open-ended/{s.sample_id}" for s in expected]
    assert {k.task for k in kept} == {"action_antonym", "action_sequence", "object_count"}
    assert table.set_index("task")["kept"].to_dict() == {t: sum(s.task == t for s in expected)
                                                         for t in synthetic.VIDEO_TASKS}


def test_open_ended_prompt_has_no_options_and_targets_first_sub_tokens(fm, questions):
    kept, _ = open_ended.open_ended_samples(fm, questions)
    q = kept[0]
    p = fm.prepare_sample(q, 4)
    assert p.layout.options == [] and p.layout.answer_index is None
    ids = p.input_ids[0].tolist()
    text = fm.tokenizer.convert_ids_to_tokens(ids)
    prefix = synthetic._split_words(q.open_ended_prefix)
    assert text[-len(prefix):] == prefix  # the prompt ends with the sentence to complete
    assert not any(fm.tokenizer.convert_ids_to_tokens([i])[0] in ("A", "B") for i in ids[p.layout.non_option_question[-1]:])
    assert p.option_ids == fm.tokenizer.convert_tokens_to_ids([first_word(c) for c in q.candidates])
    assert p.gold_id == fm.tokenizer.convert_tokens_to_ids(first_word(q.answer))
    question_words = synthetic._split_words(q.question)
    assert [text[i] for i in p.layout.non_option_question] == question_words


def test_sweep_on_open_ended_reads_the_ground_truths_first_sub_token(fm, questions):
    kept, _ = open_ended.open_ended_samples(fm, questions)
    kept = kept[:3]
    table = run_sweep(fm, kept, Sweep(["video->last"], k=1, layers=[0], sample_mode="all", num_frames=4),
                      progress=False)
    for q, row in zip(kept, table.itertuples()):
        p = fm.prepare_sample(q, 4)
        probs = unmodified_logits(fm, p)[0, -1].softmax(-1)  # transformers' own forward
        assert row.p_gold_baseline == pytest.approx(float(probs[p.gold_id]), rel=1e-4, abs=1e-7)
        letters = unmodified_logits(fm, p)[0, -1][p.option_ids]
        others = [float(letters[i]) for i in range(len(p.option_ids)) if i != p.gold_index]
        assert row.logit_diff_baseline == pytest.approx(float(letters[p.gold_index]) - max(others), abs=1e-4)
        # the knockout through the paper's method (dense mask, one forward) gives the same probability
        plan = KnockoutPlan.from_flows(p.layout, ["video->last"], [0])
        ref = knockout_logits(fm, p, [plan], "reference")[0].softmax(-1)
        assert row.p_gold_knockout == pytest.approx(float(ref[p.gold_id]), rel=1e-4, abs=1e-7)


def test_open_ended_results_never_mix_with_multiple_choice_in_a_store(fm, questions, tmp_path):
    kept, _ = open_ended.open_ended_samples(fm, questions)
    mc = [s for s in questions if f"open-ended/{s.sample_id}" in {k.sample_id for k in kept}][:2]
    spec = Sweep(["video->last"], k=1, layers=[0], sample_mode="all", num_frames=4)
    a = run_sweep(fm, mc, spec, out=tmp_path, progress=False)
    b = run_sweep(fm, kept[:2], spec, out=tmp_path, progress=False)
    assert set(a.sample_id).isdisjoint(b.sample_id)
    assert not (a["p_gold_baseline"].to_numpy() == b["p_gold_baseline"].to_numpy()).all()


def test_selections_and_answering_table(fm, questions):
    kept, _ = open_ended.open_ended_samples(fm, questions)
    rows = answer.answer_table(fm, kept, 4, progress=False)
    table = open_ended.answering_table(rows, kept)
    last = rows[rows.layer == rows.layer.max()]
    overall = table[table.task == "all tasks"].iloc[0]
    assert overall["questions"] == len(kept)
    assert overall["answered %"] == pytest.approx(100 * last["correct_baseline"].mean())
    assert overall["leads %"] == pytest.approx(100 * (last["logit_diff"] > 0).mean())
    assert overall["chance of leading %"] == pytest.approx(100 * sum(1 / len(k.candidates) for k in kept) / len(kept))
    leads = open_ended.select(rows, "leads")
    assert set(leads.sample_id) == set(last[last.logit_diff > 0].sample_id)
    assert set(open_ended.select(rows, "answered").sample_id) == set(last[last.correct_baseline].sample_id)
    with pytest.raises(ValueError, match="unknown selection"):
        open_ended.select(rows, "some")


def test_claims_read_intervals():
    # a flow whose every question drops by 20-40%: holds; one that never moves: does not hold
    rows = []
    for q in range(12):
        for layer in range(4):
            rows += [{"sample_id": f"q{q}", "task": "t", "flow": "video->last", "layer": layer,
                      "relative_change_gold_pct": -20.0 - q - 5 * (layer == 1)},
                     {"sample_id": f"q{q}", "task": "t", "flow": "cross-frame", "layer": layer,
                      "relative_change_gold_pct": 1.0 + 0.1 * q},
                     {"sample_id": f"q{q}", "task": "t", "flow": "video->non-option question", "layer": layer,
                      "relative_change_gold_pct": 0.0},
                     {"sample_id": f"q{q}", "task": "t", "flow": "non-option question->last", "layer": layer,
                      "relative_change_gold_pct": (-30.0 if q % 2 else 20.0)}]
    sweep = pd.DataFrame(rows)
    answers = pd.DataFrame([{"sample_id": f"q{q}", "task": "t", "layer": l, "p_true": 0.1 * (l >= 3),
                             "p_false": 0.0, "logit_diff": 1.0, "correct_baseline": False}
                            for q in range(12) for l in range(4)])
    sweep["logit_diff_change"] = sweep["relative_change_gold_pct"] / 10  # -1 logit where the probability drops 10%
    claims = {c.item: c for c in open_ended.open_ended_claims(sweep, answers, 4, 2)}
    for label in ("relative change", "logit difference"):
        assert claims[f"Figure P ({label})"].verdict == "does not hold" and claims[f"Figure P ({label})"].n == 12
        assert claims[f"Figure Q: video->last ({label})"].verdict == "holds"
        # the lowest mean (-30.5) is at layer 2 (1-based)
        assert "layer 2" in claims[f"Figure Q: video->last ({label})"].measured
        assert claims[f"Figure Q: video->non-option question ({label})"].verdict == "does not hold"
    # mean -5 %, band across -5; on the logit difference mean -0.5, band across -1 too
    assert claims["Figure Q: non-option question->last (relative change)"].verdict == "inconclusive"
    # Figure R: video->non-option question never drops, so there is no layer where it completes to test against
    assert claims["Figure R"].verdict == "inconclusive" and "no effective" in claims["Figure R"].measured
    assert claims["Figure R"].stability == "halves: inconclusive / inconclusive"
    # 1-layer intervals from here. Blocking it hurts in layers 3-4 (1-based): it completes at layer 4, where the
    # ground truth makes its whole climb (p 0 -> 0.1 at layer 4) in all 12 questions
    late = sweep["layer"] >= 2
    sweep.loc[(sweep["flow"] == "video->non-option question") & late, "relative_change_gold_pct"] = -40.0
    rise = {c.item: c for c in open_ended.open_ended_claims(sweep, answers, 4, 1)}["Figure R"]
    assert rise.verdict == "holds" and rise.n == 12 and "up to layer 4" in rise.measured
    # completed at layer 2 instead, the same climb at layer 4 lies outside one interval (1 layer) of it
    sweep.loc[sweep["flow"] == "video->non-option question", "relative_change_gold_pct"] = \
        [-40.0 if l < 2 else 0.0 for l in sweep.loc[sweep["flow"] == "video->non-option question", "layer"]]
    rise = {c.item: c for c in open_ended.open_ended_claims(sweep, answers, 4, 1)}["Figure R"]
    assert "up to layer 2" in rise.measured and rise.verdict == "does not hold"


def test_video_vs_image_claim_on_each_half_of_the_questions():
    # the same open-ended questions for both models; the ImageLLM's rows lack q00. Sorted ids alternate over the
    # halves: the even-numbered questions form the first in both. First half: the VideoLLM's lowest change in layers
    # 1-2 is -40 against the ImageLLM's -2 (more: holds); second half: -2 against -40 (does not hold)
    def rows(low):
        return pd.DataFrame([{"sample_id": f"open-ended/t/q{q:02d}", "task": "t", "flow": "cross-frame", "layer": layer,
                              open_ended.METRIC: low(q) * (layer == 1)} for q in range(24) for layer in range(4)])

    video = rows(lambda q: -40.0 if q % 2 == 0 else -2.0)
    image = rows(lambda q: -2.0 if q % 2 == 0 else -40.0).query("sample_id != 'open-ended/t/q00'")
    c = open_ended.video_vs_image_claim(video, image, 4)
    assert c.n == 24 + 23 and c.stability == "halves: holds / does not hold"
