"""Section 3.3 criteria (Figures 3, 5, 6, 7) on hand-made tables whose verdicts are known."""

import pandas as pd

from flowutils.paper import integration as I


def sweep_table(curves, task="action_antonym", questions=20, value="relative_change_pct", factors=(1,)):
    """``curves[flow]``: per-layer value, times ``factors[q % len(factors)]`` for question q."""
    return pd.DataFrame([{"task": task, "flow": f, "sample_id": f"{task}/{q:02d}", "layer": l,
                          value: float(v) * factors[q % len(factors)]}
                         for f, c in curves.items() for q in range(questions) for l, v in enumerate(c)])


def test_figure3_claims():
    good = sweep_table({"video->question": [0, -30, 0, 0], "question->last": [0, 0, -40, 0],
                        "video->last": [-1, 0, 0, 0], "last->last": [0, 0, 0, 0]})
    vql, weak = I.video_question_last_claim(good), I.video_last_claim(good)
    assert vql.holds is True and weak.holds is True
    assert vql.n == 20 and vql.stability == "halves: holds / holds"
    assert "video->question L1-2 -15.00 [-15.00, -15.00] < -5" in vql.interval
    assert "last->last L3-4 0.00" in weak.interval
    reversed_order = sweep_table({"video->question": [0, 0, -30, 0], "question->last": [0, -40, 0, 0],
                                  "video->last": [-50, 0, 0, 0]})
    assert I.video_question_last_claim(reversed_order).holds is False
    assert I.video_last_claim(reversed_order).holds is False  # video->last -25 over layers 1-2
    # video->last is -10 or 0 per question over layers 1-2: mean -5, the interval straddles the threshold
    straddle = sweep_table({"video->last": [-10, -10, 0, 0]}, factors=(0, 1))
    assert I.video_last_claim(straddle).verdict == "inconclusive"
    few = sweep_table({"video->question": [0, -30, 0, 0], "question->last": [0, 0, -40, 0]}, questions=6)
    assert I.video_question_last_claim(few).verdict == "inconclusive"


def test_figure3_one_row_with_both_metrics():
    t = sweep_table({"video->question": [0, -30, 0, 0], "question->last": [0, 0, -40, 0]})
    t = t.assign(logit_diff_change=t.relative_change_pct / 10)  # -1.5 and -2 logits: below -1
    c = I.video_question_last_claim(t)
    assert c.measured == "relative change of p(answer): holds; logit difference: holds"


def test_figure6_claim():
    good = sweep_table({"true option->last": [0, 0, -60, 0], "non-option question->last": [0, -2, 0, 0],
                        "false options->last": [0, 0, -10, 0]})
    assert I.true_option_claim(good).holds is True
    early = sweep_table({"true option->last": [-60, 0, 0, 0], "non-option question->last": [0, -2, 0, 0],
                         "false options->last": [0, 0, -10, 0]})
    assert I.true_option_claim(early).holds is False  # second-half mean 0: cleared above the threshold
    question_flows = sweep_table({"true option->last": [0, 0, -60, 0], "non-option question->last": [0, -20, 0, 0],
                                  "false options->last": [0, 0, -10, 0]})
    assert I.true_option_claim(question_flows).holds is False
    spread = sweep_table({"true option->last": [0, 0, -10, 0], "non-option question->last": [0, 0, 0, 0],
                          "false options->last": [0, 0, 0, 0]}, factors=(0, 2))  # per question 0 or -10: mean -5
    assert I.true_option_claim(spread).verdict == "inconclusive"


def test_figure7_routes_per_task():
    t = pd.concat([
        sweep_table({I.DIRECT: [-30, 0], I.INDIRECT: [-6, 0]}, task="action_antonym"),  # direct: holds
        sweep_table({I.DIRECT: [-30, 0], I.INDIRECT: [-6, 0]}, task="moving_direction"),  # paper: indirect
        sweep_table({I.DIRECT: [-30, 0], I.INDIRECT: [-8, 0]}, task="object_count"),  # both below -5: holds
        sweep_table({I.DIRECT: [-30, 0], I.INDIRECT: [-1, 0]}, task="scene_transition"),
        sweep_table({I.DIRECT: [-10, 0], I.INDIRECT: [0, 0]}, task="action_sequence", factors=(0, 1))])
    verdicts = {c.item.split(":")[1].strip(): c.verdict for c in I.route_claims(t)}
    assert verdicts == {"Action Antonym": "holds", "Moving Direction": "does not hold", "Object Count": "holds",
                        "Scene Transition": "holds", "Action Sequence": "inconclusive"}


