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

from dataclasses import asdict, dataclass
from pathlib import Path

VERDICTS = ("holds", "does not hold", "inconclusive", "not measured")


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


def save_claims(claims, results_dir: str | Path, name: str) -> Path:
    """Write ``claims`` to ``results_dir/claims/<name>.csv`` (read back by :func:`load_claims`)."""
    path = Path(results_dir) / "claims" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    claims_table(claims).to_csv(path, index=False)
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
    return pd.concat([pd.read_csv(p, keep_default_na=False).assign(page=p.stem) for p in paths], ignore_index=True)


def largest_drop(table, value: str = "relative_change_pct", by=("flow",)):
    """Per ``by`` group, the layer where the mean of ``value`` over questions is lowest.

    ``table``: a sweep table (one row per question x flow x layer). Returns a DataFrame with
    the ``by`` columns, ``layer`` (0-based, of the lowest mean), ``drop`` (that mean) and
    ``questions``. A knockout that hurts gives a negative ``drop``.
    """
    import pandas as pd

    if len(table) == 0:
        raise ValueError(f"no rows to find the largest drop of {value!r} in")
    means = table.groupby([*by, "layer"], sort=False)[value].mean().reset_index()
    rows = []
    for key, g in means.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        low = g.loc[g[value].idxmin()]
        sub = table
        for col, k in zip(by, key):
            sub = sub[sub[col] == k]
        rows.append({**dict(zip(by, key)), "layer": int(low["layer"]), "drop": float(low[value]),
                     "questions": int(sub["sample_id"].nunique())})
    return pd.DataFrame(rows)


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
