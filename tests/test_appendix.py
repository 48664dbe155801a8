"""Appendices D-F: interval verdicts, logit-lens maps, frame entropy, long and still videos, harder renders."""

import math

import numpy as np
import pandas as pd
import pytest

from conftest import rendered_questions, tiny_llava_next_video
from flowutils.analysis.logit_lens import layer_logits
from flowutils.engine import run_baseline
from flowutils.data import synthetic
from flowutils.paper import appendix
from flowutils.paper.keywords import keyword_token_ids


def sweep_rows(values):
    """A one-flow sweep table: ``values[q][layer]``."""
    return pd.DataFrame([{"sample_id": f"q{q}", "task": "t", "flow": "f", "layer": l, "relative_change_pct": v}
                         for q, row in enumerate(values) for l, v in enumerate(row)])


def test_drop_verdict_reads_the_bootstrap_band():
    rng = np.random.default_rng(0)
    hurt = sweep_rows([[0, -30 + rng.normal(0, 2), 0] for _ in range(20)])
    v = appendix.drop_verdict(hurt)
    assert v["holds"] is True and v["layer"] == 1 and v["n"] == 20
    assert v["mean"] == pytest.approx(hurt[hurt.layer == 1]["relative_change_pct"].mean())
    assert v["lo"] < v["mean"] < v["hi"] < -5
    assert appendix.drop_verdict(sweep_rows([[1, 2, 3]] * 10))["holds"] is False
    mixed = sweep_rows([[-40, 0], [30, 0]] * 5)  # mean -5, band across the threshold
    assert appendix.drop_verdict(mixed)["holds"] is None
    # restricted to layers where nothing happens
    assert appendix.drop_verdict(hurt, layers=[0, 2])["holds"] is False
    assert appendix.drop_verdict(hurt.iloc[:0])["n"] == 0


def test_drop_claim_prints_its_verdict_on_each_half_of_the_questions():
    # 12 questions: q0..q5 hurt at layer 0, q6..q11 unaffected; sorted ids alternate over the halves, so each
    # half holds 6 questions, fewer than MIN_QUESTIONS: inconclusive, whatever the whole sample says
    t = sweep_rows([[-30, 0]] * 6 + [[5, 5]] * 6)
    claim = appendix.drop_claim("X", "item", "finding", "", t, "relative_change_pct")
    assert claim.n == 12 and claim.stability == "halves: inconclusive / inconclusive"
    # 24 questions, every one hurt: both halves (12 each) hold on their own
    hurt = sweep_rows([[-30 + q % 3, 0] for q in range(24)])
    assert appendix.drop_claim("X", "item", "finding", "", hurt, "relative_change_pct").stability == \
        "halves: holds / holds"


def test_drop_verdict_is_inconclusive_below_the_minimum_of_questions():
    assert appendix.drop_verdict(sweep_rows([[-50, 0]] * 9))["holds"] is None
    assert appendix.drop_verdict(sweep_rows([[-50 + q, 0] for q in range(10)]))["holds"] is True


def test_frame_entropy():
    assert appendix.frame_entropy(np.ones((8, 4))) == pytest.approx(1.0)
    one = np.zeros((8, 4))
    one[3, 1] = 1
    assert appendix.frame_entropy(one) == pytest.approx(0.0)
    m = np.array([[1, 1], [2, 0], [4, 0], [0, 0]], dtype=float)
    p = np.array([2, 2, 4]) / 8
    assert appendix.frame_entropy(m) == pytest.approx(-(p * np.log(p)).sum() / math.log(4))


def test_entropy_claim_on_paired_changes():
    maps = {}
    for q in range(10):
        peaked = np.zeros((4, 4))
        peaked[q % 4] = 1
        peaked += 0.01
        maps[(f"q{q}", "full attention")] = peaked
        maps[(f"q{q}", "cross-frame knocked out")] = np.ones((4, 4))
    table = appendix.entropy_table(maps)
    assert len(table) == 10 and (table["change"] > 0).all()
    assert table["cross-frame knocked out"].tolist() == pytest.approx([1.0] * 10)
    assert appendix.entropy_claim(table).verdict == "holds"
    assert appendix.entropy_claim(table.assign(change=-table["change"])).verdict == "does not hold"