def word_rows(shares, videos=12, factors=(1,)):
    """``shares[word] = (full, knocked out)`` first-half shares: every video asked about both words (the question
    as asked is "begins", its swap "ends"); video v's shares are moved by ``factors[v % len(factors)]`` times
    (share - 0.5) around 0.5."""
    rows = []
    for v in range(videos):
        f = factors[v % len(factors)]
        for word, (full, ko) in shares.items():
            for condition, share in (("full attention", full), ("cross-frame knocked out", ko)):
                rows.append({"sample_id": f"object_count/{v:02d}", "word": word, "condition": condition,
                             "version": "asked" if word == "begins" else "swapped", "word_tokens": 1,
                             "first_half_share": 0.5 + f * (share - 0.5)})
    return pd.DataFrame(rows)


def test_figure5_claims_on_the_same_video():
    t = word_rows({"begins": (0.8, 0.35), "ends": (0.3, 0.25)})  # gap 0.5 -> 0.1
    a, b = I.temporal_word_claim(t), I.knockout_alignment_claim(t)
    assert a.holds is True and b.holds is True and a.n == b.n == 12
    assert "0.50 [0.50, 0.50] > 0 (n=12)" in a.interval and "0.40 [0.40, 0.40] > 0" in b.interval
    assert a.measured == "videos asked both ways: 12; gap 0.50; begins 1, ends 1 token(s)"
    assert a.stability == "halves: inconclusive / inconclusive"  # 6 videos per half: below the minimum
    swapped = t.assign(word=t.word.map({"begins": "ends", "ends": "begins"}))
    assert I.temporal_word_claim(swapped).holds is False
    assert I.temporal_word_claim(t[t.word == "begins"]).verdict == "not measured"  # no video asked both ways
    assert I.temporal_word_claim(word_rows({"begins": (0.8, 0.3), "ends": (0.3, 0.3)}, videos=6)).verdict == \
        "inconclusive"
    widened = word_rows({"begins": (0.8, 0.9), "ends": (0.3, 0.3)})  # the gap grows under the knockout
    assert I.knockout_alignment_claim(widened).holds is False
    # the gap is +0.5 on every other video, -0.5 on the rest: mean 0 over 24 videos
    mixed = word_rows({"begins": (0.8, 0.5), "ends": (0.3, 0.5)}, videos=24, factors=(1, -1))
    assert I.temporal_word_claim(mixed).verdict == "inconclusive"
    assert I.temporal_word_claim(word_rows({"begins": (0.8, 0.5), "ends": (0.3, 0.5)}, videos=24)).stability == \
        "halves: holds / holds"


def test_figure5_positional_bias():
    # second-half shares: full attention 1 - (0.6 + 0.4) / 2 = 0.5, knocked out 1 - (0.2 + 0.2) / 2 = 0.8
    t = word_rows({"begins": (0.6, 0.2), "ends": (0.4, 0.2)}, videos=24)
    c = I.positional_bias_claim(t)
    assert c.holds is True and c.n == 24 and c.stability == "halves: holds / holds"
    assert c.interval == ("second-half share, knocked out 0.80 [0.80, 0.80] > 0.5 (n=24); second-half share, "
                          "knocked out minus full attention 0.30 [0.30, 0.30] > 0 (n=24)")
    early = word_rows({"begins": (0.6, 0.8), "ends": (0.4, 0.8)}, videos=24)  # knocked out: the first frames
    assert I.positional_bias_claim(early).holds is False
    # knocked out 0.8 or 0.2 second-half share on alternate videos: mean 0.5 straddles the bar
    spread = word_rows({"begins": (0.5, 0.2), "ends": (0.5, 0.2)}, videos=24, factors=(1, -1))
    assert I.positional_bias_claim(spread).verdict == "inconclusive"


