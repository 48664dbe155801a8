"""The "Reproduction status" page: one row per claim of every figure and table of Sections 3.2-3.5.

Built only from the claim tables the section notebooks saved (:func:`flowutils.paper.claims.load_claims`):
nothing measured is typed here. ``ITEMS`` lists the paper's figures and tables with the
finding each one carries and the notebook that reproduces it, so that an item whose
notebook has not been run (or saved no claim for it) shows up as "not run". The "Why the toy differs" section's
sentences (:func:`attention_text`, :func:`single_frame_text`, :func:`saturation_text`) are written from the tables of
:mod:`flowutils.paper.toy_differs` that the page measures.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..paper import answer, pathways, temporal
from ..paper.claims import METRICS, MIN_QUESTIONS, RUN_COLUMNS, VERDICTS, load_claims

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
COLUMNS = ["section", "item", "finding", "paper", "measured", "verdict", "n", "interval", "stability", "model",
           "page"]


def criteria():
    """How the claims are judged: one row per threshold (its value read from the module that applies
    it), and where it comes from: the paper's own number, or this book's reading of the paper's words
    with the paper's numbers that bound it. A DataFrame: criterion, value, used by, source."""
    import pandas as pd

    rel, logit = METRICS["relative_change_pct"][1], METRICS["logit_diff_change"][1]
    t3 = pathways.PAPER_TABLE3
    rows = [
        ("a knockout hurts (relative change of p(answer))", f"mean below {rel:g}%", "Figure 2, Figure 3, Figure 6, Figure 7",
         "the paper: its threshold for a significant probability drop (Table E)"),
        ("a knockout hurts (logit difference, true vs best false option)", f"mean below {logit:g}",
         "Figure 2, Figure 3, Figure 6, Figure 7", "this book: the paper uses probabilities only; -1 logit divides the true option's "
         "odds against the best false option by e (2.7)"),
        ("a verdict", f"holds where the 95% interval (bootstrap over questions) clears the threshold, does not hold "
         f"where it clears it on the other side, inconclusive otherwise or with fewer than {MIN_QUESTIONS} questions",
         ", ".join(item for _, item, _, _ in ITEMS), "this book: the paper reports point estimates"),
        ("early layers, late layers", "per question, the mean over the layers 1 to L/2 (window centres) and over "
         "L/2+1 to L: the flow's mean in its half below the threshold and below its mean in the other half",
         "Figure 2, Figure 3, Figure 6, Figure 7",
         "the paper's \"early-to-middle\" and \"middle-to-late\" layers read as the two halves (interval means, "
         "as Table E reads layer ranges)"),
        ("Table 2: the first-half knockout hurts", f"accuracy drop of at least {-temporal.PAPER_SMALLEST_DROP:g} points "
         "per task", "Table 2", "the paper: \"accuracy drops of at least 18%\" (Sec. 3.2)"),
        ("Table 2: the answers change", f"in every task, of the questions whose open-ended answer names the true "
         f"answer at baseline, the share whose answer changes under the first-half knockout has a 95% Wilson interval "
         f"above {temporal.CHANGED_SHARE:g}%", "Table 2",
         "this book's reading of \"incorrect or even opposite answers\" (the paper shows examples), bounded by its "
         "smallest accuracy drop under the same knockout (18 points)"),
        ("Table B: the second-half knockout is marginal", f"the first half drops accuracy (below 0), the second half "
         f"by at most {-temporal.MARGINAL_DROP:g} points and less than the first (0 against 0 is inconclusive)",
         "Table B",
         f"this book; the paper's second-half drops are at most {-min(temporal.PAPER_TABLE_B_SECOND_HALF.values()):g} points"),
        ("Figure 4: four criteria", "on the official code's lens, 95% bootstrap intervals over questions: (1) each "
         "concept's hit rate per video position and layer above a uniform top-1 token's chance rate; (2) the spatial "
         "keywords' share of the normalised frequency in the very early layers above a flat profile's; (3) the "
         "temporal keywords' share in the middle layers above a flat profile's; (4) the frequency-weighted mean "
         "layer, temporal minus spatial, above 0", "Figure 4",
         "this book's reading of the figure (the paper gives no number); the layer ranges scale with the protocol"),
        ("Figure 5: temporal words attend to their frames", "\"begins\" puts a larger share of its attention on the "
         "first half of the frames than \"ends\" (a); the gap shrinks under cross-frame knockout (b)", "Figure 5",
         "this book's reading of the figure (the paper gives no number)"),
        ("Figure 8: the true option rises where integration ends", "half of its climb is reached within one protocol "
         "interval (5 of 32 layers) of the last layer of video->question's effective range (Table E's rule on the "
         "same model's sweep)", "Figure 8",
         "this book's reading of \"rises sharply ... from around the point where video-to-question flow is completed\""),
        ("Figure 8: no false option leads", f"the best false option never leads by more than {answer.FALSE_LEAD:g}",
         "Figure 8", "this book's reading of the figure (the paper gives no number)"),
        ("Figure 8: the rise is sharp", "10% to 90% of the climb within a quarter of the depth", "Figure 8",
         "this book's reading of the figure (the paper gives no number)"),
        ("Table E: an effective interval", "5 layers on the paper's models (scaled to the depth on the others), mean "
         f"relative change below {pathways.THRESHOLD_PCT:g}%", "Table E", "the paper (Table E)"),
        ("Table 3: the effective pathways retain accuracy", f"drop of at most {pathways.RETAINED_POINTS:g} points",
         "Table 3", f"this book; the paper's drops over four models and two benchmarks are at most 1.0 point "
         f"({t3['full causal attention']:g} -> {t3['effective pathways']:g} for the 7B on TVBench)"),
        ("Table 3: random blocking hurts", f"random accuracy at least {pathways.RANDOM_GAP_POINTS:g} points below the "
         "effective pathways'", "Table 3", "this book; the paper's gaps are 3.6 to 35.0 points (11.1 to 35.0 on "
         "TVBench)"),
        ("Table 3: the effective pathways cut many edges", f"at most {pathways.MAX_KEPT_PCT:g}% of the edges kept",
         "Table 3", "the paper: 37% to 58% kept over its four models"),
    ]
    return pd.DataFrame(rows, columns=["criterion", "value", "used by", "source"])


