"""The Reproduction status table: built from saved claim tables; items without a claim say "not run"."""

import pytest

from flowutils.book import status
from flowutils.paper.claims import Claim, claims_table, save_claims


def test_status_rows_from_saved_claims(tmp_path):
    assert set(status.reproduction_status(tmp_path)["verdict"]) == {"not run"}  # nothing saved yet
    save_claims([Claim("3.4", "Figure 8", "rises late", "", "layer 11 of 12", True),
                 Claim("3.4", "Figure 8", "sharp", "", "8 layers", False)], tmp_path, "answer_generation")
    save_claims([Claim("3.2", "Figure 2: early layers (relative_change_pct)", "early", "", "L4", False),
                 Claim("3.2", "Figure 20", "not Figure 2", "", "x", True)], tmp_path, "temporal_interaction")
    save_claims([Claim("3.5", "Table 3", "retained", "51.5 -> 51.2", "100 -> 45", False),
                 Claim("3.5", "Extra", "an item the page list lacks", "", "x", None)], tmp_path, "effective_pathways")
    t = status.reproduction_status(tmp_path)
    fig8 = t[t["item"] == "Figure 8"]
    assert list(fig8["verdict"]) == ["holds", "does not hold"] and set(fig8["page"]) == {"answer_generation"}
    assert t[t["item"] == "Table E"]["verdict"].tolist() == ["not run"]
    assert "Figure 2" not in set(t["item"])  # its qualified claim stands in the item's place, no "not run" row
    items = t["item"].tolist()
    assert items.index("Figure 2: early layers (relative_change_pct)") < items.index("Table 2") < items.index("Figure 20")
    assert t[t["item"] == "Table 3"]["measured"].tolist() == ["100 -> 45"]
    assert t["item"].tolist()[-1] == "Extra" and t["verdict"].tolist()[-1] == "not measured"
    # three items have claims (4 rows), plus the two claims of items the list lacks
    assert len(t) == len(status.ITEMS) - 3 + 4 + 2
    html = status.to_html(t)
    assert '<a href="effective_pathways.html">' in html and "100 -&gt; 45" in html
    assert status.verdict_counts(t) == {"holds": 2, "does not hold": 3, "inconclusive": 0, "not measured": 1,
                                        "not run": len(status.ITEMS) - 3}


def test_status_names_the_model_and_warns_on_mixed_runs(tmp_path):
    run = {"model": "toy-videollm", "model_sha256": "ab" * 32, "parameters": 3_500_000, "benchmark": "synthetic (d)",
           "questions": 240, "protocol": "scaled"}
    save_claims([Claim("3.4", "Figure 8: rise", "rises", "", "x", None, 12, "i", "halves: holds / inconclusive")],
                tmp_path, "answer_generation", run)
    save_claims([Claim("3.5", "Table 3", "retained", "", "x", True, 40)], tmp_path, "effective_pathways", run)
    t = status.reproduction_status(tmp_path)
    row = t[t["item"] == "Figure 8: rise"].iloc[0]
    assert (row["verdict"], row["n"], row["model"], row["stability"]) == \
        ("inconclusive", 12, "toy-videollm", "halves: holds / inconclusive")
    framing = status.toy_framing(tmp_path)
    assert "toy-videollm (abababababab) with 3.50 M parameters" in framing and "Warning" not in framing
    assert list(status.runs(tmp_path)["questions"]) == [240, 240]
    save_claims([Claim("3.2", "Table 2: Object Count", "drops", "", "x", False, 48)], tmp_path,
                "temporal_interaction", {**run, "model": "llava-next-7b-video-ft", "model_sha256": "cd" * 32})
    assert "Warning: the pages ran different models" in status.toy_framing(tmp_path)
    claims_table([Claim("3.3", "Figure 3", "old", "", "x", True, 20)]).to_csv(tmp_path / "claims" / "old.csv",
                                                                             index=False)  # no run identity
    assert status.runs(tmp_path).set_index("page").loc["old", "model"] == ""
    assert "Warning" in status.toy_framing(tmp_path)
    # a page that ran on random weights said so; the status page repeats it over every verdict
    assert "RANDOM WEIGHTS" not in status.toy_framing(tmp_path)
    save_claims([Claim("3.3", "Figure 6", "rises", "", "x", None, 20)], tmp_path, "video_language_integration",
                {**run, "weights": "RANDOM WEIGHTS: x is a random-weight checkpoint"})
    assert "**RANDOM WEIGHTS: x is a random-weight checkpoint**" in status.toy_framing(tmp_path)
    # a page that loaded the ImageLLM base too records a line per model: each warning is said once
    save_claims([Claim("3.2", "Figure 2", "early", "", "x", None, 20)], tmp_path, "temporal_interaction",
                {**run, "weights": "RANDOM WEIGHTS: x is a random-weight checkpoint\nUNVERIFIED WEIGHTS: y"})
    framing = status.toy_framing(tmp_path)
    assert framing.count("RANDOM WEIGHTS") == 1 and "**UNVERIFIED WEIGHTS: y**" in framing
    with pytest.raises(ValueError, match="unknown field"):
        save_claims([], tmp_path, "x", {"seed": 1})


def test_every_item_has_its_criteria_listed():
    table = status.criteria()
    used = {item for items in table["used by"] for item in items.split(", ")}
    assert {item for _, item, _, _ in status.ITEMS} - used == set()
    assert table["source"].str.len().gt(0).all()
