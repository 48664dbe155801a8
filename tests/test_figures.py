"""The book's figures and tables read like a paper's: text width, words on the axes, legends off the
data, integer layers; tables whole, without row numbers. Hand-made tables, no model."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from flowutils.book import figures
from flowutils.paper.claims import METRICS

TASKS = ("action_antonym", "object_count", "moving_direction")


def hand_sweep(questions=4, layers=6):
    """Cross-frame knockout rows for two models, the VideoLLM's dip at layer 2 (0-based)."""
    rng = np.random.default_rng(0)
    rows = [{"sample_id": f"{t}{q}", "task": t, "model": m, "flow": "cross-frame", "layer": layer,
             "relative_change_pct": (-30.0 if (m == "video" and layer == 2) else 0.0) + rng.normal(0, 1),
             "logit_diff_change": (-2.0 if layer == 2 else 0.0) + rng.normal(0, 0.1)}
            for t in TASKS for q in range(questions) for m in ("video", "image") for layer in range(layers)]
    return pd.DataFrame(rows)


def overlaps(a, b) -> bool:
    return not (a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0)


def reading_problems(fig) -> list[str]:
    """What keeps a drawn figure from reading like a paper's (empty: none)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    if abs(fig.get_figwidth() - figures.TEXT_WIDTH) > 1e-6:
        problems.append(f"width {fig.get_figwidth()} in, not the text column's {figures.TEXT_WIDTH}")
    drawn = [ax for ax in fig.axes if ax.lines]
    for ax in drawn:
        if ax.get_legend() is not None:
            problems.append(f"{ax.get_title()!r}: a legend inside the panel")
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            if "_" in label:
                problems.append(f"{ax.get_title()!r}: axis label {label!r} is a column name")
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        if any(t != int(t) for t in ticks):
            problems.append(f"{ax.get_title()!r}: layer ticks {ticks} not on integers")
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        problems += [f"the legend covers {ax.get_title()!r}" for ax in drawn if overlaps(box, ax.get_window_extent(renderer))]
    return problems


def test_knockout_figure_one_row_per_task_at_reading_size():
    sweep = hand_sweep()
    fig, curves = figures.knockout_figure(sweep, "Figure 2", "model")
    assert reading_problems(fig) == []
    assert len([ax for ax in fig.axes if ax.lines]) == len(TASKS) * len(METRICS)
    assert set(curves) == set(METRICS) and set(curves["relative_change_pct"]["task"]) == set(TASKS)


def test_knockout_figure_of_the_gold_token_alone():
    sweep = hand_sweep().assign(relative_change_gold_pct=lambda t: t.relative_change_pct)
    fig, curves = figures.knockout_figure(sweep, "ImageLLM, all questions", "model",
                                          values=("relative_change_gold_pct",))
    assert reading_problems(fig) == [] and list(curves) == ["relative_change_gold_pct"]
    drawn = [ax for ax in fig.axes if ax.lines]
    assert len(drawn) == len(TASKS) and drawn[0].get_ylabel() == "change of p(gold option), %"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["video", "image"]


def test_reading_problems_fail_on_a_squeezed_figure():
    """The check above can fail: a wide figure with in-panel legends, column names and half layers."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(16, 3))
    ax.plot([1, 1.5, 2], [0, 1, 0], label="video")
    ax.set_xlabel("relative_change_pct")
    ax.legend()
    problems = reading_problems(fig)
    assert any("width" in p for p in problems) and any("legend inside" in p for p in problems)
    assert any("column name" in p for p in problems) and any("integers" in p for p in problems)


def test_figure8_panels_and_words():
    rows = pd.DataFrame([{"sample_id": f"{t}{q}", "task": t, "layer": layer, "p_true": layer / 5, "p_false": 0.1,
                          "logit_diff": layer - 2.0, "correct_baseline": True}
                         for t in TASKS for q in range(3) for layer in range(6)])
    fig = figures.figure8(rows, "Figure 8")
    assert reading_problems(fig) == []
    assert len([ax for ax in fig.axes if ax.lines]) == 2 * (len(TASKS) + 1)  # all tasks, then each task


def test_largest_drop_table_matches_a_loop():
    sweep = hand_sweep()
    t = figures.largest_drop_table(sweep, by=("model", "task")).frame
    for (model, task), g in sweep.groupby(["model", "task"]):
        for value in METRICS:
            means = g.groupby("layer")[value].mean()
            row = t[(t.model == model) & (t.task == task) & (t.metric == figures.AXIS_WORDS[value])]
            assert row["at layer"].item() == means.idxmin() + 1
            assert row["lowest mean"].item() == pytest.approx(round(means.min(), 2))
            assert row["95% band low"].item() <= row["lowest mean"].item() <= row["95% band high"].item()
    assert list(t.index) == list(range(len(t)))


def test_table_whole_cells_no_row_numbers():
    long = "x" * 80
    frame = pd.DataFrame({"finding": [long, "short"], "value": [1.23456, 2.0]}, index=[5, 3])
    html = figures.table(frame)._repr_html_()
    assert long in html and "..." not in html and "1.23<" in html
    assert ">5<" not in html and ">3<" not in html  # the row numbers are gone
    assert long in repr(figures.table(frame))  # the text form (checked outputs) is whole too
    named = figures.table(frame.set_index("finding"))
    assert list(named.frame.columns) == ["finding", "value"]  # a meaningful index is a column
    assert list(figures.table(pd.DataFrame({"a": [1]}, index=["row"])).frame.columns) == ["", "a"]


def test_knockout_figure_all_tasks_row_first():
    sweep = hand_sweep()
    fig, curves = figures.knockout_figure(sweep, "Figure 3", "model", all_tasks=True)
    assert reading_problems(fig) == []
    assert list(dict.fromkeys(curves["logit_diff_change"]["task"])) == ["all tasks", *TASKS]
    pooled = curves["relative_change_pct"].query("task == 'all tasks' and model == 'video'")
    assert pooled["questions"].max() == 4 * len(TASKS)  # every task's questions together
    assert fig.axes[0].get_title(loc="left").startswith("all tasks")


def test_accuracy_bars_at_100_percent():
    """Every question stays correct: the Wilson bound of 100% can fall a rounding error below 100."""
    from flowutils.analysis.uncertainty import accuracy

    a = accuracy([True] * 24)
    t3 = pd.DataFrame([{"condition": "full causal attention", "accuracy": a["accuracy"], "lo": a["lo"],
                        "hi": a["accuracy"] - 1e-12, "std_over_seeds": 0.0, "seeds": 1, "questions": 24,
                        "kept_pct": 100.0}])
    fig = figures.accuracy_bars(t3, "Table 3")
    assert reading_problems(fig) == []
