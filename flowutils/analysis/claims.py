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

VERDICTS = {True: "holds", False: "does not hold", None: "not measured"}


@dataclass(frozen=True)
class Claim:
    """One finding of the paper, tested on one run."""

    section: str  # "3.2"
    item: str  # "Figure 2", "Table 2"
    finding: str  # the paper's finding, in words
    paper: str  # the paper's number for it ("" where the paper gives none)
    measured: str  # what this run measured, formatted from the numbers it computed
    holds: bool | None  # None: this run cannot test it (e.g. no question analysed)

    @property
    def verdict(self) -> str:
        return VERDICTS[self.holds]


def claims_table(claims):
    """A DataFrame of ``claims``: section, item, finding, paper, measured, verdict."""
    import pandas as pd

    rows = [{**{k: v for k, v in asdict(c).items() if k != "holds"}, "verdict": c.verdict} for c in claims]
    return pd.DataFrame(rows, columns=["section", "item", "finding", "paper", "measured", "verdict"])


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
