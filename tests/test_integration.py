"""Section 3.3 criteria (Figures 3, 5, 6, 7) on hand-made tables whose verdicts are known."""

import pandas as pd

from flowutils.paper import integration as I


def sweep_table(curves, task="action_antonym", questions=2, value="relative_change_pct"):
    """``curves[flow]``: per-layer value, the same for every question."""
    return pd.DataFrame([{"task": task, "flow": f, "sample_id": f"{task}/{q}", "layer": l, value: float(v)}
                         for f, c in curves.items() for q in range(questions) for l, v in enumerate(c)])


def test_figure3_claims():
    good = sweep_table({"video->question": [0, -30, 0, 0], "question->last": [0, 0, -40, 0],
                        "video->last": [-1, 0, 0, 0], "last->last": [0, 0, 0, 0]})
    assert I.video_question_last_claim(good).holds and I.video_last_claim(good).holds
    reversed_order = sweep_table({"video->question": [0, 0, -30, 0], "question->last": [0, -40, 0, 0],
                                  "video->last": [-50, 0, 0, 0]})
    assert not I.video_question_last_claim(reversed_order).holds
    assert not I.video_last_claim(reversed_order).holds


def test_figure6_claim():
    good = sweep_table({"true option->last": [0, 0, -60, 0], "non-option question->last": [0, -2, 0, 0],
                        "false options->last": [0, 0, -10, 0]})
    assert I.true_option_claim(good, 4).holds
    early = sweep_table({"true option->last": [-60, 0, 0, 0], "non-option question->last": [0, -2, 0, 0],
                         "false options->last": [0, 0, -10, 0]})
    assert not I.true_option_claim(early, 4).holds  # largest drop in the first half
    question_flows = sweep_table({"true option->last": [0, 0, -60, 0], "non-option question->last": [0, -20, 0, 0],
                                  "false options->last": [0, 0, -10, 0]})
    assert not I.true_option_claim(question_flows, 4).holds


def test_figure7_routes_per_task():
    t = pd.concat([
        sweep_table({I.DIRECT: [-30, 0], I.INDIRECT: [-6, 0]}, task="action_antonym"),  # direct: holds
        sweep_table({I.DIRECT: [-30, 0], I.INDIRECT: [-6, 0]}, task="moving_direction"),  # paper: indirect
        sweep_table({I.DIRECT: [-30, 0], I.INDIRECT: [-8, 0]}, task="object_count"),  # both below -5: holds
        sweep_table({I.DIRECT: [-30, 0], I.INDIRECT: [-1, 0]}, task="scene_transition")])
    verdicts = {c.item.split(":")[1].split("(")[0].strip(): c.holds for c in I.route_claims(t)}
    assert verdicts == {"Action Antonym": True, "Moving Direction": False, "Object Count": True,
                        "Scene Transition": True}


def test_figure5_claims():
    rows = []
    for word, full, ko in (("begins", 0.8, 0.55), ("ends", 0.3, 0.5)):
        for q in range(2):
            rows += [{"sample_id": f"{word}{q}", "word": word, "condition": "full attention", "first_half_share": full},
                     {"sample_id": f"{word}{q}", "word": word, "condition": "cross-frame knocked out",
                      "first_half_share": ko}]
    t = pd.DataFrame(rows)
    assert I.temporal_word_claim(t).holds and I.knockout_alignment_claim(t).holds
    swapped = t.assign(word=t.word.map({"begins": "ends", "ends": "begins"}))
    assert not I.temporal_word_claim(swapped).holds
    assert I.temporal_word_claim(t[t.word == "begins"]).holds is None


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
