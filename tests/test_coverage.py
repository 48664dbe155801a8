"""The coverage table of the Reproduction status page: every figure and table of the main text and Appendices A-F."""

import string
from pathlib import Path

from flowutils.book import coverage

ROOT = Path(__file__).resolve().parents[1]


def test_every_figure_and_table_is_listed_once():
    letters = list(string.ascii_uppercase) + [f"A{c}" for c in "ABCDEFGHIJKL"]  # A..Z, AA..AL
    expected = {f"Figure {i}" for i in range(1, 9)} | {f"Table {i}" for i in range(1, 4)}
    expected |= {f"Figure {c}" for c in letters} | {f"Table {c}" for c in "ABCDE"}
    items = [row[1] for row in coverage.COVERAGE]
    assert len(items) == len(set(items))
    assert set(items) == expected


def test_pages_exist_and_are_in_the_book():
    table = coverage.coverage_table(ROOT / "book" / "_toc.yml")
    for page in set(table.page) - {""}:
        assert (ROOT / "notebooks" / f"{page}.ipynb").is_file(), page
    assert not table.status.str.contains("missing").any()
    assert (table[table.page == ""].status.isin([coverage.REAL, coverage.NOT_BUILT, coverage.SCHEMATIC])).all()
    assert table.set_index("item").loc["Figure P", "page"] == "appendix_open_ended"
    assert table.set_index("item").loc["Figure S", "page"] == "appendix_multi_token"
    assert table.set_index("item").loc["Figure K", "status"] == coverage.REAL


def test_a_page_missing_from_the_toc_is_marked(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: intro\nchapters:\n  - file: data\n  - file: temporal_interaction\n")
    assert coverage.toc_pages(toc) == {"intro", "data", "temporal_interaction"}
    table = coverage.coverage_table(toc).set_index("item")
    assert table.loc["Figure 2", "status"] == "on the toy models"
    assert table.loc["Figure 3", "status"] == "page missing from the book"