def belongs_to(claim_item: str, item: str) -> bool:
    """Whether a saved claim's item (e.g. "Figure 2: early layers (logit_diff_change)") is about
    ``item`` ("Figure 2"): the same name, or the name followed by ":" or " (" and a qualifier."""
    return claim_item == item or claim_item.startswith((f"{item}:", f"{item} ("))


def reproduction_status(results_dir: str | Path):
    """DataFrame with ``COLUMNS``: every saved claim, in the order of ``ITEMS`` (claims of items not
    listed there follow their section), and one "not run" row per item without a saved claim."""
    import pandas as pd

    try:
        saved = load_claims(results_dir)
    except FileNotFoundError:
        saved = pd.DataFrame(columns=COLUMNS)
    saved = saved.reindex(columns=list(dict.fromkeys([*saved.columns, *COLUMNS])), fill_value="")
    saved = saved.astype({"section": str})
    rows, used = [], set()
    for section, item, finding, page in ITEMS:
        mine = saved[(saved["section"] == section) & saved["item"].map(lambda s: belongs_to(s, item))]
        if mine.empty:
            rows.append({"section": section, "item": item, "finding": finding, "paper": "", "measured": "",
                         "verdict": "not run", "n": "", "interval": "", "stability": "", "model": "", "page": page})
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


def runs(results_dir: str | Path):
    """One row per saved claims table (page): the run identity it recorded (:data:`flowutils.paper.claims.RUN_COLUMNS`),
    empty where a table predates it."""
    import pandas as pd

    try:
        saved = load_claims(results_dir)
    except FileNotFoundError:
        return pd.DataFrame(columns=["page", *RUN_COLUMNS])
    saved = saved.reindex(columns=list(dict.fromkeys([*saved.columns, *RUN_COLUMNS])), fill_value="")
    return saved.groupby("page", sort=False)[list(RUN_COLUMNS)].first().reset_index()


def mixed_models(run_table) -> list[str]:
    """The distinct (model, weights) pairs of the pages: more than one means the status table mixes runs."""
    pairs = {f"{m} ({str(h)[:12]})" if h else str(m)
             for m, h in zip(run_table["model"], run_table["model_sha256"]) if str(m)}
    return sorted(pairs)


