"""The "Reproduction status" page: one row per claim of every figure and table of Sections 3.2-3.5.

Built only from the claim tables the section notebooks saved (:func:`flowutils.analysis.claims.load_claims`):
nothing measured is typed here. ``ITEMS`` lists the paper's figures and tables with the
finding each one carries and the notebook that reproduces it, so that an item whose
notebook has not been run (or saved no claim for it) shows up as "not run".
"""

from __future__ import annotations

import html
from pathlib import Path

from .claims import load_claims

# (section, item, the paper's finding, notebook page)
ITEMS = (
    ("3.2", "Figure 2", "cross-frame knockout in the early-to-middle layers lowers the VideoLLM's answer "
     "probability; the ImageLLM is barely affected", "temporal_interaction"),
    ("3.2", "Table 2", "blocking cross-frame attention in the first half of the layers drops accuracy "
     "(at least 18% per task)", "temporal_interaction"),
    ("3.3", "Figure 3", "video -> question in the early-to-middle layers, then question -> last in the "
     "middle-to-late layers; video -> last and last -> last matter little", "video_language_integration"),
    ("3.3", "Figure 4", "temporal keywords emerge in the video tokens' logit lens in the middle layers",
     "video_language_integration"),
    ("3.3", "Figure 5", "temporal words of the question attend to the relevant frames; less so under "
     "cross-frame knockout", "video_language_integration"),
    ("3.3", "Figure 6", "the true option, not the non-option question, feeds the last position",
     "video_language_integration"),
    ("3.3", "Figure 7", "video information reaches the true option through the question", "video_language_integration"),
    ("3.4", "Figure 8", "the true option's probability rises sharply after the middle layers", "answer_generation"),
    ("3.5", "Table E", "effective layers: cross-frame and video -> question early-to-middle, question -> last "
     "middle-to-late", "effective_pathways"),
    ("3.5", "Table 3", "the effective pathways alone keep the accuracy with far fewer edges; random blocking "
     "of as many edges does not", "effective_pathways"),
)
COLUMNS = ["section", "item", "finding", "paper", "measured", "verdict", "page"]


def reproduction_status(results_dir: str | Path):
    """DataFrame with ``COLUMNS``: every saved claim, in the order of ``ITEMS`` (claims of items not
    listed there follow their section), and one "not run" row per item without a saved claim."""
    import pandas as pd

    try:
        saved = load_claims(results_dir)
    except FileNotFoundError:
        saved = pd.DataFrame(columns=COLUMNS)
    saved = saved.astype({"section": str})
    rows, used = [], set()
    for section, item, finding, page in ITEMS:
        mine = saved[(saved["section"] == section) & (saved["item"] == item)]
        if mine.empty:
            rows.append({"section": section, "item": item, "finding": finding, "paper": "", "measured": "",
                         "verdict": "not run", "page": page})
        rows += mine[COLUMNS].to_dict("records")
        used |= set(mine.index)
        if item == [i for s, i, _, _ in ITEMS if s == section][-1]:  # the section's other claims
            extra = saved[(saved["section"] == section) & ~saved.index.isin(used)]
            rows += extra[COLUMNS].to_dict("records")
            used |= set(extra.index)
    rows += saved[~saved.index.isin(used)][COLUMNS].to_dict("records")
    return pd.DataFrame(rows, columns=COLUMNS)


def to_html(table) -> str:
    """The status table as HTML, the page column as a link to the section's page of the book."""
    out = table.copy()
    for c in COLUMNS[:-1]:
        out[c] = out[c].map(lambda v: html.escape(str(v)))
    out["page"] = out["page"].map(lambda p: f'<a href="{html.escape(p)}.html">{html.escape(p)}</a>')
    return out.to_html(escape=False, index=False)
