"""Sec. 3.5: effective-interval selection (on the paper's own Table E), the combined plan's edges
(against a brute-force count), the random-blocking draw, Table 3 and its claims."""

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from flowutils.paper import pathways as P
from flowutils.engine import knockout_logits
from flowutils.knockout import windows
from flowutils.knockout.plan import KnockoutPlan
from flowutils.inputs.layout import TokenLayout
from test_windows_plan import small_layout

# Table E(b) of the paper (Action Antonym; intervals L1-5, L6-10, ...) and its depth, and Table E(a).
PAPER_E = {
    "LLaVA-NeXT-7B-Video-FT": (32, {
        "cross-frame": [-4.2, -11.1, -6.3, -0.2, 0, -0.2, -0.2],
        "video->question": [-3.9, -15.1, -21.5, -5.6, -0.2, 0, 0],
        "question->last": [-0.3, -1.2, -4.5, -19.3, -15.1, 0.7, 1.1]}),
    "LLaVA-NeXT-13B-Video-FT": (40, {
        "cross-frame": [-0.7, -11.2, -11.1, -2.1, -0.2, -0.2, -0.2, -0.3],
        "video->question": [-1.2, -16.7, -29.1, -9.2, -0.3, -0.2, -0.2, -0.2],
        "question->last": [-1.8, -2, -4.6, -21.7, -28.4, -5.7, -0.1, -1.9]}),
    "Mini-InternVL-4B-Video-FT": (32, {
        "cross-frame": [-2.3, -11.1, -11.5, -3.3, 0, 0.2, 0],
        "video->question": [-2.4, -24.4, -35.0, -15.9, -1.3, -0.3, -0.2],
        "question->last": [0, -1.3, -5.9, -30.8, -46.8, -14.1, -3.2]}),
    "VideoLLaMA3-7B": (28, {
        "cross-frame": [-65.1, -61.4, -14.9, -5.0, 0, 0.2],
        "video->question": [-4.3, -7.2, -18.5, -16.3, -2.2, 0],
        "question->last": [2, 3.7, 1.9, -2.7, -16.2, -19.1]}),
}
PAPER_E_RANGES = {
    "LLaVA-NeXT-7B-Video-FT": ("L6-15", "L6-20", "L16-25"),
    "LLaVA-NeXT-13B-Video-FT": ("L6-15", "L6-20", "L16-30"),
    "Mini-InternVL-4B-Video-FT": ("L6-15", "L6-20", "L11-30"),
    "VideoLLaMA3-7B": ("L1-15", "L6-20", "L21-28"),
}


def sweep_rows(n_layers, per_interval, size=5, questions=3, seed=0):
    """A sweep table whose every question has, at every layer of an interval, values averaging to its number."""
    rng, rows = np.random.default_rng(seed), []
    for flow, values in per_interval.items():
        for i, v in enumerate(values):
            layers = range(i * size, min((i + 1) * size, n_layers))
            noise = rng.normal(size=(questions, len(layers)))
            noise -= noise.mean()  # the interval's mean stays exactly v
            for q in range(questions):
                for j, l in enumerate(layers):
                    rows.append({"sample_id": f"q{q}", "flow": flow, "layer": l, "relative_change_pct": v + noise[q, j]})
    return pd.DataFrame(rows)


MANIFEST = {"LLaVA-NeXT-7B-Video-FT": "llava-next-7b-video-ft", "LLaVA-NeXT-13B-Video-FT": "llava-next-13b-video-ft",
            "Mini-InternVL-4B-Video-FT": "mini-internvl-4b-video-ft", "VideoLLaMA3-7B": "videollama3-7b"}


@pytest.mark.parametrize("model", list(PAPER_E))
def test_selection_rule_reproduces_the_papers_table_e(model):
    """With the protocol each paper model's manifest names (k = 9 and 5-layer intervals at 32, 40 and 28 layers
    alike), the selection rule turns the paper's Table E(b) into its Table E(a)."""
    from flowutils.models.loading import model_manifests

    n_layers, values = PAPER_E[model]
    spec = model_manifests()[MANIFEST[model]]
    assert spec["expected"]["layers"] == n_layers
    protocol = windows.protocol_for(n_layers, spec.get("protocol"))
    assert (protocol.window_size, protocol.interval) == (9, 5)
    table_e = P.interval_table(sweep_rows(n_layers, values), n_layers, size=protocol.interval)
    assert np.allclose(table_e.groupby("flow", sort=False)["mean"].apply(list).to_dict()["cross-frame"],
                       values["cross-frame"])
    eff = P.effective_layers(table_e)
    assert tuple(P.range_label(eff[f]) for f in P.EFFECTIVE_FLOWS) == PAPER_E_RANGES[model]


