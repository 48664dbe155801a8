"""The book's figures and tables: one function per figure or table of a page, drawn at reading size.

Every figure is the width of the book's text column (:data:`TEXT_WIDTH` inches at 100 dpi), with
one panel per task where the paper has one, axis labels in words, the legend outside the panels
(it covers no data) and the layer axis on integers (1-based, as the paper counts). Every table is
a :class:`Table`: HTML without the numeric index, no cell cut short (pandas' own notebook form
cuts a cell at ``display.max_colwidth``, 50 characters, with "..."), and the same whole table as
text for the checked outputs. :func:`save_figure` and :func:`save_table` write them under a
results folder (PNG and SVG, CSV).
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..analysis.uncertainty import accuracy, curve
from ..data.video import read_frames
from ..paper.answer import OPTIONS, layer_means, long_format
from ..paper.claims import METRICS
from ..paper.integration import TEMPORAL_WORDS
from ..paper.pathways import CONDITIONS, EFFECTIVE_FLOWS, PAPER_RANGES, range_label
from ..paper.temporal import PAPER_TABLE_2, PAPER_TABLE_B_SECOND_HALF, task_title

TEXT_WIDTH = 7.0  # inches: the text column of the book's theme (about 690 px of its 750 at matplotlib's 100 dpi)
PANEL_HEIGHT = 2.2  # inches per row of panels
DPI = 100
# the curve metrics' words on an axis (the long words are METRICS')
AXIS_WORDS = {"relative_change_pct": "change of p(answer), %", "logit_diff_change": "change of logit difference",
              "relative_change_gold_pct": "change of p(gold option), %"}
LAYER_WORDS = "layer (centre of the blocked window)"
LENS_WORDS = {"final_norm": "final norm + LM head", "lm_head": "LM head, no final norm",
              "input_embedding": "input embedding matrix, no final norm"}


class Table:
    """A DataFrame as a page shows it: HTML without a numeric index and with every cell whole; its
    text form (what the checked outputs compare) is the whole table too. An index of row numbers
    (unnamed integers) is dropped; any other index becomes the first columns. Floats are rounded to ``digits``."""

    def __init__(self, frame, digits: int = 2, caption: str | None = None, na_rep: str = ""):
        import pandas as pd

        if all(n is None for n in frame.index.names) and pd.api.types.is_integer_dtype(frame.index):
            frame = frame.reset_index(drop=True)  # row numbers
        else:
            frame = frame.rename_axis([n or "" for n in frame.index.names]).reset_index()
        if frame.columns.nlevels == 1:
            frame = frame.rename_axis(columns=None)  # no header row for the columns' name
        self.frame, self.caption, self.na_rep = frame.round(digits), caption, na_rep

    def _repr_html_(self) -> str:
        head = f"<p><em>{html.escape(self.caption)}</em></p>" if self.caption else ""
        return head + self.frame.to_html(index=False, na_rep=self.na_rep, border=0)

    def __repr__(self) -> str:
        head = f"{self.caption}\n" if self.caption else ""
        return head + self.frame.to_string(index=False, na_rep=self.na_rep)


def table(frame, digits: int = 2, caption: str | None = None, na_rep: str = "") -> Table:
    """``frame`` as the book's pages show a table (:class:`Table`); ``na_rep`` stands for missing values."""
    return Table(frame, digits, caption, na_rep)


def _panels(rows: int, cols: int, height: float = PANEL_HEIGHT, **kw):
    fig, axes = plt.subplots(rows, cols, figsize=(TEXT_WIDTH, 0.6 + height * rows), dpi=DPI, squeeze=False,
                             layout="constrained", **kw)
    return fig, axes


def _layer_axis(ax, label: str | None = LAYER_WORDS):
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if label:
        ax.set_xlabel(label)


def _legend_below(fig, axes, title: str):
    """One legend for the whole figure, below its panels (it covers no data)."""
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.suptitle(title, fontsize=10)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center",
                   ncol=min(len(labels), 3), fontsize=8, frameon=False)