def verdict_counts(table) -> dict[str, int]:
    """Claims per verdict: the three values a measured claim takes (holds, does not hold, inconclusive), then the
    rows that measured nothing (not measured) and the items whose page did not run (not run). Each claim is one
    row (both metrics in it), so each is counted once."""
    counts = table["verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in (*VERDICTS, "not run")}


def toy_framing(results_dir: str | Path) -> str:
    """Markdown: what the verdicts are about, as measured by the pages: the model of the runs with its parameter
    count (their saved run identity), its baseline accuracy over the questions the Answer-generation page loaded
    (its saved table), the benchmark, how a verdict is decided, and what the pages said of the weights (random,
    unverified or not the pinned ones: the verdicts are then not the paper's model's)."""
    import pandas as pd

    r = runs(results_dir)
    models = mixed_models(r) or ["(no saved run)"]
    text = [f"**What these verdicts are about.** Model: {', '.join(models)}"]
    counts = sorted({int(float(c)) for c in r["parameters"] if str(c)})
    if counts:
        text.append("with " + " / ".join(f"{c / 1e6:.2f} M" for c in counts) + " parameters")
    acc = Path(results_dir) / "tables" / "answer_generation_baseline_accuracy.csv"
    if acc.is_file():
        a = pd.read_csv(acc)
        overall = a[a["task"] == "all tasks"]
        if len(overall):
            o = overall.iloc[0]
            text.append(f"; baseline accuracy {o['accuracy']:.1f}% of {int(o['questions'])} questions (95% "
                        f"interval {o['lo']:.1f}-{o['hi']:.1f})")
    benchmarks = sorted({str(b) for b in r["benchmark"] if str(b)})
    if benchmarks:
        text.append(f"; benchmark {', '.join(benchmarks)}")
    text.append(f". A verdict holds only where its 95% interval (bootstrap over questions) clears the criterion, "
                f"does not hold only where it clears it on the other side, and is inconclusive otherwise or with "
                f"fewer than {MIN_QUESTIONS} questions; the stability column recomputes it on two disjoint halves of "
                "the questions.")
    if len(models) > 1:
        text.append(f" **Warning: the pages ran different models ({'; '.join(models)}): their rows do not describe "
                    "one model.**")
    # RANDOM, UNVERIFIED or DIFFERENT weights: a page's cell holds a line per model it loaded; each said once
    for warning in sorted({w for cell in r["weights"] for w in str(cell).splitlines() if w}):
        text.append(f" **{warning}**")
    return " ".join(text).replace(" ;", ";").replace(" .", ".")


# ----------------------------------------------------------------------------- why the toy differs
def _ci(lo: float, hi: float) -> str:
    return f"{max(lo, 0.0):.1f}-{min(hi, 100.0):.1f}"


def attention_text(table) -> str:
    """Markdown: what :func:`flowutils.paper.toy_differs.frame_attention_table` measured, one sentence per query
    group (its attention on the video, the frames that get the most and the least, their ratio)."""
    frames = [c for c in table.columns if c.startswith("frame ")]
    lines = []
    for _, r in table.iterrows():
        top, low = max(frames, key=lambda c: r[c]), min(frames, key=lambda c: r[c])
        lines.append(f"- The {r['query']} gives {r['video']:.1f}% of its attention to the video tokens (mean over "
                     f"layers, heads, its positions and {int(r['questions'])} questions answered correctly), every "
                     f"frame between {r[low]:.1f}% ({low}) and {r[top]:.1f}% ({top}): the most-read frame gets "
                     f"{r[top] / r[low]:.2f} times the least-read one's share.")
    return "\n".join(lines)


def single_frame_wide(table):
    """:func:`flowutils.paper.toy_differs.single_frame_table` as one row per task, one column per condition (the
    full video, each kept frame): accuracy % with its Wilson 95% interval."""
    t = table.assign(cell=[f"{a:.1f} ({_ci(lo, hi)})" for a, lo, hi in zip(table["accuracy"], table["lo"], table["hi"])])
    wide = t.pivot(index="task", columns="kept", values="cell")
    wide = wide.reindex(index=list(dict.fromkeys(t["task"])), columns=list(dict.fromkeys(t["kept"])))
    n = t.groupby("task", sort=False)["questions"].max()
    return wide.assign(questions=n).rename_axis(columns=None).reset_index()


def single_frame_text(table) -> str:
    """Markdown: the full video's accuracy against the best and worst single kept frame, over all tasks and per task."""
    from ..paper.toy_differs import FULL

    lines = []
    for task, g in table.groupby("task", sort=False):
        full, one = g[g["kept"] == FULL].iloc[0], g[g["kept"] != FULL]
        best, worst = one.loc[one["accuracy"].idxmax()], one.loc[one["accuracy"].idxmin()]
        lines.append(f"- {task}: {full['accuracy']:.1f}% ({_ci(full['lo'], full['hi'])}) with the full video; "
                     f"with one frame kept, {worst['accuracy']:.1f}% ({worst['kept']}, {_ci(worst['lo'], worst['hi'])}) "
                     f"to {best['accuracy']:.1f}% ({best['kept']}, {_ci(best['lo'], best['hi'])}), "
                     f"{int(full['questions'])} questions.")
    return "\n".join(lines)


def saturation_text(table, k: int) -> str:
    """Markdown: on the cross-frame sweep (window ``k``), how often the paper's metric stays flat while the logit
    difference moves, and how saturated the baseline probabilities are (:func:`flowutils.paper.toy_differs.saturation_table`)."""
    from ..paper.toy_differs import FLAT_PCT, MOVED_LOGIT, SATURATED_P

    a = table[table["task"] == "all tasks"].iloc[0]
    per_task = "; ".join(f"{r['task']} {r['hidden %']:.1f}%" for _, r in table.iterrows() if r["task"] != "all tasks")
    return (f"- Cross-frame knockout in a window of {k} layers around each layer, {int(a['questions'])} questions "
            f"answered correctly, {int(a['rows'])} rows (question x layer): the relative change of p(answer) stays "
            f"within {FLAT_PCT:g}% in {a['flat %']:.1f}% of the rows.\n"
            f"- In {a['hidden %']:.1f}% of the rows ({int(a['hidden'])}) it stays within {FLAT_PCT:g}% while the logit "
            f"difference (true vs best false option) moves by more than {MOVED_LOGIT:g} logit: per task {per_task}.\n"
            f"- {int(a['saturated'])} of {int(a['questions'])} questions start with p(answer) above {SATURATED_P:g} "
            f"(median {a['median p']:.5f}): at such a probability a change of the margin barely moves p.")