def maps_table(codes_by_question):
    """A lens_maps-style table from ``{sample_id: [layer][frame][token] codes}``."""
    rows = []
    for sid, codes in codes_by_question.items():
        codes = np.asarray(codes)
        for layer, c in enumerate(codes):
            rows.append({"sample_id": sid, "task": "t", "layer": layer, "frames": codes.shape[1],
                         "per_frame": codes.shape[2], "codes": "".join(map(str, c.ravel()))})
    return pd.DataFrame(rows)


def test_category_counts_against_a_hand_count():
    # layer 0: spatial at positions 0, 1; layer 1: position 0 temporal (was spatial), position 2 temporal (was other)
    q = [[[1, 1], [0, 0]], [[2, 1], [2, 0]], [[2, 2], [2, 0]]]
    maps = maps_table({"a": q})
    assert appendix.code_array(maps, "a").tolist() == q
    per = appendix.temporal_on_spatial(maps)
    assert per.iloc[0][["turned", "from_spatial"]].tolist() == [3, 2]  # layer 1: two new; layer 2: one (was spatial)
    shares = appendix.category_shares(maps).set_index(["layer", "category"])["share"]
    assert shares[(0, "spatial")] == 0.5 and shares[(1, "temporal")] == 0.5 and shares[(2, "temporal")] == 0.75
    assert appendix.emergence_layers(appendix.category_shares(maps)) == {"spatial": 0, "temporal": 1}
    order, positions = appendix.figure_t_claims(maps)
    assert order.verdict == positions.verdict == "inconclusive"  # one question: below the minimum of 10
    order, positions = appendix.figure_t_claims(maps_table({f"a{i}": q for i in range(10)}))
    assert order.verdict == "holds" and order.interval == "gap [1, 1] layers"  # spatial at 0, temporal at 1
    assert positions.verdict == "does not hold"  # 2 of 3 were spatial, in every resample


def test_figure_t_claims_on_each_half_of_the_questions():
    # one frame of two positions, three layers. Sorted ids alternate over the halves: the even-numbered questions
    # form the first. They follow Figure T: position 0 spatial throughout, position 1 turns temporal at layer 1 from
    # "other". The odd-numbered ones contradict it: position 0 temporal from layer 0, position 1 spatial at layer 0
    # and temporal from layer 1.
    follows, contradicts = [[[1, 0]], [[1, 2]], [[1, 2]]], [[[2, 1]], [[2, 2]], [[2, 2]]]
    maps = maps_table({f"q{i:02d}": follows if i % 2 == 0 else contradicts for i in range(20)})
    order, positions = appendix.figure_t_claims(maps)
    # by hand, first half: spatial share 1/2 at every layer (first at layer 0), temporal 0, 1/2, 1/2 (first at layer
    # 1): spatial first; no position turning temporal was spatial (0% of 10). Second half: temporal share 1/2, 1, 1
    # reaches half its peak at layer 0, as spatial does: not first; every one was spatial (100%)
    assert order.stability == "halves: holds / does not hold"
    assert positions.stability == "halves: holds / does not hold"
    # all 20: spatial 1/2, 1/4, 1/4 (layer 0), temporal 1/4, 3/4, 3/4 (layer 1); 10 of 20 were spatial: across half
    assert order.verdict == "holds" and positions.verdict == "inconclusive"