def _bands(ax, curves, key: str, colors: dict) -> str:
    """Mean per layer (1-based) with its 95% band, one line per ``key`` value (the legend's label);
    returns the lines' question counts in words, for the panel's title."""
    counts = []
    for name, g in curves.groupby(key, sort=False):
        color = colors.setdefault(name, f"C{len(colors)}")
        ax.plot(g["layer"] + 1, g["mean"], marker="o", ms=3, color=color, label=name)
        ax.fill_between(g["layer"] + 1, g["lo"], g["hi"], color=color, alpha=0.2, lw=0)
        counts.append((name, int(g["questions"].max())))
    if len({n for _, n in counts}) == 1:
        return f"n = {counts[0][1]}"
    return "n = " + ", ".join(f"{n} {name}" for name, n in counts)


def task_curves(sweep, value: str, label_with: str = "flow", seed: int = 0, all_tasks: bool = False):
    """Per task, the mean of ``value`` per ``label_with`` and layer with its 95% bootstrap band
    (:func:`flowutils.analysis.uncertainty.curve`), with a ``task`` column; ``all_tasks``: first the
    curves over every question of every task (task ``"all tasks"``)."""
    import pandas as pd

    groups = ([("all tasks", sweep)] if all_tasks else []) + list(sweep.groupby("task", sort=False))
    return pd.concat([curve(g, value, by=(label_with, "layer"), seed=seed).assign(task=task) for task, g in groups],
                     ignore_index=True)


def knockout_figure(sweep, title: str, label_with: str = "flow", seed: int = 0, all_tasks: bool = False,
                    values=tuple(METRICS)):
    """Knockout curves (Figures 2, 3, 6 and 7 and the selection sweep of Table E): one row of panels
    per task (``all_tasks``: first a row over every task's questions), one column per metric of ``values``
    (by default the paper's metric on the left and the logit difference on the right; ``relative_change_gold_pct``:
    the gold option's probability), one line per ``label_with`` value (flow, or model) with its
    95% bootstrap band over questions and the threshold below which a knockout counts as hurting
    (dashed). Returns ``(figure, {metric: curves})``.
    """
    curves = {value: task_curves(sweep, value, label_with, seed, all_tasks) for value in values}
    tasks = list(dict.fromkeys(curves[values[0]]["task"]))
    fig, axes = _panels(len(tasks), len(values), sharex=True)
    colors = {}
    for col, (value, c) in enumerate(curves.items()):
        for row, task in enumerate(tasks):
            ax = axes[row, col]
            n = _bands(ax, c[c["task"] == task], label_with, colors)
            ax.axhline(0, color="gray", lw=0.8)
            ax.axhline(METRICS.get(value, METRICS["relative_change_pct"])[1], color="gray", lw=0.8, ls="--")
            if col == 0:  # the row's title, over both panels
                ax.set_title(f"{task_title(task)} ({n})", fontsize=9, loc="left")
            ax.set_ylabel(AXIS_WORDS[value], fontsize=8)
            _layer_axis(ax, LAYER_WORDS if row == len(tasks) - 1 else None)
    _legend_below(fig, axes, f"{title}\n(dashed: the threshold of a drop; bands: 95% bootstrap over questions)")
    return fig, curves


def largest_drop_table(sweep, by=("flow",), seed: int = 0) -> Table:
    """Where each knockout curve is lowest: per ``by`` group and curve metric, the layer (1-based) of the
    lowest mean over questions, that mean with its 95% bootstrap band
    (:func:`flowutils.analysis.uncertainty.curve`) and the questions."""
    import pandas as pd

    parts = []
    for value in METRICS:
        c = curve(sweep, value, by=(*by, "layer"), seed=seed)
        low = c.loc[c.groupby(list(by), sort=False)["mean"].idxmin()]
        parts.append(low.assign(metric=AXIS_WORDS[value], layer=low["layer"] + 1))
    out = pd.concat(parts, ignore_index=True).sort_values(list(by), kind="stable", ignore_index=True)
    return table(out.rename(columns={"mean": "lowest mean", "lo": "95% band low", "hi": "95% band high",
                                     "layer": "at layer"})
                 [[*by, "metric", "lowest mean", "95% band low", "95% band high", "at layer", "questions"]])


