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


def test_a_keyword_is_its_first_sub_token_decoded_as_the_official_code_decodes_it():
    """SentencePiece: "bag" is "▁bag"; the official code compares decoded texts, so "▁bag" and a word-inner "bag"
    count and "▁Bag", "Bag", "▁bags" do not (the capitalised form is not added)."""
    from test_layout import _sentencepiece_tokenizer

    tok = _sentencepiece_tokenizer("put the bag on the table. Bag of the handbag. a handbag, the bag, Bag, "
                                   "tablebag handbag bags")
    v = tok.get_vocab()
    assert {"▁bag", "bag", "▁Bag", "Bag", "▁bags"} <= set(v)
    assert sorted(K.keyword_token_ids(tok, "bag")) == sorted([v["▁bag"], v["bag"]])
    assert sorted(K.keyword_token_ids(tok, "Bag")) == sorted([v["▁bag"], v["bag"]])  # keywords are lower case
    chance = K.chance_rates(tok, {"spatial": ["bag", "table"], "temporal": ["put"]})
    assert chance["spatial"] == pytest.approx(len(set(K.keyword_token_ids(tok, "bag") +
                                                      K.keyword_token_ids(tok, "table"))) / len(tok))


def test_figure4_on_tvbench_is_table_d_and_action_sequence():
    assert K.figure4_choice("tvbench") == ("table_d", "action_sequence")
    assert K.figure4_choice("synthetic") == ("synthetic", None)
    assert K.figure4_choice("tomato") == ("table_d", None)
    assert K.figure4_choice("tvbench", "synthetic", "object_count") == ("synthetic", "object_count")
    with pytest.raises(ValueError, match="keywords='tabled'"):
        K.figure4_choice("tvbench", "tabled")


def figure4_hits(questions, layers_of, n_layers=32, per_layer=lambda q: 10, positions=100):
    """Hand-made keyword_hits rows: question ``q`` has ``per_layer(q)`` hits of each keyword in ``layers_of(q, category)``
    (1-based layers), for lenses ``input_embedding`` and ``final_norm`` alike, ``positions`` video positions."""
    rows = []
    for variant in ("input_embedding", "final_norm"):
        for q in range(questions):
            for cat, words in (("spatial", ("bag", "cup")), ("temporal", ("put", "open"))):
                for w in words:
                    rows += [{"variant": variant, "sample_id": f"q{q}", "task": "action_sequence", "layer": l,
                              "keyword": w, "category": cat, "positions": positions,
                              "hits": per_layer(q) if l + 1 in layers_of(q, cat) else 0} for l in range(n_layers)]
    return pd.DataFrame(rows)


EARLY, MIDDLE, LATE = range(1, 6), range(16, 21), range(26, 31)  # bins L1-5, L16-20, L26-30 of 32
CHANCE = {"spatial": 0.01, "temporal": 0.01}


def verdicts(hits, chance=CHANCE, min_hits=1):
    return [c.holds for c in K.figure4_claims(hits, chance, 32, 5, min_hits, n_boot=400)]


def test_figure4_ranges_are_the_papers_words_in_layers():
    assert K.layer_range(32, K.VERY_EARLY) == (1, 8) and K.layer_range(32, K.MIDDLE) == (12, 21)
    assert K.layer_range(40, K.VERY_EARLY) == (1, 10) and K.layer_range(40, K.MIDDLE) == (14, 27)
    stats = K.figure4_statistics(figure4_hits(10, lambda q, c: EARLY if c == "spatial" else MIDDLE)
                                 .query("variant == 'final_norm'"), 32, 5, 1, n_boot=50)
    # bins (centres 3, 8, 13, 18, 23, 28, 31.5): very early L1-8 holds 2 of 7, the middle L12-21 2 of 7
    assert stats["flat"] == {"very_early": pytest.approx(2 / 7), "middle": pytest.approx(2 / 7)}
    # 2 keywords x 5 layers x 10 hits per question, over 100 positions x 32 layers: 100 / 3200
    assert stats["rate:spatial"][0] == pytest.approx(100 / 3200)
    assert stats["very_early:spatial"][0] == pytest.approx(1) and stats["middle:temporal"][0] == pytest.approx(1)
    assert stats["gap"][0] == pytest.approx(18 - 3) and stats["questions"] == 10