def test_lens_maps_match_the_logit_lens():
    fm = tiny_llava_next_video()
    samples = rendered_questions(("action_sequence", "moving_direction"), 1)
    words = {"spatial": ["red", "circle", "square"], "temporal": ["jump", "up", "left"]}
    maps = appendix.lens_maps(fm, samples, words, num_frames=4, sample_mode="all")
    for s in samples:
        p = fm.prepare_sample(s, 4)
        top = layer_logits(fm, run_baseline(fm, p), p.layout.video).argmax(-1)
        expected = np.zeros(top.shape, dtype=int)
        for cat, code in (("spatial", 1), ("temporal", 2)):
            ids = [i for w in words[cat] for i in keyword_token_ids(fm.tokenizer, w)]
            expected[np.isin(top.numpy(), ids)] = code
        got = appendix.code_array(maps, s.sample_id)
        assert got.reshape(got.shape[0], -1).tolist() == expected.tolist()


def test_long_render_and_still_videos():
    cfg = appendix.long_render(48)
    assert cfg.video_frames == 48 and cfg.size == synthetic.RenderConfig().size
    long = next(synthetic.generate("moving_direction", 1, seed=0, split="test", cfg=cfg))
    short = next(synthetic.generate("moving_direction", 1, seed=0, split="test"))
    assert long.frames.shape[0] == 48 and long.question == short.question and long.answer == short.answer
    stills = appendix.still_video_samples(2, frames=6)
    assert len(stills) == 2 * len(synthetic.IMAGE_TASKS) and len({s.sample_id for s in stills}) == len(stills)
    for s in stills:
        assert s.frames.shape[0] == 6 and (s.frames == s.frames[:1]).all()


def test_harden_keeps_the_answer_and_is_deterministic():
    s = next(synthetic.generate("object_count", 1, seed=0, split="test"))
    assert appendix.harden(s, 0) is s
    a, b = appendix.harden(s, 2), appendix.harden(s, 2)
    assert (a.frames == b.frames).all() and not (a.frames == s.frames).all()
    assert a.answer == s.answer and a.question == s.question and a.candidates == s.candidates
    # noise of sd 24 around the original pixels, distractors aside
    assert 10 < np.abs(a.frames.astype(float) - s.frames).mean() < 40
    hard = appendix.hard_samples(["action_antonym"], 2, 1)
    assert [h.sample_id for h in hard] == ["hard1/action_antonym/0", "hard1/action_antonym/1"]


def test_failure_split_and_compare_drops():
    t = pd.DataFrame([{"task": "t", "sample_id": q, "layer": l, "relative_change_pct": v}
                      for q, vals in {"down": [-30, -2], "up": [3, 40], "flat": [1, -2]}.items()
                      for l, v in enumerate(vals)])
    split = appendix.failure_split(t).set_index("sample_id")["pattern"].to_dict()
    assert split == {"down": "decreases", "up": "increases", "flat": "unchanged"}
    assert appendix.failure_split(t, layers=[0]).set_index("sample_id")["pattern"]["up"] == "unchanged"
    assert appendix.failure_split_claim(appendix.failure_split(t)).n == 3
    def patterns(p):
        return pd.DataFrame({"sample_id": [f"q{i:03d}" for i in range(len(p))], "pattern": p})

    many = patterns(["decreases", "decreases", "increases", "increases"] * 20)  # each half: 20 of each
    assert appendix.failure_split_claim(many).verdict == "holds"
    assert appendix.failure_split_claim(many).stability == "halves: holds / holds"
    assert appendix.failure_split_claim(patterns(["decreases"] * 80)).verdict == "does not hold"
    assert appendix.failure_split_claim(patterns(["decreases"] * 9 + ["increases"])).verdict == "inconclusive"
    a = sweep_rows([[-10, -20], [-30, 0]]).assign(flow="x")
    b = sweep_rows([[-1, -2], [-3, 0]]).assign(flow="x")
    comp = appendix.compare_drops(a, b, "short", "long").iloc[0]
    assert comp["short mean"] == pytest.approx(-25) and comp["long mean"] == pytest.approx(-2.5)
    assert comp["difference"] == pytest.approx(22.5) and comp["lo"] <= 22.5 <= comp["hi"]


