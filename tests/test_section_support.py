"""Section-notebook support: parameter validation, bootstrap bands, Wilson intervals, claims tables."""

import numpy as np
import pandas as pd
import pytest

from flowutils.analysis import uncertainty

from flowutils.book import parameters

from flowutils.paper import claims


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


def test_pages_run_at_once_render_the_default_benchmark_once_and_read_it_whole(tmp_path):
    """nbval runs two pages at once: the second waits for the first's rendering instead of reading a half-written
    folder (a rendering left unfinished is resumed)."""
    from flowutils.data import synthetic

    import os
    import subprocess
    import sys

    child = """
import sys, time
from pathlib import Path
from flowutils.book import parameters
from flowutils.data import synthetic

def slow_video(path, frames, fps):  # the real renderer takes a minute for 240 videos: one video per task here
    with open(sys.argv[1], "a") as log:
        log.write(path.parent.name + "\\n")
    time.sleep(0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(b"mp4")

def one_question(task, n_per_task, *args):
    return original(task, 1, *args)

synthetic.write_video, original, synthetic.generate = slow_video, synthetic.generate, one_question
root = parameters.benchmark_root({"manifest": "synthetic", "benchmark_root": parameters.SYNTHETIC_DEFAULT})
print(all((root / "json" / f"{task}.json").is_file() for task in synthetic.VIDEO_TASKS))
"""
    log = tmp_path / "renders.txt"
    env = dict(os.environ, FLOWUTILS_HOME=str(tmp_path))
    pages = [subprocess.Popen([sys.executable, "-c", child, str(log)], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    assert [page.communicate(timeout=120)[0].strip() for page in pages] == ["True", "True"]
    tasks = list(synthetic.VIDEO_TASKS)
    assert log.read_text().split() == tasks  # each video rendered once
    root = tmp_path / "data" / "synthetic-test-seed0-n48"
    (root / "video" / "object_count" / "object_count_00000.mp4").unlink()  # cut off: resumed, the rest reused
    rerun = subprocess.run([sys.executable, "-c", child, str(log)], env=env, capture_output=True, text=True)
    assert rerun.stdout.strip() == "True" and log.read_text().split() == tasks + ["object_count"]


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


def test_a_notebook_sweep_reads_what_the_sweep_command_stored(bench, tmp_path, monkeypatch, capsys):
    """The notebooks' store arguments key a sweep as the command does: the rerun computes nothing."""
    from flowutils.analysis import runner, sweep as sweep_module
    from flowutils.cli import main
    from flowutils.data import load_benchmark
    from flowutils.models import load

    argv = ["sweep", "--model", "toy-videollm", "--benchmark", str(bench), "--tasks", "object_count",
            "--n-per-task", "2", "--flows", "video->last", "--layers", "0", "5", "--sample-mode", "all",
            "--device", "cpu", "--out", str(tmp_path / "sweeps")]
    assert main(argv) == 0
    assert "timings: 2 question(s) in " in capsys.readouterr().out  # s/question by phase, questions per hour
    monkeypatch.setattr(runner, "_question", lambda *a, **k: pytest.fail("the notebook recomputed a question"))
    store = parameters.sweep_store(defaults(results_dir=str(tmp_path)))
    table = sweep_module.run_sweep(load("toy-videollm"), load_benchmark(bench, "synthetic", ["object_count"], 2),
                                   sweep_module.Sweep(["video->last"], layers=[0, 5], sample_mode="all"), progress=False,
                                   **store)
    assert table.sample_id.nunique() == 2 and sorted(table.layer.unique()) == [0, 5]


def test_the_sweep_command_compiles_the_model_when_asked(bench, tmp_path, monkeypatch):
    from flowutils import engine
    from flowutils.cli import main

    compiled = []
    monkeypatch.setattr(engine, "compile_layers", lambda fm: compiled.append(fm.name) or fm)
    argv = ["sweep", "--model", "toy-videollm", "--benchmark", str(bench), "--tasks", "object_count",
            "--n-per-task", "1", "--flows", "video->last", "--layers", "0", "--sample-mode", "all",
            "--device", "cpu", "--out", str(tmp_path / "sweeps")]
    assert main(argv) == 0 and compiled == []
    assert main(argv + ["--compile"]) == 0 and len(compiled) == 1


def test_rerun_commands_name_only_parameters_the_notebooks_have():
    import json
    import shlex
    from pathlib import Path

    from flowutils.book import rerun

    root = Path(__file__).resolve().parents[1]
    lines = rerun.commands("llava-next-7b-video-ft", "llava-v1.6-vicuna-7b", "/data/TV Bench", "tvbench", "results/x")
    real = shlex.split(lines.splitlines()[0].split("=", 1)[1])[0]  # REAL="..."
    for line in lines.splitlines()[2:]:
        words = shlex.split(line.replace("$REAL", real).replace("$PM ", ""))
        source, target = words[0], words[1]
        assert target == source.replace("notebooks/", "book/") and (root / source).is_file()
        cells = json.loads((root / source).read_text())["cells"]
        (cell,) = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        defined = {ln.split("=")[0].strip() for ln in "".join(cell["source"]).splitlines() if "=" in ln}
        given = dict(zip(words[3::3], words[4::3]))
        assert set(given) <= defined, (source, set(given) - defined)
        if "temporal_interaction" in source:
            assert given["base_model"] == "llava-v1.6-vicuna-7b" and given["benchmark_root"] == "/data/TV Bench"
    assert len(lines.splitlines()) == 2 + len(rerun.SECTIONS) + 1


@pytest.mark.parametrize("model, share", [("llava-next-7b-video-ft", "0.58"), ("llava-next-13b-video-ft", "0.63"),
                                          ("mini-internvl-4b-video-ft", "0.6"), ("videollama3-7b", "0.42")])
def test_rerun_commands_pass_the_papers_protocol_keywords_and_task(model, share):
    """On TVBench every paper model's commands name k = 9 and 5-layer intervals (whatever its depth), Table D's
    keywords on the Action Sequence questions for Figure 4, and Table 3's fixed share of its random_block_ratio."""
    import shlex

    from flowutils.book import rerun

    lines = rerun.commands(model, "llava-v1.6-vicuna-7b", "/data/TVBench", "tvbench", "results/x").splitlines()
    given = {}
    for line in lines[2:2 + len(rerun.SECTIONS)]:
        words = shlex.split(line)  # $PM source target $REAL -p name value ...
        given[words[1].split("/")[1].split(".")[0]] = dict(zip(words[5::3], words[6::3]))
    assert given["temporal_interaction"]["window_size"] == "9"
    assert {k: given["video_language_integration"][k] for k in ("window_size", "interval_size", "keywords",
                                                                 "keyword_task")} == \
        {"window_size": "9", "interval_size": "5", "keywords": "table_d", "keyword_task": "action_sequence"}
    assert {k: given["effective_pathways"][k] for k in ("window_size", "interval_size", "random_rule",
                                                         "random_share")} == \
        {"window_size": "9", "interval_size": "5", "random_rule": "fixed share", "random_share": share}
    assert "keywords" not in given["effective_pathways"] and given["answer_generation"] == {}
    # another benchmark: the keyword list without the TVBench task; a model the paper did not run: scaled, matched
    other = rerun.section_parameters("video_language_integration", model, "tomato")
    assert other["keywords"] == "table_d" and "keyword_task" not in other
    assert rerun.section_parameters("effective_pathways", "llava-onevision-0.5b", "tvbench") == \
        {"window_size": 7, "interval_size": 4, "random_rule": "matched"}


def test_rerun_estimate_matches_a_hand_computation(tmp_path):
    import json

    from flowutils.book import rerun

    shape = {"model": "llava-next-7b-video-ft", "layers": 32, "hidden": 4096, "tokens": 1000, "plans": 100,
             "fast_s_per_question": 2.0, "peak_mem_gib": 20.0, "weights_gib": 10.0}
    (tmp_path / "shapes").mkdir()
    (tmp_path / "user_path").mkdir()
    (tmp_path / "shapes" / "model_shapes_X.json").write_text(json.dumps({"gpu": "X", "results": [shape]}))
    # measured on a shape of half the weights and twice the tokens: compute x1, loading and tokens x2
    units = dict(startup=10.0, load=20.0, prepare=0.5, forward=0.25, plan=0.01, frame_plan=0.07, token=0.02, lens=0.3,
                 keywords=0.4, attention=0.6, table3=2.0, panel=0.25)
    (tmp_path / "user_path" / "unit_costs_X.json").write_text(json.dumps(
        {"gpu": "X", "shape": "s", "weights_gib": 5.0, "tokens": 2000, "seconds": units}))
    t = rerun.estimate("llava-next-7b-video-ft", "llava-v1.6-vicuna-7b", "tvbench", results_dir=tmp_path,
                       sample_mode="correct", accuracy=0.5).set_index("section")
    su, ld, pr, fw, pl, fp, tk = 10.0, 40.0, 0.5, 0.25, 0.01, 0.07, 0.04
    sizes = {"action_antonym": 320, "action_sequence": 528, "scene_transition": 185, "moving_direction": 232,
             "object_count": 148}  # TVBench's five analysed tasks
    n, kept = sum(sizes.values()), sum(sizes.values()) / 2
    asked = 5 * 16  # Table 2's answers: 16 per task, two forms, two generations of 12 tokens each
    temporal = (su + 2 * ld + 4 * n * (pr + fw) + (kept + n) * 32 * fp + 1.5 * kept * fw
                + 10 * (pr + fw) + 5 * 2 * 10 * tk + 2 * asked * pr + 2 * asked * 2 * 12 * tk)
    integration = (su + ld + n * (pr + fw) + kept * 10 * 32 * pl + 528 * (pr + fw) + 264 * 0.4
                   + 148 * (pr + fw + 0.6))
    expected = {"temporal_interaction": temporal, "video_language_integration": integration,
                "answer_generation": su + ld + n * (pr + fw + 0.3),
                "effective_pathways": su + ld + 320 * (pr + fw) + 160 * 32 * (fp + 2 * pl) + n * (pr + 2.0)}
    # a panel is host work: moved to another shape unscaled, where a forward scales by weights x tokens
    moved = rerun.scaled_units({"seconds": {"panel": 0.25, "forward": 1.0}, "weights_gib": 5.0, "tokens": 1000},
                               {"weights_gib": 10.0, "tokens": 3000})
    assert moved == {"panel": 0.25, "forward": 6.0}
    # figure panels, five tasks: Figure 2 (2 x 5) and the ImageLLM's (5); Figures 3 and 6 (2 x 6 each), 7 (2 x 5),
    # 4 (two lenses) and 5 (four); Figure 8 (2 x 6); the selection curves (2), the heat map and the bars
    panels = {"temporal_interaction": 15, "video_language_integration": 40, "answer_generation": 12,
              "effective_pathways": 4}
    for section, seconds in expected.items():
        assert t.loc[section, "estimated GPU hours"] == pytest.approx((seconds + 0.25 * panels[section]) / 3600)
    assert t.attrs["unmeasured"] == []
    # the base (same shape, found by layers and hidden size) adds its weights where both models are loaded
    assert t.loc["temporal_interaction", "GPU memory GiB (estimate)"] == 30.0
    assert t.loc["answer_generation", "GPU memory GiB (estimate)"] == 20.0
    # by default the share answered correctly is the paper's Table 3 accuracy on that benchmark (51.5% on TVBench)
    default = rerun.estimate("llava-next-7b-video-ft", None, "tvbench", results_dir=tmp_path)
    assert default.attrs["accuracy"] == 0.515 and "Table 3" in default.attrs["accuracy_source"]
    # measured before the panel unit existed: the hours leave the panels out, and say so
    del units["panel"]
    (tmp_path / "user_path" / "unit_costs_X.json").write_text(json.dumps(
        {"gpu": "X", "shape": "s", "weights_gib": 5.0, "tokens": 2000, "seconds": units}))
    older = rerun.estimate("llava-next-7b-video-ft", "llava-v1.6-vicuna-7b", "tvbench", results_dir=tmp_path,
                           sample_mode="correct", accuracy=0.5).set_index("section")
    assert older.attrs["unmeasured"] == ["panel"]
    assert older.loc["answer_generation", "estimated GPU hours"] == pytest.approx(expected["answer_generation"] / 3600)
    # before any GPU run has measured the parts: the counts, and no hours
    (tmp_path / "user_path" / "unit_costs_X.json").unlink()
    unmeasured = rerun.estimate("llava-next-7b-video-ft", None, "tvbench", results_dir=tmp_path)
    assert unmeasured["estimated GPU hours"].isna().all() and unmeasured.attrs["units"] is None
    assert (unmeasured["prepare (count)"] > 0).all()
    with pytest.raises(ValueError, match="no manifest; valid:"):
        rerun.estimate("llava-next-7b", None, "tvbench", results_dir=tmp_path)


def test_a_page_says_when_the_weights_are_random_unverified_or_not_the_pinned_ones(monkeypatch):
    from conftest import tiny_llava_next_video
    from flowutils.analysis.store import state_sha256
    from flowutils.models import loading

    fm = tiny_llava_next_video()
    real = loading.model_manifests()
    spec = {"role": "VideoLLM (paper)", "weights_sha256": None}
    monkeypatch.setattr(loading, "model_manifests", lambda: {**real, fm.name: spec})
    assert parameters.weights_warning(fm, "bfloat16").startswith("UNVERIFIED WEIGHTS")
    spec["weights_sha256"] = "0" * 64
    assert parameters.weights_warning(fm, "bfloat16").startswith("WEIGHTS DIFFER")
    spec["weights_sha256"] = state_sha256(fm.model)  # the pinned state: nothing to say
    assert parameters.weights_warning(fm, "bfloat16") is None
    fm.model.config.flowutils_random_weights = True  # a rehearsal checkpoint says so in its config.json
    assert parameters.weights_warning(fm, "bfloat16").startswith("RANDOM WEIGHTS")
    # the page's saved run identity carries it, for the status page to repeat
    given = {"manifest": "synthetic", "benchmark_root": "d", "dtype": "bfloat16"}
    assert parameters.run_identity(fm, given, [])["weights"].startswith("RANDOM WEIGHTS")
    # the ImageLLM base a page loads beside it is named too, each model's warning once
    base = tiny_llava_next_video()
    assert parameters.run_identity(base, given, [])["weights"] == ""
    both = parameters.run_identity(base, given, [], base=fm)["weights"]
    assert both.splitlines() == [parameters.weights_warning(fm, "bfloat16")]
    monkeypatch.setattr(loading, "model_manifests", lambda: real)
    del fm.model.config.flowutils_random_weights
    assert parameters.weights_warning(fm, "float32") is None  # not a paper model: nothing to verify


def test_every_code_cell_of_the_book_is_folded_or_removed():
    """Readers see tables and figures, not code: every code cell of every page's source notebook carries a tag that
    folds or removes its input (a page once showed a new cell's code in full)."""
    import json
    from pathlib import Path

    hiding = {"hide-input", "remove-input", "hide-cell", "remove-cell"}
    shown = [(p.name, i) for p in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
             for i, c in enumerate(json.loads(p.read_text())["cells"])
             if c["cell_type"] == "code" and not hiding & set(c["metadata"].get("tags", []))]
    assert not shown, f"code cells shown in full (notebook, cell): {shown}; tag them hide-input"
