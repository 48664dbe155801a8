"""Paper-style figures (matplotlib): frame strips, knockout curves with bands, training curves; saving
figures (PNG and SVG) and tables (CSV) under a results folder."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def frame_strips(rows, titles=None, height: float = 1.1):
    """One row of frames per entry of ``rows`` (each ``[time, height, width, 3]`` uint8)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * height, n_rows * height * 1.15), squeeze=False)
    for i, frames in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(frames):
                ax.imshow(np.asarray(frames[j]))
            if j == 0 and titles:
                ax.set_title(titles[i], fontsize=8, loc="left")
    fig.tight_layout(pad=0.2)
    return fig


def training_curves(losses, heldout, tasks, title: str = ""):
    """Loss per training set and held-out accuracy of ``tasks`` over the global step (stages shaded)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    for name, g in losses.groupby("set", sort=False):
        a.plot(g["step"], g["loss"], lw=0.8, label=name)
    a.set_yscale("log")
    a.set_ylabel("training loss")
    for task, g in heldout[heldout.task.isin(tasks)].groupby("task", sort=False):
        b.plot(g["step"], g["accuracy"], marker="o", ms=2, lw=1, label=task)
    b.set_ylabel("held-out accuracy (%)")
    b.set_ylim(0, 102)
    for ax in (a, b):
        ends = losses.groupby("stage", sort=False)["step"].max().tolist()[:-1]
        for x in ends:
            ax.axvline(x, color="gray", lw=0.6, ls="--")
        ax.set_xlabel("step (stages separated by dashed lines)")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def band_curves(curves, ax=None, title: str = "", ylabel: str = "% probability change", label_with=None):
    """Mean per layer with its 95% band, one line per ``flow`` (or per ``label_with`` column).

    ``curves``: the output of :func:`flowutils.analysis.uncertainty.curve` (columns ``layer``
    0-based, ``mean``, ``lo``, ``hi``, ``questions``). Legends give the question count.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    key = label_with or "flow"
    for name, g in curves.groupby(key, sort=False):
        line, = ax.plot(g["layer"] + 1, g["mean"], marker="o", ms=3, label=f"{name} (n={int(g['questions'].max())})")
        ax.fill_between(g["layer"] + 1, g["lo"], g["hi"], color=line.get_color(), alpha=0.2, lw=0)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("layer (window centre, 1-based)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


def save_figure(fig, results_dir, name: str):
    """Save ``fig`` as ``results_dir/figures/<name>.png`` and ``.svg``; returns the PNG path."""
    from pathlib import Path

    folder = Path(results_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.svg", bbox_inches="tight")
    fig.savefig(folder / f"{name}.png", dpi=150, bbox_inches="tight")
    return folder / f"{name}.png"


def save_table(table, results_dir, name: str):
    """Save a DataFrame as ``results_dir/tables/<name>.csv``; returns the path."""
    from pathlib import Path

    folder = Path(results_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / f"{name}.csv", index=False)
    return folder / f"{name}.csv"


def attention_over_frames(frames, maps, titles, eps: float = 5e-5, alpha: float = 0.6):
    """Attention maps drawn over the video frames, one row per map (Figure 5).

    ``frames``: per row ``[time, height, width, 3]`` uint8; ``maps``: per row ``[time, tokens per
    frame]`` attention weights (square token grids). Shown as ``log10(a + eps)`` with each row's own
    min/max (viridis), as the paper does.
    """
    n_rows, n_cols = len(maps), max(len(m) for m in maps)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * 1.2, n_rows * 1.35), squeeze=False)
    for i, (video, m) in enumerate(zip(frames, maps)):
        m = np.log10(np.asarray(m) + eps)
        side = int(round(np.sqrt(m.shape[1])))
        if side * side != m.shape[1]:
            raise ValueError(f"{m.shape[1]} tokens per frame do not form a square grid")
        lo, hi = m.min(), m.max()
        for j in range(n_cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(m):
                h, w = video[j].shape[:2]
                ax.imshow(video[j])
                ax.imshow(m[j].reshape(side, side), cmap="viridis", vmin=lo, vmax=hi, alpha=alpha,
                          extent=(0, w, h, 0), interpolation="nearest")
                if i == 0:
                    ax.set_title(f"frame {j + 1}", fontsize=7)
        axes[i, 0].text(-0.1, 0.5, titles[i], transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig


def interval_heatmap(table_e, ax=None, threshold: float = -5.0, title: str = ""):
    """Table E(b) drawn as a grid: mean % probability change per flow (rows) and layer interval
    (columns), cells below ``threshold`` (effective) outlined. ``table_e``: columns ``flow``,
    ``interval``, ``mean`` (:func:`flowutils.paper.pathways.interval_table`)."""
    wide = table_e.pivot(index="flow", columns="interval", values="mean")
    wide = wide.loc[list(dict.fromkeys(table_e["flow"])), list(dict.fromkeys(table_e["interval"]))]
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.8 * wide.shape[1], 0.6 + 0.45 * wide.shape[0]))
    values = wide.to_numpy(dtype=float)
    bound = max(abs(threshold), np.nanmax(np.abs(values))) if values.size else 1.0
    ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="white" if abs(v) > 0.6 * bound else "black")
        if v < threshold:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.8, ec="black"))
    ax.set_xticks(range(wide.shape[1]), wide.columns, fontsize=7)
    ax.set_yticks(range(wide.shape[0]), wide.index, fontsize=7)
    ax.set_title(title, fontsize=9)
    return ax


def accuracy_bars(table, ax=None, title: str = ""):
    """Accuracy per condition (Table 3) with its 95% interval, or mean +- std over seeds where there
    are several seeds. ``table``: columns ``condition``, ``accuracy``, ``lo``, ``hi``,
    ``std_over_seeds``, ``seeds``, ``questions``, ``kept_pct``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for i, r in enumerate(table.itertuples()):
        if r.seeds > 1:
            err, note = [[r.std_over_seeds], [r.std_over_seeds]], f"+- std, {r.seeds} seeds"
        else:
            err, note = [[r.accuracy - r.lo], [r.hi - r.accuracy]], "95% CI"
        ax.bar(i, r.accuracy, color=f"C{i}", alpha=0.8)
        ax.errorbar(i, r.accuracy, yerr=err, color="black", capsize=4)
        ax.text(i, 2, f"{r.kept_pct:.0f}% edges\n({note})", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(table)), [f"{c}\n(n={q})" for c, q in zip(table["condition"], table["questions"])],
                  fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    return ax
