"""Figure 4's keyword lists, per-layer hit counts (against a plain loop) and frequency rule (hand-made)."""

import pandas as pd
import pytest
import torch

from flowutils.paper import keywords as K
from flowutils.engine import run_baseline


def test_synthetic_keywords_come_from_the_vocabulary():
    kw = K.synthetic_keywords()
    assert {"red", "circle", "beach"} <= set(kw["spatial"])
    assert {"begins", "ends", "grow", "jump", "left", "down"} <= set(kw["temporal"])
    assert not set(kw["spatial"]) & set(kw["temporal"])
    assert not K.STOP_WORDS & set(kw["spatial"] + kw["temporal"])


def hits_table(per_keyword):
    """``per_keyword[(category, keyword)]``: hits per layer."""
    return pd.DataFrame([{"sample_id": "s", "layer": l, "keyword": w, "category": c, "hits": h}
                         for (c, w), hs in per_keyword.items() for l, h in enumerate(hs)])


def test_frequency_bins_normalises_and_drops_rare_keywords():
    hits = hits_table({("spatial", "red"): [6, 2, 0, 0], ("spatial", "blue"): [0, 4, 0, 0],
                       ("spatial", "rare"): [0, 0, 0, 1], ("temporal", "up"): [0, 0, 1, 3]})
    f = K.keyword_frequency(hits, n_layers=4, bin_size=2, min_hits=3).set_index(["category", "bin"])
    # red: [8, 0] -> [1, 0]; blue: [4, 0] -> [1, 0]; rare dropped; mean [1, 0]
    assert f.loc[("spatial", 0), "frequency"] == pytest.approx(1.0)
    assert f.loc[("spatial", 0), "keywords"] == 2
    assert f.loc[("temporal", 1), "frequency"] == pytest.approx(1.0)
    assert f.loc[("temporal", 0), "last_layer"] == 2
    claim = K.spatial_before_temporal_claim(f.reset_index(), "final_norm")
    assert claim.holds
    late_spatial = hits_table({("spatial", "red"): [0, 0, 0, 9], ("temporal", "up"): [9, 0, 0, 0]})
    f2 = K.keyword_frequency(late_spatial, 4, 2, 3)
    assert not K.spatial_before_temporal_claim(f2, "final_norm").holds
    none = K.keyword_frequency(late_spatial, 4, 2, 100)
    assert K.spatial_before_temporal_claim(none, "final_norm").holds is None


def test_keyword_hits_match_a_plain_loop(tiny, samples):
    fm, sample = tiny, samples[0]
    vocab = fm.tokenizer.convert_ids_to_tokens(list(range(10, 40)))
    words = {"spatial": [w for w in vocab[:15] if w.isalpha()], "temporal": [w for w in vocab[15:] if w.isalpha()]}
    hits = K.keyword_hits(fm, [sample], words, variants=("final_norm",), num_frames=4)
    p = fm.prepare_sample(sample, 4)
    base = run_baseline(fm, p)
    for l in range(fm.n_layers):
        h = base.layer_outputs[l][0, p.layout.video]  # [video, d_model]
        top = fm.lm_head(fm.decoder.norm(h)).argmax(-1).tolist()
        for cat, ws in words.items():
            for w in ws:
                ids = K.keyword_token_ids(fm.tokenizer, w)
                expected = sum(t in ids for t in top)
                got = hits[(hits.layer == l) & (hits.keyword == w)].hits
                assert (got.iloc[0] if len(got) else 0) == expected