def figure4(freqs, bin_size: int, questions: int):
    """Figure 4: normalised keyword frequency per bin of layers, one panel per logit-lens variant,
    one line per keyword category. ``freqs``: ``{variant: keyword_frequency table}``."""
    fig, axes = _panels(1, len(freqs), height=2.6, sharey=True)
    for ax, (variant, f) in zip(axes[0], freqs.items()):
        for cat, g in f.groupby("category", sort=False):
            ax.plot((g["first_layer"] + g["last_layer"]) / 2, g["frequency"], marker="o",
                    label=f"{cat} keywords")
        ax.set_title(f"logit lens: {LENS_WORDS.get(variant, variant)}", fontsize=9)
        _layer_axis(ax, f"layer (centre of a bin of {bin_size})")
    axes[0, 0].set_ylabel("normalised frequency")
    _legend_below(fig, axes, f"Figure 4: keyword frequency in the video tokens, {questions} questions")
    return fig


def figure5(samples, shares, maps, num_frames: int, layers):
    """Figure 5: the attention of the temporal words to the video drawn over the frames, with full attention and
    with cross-frame knockout: one video asked about "begins" and about "ends" (the question and its swap, as the
    paper draws it) where the table has one, else the first question asking about each word.
    ``shares``, ``maps``: :func:`flowutils.paper.integration.word_attention`'s output."""
    by_id = {s.sample_id: s for s in samples}
    both = [sid for sid, g in shares.groupby("sample_id", sort=False) if set(g["word"]) >= set(TEMPORAL_WORDS)]
    picks = []  # (sample id, word, map key suffix)
    for word in TEMPORAL_WORDS:
        mine = shares[(shares["word"] == word) & (shares["sample_id"].isin(both[:1]) if both else True)]
        if len(mine):
            version = mine["version"].iloc[0] if "version" in mine.columns else "asked"
            picks.append((mine["sample_id"].iloc[0], word, () if version == "asked" else (version,)))
    rows, frames, titles = [], [], []
    for condition in ("full attention", "cross-frame knocked out"):
        for sid, word, suffix in picks:
            rows.append(maps[(sid, condition, *suffix)])
            frames.append(read_frames(by_id[sid].video_path, num_frames))
            titles.append(f'"{word}"' + (" (swapped)" if suffix else "") + f"\n{condition}")
    layers = list(layers)
    fig = attention_over_frames(frames, rows, titles)
    same = " (one video, asked both ways)" if both else ""
    fig.suptitle(f"Figure 5: attention of the temporal word to the video{same}, layers {layers[0] + 1}-"
                 f"{layers[-1] + 1}", fontsize=10)
    return fig


def word_share_table(shares) -> Table:
    """Figure 5's numbers: per temporal word and condition, the mean share of the word's attention to the video that
    lands on the first half of the frames, over the questions (asked and swapped together), and the word's
    sub-tokens (several: its attention is summed over them)."""
    agg = {"mean": ("first_half_share", "mean"), "count": ("sample_id", "nunique")}
    if "word_tokens" in shares.columns:
        agg["tokens"] = ("word_tokens", "max")
    g = shares.groupby(["word", "condition"]).agg(**agg)
    return table(g.rename(columns={"mean": "share on the first half of the frames", "count": "videos",
                                   "tokens": "sub-tokens of the word"}))


