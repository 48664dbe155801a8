"""The paper's claims, checked by code on a run's results.

Each section of the paper states findings ("blocking cross-frame attention in the early
layers hurts the VideoLLM, not in the late layers"). Here each finding is a function of
``flowutils.analysis`` that takes a results table and returns a :class:`Claim`: the
paper's finding and number (where the paper gives one), what this run measured, and
whether the finding holds on it. Notebooks print the claims table; the "Reproduction
status" page is built from the saved tables (:func:`save_claims`, :func:`load_claims`).
Nothing in a claim is typed by hand except the paper's own statement and number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..analysis.uncertainty import bootstrap_means

VERDICTS = ("holds", "does not hold", "inconclusive", "not measured")
# Fewer questions than this behind a comparison: it is inconclusive, whatever its interval.
MIN_QUESTIONS = 10
LEVEL = 0.95  # the intervals the decisions read: 95% percentile bootstrap over questions
DIRECTIONS = ("below", "above")


@dataclass(frozen=True)
class Claim:
    """One finding of the paper, tested on one run."""

    section: str  # "3.2"
    item: str  # "Figure 2", "Table 2"
    finding: str  # the paper's finding, in words
    paper: str  # the paper's number for it ("" where the paper gives none)
    measured: str  # what this run measured, formatted from the numbers it computed
    holds: bool | None  # None: undecided, "inconclusive" where questions were measured, else "not measured"
    n: int | None = None  # questions the verdict rests on
    interval: str = ""  # the 95% interval the decision read, formatted
    stability: str = ""  # the verdict on two disjoint halves of the questions, formatted

    @property
    def verdict(self) -> str:
        if self.holds is not None:
            return VERDICTS[0] if self.holds else VERDICTS[1]
        return VERDICTS[2] if self.n else VERDICTS[3]


def claims_table(claims):
    """A DataFrame of ``claims``: section, item, finding, paper, measured, verdict, n, interval, stability."""
    import pandas as pd

    rows = [{**{k: v for k, v in asdict(c).items() if k != "holds"}, "verdict": c.verdict} for c in claims]
    return pd.DataFrame(rows, columns=["section", "item", "finding", "paper", "measured", "verdict", "n", "interval",
                                       "stability"])


# What a saved claims table records of the run it judged, beside every row (``run`` of :func:`save_claims`).
RUN_COLUMNS = ("model", "model_sha256", "parameters", "benchmark", "questions", "protocol", "weights")


def save_claims(claims, results_dir: str | Path, name: str, run: dict | None = None) -> Path:
    """Write ``claims`` to ``results_dir/claims/<name>.csv`` (read back by :func:`load_claims`), each row with the
    run's identity (``run``: ``{column: value}`` for :data:`RUN_COLUMNS`: the model's name, weights' sha256 and
    parameter count, the benchmark, the questions loaded, the protocol, and what the page said of the weights:
    random, unverified or not the pinned ones; missing ones are left empty)."""
    run = dict(run or {})
    unknown = sorted(set(run) - set(RUN_COLUMNS))
    if unknown:
        raise ValueError(f"run identity has unknown field(s) {unknown}; valid: {list(RUN_COLUMNS)}")
    path = Path(results_dir) / "claims" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    claims_table(claims).assign(**{c: run.get(c, "") for c in RUN_COLUMNS}).to_csv(path, index=False)
    return path


def load_claims(results_dir: str | Path, names=None):
    """Every saved claims table under ``results_dir/claims`` (or those of ``names``), in one DataFrame."""
    import pandas as pd

    folder = Path(results_dir) / "claims"
    paths = [folder / f"{n}.csv" for n in names] if names is not None else sorted(folder.glob("*.csv"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise FileNotFoundError(f"no saved claims table(s) {missing or [str(folder / '*.csv')]}; run the section "
                                "notebooks first (make notebooks)")
    # a table written before a column existed (the run identity) reads it as empty, as a CSV reads an empty cell
    return pd.concat([pd.read_csv(p, keep_default_na=False).assign(page=p.stem) for p in paths],
                     ignore_index=True).fillna("")


# The curve metrics a claim can be tested on: (name in words, the mean below which a knockout
# counts as hurting). -5% is the paper's threshold for a significant drop (Table E); the logit
# difference (true option vs best false option) has no threshold in the paper: -1 logit is ours.
METRICS = {
    "relative_change_pct": ("relative change of the predicted answer's probability (%)", -5.0),
    "logit_diff_change": ("change of the logit difference, true vs best false option", -1.0),
}


def metric(value: str) -> tuple[str, float]:
    """``(words, threshold)`` of a curve metric of :data:`METRICS`."""
    if value not in METRICS:
        raise ValueError(f"unknown metric {value!r}; valid: {list(METRICS)}")
    return METRICS[value]


# Decisions read intervals. A comparison "holds" only where its 95% interval lies wholly on the claimed side of
# the threshold, "does not hold" only where it lies wholly on the other side, and is undecided (None: the claim
# reads "inconclusive") where the interval straddles the threshold or fewer than MIN_QUESTIONS questions stand
# behind it.


def decide(lo: float, hi: float, threshold: float, direction: str = "below", n: int | None = None) -> bool | None:
    """True where ``[lo, hi]`` clears ``threshold`` on the ``direction`` side (``below``: ``hi < threshold``;
    ``above``: ``lo > threshold``), False where it clears it on the other side, else None (also for a NaN bound,
    or ``n`` below :data:`MIN_QUESTIONS`)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}; valid: {DIRECTIONS}")
    if n is not None and n < MIN_QUESTIONS:
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    below, above = hi < threshold, lo > threshold
    if direction == "below":
        return True if below else False if above else None
    return True if above else False if below else None