def one_flow(lows, ids, flow="f", **columns):
    """A sweep of one flow over two layers: question ``ids[i]`` changes by 0 at layer 0 and ``lows[i]`` at layer 1."""
    return pd.DataFrame([{"sample_id": q, "task": "t", "flow": flow, "layer": layer, "relative_change_pct": v * layer,
                          **columns} for q, v in zip(ids, lows) for layer in (0, 1)])


def test_drop_difference_needs_the_minimum_of_questions_on_each_side():
    ids = [f"q{i:02d}" for i in range(10)]
    a, b = one_flow([-40.0] * 10, ids), one_flow([-2.0 - i for i in range(10)], ids)
    row, holds = appendix.drop_difference(a, b, "a", "b")
    assert holds is True and row["difference"] == pytest.approx(40 - 6.5)
    assert appendix.drop_difference(a, b, "a", "b", "below")[1] is False
    assert appendix.drop_difference(a, b[b.sample_id != "q00"], "a", "b")[1] is None  # 9 questions on b's side


def test_smaller_drop_claim_splits_both_sweeps_by_question():
    # the same questions with short and long videos; the long sweep lacks q00 (not answered correctly there). Sorted
    # ids of both sweeps alternate over the halves: the even-numbered questions form the first half in both sweeps.
    # First half: long videos cost less (-5 against -40); second half: more (-40 against -5)
    ids = [f"q{i:02d}" for i in range(24)]
    short = one_flow([-40.0 if i % 2 == 0 else -5.0 for i in range(24)], ids)
    long = one_flow([-5.0 if i % 2 == 0 else -40.0 for i in range(24)], ids).query("sample_id != 'q00'")
    c = appendix.smaller_drop_claim("F.2", "item", "finding", "", short, long, "f", "short", "long")
    # by hand: first half long - short = +35 (every resample: holds), second half -35 (does not hold); splitting the
    # long sweep on its own ids would pair its odd-numbered questions with the short sweep's even-numbered ones
    assert c.stability == "halves: holds / does not hold"
    assert c.n == 24 + 23 and c.verdict == "inconclusive"  # -22.50 (short) against -23.26 (long) over all of them
    # still images: other ids than the temporal questions'; "still/..." sorts before "t/...", 24 of each: the
    # even-numbered of each form the first half, where stills cost less (-2 against -40); the second, more
    still = one_flow([-2.0 if i % 2 == 0 else -40.0 for i in range(24)], [f"still/q{i:02d}" for i in range(24)])
    temporal = one_flow([-40.0 if i % 2 == 0 else -2.0 for i in range(24)], [f"t/q{i:02d}" for i in range(24)])
    c = appendix.smaller_drop_claim("F.2", "item", "finding", "", temporal, still, "f", "temporal", "still")
    assert c.stability == "halves: holds / does not hold"


