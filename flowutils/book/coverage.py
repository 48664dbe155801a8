"""Which book page reproduces each figure and table of the paper's main text and Appendices A-F.

:data:`COVERAGE` lists every figure and table (Figure 1-8, Tables 1-3; Figures A-AL, Tables A-E) with the
page that measures it on the toy models, or why none does: the figures of Appendices A and B are the
section analyses on the paper's other checkpoints (LLaVA-NeXT-13B-Video-FT, Mini-InternVL-4B-Video-FT,
VideoLLaMA3-7B), which the section pages run unchanged given those weights (``model=...``); Figure 1 is
a schematic. :func:`coverage_table` is the table the Reproduction status page shows; it marks a page
that is missing from the book's table of contents.
"""

from __future__ import annotations

from pathlib import Path

REAL = "needs real weights"
NOT_BUILT = "not built yet"
SCHEMATIC = "schematic (no measurement)"

# (part of the paper, item, what it shows, page that measures it or None, note)
COVERAGE = (
    ("main", "Figure 1", "summary of the findings", None, SCHEMATIC),
    ("main", "Table 1", "the five TVBench tasks", "data", ""),
    ("main", "Figure 2", "cross-frame knockout, VideoLLM vs ImageLLM", "temporal_interaction", ""),
    ("main", "Table 2", "accuracy without cross-frame attention in the first half", "temporal_interaction", ""),
    ("main", "Figure 3", "video, question, last -> question, last", "video_language_integration", ""),
    ("main", "Figure 4", "logit-lens keywords in the video tokens", "video_language_integration", ""),
    ("main", "Figure 5", "temporal words' attention to the video", "video_language_integration", ""),
    ("main", "Figure 6", "question parts -> last", "video_language_integration", ""),
    ("main", "Figure 7", "paths into the true option", "video_language_integration", ""),
    ("main", "Figure 8", "layerwise answer probability", "answer_generation", ""),
    ("main", "Table 3", "effective pathways vs random blocking", "effective_pathways", ""),
    *(("A", f"Figure {c}", f"LLaVA-NeXT-13B-Video-FT: {w}", None, REAL) for c, w in zip(
        "ABCDE", ("cross-frame knockout", "video, question, last", "question parts -> last", "paths into the true "
                  "option", "layerwise answer probability"))),
    *(("B", f"Figure {c}", f"{m}: {w}", None, REAL) for m, letters in (("Mini-InternVL-4B-Video-FT", "FGHIJ"),
                                                                         ("VideoLLaMA3-7B", "KLMNO"))
      for c, w in zip(letters, ("cross-frame knockout", "video, question, last", "question parts -> last",
                                "paths into the true option", "layerwise answer probability"))),
    ("C.1", "Figure P", "open-ended: cross-frame knockout", "appendix_open_ended", ""),
    ("C.1", "Figure Q", "open-ended: video, non-option question, last", "appendix_open_ended", ""),
    ("C.1", "Figure R", "open-ended: layerwise ground-truth probability", "appendix_open_ended", ""),
    ("C.2", "Figure S", "multi-token generation on VCGBench (verb anchors)", "appendix_multi_token",
     "toy: temporal keywords of the response as anchors; VCGBench with spaCy verbs " + REAL),
    ("D", "Figure T", "logit-lens maps of spatial and temporal concepts", "appendix_lens_attention", ""),
    ("D", "Table D", "keyword lists", "appendix_lens_attention", ""),
    ("E", "Figure U", "attention maps of four more tasks", "appendix_lens_attention", ""),
    ("F.1", "Table A", "effective pathways on long videos", "appendix_long_videos",
     "toy: the long synthetic variant; LongVideoBench with LLaVA-NeXT-7B-Video-FT " + REAL),
    *(("F.2", f"Figure {c}", f"LongVideoBench, VideoLLaMA3-7B, {n} frames", "appendix_long_videos",
       "toy: the long synthetic variant; VideoLLaMA3-7B " + REAL)
      for c, n in (("X", 8), ("Y", 8), ("Z", 8), ("AA", 8), ("AB", 24), ("AC", 24), ("AD", 24), ("AE", 24))),
    *(("F.2", f"Figure {c}", "Video-MME action recognition vs spatial perception", "appendix_long_videos",
       "toy: image tasks as still videos; Video-MME with LLaVA-NeXT-7B-Video-FT " + REAL) for c in ("AF", "AG", "AH", "AI")),
    ("F.3", "Figure AJ", "failures: cross-frame knockout", "appendix_failure_cases", ""),
    ("F.3", "Figure AK", "failures: question parts -> last", "appendix_failure_cases", ""),
    ("F.3", "Figure AL", "failures: paths into the false option", "appendix_failure_cases",
     "toy: video -> question and question -> last on the wrong answer"),
    ("F.4", "Figure V", "signal leakage: top-down and bottom-up windows", "appendix_robustness", ""),
    ("F.5", "Table B", "cross-frame knockout in the second half", "temporal_interaction", ""),
    ("F.6", "Figure W", "window size k", "appendix_robustness", ""),
    ("H", "Table C", "the paper's models", "supported_models", ""),
    ("3.5", "Table E", "effective layer ranges and interval means", "effective_pathways", ""),
)


def toc_pages(toc: str | Path) -> set[str]:
    """The page names (``root:`` and ``file:`` entries) of a Jupyter Book ``_toc.yml``."""
    import yaml

    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    found.add(Path(str(node[key])).stem)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(Path(toc).read_text()))
    return found


def coverage_table(toc: str | Path | None = None):
    """One row per figure and table of :data:`COVERAGE`: part, item, what, page, status. ``status`` is
    "on the toy models" for a page of the book (with ``toc``: "page missing from the book" for a page not in it),
    else the reason none measures it."""
    import pandas as pd

    pages = toc_pages(toc) if toc is not None else None
    rows = []
    for part, item, what, page, note in COVERAGE:
        if page is None:
            status = note
        elif pages is not None and page not in pages:
            status = "page missing from the book"
        else:
            status = "on the toy models" + (f" ({note})" if note else "")
        rows.append({"part": part, "item": item, "what": what, "page": page or "", "status": status})
    return pd.DataFrame(rows, columns=["part", "item", "what", "page", "status"])
