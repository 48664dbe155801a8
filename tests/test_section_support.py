"""Section-notebook support: parameter validation, bootstrap bands, Wilson intervals, claims tables."""

import numpy as np
import pandas as pd
import pytest

from flowutils.analysis import claims, parameters, uncertainty


def defaults(**over):
    return {name: p.default for name, p in parameters.PARAMETERS.items()} | over


def test_defaults_are_valid():
    assert parameters.validate(defaults()) == defaults()


@pytest.mark.parametrize("scope, match", [
    (defaults(n_per_tsk=3), r"unknown parameter\(s\) \['n_per_tsk'\].*n_per_task"),
    (defaults(n_per_task=0), r"n_per_task=0 is invalid; valid: an integer >= 1"),
    (defaults(n_per_task=2.5), r"n_per_task=2.5 is invalid"),
    (defaults(num_frames=True), r"num_frames=True is invalid"),
    (defaults(seed="abc"), r"seed='abc' is invalid; valid: an integer >= 0"),
    (defaults(window_size=0), r"window_size=0 is invalid"),
    (defaults(window_style="centre"), r"window_style='centre' is invalid; valid: one of \('center'"),
    (defaults(sample_mode="right"), r"sample_mode='right' is invalid; valid: one of \('correct'"),
    (defaults(device="gpu"), r"device='gpu' is invalid"),
    (defaults(dtype="fp16"), r"dtype='fp16' is invalid; valid: one of \('float32'"),
    (defaults(manifest="kinetics"), r"manifest='kinetics' is invalid; valid: \[.*'synthetic'"),
    (defaults(tasks=["object_cnt"]), r"unknown task\(s\) \['object_cnt'\] for manifest 'synthetic'; valid: \[.*'object_count'"),
    (defaults(tasks=[]), r"tasks=\[\] is invalid"),
    ({k: v for k, v in defaults().items() if k != "seed"}, r"\['seed'\] are not set"),
])
def test_bad_parameters_are_named_with_their_valid_values(scope, match):
    with pytest.raises(parameters.ParameterError, match=match):
        parameters.validate(scope)


def test_notebook_globals_are_filtered():
    """Imports, functions and IPython's own names are not parameters."""
    scope = defaults() | {"np": np, "In": [], "_i1": "", "f": lambda: 0}
    assert parameters.validate(scope) == defaults()


def test_bootstrap_band_matches_a_plain_loop():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(25, 3))
    mean, lo, hi = uncertainty.bootstrap_mean(values, n_boot=200, seed=4)
    draws = np.random.default_rng(4).integers(0, 25, size=(200, 25))
    means = np.array([[values[d, j].mean() for j in range(3)] for d in draws])
    assert np.allclose(mean, values.mean(0))
    assert np.allclose(lo, np.quantile(means, 0.025, axis=0)) and np.allclose(hi, np.quantile(means, 0.975, axis=0))
    assert (lo <= mean).all() and (mean <= hi).all()


def test_curve_groups_and_counts_questions():
    t = pd.DataFrame({"sample_id": list("aabbcc"), "flow": ["f"] * 6, "layer": [0, 1] * 3,
                      "relative_change_pct": [-10.0, 0.0, -20.0, 0.0, -30.0, 3.0]})
    c = uncertainty.curve(t, n_boot=50).set_index("layer")
    assert c.loc[0, "mean"] == -20.0 and c.loc[1, "mean"] == 1.0 and (c.questions == 3).all()
    assert c.loc[0, "lo"] >= -30.0 and c.loc[0, "hi"] <= -10.0
    with pytest.raises(ValueError, match="no rows"):
        uncertainty.curve(t.iloc[:0])


def test_wilson_interval_known_values():
    lo, hi = uncertainty.wilson_interval(8, 10)  # textbook value: 0.490 .. 0.943
    assert round(lo, 1) == 49.0 and round(hi, 1) == 94.3
    lo, hi = uncertainty.wilson_interval(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-12) and round(hi, 1) == 16.1
    with pytest.raises(ValueError, match="at least one question"):
        uncertainty.wilson_interval(0, 0)


def test_claims_round_trip(tmp_path):
    cs = [claims.Claim("3.2", "Table 2", "drop", "-30.1", "-12.0", True),
          claims.Claim("3.2", "Figure 2", "early", "", "layer 3", False),
          claims.Claim("3.5", "Table 3", "keeps", "", "no questions", None)]
    claims.save_claims(cs, tmp_path, "temporal_interaction")
    back = claims.load_claims(tmp_path)
    assert list(back.verdict) == ["holds", "does not hold", "not measured"]
    assert list(back.paper) == ["-30.1", "", ""] and set(back.page) == {"temporal_interaction"}
    with pytest.raises(FileNotFoundError, match="run the section notebooks"):
        claims.load_claims(tmp_path, ["effective_pathways"])