def figure8(table_rows, title: str, seed: int = 0):
    """Figure 8: per task (first row: all tasks), the probability of the true option's and the best
    false option's letters at the last position per layer (left) and their logit difference (right),
    with 95% bootstrap bands over questions. ``table_rows``: :func:`flowutils.paper.answer.answer_table` rows."""
    long = long_format(table_rows)
    panels = [("all tasks", long, table_rows)] + [
        (t, long[long["task"] == t], g) for t, g in table_rows.groupby("task", sort=False)]
    fig, axes = _panels(len(panels), 2, sharex=True)
    colors = {OPTIONS[0]: "C0", OPTIONS[1]: "C1", "true - best false": "C2"}
    for row, (name, lg, g) in enumerate(panels):
        left, right = axes[row]
        n = _bands(left, curve(lg, "probability", by=("option", "layer"), seed=seed), "option", colors)
        diff = curve(g.assign(option="true - best false"), "logit_diff", by=("option", "layer"), seed=seed)
        _bands(right, diff, "option", colors)
        right.axhline(0, color="gray", lw=0.8)
        left.set_ylim(-0.02, 1.02)
        left.set_ylabel("probability", fontsize=8)
        right.set_ylabel("logit difference", fontsize=8)
        left.set_title(f"{task_title(name)} ({n})", fontsize=9, loc="left")  # the row's title, over both panels
        for ax in (left, right):
            _layer_axis(ax, "layer (logit lens at the last position)" if row == len(panels) - 1 else None)
    _legend_below(fig, axes, title)
    return fig


def frame_strips(rows, titles=None):
    """One row of frames per entry of ``rows`` (each ``[time, height, width, 3]`` uint8), the text width."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    side = TEXT_WIDTH / n_cols
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(TEXT_WIDTH, n_rows * side * 1.2), dpi=DPI, squeeze=False)
    for i, frames in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(frames):
                ax.imshow(np.asarray(frames[j]))
            if j == 0 and titles:
                ax.set_title(titles[i], fontsize=9, loc="left")
    fig.tight_layout(pad=0.2)
    return fig


def training_curves(losses, heldout, tasks, title: str = ""):
    """Loss per training set (top) and validation accuracy of ``tasks`` (bottom) over the global step,
    stages separated by dashed lines; legends beside the panels."""
    fig, (a, b) = plt.subplots(2, 1, figsize=(TEXT_WIDTH, 6), dpi=DPI, sharex=True, layout="constrained")
    for name, g in losses.groupby("set", sort=False):
        a.plot(g["step"], g["loss"], lw=0.8, label=name)
    a.set_yscale("log")
    a.set_ylabel("training loss")
    for task, g in heldout[heldout.task.isin(tasks)].groupby("task", sort=False):
        b.plot(g["step"], g["accuracy"], marker="o", ms=2, lw=1, label=task_title(task))
    b.set_ylabel("validation accuracy (%)")
    b.set_ylim(0, 102)
    b.set_xlabel("training step (stages separated by dashed lines)")
    ends = losses.groupby("stage", sort=False)["step"].max().tolist()[:-1]
    for ax, what in ((a, "training set"), (b, "task")):
        for x in ends:
            ax.axvline(x, color="gray", lw=0.6, ls="--")
        ax.legend(title=what, fontsize=7, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title, fontsize=10)
    return fig


def save_figure(fig, results_dir, name: str, tables: dict | None = None) -> None:
    """Save ``fig`` as ``results_dir/figures/<name>.png`` and ``.svg``, and each of ``tables``
    (``{key: DataFrame}``, e.g. a figure's curves) as ``results_dir/tables/<name>_<key>.csv``."""
    folder = Path(results_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.svg", bbox_inches="tight")
    fig.savefig(folder / f"{name}.png", dpi=150, bbox_inches="tight")
    for key, frame in (tables or {}).items():
        save_table(frame, results_dir, f"{name}_{key}")


def save_table(frame, results_dir, name: str) -> None:
    """Save a DataFrame as ``results_dir/tables/<name>.csv``."""
    folder = Path(results_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)


def attention_over_frames(frames, maps, titles, eps: float = 5e-5, alpha: float = 0.6):
    """Attention maps drawn over the video frames, one row per map (Figure 5), the text width.

    ``frames``: per row ``[time, height, width, 3]`` uint8; ``maps``: per row ``[time, tokens per
    frame]`` attention weights (square token grids). Shown as ``log10(a + eps)`` with each row's own
    min/max (viridis), as the paper does.
    """
    n_rows, n_cols = len(maps), max(len(m) for m in maps)
    side = TEXT_WIDTH / (n_cols + 1.2)  # a column's width; the row titles take the rest
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(TEXT_WIDTH, 0.4 + n_rows * side * 1.1), dpi=DPI,
                             squeeze=False)
    for i, (video, m) in enumerate(zip(frames, maps)):
        m = np.log10(np.asarray(m) + eps)
        grid = int(round(np.sqrt(m.shape[1])))
        if grid * grid != m.shape[1]:
            raise ValueError(f"{m.shape[1]} tokens per frame do not form a square grid")
        lo, hi = m.min(), m.max()
        for j in range(n_cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(m):
                h, w = video[j].shape[:2]
                ax.imshow(video[j])
                ax.imshow(m[j].reshape(grid, grid), cmap="viridis", vmin=lo, vmax=hi, alpha=alpha,
                          extent=(0, w, h, 0), interpolation="nearest")
                if i == 0:
                    ax.set_title(f"frame {j + 1}", fontsize=8)
        axes[i, 0].text(-0.1, 0.5, titles[i], transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=1.2 / (n_cols + 1.2), right=0.99, wspace=0.05, hspace=0.1)
    return fig


def interval_heatmap(table_e, threshold: float = -5.0, title: str = ""):
    """Table E(b) drawn as a grid: mean % probability change per flow (rows) and layer interval
    (columns), cells below ``threshold`` (effective) outlined. ``table_e``: columns ``flow``,
    ``interval``, ``mean`` (:func:`flowutils.paper.pathways.interval_table`)."""
    wide = _interval_wide(table_e)
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 0.9 + 0.45 * wide.shape[0]), dpi=DPI, layout="constrained")
    values = wide.to_numpy(dtype=float)
    bound = max(abs(threshold), np.nanmax(np.abs(values))) if values.size else 1.0
    image = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if abs(v) > 0.6 * bound else "black")
        if v < threshold:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.8, ec="black"))
    ax.set_xticks(range(wide.shape[1]), wide.columns, fontsize=8)
    ax.set_yticks(range(wide.shape[0]), wide.index, fontsize=8)
    ax.set_xlabel("layer interval (1-based)")
    fig.colorbar(image, ax=ax, label="mean change of p(answer), %")
    ax.set_title(title, fontsize=9)
    return fig


