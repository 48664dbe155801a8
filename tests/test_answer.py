"""Sec. 3.4: layerwise answer probability against hooks on the unmodified model; Figure 8's claims
on hand-made tables."""

import numpy as np
import pandas as pd
import pytest
import torch

from flowutils.paper import answer as A


def test_answer_table_matches_hooks_on_the_plain_model(tiny, samples):
    table = A.answer_table(tiny, samples[:3], num_frames=4, progress=False)
    assert len(table) == 3 * tiny.n_layers
    for s in samples[:3]:
        p = tiny.prepare_sample(s, 4)
        outs = []
        hooks = [layer.register_forward_hook(lambda m, a, o: outs.append(o[0] if isinstance(o, tuple) else o))
                 for layer in tiny.decoder.layers]
        try:
            with torch.no_grad():
                final = tiny.model(**p.inputs).logits[0, -1]
                lens = [tiny.lm_head(tiny.decoder.norm(h[0, -1])) for h in outs]
        finally:
            for h in hooks:
                h.remove()
        rows = table[table.sample_id == p.sample_id].sort_values("layer")
        assert torch.allclose(lens[-1], final, atol=1e-4)  # the lens at the last layer is the model's output
        for row, logits in zip(rows.itertuples(), lens):
            probs = logits.softmax(-1)
            letters = [float(probs[i]) for i in p.option_ids]
            false = [v for j, v in enumerate(letters) if j != p.gold_index]
            assert abs(row.p_true - letters[p.gold_index]) < 1e-5 and abs(row.p_false - max(false)) < 1e-5
            lg = [float(logits[i]) for i in p.option_ids]
            assert abs(row.logit_diff - (lg[p.gold_index] - max(v for j, v in enumerate(lg) if j != p.gold_index))) < 1e-4
        assert rows.correct_baseline.iloc[0] == (int(final.argmax()) == p.gold_id)


def test_sample_modes_partition():
    t = pd.DataFrame({"sample_id": list("aabbc"), "correct_baseline": [True, True, False, False, True]})
    by = {m: list(A.select(t, m).sample_id) for m in ("all", "correct", "wrong")}
    assert by == {"all": list("aabbc"), "correct": list("aac"), "wrong": list("bb")}
    with pytest.raises(ValueError, match=r"sample_mode 'right'; valid: \('correct'"):
        A.select(t, "right")


def table(p_true, p_false, questions=12, jitter=()):
    """Hand-made answer table: every question has the given per-layer probabilities; ``jitter[q % len]`` shifts
    question q's true-option curve from its layer index on (``(layer, shift)``)."""
    rows = []
    for q in range(questions):
        at, shift = jitter[q % len(jitter)] if jitter else (0, 0.0)
        rows += [{"sample_id": f"q{q:02d}", "task": "t", "layer": l, "p_true": t + (shift if l >= at else 0.0),
                  "p_false": f, "logit_diff": 0.0} for l, (t, f) in enumerate(zip(p_true, p_false))]
    return pd.DataFrame(rows)


LATE_SHARP = table([0.2] * 8 + [0.3, 0.9, 0.95, 0.99], [0.2] * 8 + [0.2, 0.05, 0.02, 0.0])
EARLY_SHARP = table([0.1, 0.4, 0.7, 0.9] + [0.9] * 8, [0.1] * 12)
GRADUAL = table(np.linspace(0.1, 0.9, 12), np.linspace(0.1, 0.05, 12))
FALSE_FIRST = table([0.1] * 6 + [0.1, 0.1, 0.2, 0.5, 0.9, 0.95], [0.1] * 6 + [0.5, 0.6, 0.5, 0.3, 0.05, 0.0])
FLAT = table([0.3] * 12, [0.3] * 12)
OUTPUT_ONLY = table([0.1] * 11 + [0.9], [0.1] * 12)  # the whole climb at the last layer
END, TOLERANCE = 8, 2  # video->question effective up to 0-based layer 8: the half-climb must lie in layers 7-11 (1-based)


@pytest.mark.parametrize("t, rise, distinct, sharp", [
    (LATE_SHARP, "holds", "holds", "holds"),  # half-climb at 1-based layer 10; 10% -> 90%: layers 9 -> 11
    (EARLY_SHARP, "does not hold", "holds", "holds"),  # half-climb at layer 3
    (GRADUAL, "holds", "holds", "does not hold"),  # half of a linear climb at layer 7; 10% -> 90%: 8 layers
    (FALSE_FIRST, "holds", "does not hold", "holds"),
    (FLAT, "inconclusive", "holds", "inconclusive"),  # no climb: zero is not cleared
    (OUTPUT_ONLY, "does not hold", "holds", "holds"),  # layer 12 lies past 8 + 1 + 2
])
def test_figure8_claims_on_hand_made_tables(t, rise, distinct, sharp):
    got = [c.verdict for c in A.answer_claims(t, END, TOLERANCE)]
    assert got == [rise, distinct, sharp]


def test_figure8_claims_uncertain_and_small():
    # half the questions climb at layer 4, half at layer 10 (1-based): the mean's half-climb layer moves with the
    # resample, across the window's lower end (layer 7)
    split = table([0.1] * 12, [0.0] * 12, questions=20, jitter=((3, 0.8), (9, 0.8)))
    assert A.claim_rise_with_integration(split, END, TOLERANCE).verdict == "inconclusive"
    few = table([0.2] * 8 + [0.3, 0.9, 0.95, 0.99], [0.0] * 12, questions=9)
    assert [c.verdict for c in A.answer_claims(few, END, TOLERANCE)] == ["inconclusive"] * 3
    no_end = A.claim_rise_with_integration(LATE_SHARP, None, TOLERANCE)  # nothing to test the rise against
    assert no_end.verdict == "inconclusive" and no_end.stability == "halves: inconclusive / inconclusive"


def test_rise_layer_and_progress_by_hand():
    assert A.rise_layer(LATE_SHARP) == 9  # (0.9 - 0.2) / (0.99 - 0.2) = 0.89 >= 0.5 at 0-based layer 9
    assert A.rise_layer(FLAT) is None
    share = A.progress(GRADUAL)
    assert share[0] == 0 and share[-1] == 1
    c = A.claim_rise_with_integration(LATE_SHARP, END, TOLERANCE)
    assert "half-climb layer 10.00 [10.00, 10.00] > 6.5" in c.interval and c.n == 12
    assert c.stability == "halves: inconclusive / inconclusive"  # 6 questions a half
    assert A.claim_distinct(table([], [])).holds is None


def test_integration_end_reads_the_video_question_intervals():
    rows = [{"flow": "video->question", "sample_id": f"q{q}", "layer": l,
             "relative_change_pct": -20.0 if l in (2, 3, 4, 5) else 0.0} for q in range(3) for l in range(12)]
    # intervals of 3: L1-3 mean -6.7, L4-6 -20, L7-9 0, L10-12 0 -> effective up to 0-based layer 5
    assert A.integration_end(pd.DataFrame(rows), 12, 3) == 5
    assert A.integration_end(pd.DataFrame(rows).assign(relative_change_pct=0.0), 12, 3) is None


def test_long_format_pairs_every_row():
    long = A.long_format(LATE_SHARP)
    assert len(long) == 2 * len(LATE_SHARP) and set(long.option) == set(A.OPTIONS)
    true = long[long.option == A.OPTIONS[0]].probability.to_numpy()
    assert np.array_equal(true, LATE_SHARP.p_true.to_numpy())
