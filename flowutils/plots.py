"""Paper-style figures (matplotlib): frame strips, knockout curves, training curves."""

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


def knockout_curves(summary, value: str = "relative_change_pct", title: str = "", ax=None):
    """Mean relative probability change per window centre (1-based layer), one line per flow.

    ``summary``: a DataFrame with columns ``flow``, ``layer`` (0-based) and ``value``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for flow, g in summary.groupby("flow", sort=False):
        ax.plot(g["layer"] + 1, g[value], marker="o", ms=3, label=flow)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("layer (window centre)")
    ax.set_ylabel("% probability change")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax


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