def _interval_wide(table_e):
    """Table E(b) as flows x intervals, in the table's own order."""
    wide = table_e.pivot(index="flow", columns="interval", values="mean")
    return wide.loc[list(dict.fromkeys(table_e["flow"])), list(dict.fromkeys(table_e["interval"]))]


def effective_ranges_table(effective) -> Table:
    """Table E(a): the effective layers this rule selected per flow, beside the paper's."""
    import pandas as pd

    return table(pd.DataFrame([{"flow": f, "effective layers (this run)": range_label(effective[f]),
                                "paper, LLaVA-NeXT-7B-Video-FT (32 layers)": PAPER_RANGES[f]}
                               for f in EFFECTIVE_FLOWS]))


def accuracy_bars(t3, title: str = ""):
    """Table 3 drawn: accuracy per condition with its 95% interval, or mean +- std over seeds where
    there are several seeds. ``t3``: columns ``condition``, ``accuracy``, ``lo``, ``hi``,
    ``std_over_seeds``, ``seeds``, ``questions``, ``kept_pct`` (:func:`flowutils.paper.pathways.table3`)."""
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH, 3.4), dpi=DPI, layout="constrained")
    for i, r in enumerate(t3.itertuples()):
        if r.seeds > 1:
            err, note = [[r.std_over_seeds], [r.std_over_seeds]], f"+- std, {r.seeds} seeds"
        else:
            # at 0% or 100% the Wilson bound can land a rounding error past the accuracy: never a negative bar
            err, note = [[max(0.0, r.accuracy - r.lo)], [max(0.0, r.hi - r.accuracy)]], "95% CI"
        ax.bar(i, r.accuracy, color=f"C{i}", alpha=0.8)
        ax.errorbar(i, r.accuracy, yerr=err, color="black", capsize=4)
        ax.text(i, 2, f"{r.kept_pct:.0f}% of the edges\n({note})", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(t3)), [f"{c}\n(n={q})" for c, q in zip(t3["condition"], t3["questions"])], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    return fig