def test_same_route_claim_on_each_half_of_the_questions():
    # 80 questions; every other pair answered wrongly, so that each half (the even-numbered questions, then the odd)
    # holds 20 successes and 20 failures. Blocking drops the answer at layer 2 on every success, and on the first
    # half's failures (the same layer: holds); the second half's failures gain 10% at both layers (no drop there:
    # it holds on the successes only, so it does not hold)
    rows = []
    for i in range(80):
        correct, second = (i // 2) % 2 == 0, i % 2 == 1
        low = 10.0 if second and not correct else -30.0 - i % 3
        rows += [{"sample_id": f"q{i:02d}", "task": "t", "flow": "video->question", "layer": layer,
                  "correct_baseline": correct, "relative_change_pct": low if layer == 1 or low > 0 else 0.0}
                 for layer in (0, 1)]
    c = appendix.same_route_claim(pd.DataFrame(rows), "video->question", 1)
    assert c.n == 80 and c.stability == "halves: holds / does not hold"


def test_progressive_accuracy_and_leakage_claims():
    rows = []
    for q in range(10):
        for layer in range(4):
            # bottom_up: the first two layers' blocking breaks questions 0-3, more layers add nothing
            rows.append({"sample_id": f"q{q}", "style": "bottom_up", "layer": layer, "correct_baseline": True,
                         "correct_knockout": not (q < 4 and layer >= 1)})
            # top_down: blocking from layer 2 on breaks questions 0-4
            rows.append({"sample_id": f"q{q}", "style": "top_down", "layer": layer, "correct_baseline": True,
                         "correct_knockout": not (q < 5 or (q < 4 and layer < 2))})
    acc = appendix.progressive_accuracy(pd.DataFrame(rows)).set_index(["style", "layer"])
    assert acc.loc[("bottom_up", 0), "accuracy"] == 100 and acc.loc[("bottom_up", 3), "change"] == -40
    assert acc.loc[("top_down", 3), "accuracy"] == 50 and acc.loc[("top_down", 3), "questions"] == 10
    claims = {c.item: c for c in appendix.leakage_claims(pd.DataFrame(rows), 4)}
    # -50 points from layer 3 on: a resample of 10 questions keeps at least one of the five lost ones (interval < -5)
    assert claims["Figure V: top-down"].verdict == "does not hold"
    assert claims["Figure V: bottom-up"].verdict == "holds"  # the same 4 lost at layer 2 and at layer 4: 0 per question
    one_lost = [dict(r, correct_knockout=r["sample_id"] != "q0") if r["style"] == "top_down" else r for r in rows]
    # one question of 10 lost: -10 points, but a resample may keep none of it: the interval reaches 0, inconclusive
    assert {c.item: c for c in appendix.leakage_claims(pd.DataFrame(one_lost), 4)}[
        "Figure V: top-down"].verdict == "inconclusive"


def test_window_claim_compares_the_narrowest_and_widest_window():
    narrow = sweep_rows([[-1, -2, 0]] * 10).assign(k=1)
    wide = sweep_rows([[-30, -40, -10]] * 5 + [[-20, -50, 0]] * 5).assign(k=5)
    assert appendix.window_claim(pd.concat([narrow, wide])).verdict == "holds"
    assert appendix.window_claim(pd.concat([narrow.assign(k=5), wide.assign(k=1)])).verdict == "does not hold"
    assert appendix.window_claim(narrow).verdict == "inconclusive"


def test_leakage_claims_on_each_half_of_the_questions():
    # 4 layers, 20 questions; the even-numbered ones (the first half) never lose their answer; the odd-numbered lose
    # it when cross-frame attention is blocked from layer 3 or 4 to the last (top-down), and when it is blocked in
    # every layer but not in layers 1-2 alone (bottom-up)
    rows = [{"sample_id": f"q{i:02d}", "style": style, "layer": layer, "correct_baseline": True,
             "correct_knockout": i % 2 == 0 or (layer < 2 if style == "top_down" else layer < 3)}
            for i in range(20) for style in appendix.PROGRESSIVE for layer in range(4)]
    claims = {c.item: c for c in appendix.leakage_claims(pd.DataFrame(rows), 4)}
    # by hand: first half 0 points lost anywhere; second half -100 points from layer 3 on (top-down), and 0 -> -100
    # points from layers 1-2 to all layers (bottom-up); all 20 questions: -50 points, beyond 5
    for item in ("Figure V: top-down", "Figure V: bottom-up"):
        assert claims[item].verdict == "does not hold" and claims[item].stability == "halves: holds / does not hold"


def test_window_claim_on_each_half_of_the_questions():
    # the even-numbered questions (the first half): the narrowest window costs -1, the widest -30 (bypassed: holds);
    # the odd-numbered: the other way round (does not hold)
    ids = [f"q{i:02d}" for i in range(20)]
    narrow = one_flow([-1.0 if i % 2 == 0 else -30.0 for i in range(20)], ids, k=1)
    wide = one_flow([-30.0 if i % 2 == 0 else -1.0 for i in range(20)], ids, k=5)
    c = appendix.window_claim(pd.concat([narrow, wide]))
    assert c.stability == "halves: holds / does not hold" and c.verdict == "inconclusive"
    assert appendix.window_claim(narrow).stability == "halves: inconclusive / inconclusive"  # one window only