class SplittingTokenizer:
    """Decodes ids of a fixed vocabulary of pieces ("▁" starts a word), as a sub-word tokenizer does."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids).replace("▁", " ").lstrip()


def test_word_positions_take_every_sub_token():
    pieces = ["▁when", "▁the", "▁video", "▁beg", "ins", "?", "▁friends", "▁ends"]
    tok = SplittingTokenizer(pieces)
    ids = list(range(len(pieces)))
    assert I.word_token_positions(tok, ids, range(6), ["begins", "ends"]) == {"begins": [3, 4]}
    # "ends" inside "friends" is no temporal word; the whole word at the end is one token
    assert I.word_token_positions(tok, ids, [6, 7], ["ends"]) == {"ends": [7]}
    rows = word_rows({"begins": (0.8, 0.5), "ends": (0.3, 0.5)}).assign(word_tokens=lambda t: t.word.map(
        {"begins": 2, "ends": 1}))
    assert I.word_tokens_text(rows) == "begins 2, ends 1 token(s); a word of several sub-tokens: attention summed " \
                                       "over them"


def test_the_temporal_words_are_one_token_of_the_toy_tokenizer(tiny, samples):
    counting = next(s for s in samples if s.task == "object_count")
    p = tiny.prepare_sample(counting, 4)
    (word, positions), = I.word_positions(tiny, p).items()
    assert len(positions) == 1 and word in counting.question
    for w in ("begins", "ends"):
        assert len(tiny.tokenizer(" " + w, add_special_tokens=False).input_ids) == 1


def test_swapped_question_is_the_same_video_with_the_other_word():
    from flowutils.data import synthetic

    s = next(synthetic.generate("object_count", 1, seed=0, split="test"))
    swapped = synthetic.swap_temporal_word(s.question)
    word = s.meta["phase"]
    other = synthetic.TEMPORAL_SWAP[word]
    assert swapped == synthetic.QUESTIONS["object_count"].format(color=s.meta["color"], phase=other)
    assert synthetic.swap_temporal_word(swapped) == s.question
    assert synthetic.swap_temporal_word("What did the object do first?") is None
    assert synthetic.swap_temporal_word("It begins and ends.") is None  # both words: ambiguous


def test_word_attention_matches_the_attention_rows(tiny, samples):
    """The first-half share and map come from the recorded attention rows of the word's position."""
    from flowutils.analysis.attention_maps import attention_rows

    counting = [s for s in samples if s.task == "object_count"]
    table, maps = I.word_attention(tiny, counting, layers=[1, 2], num_frames=4)
    p = tiny.prepare_sample(counting[0], 4)
    (word, positions), = I.word_positions(tiny, p).items()
    assert word in counting[0].question
    rows = attention_rows(tiny, p, positions)[[1, 2]].mean(dim=(0, 1, 2))  # [n]
    video = rows[[i for f in p.layout.frames for i in f]].reshape(4, -1).numpy()
    m = maps[(p.sample_id, "full attention")]
    assert abs(m - video).max() < 1e-6
    assert abs(table.first_half_share.iloc[0] - video[:2].sum() / video.sum()) < 1e-6


def test_figure6_false_option_rise():
    """The rise: false options->last's second-half mean above 0 (hand-computed: (0 + 12) / 2 = 6 per question)."""
    rise = sweep_table({"false options->last": [0, -3, 0, 12]})
    c = I.false_option_rise_claim(rise)
    assert c.holds is True and c.n == 20 and c.stability == "halves: holds / holds"
    assert c.interval == "false options->last L3-4 6.00 [6.00, 6.00] > 0 (n=20)"
    drop = sweep_table({"false options->last": [0, 0, -10, 0]})  # -5: the answer falls, not rises
    assert I.false_option_rise_claim(drop).holds is False
    either = sweep_table({"false options->last": [0, 0, 10, 0]}, factors=(-1, 1))  # +5 or -5 per question: mean 0
    assert I.false_option_rise_claim(either).verdict == "inconclusive"
    both = rise.assign(logit_diff_change=-rise.relative_change_pct)  # the logit difference falls meanwhile
    assert I.false_option_rise_claim(both).measured == \
        "relative change of p(answer): holds; logit difference: does not hold"