def table3_per_task(runs) -> Table:
    """Table 3 per task: accuracy (%) per condition (random blocking: mean over seeds) and questions."""
    per_task = runs.groupby(["task", "condition"], sort=False)["correct"].mean().mul(100).unstack()[list(CONDITIONS)]
    per_task["questions"] = runs.groupby("task", sort=False)["sample_id"].nunique()
    return table(per_task.rename(index=task_title))


def table2(drops) -> Table:
    """Table 2 (first half of the layers) and Table B (second half): accuracy with cross-frame
    attention blocked in one half, beside the paper's drop. ``drops``:
    :func:`flowutils.paper.temporal.accuracy_drop`'s table."""
    paper = [(PAPER_TABLE_2 if h == "first" else PAPER_TABLE_B_SECOND_HALF).get(t) for h, t in zip(drops.half, drops.task)]
    words = {"half": "layers blocked", "accuracy_baseline": "accuracy, full attention (%)",
             "accuracy_knockout": "accuracy, knockout (%)", "knockout_lo": "95% CI low", "knockout_hi": "95% CI high",
             "drop": "drop (points)", "paper_drop": "paper's drop (points)"}
    return table(drops.assign(task=drops.task.map(task_title), paper_drop=paper).rename(columns=words))


def keyword_table(keyword_lists) -> Table:
    """Figure 4's keyword lists: one row per category."""
    import pandas as pd

    return table(pd.DataFrame({"category": list(keyword_lists),
                               "keywords": [", ".join(w) for w in keyword_lists.values()]}))


def figure4_table(freqs) -> Table:
    """Figure 4's numbers: per logit-lens variant, category and bin of layers, the normalised
    frequency and the keywords kept."""
    import pandas as pd

    rows = pd.concat([f.assign(lens=variant) for variant, f in freqs.items()], ignore_index=True)
    return table(rows[["lens", "category", "first_layer", "last_layer", "frequency", "keywords"]].rename(
        columns={"first_layer": "first layer", "last_layer": "last layer", "frequency": "normalised frequency",
                 "keywords": "keywords kept"}))


def baseline_accuracy_table(every, analysed) -> Table:
    """Baseline accuracy per task and over all tasks (Wilson 95% interval) of the loaded questions,
    and how many of them the curves analyse. ``every``: :func:`flowutils.paper.answer.answer_table`
    rows of every question; ``analysed``: the rows of the sample mode's questions."""
    import pandas as pd

    baseline = every.groupby(["task", "sample_id"], sort=False)["correct_baseline"].first().reset_index()
    groups = [(t, g, analysed[analysed["task"] == t]) for t, g in baseline.groupby("task", sort=False)]
    groups.append(("all tasks", baseline, analysed))
    return table(pd.DataFrame([{"task": task_title(t), **accuracy(g["correct_baseline"]),
                                "analysed": int(a["sample_id"].nunique())} for t, g, a in groups]))


def layer_means_table(analysed) -> Table:
    """Figure 8's numbers: per layer (1-based), the mean probability of the true option's letter and of
    the best false option's letter, and the mean logit difference, over the analysed questions."""
    means = layer_means(analysed).join(analysed.groupby("layer")["logit_diff"].mean())
    means.index = means.index + 1
    means.index.name = "layer"
    return table(means.rename(columns={"p_true": "p(true option)", "p_false": "p(best false option)",
                                       "logit_diff": "logit difference"}))


def questions_table(samples) -> Table:
    """One row per question: its task, the question, its options lettered (A), (B), ..., and the answer's letter."""
    import pandas as pd

    return table(pd.DataFrame([{"task": task_title(s.task), "question": s.question,
                                "options": "; ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(s.candidates)),
                                "answer": s.answer_letter} for s in samples]))