def all_of(verdicts) -> bool | None:
    """Three-valued "and": False if any is False, else None if any is None (or there is none), else True."""
    verdicts = list(verdicts)
    if False in verdicts:
        return False
    return None if (None in verdicts or not verdicts) else True


def most_of(verdicts) -> bool | None:
    """Three-valued "more than half": True where more than half hold, False where they could not even if every
    undecided one held, else None (and None for no verdict at all)."""
    verdicts = list(verdicts)
    yes, unknown = sum(v is True for v in verdicts), sum(v is None for v in verdicts)
    if not verdicts:
        return None
    if yes > len(verdicts) / 2:
        return True
    return False if yes + unknown <= len(verdicts) / 2 else None


def verdict_word(holds: bool | None, n: int | None = 1) -> str:
    """The word of a verdict, as :attr:`Claim.verdict` spells it."""
    return Claim("", "", "", "", "", holds, n).verdict


@dataclass(frozen=True)
class Estimate:
    """One compared quantity: its value on the questions, its 95% interval, the questions behind it and the
    threshold it is compared with (``direction``: the side the claim needs)."""

    name: str
    value: float
    lo: float
    hi: float
    n: int
    threshold: float
    direction: str = "below"

    @property
    def holds(self) -> bool | None:
        return decide(self.lo, self.hi, self.threshold, self.direction, self.n)

    def __str__(self) -> str:
        side = "<" if self.direction == "below" else ">"
        return f"{self.name} {self.value:.2f} [{self.lo:.2f}, {self.hi:.2f}] {side} {self.threshold:g} (n={self.n})"


def _percentiles(point: float, boot, level: float = LEVEL) -> tuple[float, float, float]:
    """``(point, lo, hi)``; a statistic undefined in more than 5% of the resamples has no interval."""
    boot = np.asarray(boot, dtype=float)
    if not math.isfinite(point) or not len(boot) or np.isfinite(boot).mean() < 0.95:
        return float(point), math.nan, math.nan
    tail = (1 - level) / 2
    lo, hi = np.nanquantile(boot, [tail, 1 - tail])
    return float(point), float(lo), float(hi)


def mean_estimate(name: str, values, threshold: float, direction: str = "below", n_boot: int = 1000,
                  seed: int = 0) -> Estimate:
    """The mean of one value per question (NaN dropped) with its percentile bootstrap interval over questions."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return Estimate(name, math.nan, math.nan, math.nan, 0, threshold, direction)
    boot = bootstrap_means(v, n_boot, seed)[:, 0]
    return Estimate(name, *_percentiles(float(v.mean()), boot), len(v), threshold, direction)


def curve_estimate(name: str, values, statistic, threshold: float, direction: str = "below", n_boot: int = 1000,
                   seed: int = 0) -> Estimate:
    """A ``statistic`` of a mean curve with its bootstrap interval over questions. ``values``: ``[questions,
    points]``; ``statistic``: ``[m, points]`` mean curves -> ``[m]`` values (NaN where undefined)."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return Estimate(name, math.nan, math.nan, math.nan, 0, threshold, direction)
    point = float(np.asarray(statistic(np.nanmean(v, axis=0)[None]))[0])
    boot = np.asarray(statistic(bootstrap_means(v, n_boot, seed)), dtype=float)
    return Estimate(name, *_percentiles(point, boot), len(v), threshold, direction)


def difference_estimate(name: str, a, b, threshold: float, direction: str = "above", n_boot: int = 1000,
                        seed: int = 0) -> Estimate:
    """``mean(a) - mean(b)`` of two independent sets of questions (each resampled on its own); ``n``: the smaller."""
    a, b = (np.asarray(x, dtype=float) for x in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return Estimate(name, math.nan, math.nan, math.nan, min(len(a), len(b)), threshold, direction)
    boot = bootstrap_means(a, n_boot, seed)[:, 0] - bootstrap_means(b, n_boot, seed + 1)[:, 0]
    return Estimate(name, *_percentiles(float(a.mean() - b.mean()), boot), min(len(a), len(b)), threshold, direction)


def range_means(table, value: str, layers) -> "pd.Series":
    """Per question (``sample_id``), the mean of ``value`` over the rows whose ``layer`` is in ``layers``: the
    interval mean that Table E reads, per question, so that its spread over questions can be bootstrapped."""
    sel = table[table["layer"].isin(list(layers))]
    return sel.groupby("sample_id", sort=True)[value].mean()


def intervals_text(estimates) -> str:
    """The estimates a verdict read, one after the other."""
    return "; ".join(str(e) for e in estimates)


def split_halves(*tables, key: str = "sample_id"):
    """Two disjoint halves of the questions (sorted ids, alternately): ``(tables of half 1, tables of half 2)``,
    each the input tables restricted to that half (the same questions in every table)."""
    ids = sorted(set().union(*(set(t[key]) for t in tables if len(t))))
    first = set(ids[0::2])
    return (tuple(t[t[key].isin(first)] for t in tables), tuple(t[~t[key].isin(first)] for t in tables))


def stability(verdict, *tables, key: str = "sample_id") -> str:
    """``verdict(*tables) -> bool | None`` recomputed on two disjoint halves of the questions
    (:func:`split_halves`): ``"halves: holds / inconclusive"``."""
    words = [verdict_word(verdict(*half), 1) for half in split_halves(*tables, key=key)]
    return "halves: " + " / ".join(words)


def questions(*tables, key: str = "sample_id") -> int:
    """Distinct questions over ``tables``."""
    return len(set().union(*(set(t[key]) for t in tables if len(t))))