def routes_table(curves_by_task, questions=20, factors=(1,)):
    """``curves_by_task[task] = {flow: per-layer values}``: :func:`sweep_table` of each task, together."""
    return pd.concat([sweep_table(c, task=t, questions=questions, factors=factors) for t, c in curves_by_task.items()])


DIRECT_TASKS = ("action_antonym", "action_sequence", "scene_transition")
INDIRECT_TASKS = ("moving_direction", "object_count")


def test_figure7_timing():
    early = {I.DIRECT: [-20, 0, 0, 0], I.INDIRECT: [-16, 0, 0, 0], I.SECOND_HOP: [0, -8, 0, 0]}
    good = routes_table({t: early for t in DIRECT_TASKS + INDIRECT_TASKS})
    c = I.route_timing_claim(good)
    assert c.holds is True and c.n == 100 and c.stability == "halves: holds / holds"
    # direct route: (-20 + 0) / 2 = -10 over L1-2, 0 over L3-4, pooled over the 4 tasks of that route (80 questions)
    assert "video->true option L1-2 (direct-route tasks) -10.00 [-10.00, -10.00] < -5 (n=80)" in c.interval
    assert "video->non-option question L1-2 minus L3-4 (indirect-route tasks) -8.00 [-8.00, -8.00] < 0 (n=40)" \
        in c.interval
    late = {I.DIRECT: [0, 0, -20, 0], I.INDIRECT: [-16, 0, 0, 0], I.SECOND_HOP: [0, -8, 0, 0]}
    assert I.route_timing_claim(routes_table({t: late for t in DIRECT_TASKS + INDIRECT_TASKS})).holds is False
    # each route is -10 or 0 per question over L1-2 (every other question): mean -5 straddles the threshold
    half = {I.DIRECT: [-20, 0, 0, 0], I.INDIRECT: [-20, 0, 0, 0], I.SECOND_HOP: [0, 0, 0, 0]}
    odd = routes_table({t: half for t in DIRECT_TASKS + INDIRECT_TASKS}, factors=(1, 0))
    assert I.route_timing_claim(odd).verdict == "inconclusive"


def test_figure7_second_hop():
    hop = {I.DIRECT: [-20, 0, 0, 0], I.INDIRECT: [-10, 0, 0, 0], I.SECOND_HOP: [-16, 0, 0, 0]}
    none = {I.DIRECT: [-20, 0, 0, 0], I.INDIRECT: [0, 0, 0, 0], I.SECOND_HOP: [-2, 0, 0, 0]}
    good = routes_table({**{t: none for t in DIRECT_TASKS}, **{t: hop for t in INDIRECT_TASKS}})
    c = I.second_hop_claim(good)
    assert c.holds is True and c.n == 100 and c.stability == "halves: holds / holds"
    # -16 / 2 = -8 on the indirect-route tasks, -2 / 2 = -1 on the others: difference -7
    assert "non-option question->true option L1-2 (indirect-route tasks) -8.00 [-8.00, -8.00] < -5 (n=40)" \
        in c.interval
    assert "indirect-route minus direct-route tasks -7.00 [-7.00, -7.00] < 0 (n=40)" in c.interval
    flipped = routes_table({**{t: hop for t in DIRECT_TASKS}, **{t: none for t in INDIRECT_TASKS}})
    assert I.second_hop_claim(flipped).holds is False
    few = routes_table({**{t: none for t in DIRECT_TASKS}, **{t: hop for t in INDIRECT_TASKS}}, questions=4)
    assert I.second_hop_claim(few).verdict == "inconclusive"  # 8 questions on the indirect-route tasks