def table_e(table_e_rows, caption: str | None = None) -> Table:
    """Table E(b)'s numbers: per flow and layer interval, the mean change of p(answer) and the questions."""
    return table(table_e_rows.drop(columns=["layers"], errors="ignore").rename(
        columns={"interval": "layer interval", "mean": "mean change of p(answer), %"}), caption=caption)


def table3(t3) -> Table:
    """Table 3 (:func:`flowutils.paper.pathways.table3`) with its columns in words."""
    return table(t3.rename(columns={"edges": "edges kept (mean per question)", "kept_pct": "kept (%)",
                                    "edges_blocked": "edges blocked (mean per question)",
                                    "accuracy": "accuracy (%)", "std_over_seeds": "std over seeds",
                                    "lo": "95% CI low", "hi": "95% CI high", "logit_diff": "mean logit difference"}))


# ----------------------------------------------------------------------------- appendix pages
CATEGORY_COLORS = ("#d9d9d9", "#1f77b4", "#ff7f0e")  # other, spatial, temporal (flowutils.paper.appendix.CATEGORY_CODES)


def lens_map_figure(frames, codes, layers, titles):
    """Figure T: per question and layer of ``layers`` (0-based; one row each), the logit-lens category of every
    video token over its frames. ``frames``: per question ``[time, height, width, 3]`` uint8; ``codes``: per question
    ``[layer, frame, token]`` (:func:`flowutils.paper.appendix.code_array`): grey other, blue spatial, orange temporal,
    drawn over the frames (a square token grid per frame, the frames side by side)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    layers = list(layers)
    n_frames = max(c.shape[1] for c in codes)
    fig, axes = _panels(len(codes) * len(layers), 1, height=TEXT_WIDTH / n_frames * 0.9)
    cmap = ListedColormap(CATEGORY_COLORS)
    for i, (video, c) in enumerate(zip(frames, codes)):
        n_frames, per = c.shape[1], c.shape[2]
        grid = int(round(np.sqrt(per)))
        if grid * grid != per:
            raise ValueError(f"{per} tokens per frame do not form a square grid")
        strip = np.concatenate([video[f] for f in range(n_frames)], axis=1)
        h, w = strip.shape[:2]
        for j, layer in enumerate(layers):
            ax = axes[i * len(layers) + j, 0]
            tiles = np.concatenate([c[layer, f].reshape(grid, grid) for f in range(n_frames)], axis=1)
            ax.imshow(strip)
            ax.imshow(tiles, cmap=cmap, vmin=0, vmax=2, alpha=0.75, extent=(0, w, h, 0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(f"layer {layer + 1}", fontsize=7)
            if j == 0:
                ax.set_title(titles[i], fontsize=8, loc="left")
    fig.legend([Patch(color=col) for col in CATEGORY_COLORS], ["other", "spatial keyword", "temporal keyword"],
               loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Figure T: logit-lens top-1 token of each video token (frames left to right)", fontsize=10)
    return fig


def category_share_figure(shares, title: str):
    """Figure T's numbers: per layer, the share of the video tokens whose top-1 token is a spatial / temporal
    keyword's. ``shares``: :func:`flowutils.paper.appendix.category_shares`."""
    fig, axes = _panels(1, 1, height=2.4)
    ax = axes[0, 0]
    for k, (cat, g) in enumerate(shares.groupby("category", sort=False)):
        ax.plot(g["layer"] + 1, 100 * g["share"], marker="o", ms=3, color=CATEGORY_COLORS[1 + (cat == "temporal")],
                label=f"{cat} keywords")
    ax.set_ylabel("video tokens, %", fontsize=8)
    _layer_axis(ax, "layer (logit lens on the video tokens)")
    _legend_below(fig, axes, title)
    return fig