def test_figure4_claims_hold():
    """Spatial hits in L1-5, temporal in L16-20, every question: all four hold."""
    assert verdicts(figure4_hits(12, lambda q, c: EARLY if c == "spatial" else MIDDLE)) == [True] * 4


def test_figure4_claims_carry_n_interval_and_both_halves():
    """20 questions: each half has 10, the minimum, and every claim holds on both; 12 questions: 6 a half,
    inconclusive on each half though the whole sample decides."""
    found = K.figure4_claims(figure4_hits(20, lambda q, c: EARLY if c == "spatial" else MIDDLE), CHANCE, 32, 5, 1,
                             n_boot=400)
    assert [c.stability for c in found] == ["halves: holds / holds"] * 4 and {c.n for c in found} == {20}
    assert found[3].interval == "15 [15, 15] > 0 layers"  # temporal mean layer 18 minus spatial 3
    small = K.figure4_claims(figure4_hits(12, lambda q, c: EARLY if c == "spatial" else MIDDLE), CHANCE, 32, 5, 1,
                             n_boot=400)
    assert [c.stability for c in small] == ["halves: inconclusive / inconclusive"] * 4


def test_figure4_claims_fail():
    """Spatial hits late (L26-30), temporal early (L1-5): neither range nor the order holds; a chance rate above
    the observed hit rate (100 / 3200 per position and layer) fails the first claim."""
    hits = figure4_hits(12, lambda q, c: LATE if c == "spatial" else EARLY)
    assert verdicts(hits, {"spatial": 0.5, "temporal": 0.5}) == [False] * 4


def test_figure4_claims_are_inconclusive():
    """Too few questions: every claim inconclusive. Questions that disagree: spatial early (L1-5) in 5 of 12 and late
    in 7 (very-early share 5/12 against the flat 2/7), temporal in the middle in 4, late in 5 and early in 3 (middle
    share 4/12 against 2/7; mean layers 17.6 and 18.4), 1 or 2 hits per layer (rate 1.5 x 10 / 3200 on average, the
    chance rate given): every interval straddles its bar."""
    few = figure4_hits(K.MIN_QUESTIONS - 1, lambda q, c: EARLY if c == "spatial" else MIDDLE)
    assert verdicts(few) == [None] * 4
    mixed = figure4_hits(12, lambda q, c: (EARLY if q < 5 else LATE) if c == "spatial" else
                         (MIDDLE if q < 4 else LATE if q < 9 else EARLY), per_layer=lambda q: 1 + q % 2)
    rate = 1.5 * 10 / 3200
    stats = K.figure4_statistics(mixed[mixed.variant == "input_embedding"], 32, 5, 1, n_boot=400)
    assert stats["very_early:spatial"][0] == pytest.approx(5 / 12, abs=0.05)
    assert stats["rate:spatial"][1] < rate < stats["rate:spatial"][2]
    assert verdicts(mixed, {"spatial": rate, "temporal": rate}) == [None] * 4


def test_keyword_hits_match_a_plain_loop(tiny, samples):
    fm, sample = tiny, samples[0]
    vocab = fm.tokenizer.convert_ids_to_tokens(list(range(10, 40)))
    words = {"spatial": [w for w in vocab[:15] if w.isalpha()], "temporal": [w for w in vocab[15:] if w.isalpha()]}
    hits = K.keyword_hits(fm, [sample], words, variants=("final_norm",), num_frames=4, sample_mode="all")
    assert len(hits) and set(hits.positions) == {len(fm.prepare_sample(sample, 4).layout.video)}
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
