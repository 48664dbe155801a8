"""The Reproduction status table: built from saved claim tables; items without a claim say "not run"."""

from flowutils.book import status
from flowutils.paper.claims import Claim, save_claims


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


def test_every_item_has_its_criteria_listed():
    table = status.criteria()
    used = {item for items in table["used by"] for item in items.split(", ")}
    assert {item for _, item, _, _ in status.ITEMS} - used == set()
    assert table["source"].str.len().gt(0).all()