def figure_u(samples, maps, words: dict, num_frames: int, layers):
    """Figure U: for the first question of each task with its word, the word's attention to the video over the
    frames, with full attention and with cross-frame knockout. ``maps``: ``{task: word_attention maps}``;
    ``words``: ``{task: query word}``."""
    by_id = {s.sample_id: s for s in samples}
    rows, frames, titles = [], [], []
    for task, m in maps.items():
        ids = list(dict.fromkeys(sid for sid, _ in m))
        if not ids:
            continue
        video = read_frames(by_id[ids[0]].video_path, num_frames)
        for condition in ("full attention", "cross-frame knocked out"):
            rows.append(m[(ids[0], condition)])
            frames.append(video)
            titles.append(f'{task_title(task)}\n"{words[task]}"\n{condition}')
    layers = list(layers)
    fig = attention_over_frames(frames, rows, titles)
    fig.suptitle(f"Figure U: attention of a question word to the video, layers {layers[0] + 1}-{layers[-1] + 1}",
                 fontsize=10)
    return fig


def failure_curves(sweep, split, title: str):
    """F.3 (Figure AJ): each failure's change of its predicted (wrong) answer per layer under a knockout, coloured by
    its pattern (:func:`flowutils.paper.appendix.failure_split`): decreases green, increases pink, unchanged grey."""
    colors = {"decreases": "tab:green", "increases": "tab:pink", "unchanged": "0.6"}
    pattern = split.set_index("sample_id")["pattern"]
    fig, axes = _panels(1, 1, height=2.6)
    ax = axes[0, 0]
    seen = set()
    for sid, g in sweep.groupby("sample_id", sort=False):
        p = pattern.get(sid, "unchanged")
        ax.plot(g["layer"] + 1, g["relative_change_pct"], color=colors[p], lw=1, alpha=0.8,
                label=None if p in seen else f"{p} ({int((pattern == p).sum())})")
        seen.add(p)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_ylabel(AXIS_WORDS["relative_change_pct"], fontsize=8)
    _layer_axis(ax)
    _legend_below(fig, axes, title)
    return fig


def figure_s(table, title: str, seed: int = 0):
    """Figure S: per flow (one panel each), the relative change of the anchor token's probability per layer, one line
    per anchor stage with its 95% bootstrap band over questions. ``table``:
    :func:`flowutils.paper.multi_token.anchor_sweep` rows."""
    flows = list(dict.fromkeys(table["flow"]))
    cols = 2
    fig, axes = _panels(-(-len(flows) // cols), cols, sharex=True)
    colors = {}
    for ax, flow in zip(axes.ravel(), flows):
        g = table[table["flow"] == flow].assign(stage=lambda t: "anchor " + t["stage"].astype(str))
        n = _bands(ax, curve(g, "relative_change_pct", by=("stage", "layer"), seed=seed), "stage", colors)
        ax.axhline(0, color="gray", lw=0.8)
        ax.axhline(METRICS["relative_change_pct"][1], color="gray", lw=0.8, ls="--")
        ax.set_title(f"{flow} ({n})", fontsize=9, loc="left")
        ax.set_ylabel("change of p(anchor), %", fontsize=8)
        _layer_axis(ax)
    for ax in axes.ravel()[len(flows):]:
        ax.axis("off")
    _legend_below(fig, axes, title)
    return fig


def figure_v(acc, title: str):
    """Figure V: accuracy change (points) when cross-frame attention is blocked from the first layer up to layer l
    (green) and from layer l to the last (pink), with Wilson 95% bands. ``acc``:
    :func:`flowutils.paper.appendix.progressive_accuracy`."""
    fig, axes = _panels(1, 1, height=2.6)
    ax = axes[0, 0]
    words = {"bottom_up": ("blocked in layers 1 to l", "tab:green"), "top_down": ("blocked in layers l to L", "tab:pink")}
    for style, g in acc.groupby("style", sort=False):
        label, color = words.get(style, (style, None))
        base = g["accuracy"] - g["change"]
        ax.plot(g["layer"] + 1, g["change"], marker="o", ms=3, color=color, label=label)
        ax.fill_between(g["layer"] + 1, g["lo"] - base, g["hi"] - base, color=color, alpha=0.2, lw=0)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_ylabel("accuracy change, points", fontsize=8)
    _layer_axis(ax, "layer l")
    _legend_below(fig, axes, title)
    return fig
