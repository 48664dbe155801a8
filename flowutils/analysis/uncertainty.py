"""Uncertainty of the section figures and tables: bootstrap bands over questions, binomial intervals.

A knockout curve is a mean over questions at each layer; its 95% band is the percentile
bootstrap of that mean, resampling *questions* (the same resampled questions at every
layer, so a band is one resampling of the sample, not independent per layer). Accuracies
get the Wilson score interval with their question count.
"""

from __future__ import annotations

import warnings

import numpy as np


def bootstrap_means(values, n_boot: int = 1000, seed: int = 0):
    """``values``: ``[questions, points]`` (NaN allowed) -> the ``[n_boot, points]`` means of ``n_boot``
    resamples of the questions with replacement (the same resampled questions at every point)."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    n = len(values)
    if n == 0:
        raise ValueError("bootstrap over an empty set of questions")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only NaN at a point: NaN there
        return np.nanmean(values[idx], axis=1)


def bootstrap_mean(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """``values``: ``[questions, points]`` (NaN allowed) -> ``(mean, lo, hi)``, each ``[points]``.

    Questions are resampled with replacement ``n_boot`` times; ``lo``/``hi`` are the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the resampled means.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    means = bootstrap_means(values, n_boot, seed)  # [n_boot, points]
    tail = (1 - level) / 2
    return np.nanmean(values, axis=0), np.nanquantile(means, tail, axis=0), np.nanquantile(means, 1 - tail, axis=0)


def curve(table, value: str = "relative_change_pct", by=("flow", "layer"), n_boot: int = 1000, seed: int = 0):
    """Mean of ``value`` per ``by`` group with a 95% bootstrap band over questions.

    ``table``: a sweep table (one row per question x flow x layer). Returns a DataFrame with
    the ``by`` columns, ``mean``, ``lo``, ``hi`` and ``questions``. The resampled questions
    are shared by every layer of a curve (all ``by`` groups but the last).
    """
    import pandas as pd

    if len(table) == 0:
        raise ValueError(f"no rows to average {value!r} over (did every question fall outside the sample mode?)")
    *series, point = by
    out = []
    groups = table.groupby(series, sort=False) if series else [((), table)]
    for key, g in groups:
        wide = g.pivot_table(index="sample_id", columns=point, values=value, aggfunc="mean", sort=True)
        mean, lo, hi = bootstrap_mean(wide.to_numpy(), n_boot, seed)
        key = key if isinstance(key, tuple) else (key,)
        for j, p in enumerate(wide.columns):
            out.append({**dict(zip(series, key)), point: p, "mean": mean[j], "lo": lo[j], "hi": hi[j],
                        "questions": int(wide[p].notna().sum())})
    return pd.DataFrame(out)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion, in percent: ``(lo, hi)``."""
    if n <= 0:
        raise ValueError("an accuracy needs at least one question")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * (centre - half), 100 * (centre + half)


def accuracy(correct) -> dict:
    """``{"accuracy", "lo", "hi", "questions"}`` (percent, Wilson 95%) of a boolean sequence."""
    correct = np.asarray(correct, dtype=bool)
    lo, hi = wilson_interval(int(correct.sum()), len(correct))
    return {"accuracy": 100 * correct.mean(), "lo": lo, "hi": hi, "questions": len(correct)}