def test_interval_table_matches_a_loop_and_threshold_is_strict():
    rng = np.random.default_rng(3)
    t = pd.DataFrame([{"sample_id": f"q{q}", "flow": f, "layer": l, "relative_change_pct": rng.normal(-4, 3)}
                      for f in ("cross-frame", "video->question", "question->last") for q in range(4) for l in range(7)])
    e = P.interval_table(t, 7, size=3)
    assert list(e.interval[:3]) == ["L1-3", "L4-6", "L7"]
    for r in e.itertuples():
        vals = [x.relative_change_pct for x in t.itertuples() if x.flow == r.flow and x.layer in r.layers]
        assert abs(r.mean - np.mean(vals)) < 1e-12 and r.questions == 4
    # exactly -5 is not below -5 (the paper's "< -5%")
    e2 = pd.DataFrame({"flow": ["cross-frame", "video->question", "question->last"], "layers": [(0,), (1,), (2,)],
                       "mean": [-5.0, -5.01, 0.0]})
    assert P.effective_layers(e2) == {"cross-frame": (), "video->question": (1,), "question->last": ()}
    with pytest.raises(ValueError, match=r"no rows for flow\(s\) \['question->last'\]"):
        P.effective_layers(e2[e2.flow != "question->last"])


def test_scaled_interval_and_labels():
    assert windows.scaled_interval(32) == 5 and windows.scaled_interval(12) == 2 and windows.scaled_interval(2) == 1
    assert P.range_label((5, 6, 7, 10)) == "L6-8, L11" and P.range_label(()) == "none"
    assert P.intervals(5, 2) == [(0, 1), (2, 3), (4,)]


def brute_force_kept(lay, n_layers, eff):
    """Kept causal pairs per layer, decided pair by pair from the rules of Sec. 3.5 and positions alone."""
    frame_of = {p: f for f, r in enumerate(lay.frames) for p in r}
    video, question, last = set(lay.video), set(lay.question), lay.n - 1
    v_end = max(eff["video->question"]) if eff["video->question"] else None
    q_end = max(eff["question->last"]) if eff["question->last"] else None
    kept = []
    for l in range(n_layers):
        count = 0
        for q, k in ((q, k) for q in range(lay.n) for k in range(q + 1)):
            cut = (q in frame_of and k in frame_of and frame_of[k] < frame_of[q] and l not in eff["cross-frame"]) \
                or (k in video and q in question and l not in eff["video->question"]) \
                or (k in question and q == last and l not in eff["question->last"]) \
                or (q == last and (k in video or k == last)) \
                or (v_end is not None and l > v_end and q in video and k in video) \
                or (q_end is not None and l > q_end and q in question and k in question)
            count += not cut
        kept.append(count)
    return kept


@pytest.mark.parametrize("eff", [
    {"cross-frame": (1, 2), "video->question": (1, 2, 3), "question->last": (3, 4)},
    {"cross-frame": (), "video->question": (2, 4), "question->last": (0, 5)},  # empty and non-contiguous
    {"cross-frame": (0,), "video->question": (), "question->last": ()},
])
def test_effective_plan_edges_match_a_brute_force_count(eff):
    lay, n_layers = small_layout(frames=3, per_frame=2), 6
    plan = P.effective_pathway_plan(lay, n_layers, eff)
    kept = brute_force_kept(lay, n_layers, eff)
    assert plan.attention_edges(lay.n, n_layers) == sum(kept)
    causal = torch.ones(lay.n, lay.n, dtype=torch.bool).tril()
    for l in range(n_layers):
        assert int((causal & ~plan.dense(l, lay.n)).sum()) == kept[l]
    assert P.cut_edges(plan, lay.n, n_layers) == n_layers * lay.n * (lay.n + 1) // 2 - sum(kept)


