"""Appendix C.2: anchors in the model's own response, the anchor-stage prompts and their knockouts."""

import pandas as pd
import pytest
import torch

from conftest import rendered_questions, tiny_llava_next_video, unmodified_logits
from flowutils.engine import knockout_logits
from flowutils.knockout.plan import KnockoutPlan
from flowutils.paper import multi_token


@pytest.fixture(scope="module")
def fm():
    return tiny_llava_next_video()


@pytest.fixture(scope="module")
def questions():
    return multi_token.open_ended_questions(rendered_questions(("action_antonym", "moving_direction"), 1))


def test_anchor_stages_follow_the_response(fm, questions):
    answers = pd.DataFrame([{"sample_id": questions[0].sample_id, "task": "action_antonym",
                             "response": "A ) Jump . left to the up"}])
    rule = multi_token.anchor_rule("keywords", ["jump", "left", "up"])
    anchors = multi_token.anchor_samples(fm, questions, answers, rule, max_anchors=2)
    assert [(a.stage, a.anchor, a.response_tokens) for a in anchors] == [(1, "Jump", 2), (2, "left", 4)]
    assert anchors[1].open_ended_prefix == questions[0].open_ended_prefix + " A ) Jump ."
    assert anchors[1].sample_id == f"anchor2/{questions[0].sample_id}" and anchors[1].task == "action_antonym"
    p = fm.prepare_sample(anchors[1], 4)
    ids = p.input_ids[0].tolist()
    assert fm.tokenizer.convert_ids_to_tokens(ids[-4:]) == ["A", ")", "Jump", "."]


def test_anchor_rows_against_the_reference_backend(fm, questions):
    answers = multi_token.responses(fm, questions, 4, max_new_tokens=6)
    assert len(answers) == 2 and answers.response.map(len).gt(0).all()
    # anchors by hand: a response long enough to have a response group
    fake = pd.DataFrame([{"sample_id": q.sample_id, "task": q.task, "response": "A ) Grow . Jump"} for q in questions])
    anchors = multi_token.anchor_samples(fm, questions, fake, multi_token.anchor_rule("keywords", ["jump"]))
    table = multi_token.anchor_sweep(fm, anchors, k=1, num_frames=4)
    assert set(table.flow) == set(multi_token.ANCHOR_FLOWS) and len(table) == 2 * 5 * fm.n_layers
    a = anchors[0]
    p = fm.prepare_sample(a, 4)
    n = p.layout.n
    jump = fm.tokenizer.convert_tokens_to_ids("Jump")
    base = unmodified_logits(fm, p)[0, -1].softmax(-1)
    rows = table[(table.sample_id == a.sample_id) & (table.flow == "response->last")].set_index("layer")
    assert rows["p_anchor_baseline"].iloc[0] == pytest.approx(float(base[jump]), rel=1e-4, abs=1e-7)
    response = list(range(n - 4, n - 1))  # "A ) Grow" before the last position "."
    assert fm.tokenizer.convert_ids_to_tokens(p.input_ids[0, response].tolist()) == ["A", ")", "Grow"]
    plan = KnockoutPlan({1: [(torch.tensor([n - 1]), torch.tensor(response))]})
    ref = knockout_logits(fm, p, [plan], "reference")[0].softmax(-1)
    assert rows.loc[1, "p_anchor_knockout"] == pytest.approx(float(ref[jump]), rel=1e-4, abs=1e-7)
    assert rows.loc[1, "relative_change_pct"] == pytest.approx(
        100 * (float(ref[jump]) - float(base[jump])) / float(base[jump]), rel=1e-3, abs=1e-4)


def test_anchor_claims_compare_first_and_last_stage():
    rows = []
    for q in range(10):
        for stage, (resp, last) in ((1, (-2.0, -40.0)), (3, (-40.0, -2.0))):
            for layer in range(3):
                rows += [{"sample_id": f"s{stage}/{q}", "task": "t", "stage": stage, "flow": "response->last",
                          "layer": layer, "relative_change_pct": resp - q},
                         {"sample_id": f"s{stage}/{q}", "task": "t", "stage": stage, "flow": "video->last",
                          "layer": layer, "relative_change_pct": last - q}]
    claims = {c.item: c for c in multi_token.anchor_claims(pd.DataFrame(rows))}
    assert claims["Figure S: response->last"].verdict == "holds"
    assert claims["Figure S: video->last"].verdict == "holds"
    assert claims["Figure S: question->last"].verdict == "inconclusive"  # not measured at both stages
    flipped = pd.DataFrame(rows).assign(stage=lambda t: 4 - t["stage"])
    assert {c.item: c for c in multi_token.anchor_claims(flipped)}["Figure S: response->last"].verdict == "does not hold"


def test_anchor_claims_split_the_questions_with_all_their_stages():
    # q00..q20 at anchor 1, q00..q19 at anchor 3 too. The halves split the questions (sorted, alternately): q00, q02,
    # ..., q20 first, each with both its stages. Even-numbered: blocking response->last costs more at anchor 3 (-40
    # against -2: holds); odd-numbered: less (does not hold)
    rows = []
    for q in range(21):
        for stage in (1, 3) if q < 20 else (1,):
            low = -2.0 if (stage == 1) == (q % 2 == 0) else -40.0
            rows += [{"sample_id": f"anchor{stage}/q{q:02d}", "task": "t", "stage": stage, "flow": "response->last",
                      "layer": layer, "relative_change_pct": low * layer} for layer in (0, 1)]
    claims = {c.item: c for c in multi_token.anchor_claims(pd.DataFrame(rows))}
    # splitting the anchor samples' ids instead would pair anchor 1 of q00, q02, ... with anchor 3 of q01, q03, ...
    assert claims["Figure S: response->last"].stability == "halves: holds / does not hold"
    assert claims["Figure S: video->last"].stability == "halves: inconclusive / inconclusive"  # not measured