def test_figure3_layer_ranges():
    """8 layers, 2-layer intervals (centres at 1/8, 3/8, 5/8, 7/8 of the depth): the paper's L6-20 of 32 (5/32 to
    20/32) holds the intervals L3-4 and L5-6, its L16-25 (15/32 to 25/32) only L5-6."""
    from flowutils.knockout.windows import Protocol

    protocol = Protocol(3, 2, "scaled (test)")
    good = sweep_table({"video->question": [0, 0, -20, -20, -20, -20, 0, 0],
                        "question->last": [0, 0, 0, 0, -20, -20, 0, 0]})
    c = I.layer_ranges_claim(good, protocol)
    assert c.holds is True and c.n == 20 and c.stability == "halves: holds / holds"
    assert c.measured.startswith("video->question effective L3-6 (paper: L3-6, L6-20 of 32, scaled); "
                                 "question->last effective L5-6 (paper: L5-6, L16-25 of 32, scaled)")
    assert "video->question L1-2 (outside the paper's range) 0.00 [0.00, 0.00] > -5 (n=20)" in c.interval
    assert "question->last L5-6 (in the paper's range) -20.00 [-20.00, -20.00] < -5 (n=20)" in c.interval
    late = sweep_table({"video->question": [0, 0, -20, -20, -20, -20, 0, 0],
                        "question->last": [0, 0, 0, 0, -20, -20, -20, -20]})  # question->last also in L7-8
    assert I.layer_ranges_claim(late, protocol).holds is False
    # question->last -10 or 0 per question in L5-6: mean -5 straddles the threshold; the rest as the paper's
    straddle = pd.concat([sweep_table({"video->question": [0, 0, -20, -20, -20, -20, 0, 0]}),
                          sweep_table({"question->last": [0, 0, 0, 0, -10, -10, 0, 0]}, factors=(0, 1))])
    assert I.layer_ranges_claim(straddle, protocol).verdict == "inconclusive"


def test_paper_ranges_scaled_only_off_the_papers_models():
    from flowutils.knockout.windows import paper_range_layers

    assert paper_range_layers(6, 20, 12, scaled=True) == tuple(range(2, 8))  # the toy: L3-8
    assert paper_range_layers(16, 25, 12, scaled=True) == (6, 7, 8)  # L7-9
    assert paper_range_layers(16, 25, 32, scaled=True) == tuple(range(15, 25))  # the paper's own depth: L16-25
    assert paper_range_layers(16, 25, 40, scaled=False) == tuple(range(15, 25))  # 13B: the code reads L16-25


def test_word_attention_asks_the_same_video_both_ways(tiny, samples):
    """swap=True: each question is also measured with its word swapped; the swapped rows are those of the swapped
    question itself, on the same frames."""
    from flowutils.analysis.attention_maps import attention_rows
    from flowutils.data import synthetic

    counting = [s for s in samples if s.task == "object_count"]
    table, maps = I.word_attention(tiny, counting, layers=[1, 2], num_frames=4, swap=True)
    assert sorted(zip(table.version, table.condition)) == sorted(
        [(v, c) for v in ("asked", "swapped") for c in (I.FULL, I.KNOCKED_OUT)])
    assert set(table.word) == {"begins", "ends"} and set(table.word_tokens) == {1}
    sid = counting[0].sample_id
    other = I._with_question(counting[0], synthetic.swap_temporal_word(counting[0].question))
    p = tiny.prepare_sample(other, 4)
    (_, positions), = I.word_positions(tiny, p).items()
    rows = attention_rows(tiny, p, positions)[[1, 2]].mean(dim=(0, 1)).sum(dim=0)
    video = rows[[i for f in p.layout.frames for i in f]].reshape(4, -1).numpy()
    assert abs(maps[(sid, I.FULL, "swapped")] - video).max() < 1e-6
    assert not (maps[(sid, I.FULL)] == maps[(sid, I.FULL, "swapped")]).all()


def test_figure3_layer_ranges_with_another_interval():
    """interval=4 over 8 layers: L1-4 (centre 2/8 of the depth: in L6-20 of 32) and L5-8 (6/8: in L16-25)."""
    t = sweep_table({"video->question": [-20, -20, -20, -20, 0, 0, 0, 0],
                     "question->last": [0, 0, 0, 0, -20, -20, -20, -20]})
    c = I.layer_ranges_claim(t, None, interval=4)
    assert c.holds is True
    assert c.measured.startswith("video->question effective L1-4 (paper: L1-4, L6-20 of 32, scaled); "
                                 "question->last effective L5-8 (paper: L5-8, L16-25 of 32, scaled)")