def test_random_blocking_draw():
    lay, n_layers = small_layout(frames=3, per_frame=3, n_sys=4), 5
    # chat text after the video is tagged system too; only the leading run is the system prompt
    lay = dataclasses.replace(lay, system=lay.system + [lay.video_span.stop])
    start = P.post_system_start(lay)
    assert start == 4
    cuts = P.matched_cuts(97, n_layers)
    assert cuts == [20, 20, 19, 19, 19] and sum(cuts) == 97
    plan = P.random_blocking_plan(lay, cuts, np.random.default_rng([0, 7]))
    assert plan.attention_edges(lay.n, n_layers) == n_layers * lay.n * (lay.n + 1) // 2 - 97
    for l in range(n_layers):
        pairs = plan.dense(l, lay.n).nonzero().tolist()
        assert len(pairs) == cuts[l]
        assert all(start <= k <= q for q, k in pairs)  # causal, both after the system prompt
    again = P.random_blocking_plan(lay, cuts, np.random.default_rng([0, 7]))
    other = P.random_blocking_plan(lay, cuts, np.random.default_rng([1, 7]))
    assert all(torch.equal(plan.dense(l, lay.n), again.dense(l, lay.n)) for l in range(n_layers))
    assert any(not torch.equal(plan.dense(l, lay.n), other.dense(l, lay.n)) for l in range(n_layers))
    m = lay.n - start
    with pytest.raises(ValueError, match=f"only {m * (m + 1) // 2} causal pairs lie after the system prompt"):
        P.random_blocking_plan(lay, [m * (m + 1) // 2 + 1], np.random.default_rng(0))


def test_random_draw_is_uniform_over_post_system_pairs():
    """Every post-system causal pair is cut about equally often over many draws."""
    lay = small_layout(frames=2, per_frame=2, n_sys=3, n_q=2, opts=(1, 1), n_suffix=1)
    m = lay.n - 3
    counts = torch.zeros(lay.n, lay.n)
    draws = 2000
    for s in range(draws):
        counts += P.random_blocking_plan(lay, [5], np.random.default_rng(s)).dense(0, lay.n).float()
    pairs = [(q, k) for q, k in itertools.product(range(3, lay.n), repeat=2) if k <= q]
    freq = np.array([counts[q, k].item() for q, k in pairs]) / draws
    assert len(pairs) == m * (m + 1) // 2 and counts.sum() == 5 * draws
    assert np.abs(freq - 5 / len(pairs)).max() < 0.04


@pytest.mark.parametrize("rule, share", [(None, None), ("fixed share", 0.2)])
def test_run_pathways_matches_the_reference_backend(tiny, samples, rule, share):
    """The toy-sized model has no paper share: its default is the matched rule; the fixed share is an option."""
    eff = {"cross-frame": (0, 1), "video->question": (1, 2), "question->last": (2, 3)}
    fast = P.run_pathways(tiny, samples[:2], eff, seeds=[0, 1], num_frames=4, progress=False, random_rule=rule,
                          random_share=share)
    assert len(fast) == 2 * 4 and set(fast.condition) == set(P.CONDITIONS)
    assert set(fast.rule[fast.condition == "random blocking"]) == {
        "matched: as many edges as the question's effective pathways cut (a variant)" if rule is None else
        "fixed share: 0.2 of the n(n+1)/2 causal pairs in every layer (the paper's code)"}
    for i, s in enumerate(samples[:2]):
        p = tiny.prepare_sample(s, 4)
        n, L = p.layout.n, tiny.n_layers
        plan = P.effective_pathway_plan(p.layout, L, eff)
        cuts = P.matched_cuts(P.cut_edges(plan, n, L), L) if rule is None else [int(0.2 * n * (n + 1) / 2)] * L
        plans = [KnockoutPlan(), plan] + [P.random_blocking_plan(p.layout, cuts, np.random.default_rng([seed, i]))
                                          for seed in (0, 1)]
        ref = knockout_logits(tiny, p, plans, "reference").softmax(-1)
        rows = fast[fast.sample_id == p.sample_id]
        assert np.abs(rows.p_gold.to_numpy() - ref[:, p.gold_id].numpy()).max() < 1e-4
        assert (rows.correct.to_numpy() == (ref.argmax(-1) == p.gold_id).numpy()).all()
        assert rows.edges.iloc[1] == plan.attention_edges(n, L)
        for r, draw in zip(rows.edges.iloc[2:], plans[2:]):  # counted from the drawn plan
            assert r == draw.attention_edges(n, L) == L * n * (n + 1) // 2 - sum(cuts)


def llava_7b_layout(n_sys=44, n_after=5, n_question=12, options=(8, 8, 8, 8), n_suffix=13):
    """A LLaVA-NeXT-7B-Video-FT-shaped input: the Vicuna system prompt, 8 x 12 x 12 = 1152 video tokens, the chat
    text after the video, a four-option question block of 5 label + 12 + 4 separator + 32 option = 53 tokens
    ("Question: ... Options: (A) ... (D) ..."), the suffix ending on the last position; n = 1267."""
    pos = n_sys
    video = range(pos, pos + 1152)
    pos = video.stop
    after = list(range(pos, pos + n_after)); pos += n_after
    labels = [pos, pos + 1]; pos += 2  # "Question:"
    question = list(range(pos, pos + n_question)); pos += n_question
    labels += [pos, pos + 1, pos + 2]; pos += 3  # "\nOptions:"
    separators, opts = [], []
    for o in options:
        separators.append(pos); pos += 1
        opts.append(list(range(pos, pos + o))); pos += o
    suffix = list(range(pos, pos + n_suffix)); pos += n_suffix
    return TokenLayout(n=pos, frames=[range(video.start + f * 144, video.start + (f + 1) * 144) for f in range(8)],
                       video_span=video, system=list(range(n_sys)) + after, non_option_question=question, options=opts,
                       separators=separators, suffix=suffix, answer_index=1, labels=labels)


PAPER_7B_EFFECTIVE = {"cross-frame": tuple(range(5, 15)), "video->question": tuple(range(5, 20)),
                      "question->last": tuple(range(15, 25))}  # L6-15, L6-20, L16-25


def test_table3_edges_on_a_7b_shaped_input_match_the_papers_42_percent():
    """Table 3, LLaVA-NeXT-7B-Video-FT: full 25.7M, effective pathways 10.8M (42%). By hand, on a 1267-token
    input (32 x 1267 x 1268 / 2 = 25,704,896 = 25.7M) with a 53-token question block Q, the plan cuts per
    layer: cross-frame 144^2 x (0 + 1 + ... + 7) = 580,608 outside L6-15 while the video still reads itself
    (10 layers: L1-5, L16-20); video->video 1152 x 1153 / 2 = 664,128 after L20 (12 layers); video->question
    1152 Q outside L6-20 (17 layers); question->last Q outside L16-25 (22 layers); question->question
    Q (Q + 1) / 2 after L25 (7 layers); video->last 1152 and last->last 1 in all 32."""
    lay, L, Q = llava_7b_layout(), 32, 53
    assert (lay.n, len(lay.video), len(lay.question)) == (1267, 1152, Q)
    full = L * 1267 * 1268 // 2
    cut = 10 * 580_608 + 12 * 664_128 + 17 * 1152 * Q + 22 * Q + 7 * Q * (Q + 1) // 2 + 32 * 1153
    kept = full - cut
    assert (full, kept) == (25_704_896, 10_843_249)
    assert round(full / 1e6, 1) == 25.7 and round(kept / 1e6, 1) == 10.8 and round(100 * kept / full) == 42
    plan = P.effective_pathway_plan(lay, L, PAPER_7B_EFFECTIVE)
    assert plan.attention_edges(lay.n, L) == kept
    assert P.cut_edges(plan, lay.n, L) == cut


def test_the_papers_random_rule_blocks_its_share_of_every_layer():
    """The paper's code: int(0.58 x n (n + 1) / 2) pairs per layer for the 7B: int(0.58 x 803,278) = 465,901
    (by hand: 465,901.24), drawn among the pairs from the first video position on; counted in every layer."""
    lay, L = llava_7b_layout(), 32
    cuts = P.fixed_share_cuts(lay.n, 0.58, L)
    assert cuts == [465_901] * L
    plan = P.random_blocking_plan(lay, cuts, np.random.default_rng([0, 0]))
    causal = torch.ones(lay.n, lay.n, dtype=torch.bool).tril()
    for l in range(L):
        cut = plan.dense(l, lay.n)
        assert int(cut.sum()) == int((cut & causal).sum()) == 465_901
        assert not cut[:44].any() and not cut[:, :44].any()  # nothing of the system prompt before the video
    kept = plan.attention_edges(lay.n, L)
    assert kept == 25_704_896 - 32 * 465_901 == 10_796_064 and P.drawn_edges(plan) == 32 * 465_901
    assert round(kept / 1e6, 1) == 10.8 and round(100 * kept / 25_704_896) == 42


@pytest.mark.parametrize("name, share", [("llava-next-7b-video-ft", 0.58), ("llava-next-13b-video-ft", 0.63),
                                         ("mini-internvl-4b-video-ft", 0.60), ("videollama3-7b", 0.42)])
def test_the_papers_models_default_to_the_papers_random_rule(name, share):
    """Each paper model's manifest gives the share of its random_block_ratio (Table 3: 1 - 42%, 1 - 37%,
    1 - 40%, 1 - 58%); every other model defaults to the matched rule."""
    from flowutils.models.loading import model_manifests

    spec = model_manifests()[name]
    protocol = windows.protocol_for(spec["expected"]["layers"], spec["protocol"], spec["random_blocking_share"])
    assert P.resolve_random_rule(protocol) == ("fixed share", share)
    assert P.resolve_random_rule(protocol, "matched") == ("matched", None)
    assert P.resolve_random_rule(windows.protocol_for(12)) == ("matched", None)
    assert P.resolve_random_rule(windows.protocol_for(12), share=0.5) == ("fixed share", 0.5)
    with pytest.raises(ValueError, match="needs a share"):
        P.resolve_random_rule(windows.protocol_for(12), "fixed share")
    with pytest.raises(ValueError, match="applies to the 'fixed share' rule only"):
        P.resolve_random_rule(protocol, "matched", 0.5)
    with pytest.raises(ValueError, match=r"random_rule='random'; valid: \('fixed share', 'matched'\)"):
        P.resolve_random_rule(protocol, "random")
    with pytest.raises(ValueError, match="on a model of protocol 'paper' only"):
        windows.protocol_for(12, None, 0.5)
    others = [n for n, s in model_manifests().items() if n not in MANIFEST.values()]
    assert others and all("random_blocking_share" not in model_manifests()[n] for n in others)


def results(full, eff, rand_per_seed, n=10):
    """Hand-made run_pathways rows: ``full``/``eff`` correct counts, one correct count per random seed."""
    rows = []
    for cond, seed, k, edges in [(P.CONDITIONS[0], -1, full, 100), (P.CONDITIONS[1], -1, eff, 40)] + \
            [(P.CONDITIONS[2], s, k, 40) for s, k in enumerate(rand_per_seed)]:
        rows += [{"sample_id": f"q{i}", "condition": cond, "seed": seed, "rule": "r" if seed >= 0 else "",
                  "edges": edges, "edges_full": 100,
                  "correct": i < k, "logit_diff": 0.0} for i in range(n)]
    return pd.DataFrame(rows)


def test_table3_matches_hand_counts():
    t = P.table3(results(9, 8, [5, 6, 4, 5, 5])).set_index("condition")
    assert t.loc["full causal attention", "accuracy"] == 90 and t.loc["effective pathways", "kept_pct"] == 40
    assert t.loc["effective pathways", "edges_blocked"] == 60 and t.loc["random blocking", "rule"] == "r"
    assert t.loc["random blocking", "accuracy"] == 50
    assert abs(t.loc["random blocking", "std_over_seeds"] - np.std([50, 60, 40, 50, 50], ddof=1)) < 1e-9
    assert t.loc["random blocking", "seeds"] == 5 and t.loc["effective pathways", "questions"] == 10
    assert t.loc["full causal attention", "lo"] < 90 < t.loc["full causal attention", "hi"]


@pytest.mark.parametrize("full, eff, rand, retains, hurts, suppressed", [
    (9, 9, [5, 5, 5, 5, 5], "holds", "holds", "holds"),  # per question eff - random: 0 x 6, +100 x 4: mean 40
    (9, 3, [5, 5, 5, 5, 5], "does not hold", "does not hold", "holds"),  # eff - full: -100 for 6 of 10
    (9, 9, [9, 9, 9, 9, 9], "holds", "does not hold", "holds"),  # eff - random: 0 everywhere, cleared below 5
    (9, 9, [9, 8, 9, 9, 9], "holds", "inconclusive", "holds"),  # one question at +20: mean 2, the interval spans 5
])
def test_table3_claims(full, eff, rand, retains, hurts, suppressed):
    r = results(full, eff, rand)
    assert P.claim_effective_retains(r).verdict == retains
    assert P.claim_random_hurts(r).verdict == hurts
    assert P.claim_edges_suppressed(r).verdict == suppressed
    assert P.claim_edges_suppressed(r, max_kept=30).verdict == "does not hold"  # 40% kept
    assert P.claim_effective_retains(r[r.condition != P.CONDITIONS[1]]).verdict == "not measured"


def test_table3_claims_carry_n_interval_and_halves():
    c = P.claim_effective_retains(results(9, 9, [5] * 5))
    assert c.n == 10 and c.interval == "effective minus full accuracy 0.00 [0.00, 0.00] > -5 (n=10)"
    assert c.stability == "halves: inconclusive / inconclusive"  # 5 questions a half
    big = P.claim_edges_suppressed(results(20, 20, [10] * 5, n=20))
    assert big.stability == "halves: holds / holds"
    few = results(9, 9, [5] * 5, n=9)
    assert P.claim_effective_retains(few[few.sample_id != "q9"]).verdict == "inconclusive"


def selection_sweep(curves, questions=12, n_layers=12):
    """Selection-sweep rows: ``curves[flow] = {0-based layer: value}`` (0 elsewhere), the same for every question."""
    return pd.DataFrame([{"flow": f, "sample_id": f"q{q:02d}", "layer": l, "relative_change_pct": float(c.get(l, 0))}
                         for f, c in curves.items() for q in range(questions) for l in range(n_layers)])


def test_table_e_claim():
    # intervals of 3 layers of 12: cross-frame -20 at layers 2 and 3 -> L1-3 and L4-6 at -6.7 each (mean layer 2.5);
    # video->question L4-6 (4); question->last L7-9 (7): 7 - 2.5 and 7 - 4 above 0
    good = {"cross-frame": {2: -20, 3: -20}, "video->question": {3: -20, 4: -20, 5: -20},
            "question->last": {6: -20, 7: -20, 8: -20}}
    c = P.claim_effective_layers(selection_sweep(good), 12, 3)
    assert c.verdict == "holds" and c.n == 12 and "cross-frame L1-6" in c.measured
    assert "question->last minus cross-frame: mean effective layer 4.50 [4.50, 4.50] > 0" in c.interval
    assert P.claim_effective_layers(selection_sweep(good | {"cross-frame": {}}), 12, 3).verdict == "does not hold"
    early_last = good | {"question->last": {0: -20, 1: -20, 2: -20}}  # question->last before the video flows
    assert P.claim_effective_layers(selection_sweep(early_last), 12, 3).verdict == "does not hold"
    assert P.claim_effective_layers(selection_sweep(good, questions=8), 12, 3).verdict == "inconclusive"


def test_selection_task_must_be_loaded(samples):
    assert [s.task for s in P.selection_samples(samples, "object_count")] == ["object_count"]
    with pytest.raises(ValueError, match=r"selection_task='action_count' has no question among the loaded tasks"):
        P.selection_samples(samples, "action_count")


def test_protocols_scale_only_models_the_paper_did_not_run():
    scaled = windows.protocol_for(12)
    assert (scaled.window_size, scaled.interval) == (3, 2) and "scaled to 12 layers" in scaled.rule
    assert (windows.protocol_for(40).window_size, windows.protocol_for(40).interval) == (11, 6)  # what 40 would scale to
    assert windows.protocol_for(40, "paper") == windows.PAPER and windows.protocol_for(28, "paper").interval == 5
    with pytest.raises(ValueError, match=r"unknown protocol 'papers'; valid: \('paper', 'scaled'\)"):
        windows.protocol_for(32, "papers")


def test_the_supported_models_table_shows_the_papers_window_for_the_papers_models():
    from flowutils.models.catalog import supported_models

    table = supported_models().set_index("model")
    for name in MANIFEST.values():
        assert (table.loc[name, "window k"], table.loc[name, "interval"], table.loc[name, "protocol"]) == (9, 5, "paper")
    assert table.loc["llava-next-7b-video-ft", "Table 3 random blocking"].startswith("0.58 of n(n+1)/2 pairs per layer")
    assert table.loc["videollama3-7b", "Table 3 random blocking"].startswith("0.42 of n(n+1)/2 pairs per layer")
    assert table.loc["llava-onevision-0.5b", "Table 3 random blocking"] == "matched to the question's plan"
