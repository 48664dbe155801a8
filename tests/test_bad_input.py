"""Bad input: each case gives a clear error (naming the file, question or parameter and the valid
choices) before any work, or a counted skip during a sweep; never a crash of the whole sweep and
never a silently wrong number."""

import copy
import json
import time

import pandas as pd
import pytest
import torch

from flowutils import cli, data
from flowutils.analysis import load_results, runner
from flowutils.analysis.sweep import Sweep, run_sweep, summarize
from flowutils.data import synthetic, tvbench
from flowutils.engine import knockout_logits
from flowutils.knockout import windows
from flowutils.knockout.plan import KnockoutPlan
from flowutils.models.flow_model import FlowModel

from conftest import copy_benchmark, rendered_questions, tiny_llava_next_video

SWEEP = dict(k=1, num_frames=4, sample_mode="all")


@pytest.fixture(scope="module")
def fm():
    return tiny_llava_next_video()


@pytest.fixture(scope="module")
def questions():
    return rendered_questions(synthetic.VIDEO_TASKS[:3], 1)


def _edit(root, task, change):
    path = root / "json" / f"{task}.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return path


# ------------------------------------------------------------------ sweep parameters: checked before any work
# (keyword arguments, text the error must contain)
SWEEP_CASES = {
    "empty flows": (dict(flows=[]), "flows must be a non-empty list"),
    "flows as one string": (dict(flows="video->last"), "flows must be a non-empty list"),
    "unknown token group": (dict(flows=["video->nowhere"]), r"flow 'video->nowhere'.*valid"),
    "flow without arrow": (dict(flows=["videolast"]), r"'source->target' or 'cross-frame'"),
    "duplicate flows": (dict(flows=["video->last", "video->last"]), "duplicates"),
    "k = 0 (no silent default)": (dict(k=0), r"window size k must be an integer in 1\.\.4"),
    "k past the depth": (dict(k=5), r"in 1\.\.4 \(the model's depth\)"),
    "k not an integer": (dict(k=2.5), "window size k"),
    "unknown style": (dict(style="diagonal"), r"unknown window style 'diagonal'; valid: \('center'"),
    "layer -1": (dict(layers=[-1]), r"integers in 0\.\.3"),
    "layer past the depth": (dict(layers=[4]), r"integers in 0\.\.3"),
    "no layers": (dict(layers=[]), "non-empty list"),
    "duplicate layers": (dict(layers=[0, 0]), "layers contain duplicates"),
    "unknown backend": (dict(backend="turbo"), r"unknown backend 'turbo'; valid: \('fast', 'reference'\)"),
    "unknown sample_mode": (dict(sample_mode="right"), r"unknown sample_mode 'right'; valid"),
    "num_frames = 0": (dict(num_frames=0), "num_frames must be an integer >= 1"),
    "num_frames as text": (dict(num_frames="8"), "num_frames must be an integer >= 1"),
    "num_frames past the video": (dict(num_frames=9), r"fewer frames than num_frames=9: \['action_antonym/0 \(4 frames\)"),
    "shard without num_shards": (dict(shard=0), "give both shard and num_shards"),
    "shard out of range": (dict(shard=2, num_shards=2), r"shard must be in 0\.\.num_shards-1"),
}


@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_bad_sweep_parameter_is_a_clear_error(fm, questions, case):
    change, message = SWEEP_CASES[case]
    sweep = {**SWEEP, **{k: v for k, v in change.items() if k not in ("shard", "num_shards")}}
    run = {k: v for k, v in change.items() if k in ("shard", "num_shards")}
    with pytest.raises(ValueError, match=message):
        run_sweep(fm, questions, Sweep(sweep.pop("flows", ["video->last"]), **sweep), progress=False, **run)


def test_all_problems_are_listed_at_once(fm, questions):
    with pytest.raises(ValueError, match=r"3 problem\(s\)(?s:.*)backend(?s:.*)sample_mode(?s:.*)num_frames"):
        run_sweep(fm, questions, Sweep(["video->last"], k=1, backend="x", sample_mode="y", num_frames=0))


def test_empty_sample_list(fm):
    with pytest.raises(ValueError, match="sample list is empty"):
        run_sweep(fm, [], Sweep(["video->last"], **SWEEP), progress=False)


def test_duplicate_sample_ids(fm, questions):
    twin = copy.copy(questions[1])
    twin.sample_id = questions[0].sample_id
    with pytest.raises(ValueError, match=r"sample ids must be unique.*action_antonym/0"):
        run_sweep(fm, [questions[0], twin], Sweep(["video->last"], **SWEEP), progress=False)


def test_summarize_an_empty_table():
    with pytest.raises(ValueError, match="non-empty sweep table"):
        summarize(pd.DataFrame())


# ------------------------------------------------------------------ plans and windows
@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("layer", [-1, 4])
def test_plan_layer_outside_the_model_is_an_error_in_both_backends(fm, questions, backend, layer):
    p = fm.prepare_sample(questions[0], 4)
    plan = KnockoutPlan.from_flows(p.layout, ["video->last"], [layer])
    with pytest.raises(ValueError, match=rf"layers \[{layer}\] outside 0\.\.3"):
        knockout_logits(fm, p, [plan], backend)


def test_plan_position_outside_the_input_is_an_error(fm, questions):
    p = fm.prepare_sample(questions[0], 4)
    n = p.layout.n
    plan = KnockoutPlan({0: [(torch.tensor([n + 3]), torch.tensor([0]))]})
    with pytest.raises(ValueError, match=rf"positions outside 0\.\.{n - 1}"):
        knockout_logits(fm, p, [plan])


def test_window_layer_not_an_integer():
    with pytest.raises(ValueError, match="must be integers"):
        windows.window(1.5, 3, 12)


# ------------------------------------------------------------------ benchmark files: every problem at once
def test_task_json_that_is_a_dict(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    _edit(root, "action_antonym", lambda e: {"questions": e})
    with pytest.raises(data.BenchmarkError, match=r"action_antonym.json holds a JSON dict; expected a list"):
        data.load_benchmark(root, "synthetic")


def test_invalid_json(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    (root / "json" / "object_count.json").write_text("[{")
    with pytest.raises(data.BenchmarkError, match="object_count.json is not valid JSON"):
        data.load_benchmark(root, "synthetic")


def test_empty_question_list(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    _edit(root, "object_count", lambda e: [])
    with pytest.raises(data.BenchmarkError, match="object_count.json has no questions"):
        data.load_benchmark(root, "synthetic")


ENTRY_CASES = {
    "answer not among candidates": (lambda e: {**e, "answer": "Sideways."}, r"answer 'Sideways.' is not among"),
    "missing keys": (lambda e: {k: v for k, v in e.items() if k != "candidates"}, r"missing keys \['candidates'\]"),
    "one candidate": (lambda e: {**e, "candidates": [e["answer"]]}, "candidates must be a list of at least 2 non-empty strings"),
    "duplicate candidates": (lambda e: {**e, "candidates": [e["answer"]] * 2}, "candidates contain duplicates"),
    "empty question": (lambda e: {**e, "question": ""}, "question must be a non-empty string"),
    "start > end": (lambda e: {**e, "start": 5, "end": 2}, r"bounds must satisfy 0 <= start < end, got start=5, end=2"),
    "start without end": (lambda e: {**e, "start": 1}, "give both start and end"),
    "bounds as text": (lambda e: {**e, "start": "a", "end": "b"}, "start and end must be numbers"),
    "entry not an object": (lambda e: ["video.mp4"], "an entry is an object"),
    "missing video": (lambda e: {**e, "video": "nope.mp4"}, r"video file not found: .*nope.mp4"),
}


@pytest.mark.parametrize("case", list(ENTRY_CASES))
def test_bad_entry_is_named_with_its_file_and_index(bench, tmp_path, case):
    change, message = ENTRY_CASES[case]
    root = copy_benchmark(bench, tmp_path)
    _edit(root, "moving_direction", lambda es: [es[0], change(es[1])])
    with pytest.raises(data.BenchmarkError, match=rf"moving_direction.json entry 1: {message}"):
        data.load_benchmark(root, "synthetic")


def test_duplicate_entries(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    _edit(root, "action_sequence", lambda es: es + [es[0]])
    with pytest.raises(data.BenchmarkError, match="entry 2: duplicate of entry 0"):
        data.load_benchmark(root, "synthetic")


def test_empty_video_file(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    (root / "video" / "scene_transition" / "scene_transition_00001.mp4").write_bytes(b"")
    with pytest.raises(data.BenchmarkError, match=r"video file is empty \(0 bytes\)"):
        data.load_benchmark(root, "synthetic")


def test_every_problem_of_every_task_is_listed_at_once(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    _edit(root, "action_antonym", lambda es: [{**es[0], "answer": "Nope."}, {**es[1], "start": 3, "end": 1}])
    _edit(root, "object_count", lambda es: {"not": "a list"})
    with pytest.raises(data.BenchmarkError) as err:
        data.load_benchmark(root, "synthetic")
    text = str(err.value)
    assert "3 problem(s)" in text and "entry 0: answer 'Nope.'" in text and "entry 1: bounds" in text
    assert "object_count.json holds a JSON dict" in text
    problems = tvbench.validate_benchmark(root, "synthetic", check_counts=False)
    assert len(problems) == 3


def test_corrupt_and_too_short_videos_found_by_decoding(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    video = root / "video" / "action_antonym" / "action_antonym_00000.mp4"
    video.write_bytes(video.read_bytes()[:300])
    assert tvbench.validate_benchmark(root, "synthetic", check_counts=False) == []  # not decoded: not seen
    problems = tvbench.validate_benchmark(root, "synthetic", check_counts=False, decode_videos=True)
    assert len(problems) == 1 and "action_antonym entry 0" in problems[0] and "action_antonym_00000.mp4" in problems[0]
    problems = tvbench.validate_benchmark(root, "synthetic", check_counts=False, decode_videos=True, min_frames=32)
    assert len(problems) == 10 and sum("fewer than the 32" in p for p in problems) == 9


@pytest.mark.parametrize("n", [0, -1, "abc", 2.5])
def test_bad_n_per_task(bench, n):
    with pytest.raises(data.BenchmarkError, match="n_per_task must be an integer >= 1"):
        data.load_benchmark(bench, "synthetic", n_per_task=n)


def test_no_tasks_and_unknown_manifest(bench):
    with pytest.raises(data.BenchmarkError, match="no tasks asked for; valid"):
        data.load_benchmark(bench, "synthetic", tasks=[])
    with pytest.raises(FileNotFoundError, match="no manifest 'kinetics'.*valid"):
        data.load_benchmark(bench, "kinetics")


SWEEP_ARGV = ["sweep", "--model", "m", "--benchmark", "b", "--out", "o", "--flows", "x"]


@pytest.mark.parametrize("argv, message", [
    (["data", "--n-per-task", "0"], "argument --n-per-task: must be an integer >= 1, got '0'"),
    (["data", "--seed", "abc"], "argument --seed: must be an integer >= 0, got 'abc'"),
    (["data", "--seed", "-1"], "argument --seed: must be an integer >= 0, got '-1'"),
    (["data", "--size", "8"], "argument --size: must be an integer >= 16, got '8'"),
    (["data", "--size", "17"], "argument --size: must be an even number of pixels from 16 to 4096, got '17'"),
    (["data", "--size", "100000"], "argument --size: must be an even number of pixels from 16 to 4096"),
    (["sweep", "--model", "m", "--benchmark", "b", "--out", "o", "--flow-set", "nope"], "invalid choice: 'nope'"),
    (["sweep", "--model", "m", "--benchmark", "b", "--out", "o"], "one of the arguments --flows --flow-set is required"),
    ([*SWEEP_ARGV, "--dtype", "fp8"], "invalid choice"),
    ([*SWEEP_ARGV, "--threads", "0"], "argument --threads: must be an integer >= 1, got '0'"),
    ([*SWEEP_ARGV, "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got '0'"),
    ([*SWEEP_ARGV, "--n-per-task", "-1"], "argument --n-per-task: must be an integer >= 1, got '-1'"),
    ([*SWEEP_ARGV, "--frames", "0"], "argument --frames: must be an integer >= 1, got '0'"),
    ([*SWEEP_ARGV, "--k", "0"], "argument --k: must be an integer >= 1, got '0'"),
    ([*SWEEP_ARGV, "--layers", "3", "-1"], "argument --layers: must be an integer >= 0, got '-1'"),
    ([*SWEEP_ARGV, "--shard", "0", "--num-shards", "0"], "argument --num-shards: must be an integer >= 1, got '0'"),
    ([*SWEEP_ARGV, "--manifest", "toy_models"], "argument --manifest: invalid choice: 'toy_models' (choose from"),
    (["validate", "--manifest", "toy_models", "--root", "."], "invalid choice: 'toy_models' (choose from"),
    (["validate", "--manifest", "synthetic", "--root", ".", "--min-frames", "8"], "--min-frames needs --decode-videos"),
    (["validate", "--manifest", "synthetic", "--root", ".", "--decode-videos", "--min-frames", "-3"],
     "argument --min-frames: must be an integer >= 1, got '-3'"),
])
def test_command_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"--out": "FILE"}, "error: --out FILE is a file; give a results folder"),
    ({"--device": "gpu"}, "error: --device 'gpu' is not a device; valid: cuda, cuda:N, cpu"),
    ({"--flows": "vidoe->last"}, "error: --flows: flow 'vidoe->last': unknown token group 'vidoe'"),
    ({"--shard": "5", "--num-shards": "2"}, "error: --shard/--num-shards: shard must be in 0..num_shards-1"),
    ({"--shard": "1"}, "error: --shard/--num-shards: give both shard and num_shards or neither"),
    ({"--benchmark": "MISSING"}, "error: benchmark folder not found: MISSING (manifest 'synthetic')"),
    ({"--benchmark": "FILE"}, "error: benchmark folder a file, not a folder: FILE"),
    ({"--model": "toy-videolm"}, "error: model 'toy-videolm': no checkpoint directory"),
    ({"--k": "100"}, "error: toy-videollm has 12 layers: window size k must be an integer in 1..12"),
    ({"--layers": "12"}, "error: toy-videollm has 12 layers: sweep layers must be a non-empty list of integers in 0..11"),
])
def test_sweep_command_errors_are_one_line_before_any_work(bench, tmp_path, change, message, capsys):
    """A mistake in the sweep command's input exits with one line naming the argument (no traceback), before the
    model loads where the model is not needed to see it, and stores nothing."""
    (tmp_path / "FILE").write_text("")
    args = {"--model": "toy-videollm", "--benchmark": str(bench), "--flows": "video->last", "--device": "cpu",
            "--out": str(tmp_path / "out"), **change}
    paths = {"FILE": str(tmp_path / "FILE"), "MISSING": str(tmp_path / "missing")}
    argv = ["sweep", *[a for k, v in args.items() for a in (k, paths.get(v, v))]]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    for name, path in paths.items():
        message = message.replace(name, path)
    assert str(exit_.value.code).startswith(message), exit_.value.code
    assert not (tmp_path / "out").exists()


def test_a_benchmark_read_under_another_benchmarks_manifest_is_refused(bench, tmp_path):
    """A rendered benchmark read as a real one, or a real one's copy read as the synthetic benchmark (the sweep's
    default manifest), would store its results under the other benchmark's name."""
    with pytest.raises(data.BenchmarkError, match=r"holds benchmark_info.json: it is a synthetic benchmark rendered by "
                                                  r"python -m flowutils data, not a copy of 'tvbench'"):
        data.load_benchmark(bench, "tvbench")
    copy = copy_benchmark(bench, tmp_path)
    (copy / "benchmark_info.json").unlink()
    with pytest.raises(data.BenchmarkError, match=r"has no benchmark_info.json, which every synthetic benchmark "
                                                  r"\(python -m flowutils data\) has: .* \(valid: \['longvideobench'"):
        data.load_benchmark(copy, "synthetic")
    assert any("has no benchmark_info.json" in p for p in tvbench.validate_benchmark(copy, "synthetic"))
    with pytest.raises(data.BenchmarkError, match=rf"{bench.parent} is the folder the data command renders benchmarks "
                                                  rf"in, not a benchmark: give one of \['{bench}'\]"):
        data.load_benchmark(bench.parent, "synthetic")
    assert len(data.load_benchmark(bench, "synthetic", tasks=["object_count"])) == 2


def object_count_sweep(benchmark, out) -> list[str]:
    """The sweep command of one flow at one layer over the benchmark's Object Count questions."""
    return ["sweep", "--model", "toy-videollm", "--benchmark", str(benchmark), "--tasks", "object_count", "--flows",
            "video->last", "--layers", "0", "--device", "cpu", "--out", str(out)]


def corrupt(root) -> None:
    """Every Object Count video of the benchmark copy ``root`` replaced by text."""
    for video in (root / "video" / "object_count").glob("*.mp4"):
        video.write_text("not a video")


@pytest.mark.parametrize("frames", [4, 1000])
def test_a_sweep_that_skips_every_question_says_why_and_fails(bench, tmp_path, frames, capsys):
    """Every question skipped (here: a corrupt video, or more frames asked for than the videos have) is a failed
    run, and the sweep's last lines give each skipped question's reason."""
    root = copy_benchmark(bench, tmp_path)
    if frames == 4:
        corrupt(root)
    ok = object_count_sweep(bench, tmp_path / "ok")
    assert cli.main(ok) == 0
    bad = [*object_count_sweep(root, tmp_path / "bad"), "--frames", str(frames)]
    assert cli.main(bad) == 1
    lines = capsys.readouterr().out.splitlines()
    reason = "cannot decode video" if frames == 4 else "has 16 frames, fewer than the 1000 asked for"
    skipped = [line for line in lines if line.startswith("  skipped object_count/")]
    assert len(skipped) == 2 and all(reason in line and "object_count_0000" in line for line in skipped), lines


# ------------------------------------------------------------------ during a sweep: counted skips
def test_undecodable_and_too_short_videos_are_counted_skips(fm, bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    (root / "video" / "action_antonym" / "action_antonym_00000.mp4").write_bytes(b"\0" * 4096)
    samples = data.load_benchmark(root, "synthetic", tasks=["action_antonym"])
    table = run_sweep(fm, samples, Sweep(["video->last"], **SWEEP), progress=False)
    skipped = pd.DataFrame(table.attrs["skipped"])
    assert list(skipped.sample_id) == ["action_antonym/0"] and list(skipped.kind) == ["video"]
    assert "action_antonym_00000.mp4" in skipped.reason[0]
    assert set(table.sample_id) == {"action_antonym/1"}  # the other question still ran
    short = pd.DataFrame(run_sweep(fm, samples[1:], Sweep(["video->last"], **{**SWEEP, "num_frames": 32}), progress=False).attrs["skipped"])
    assert list(short.kind) == ["video"] and "fewer than the 32" in short.reason[0]


def test_spans_not_found_is_a_counted_skip(fm, questions):
    class WrongTokensPerFrame:  # an adapter that expects one token per frame too many
        def __getattr__(self, name):
            return getattr(fm.adapter, name)

        def tokens_per_frame(self, *args):
            return fm.adapter.tokens_per_frame(*args) + 1

    wrong = FlowModel(fm.model, fm.processor, adapter=WrongTokensPerFrame(), name="tiny")
    table = run_sweep(wrong, questions[:2], Sweep(["video->last"], **SWEEP), progress=False)
    fm.model.set_attn_implementation("flow_knockout")
    assert len(table) == 0 and list(pd.DataFrame(table.attrs["skipped"]).kind) == ["spans", "spans"]


@pytest.mark.parametrize("pipelined", [False, True], ids=["rows-at-once", "rows-after-the-next-launch"])
def test_nan_logits_are_a_counted_skip(fm, questions, tmp_path, monkeypatch, pipelined):
    # pipelined (as on a GPU): the baseline's check waits until the rows are read
    monkeypatch.setattr(runner, "pipelines", lambda fm: pipelined)
    broken = copy.deepcopy(fm)
    with torch.no_grad():
        broken.lm_head.weight[5] = float("nan")
    table = run_sweep(broken, questions, Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    assert len(table) == 0 and list(pd.DataFrame(table.attrs["skipped"]).kind) == ["non-finite"] * 3
    assert set(pd.DataFrame(table.attrs["skipped"]).reason) == {"non-finite: baseline logits contain NaN or inf"}


def test_out_of_memory_is_retried_with_a_smaller_batch_then_skipped(fm, questions, tmp_path, monkeypatch):
    reference = run_sweep(fm, questions, Sweep(["video->last", "cross-frame"], **SWEEP), progress=False)
    real, seen = runner.knockout_logits, []

    def small_memory(*args, batch_size, **kwargs):  # only batches of <= 2 plans fit
        seen.append(batch_size)
        if batch_size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return real(*args, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(runner, "knockout_logits", small_memory)
    retried = run_sweep(fm, questions, Sweep(["video->last", "cross-frame"], **SWEEP), batch_size=8, progress=False)
    assert seen[:3] == [8, 4, 2]
    # the same numbers up to float rounding (a smaller batch sums in another order)
    pd.testing.assert_frame_equal(retried, reference, check_exact=False, rtol=1e-5, atol=1e-4)

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(runner, "knockout_logits", no_memory)
    skipped = run_sweep(fm, questions, Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    assert list(pd.DataFrame(skipped.attrs["skipped"]).kind) == ["oom"] * 3
    monkeypatch.setattr(runner, "knockout_logits", real)  # a rerun with memory tries them again
    rerun = run_sweep(fm, questions, Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    assert rerun.sample_id.nunique() == 3 and len(rerun.attrs["skipped"]) == 0


# ---- flows and plans that would cut nothing, or the wrong tokens (issue 27, class 4) ---------------------------

@pytest.mark.parametrize("flow", ["last->video", "question->video", "frame:3->frame:1", "true option->non-option question",
                                  "last->system", "suffix->question"])
def test_a_flow_against_causal_order_is_refused_when_parsed(flow):
    from flowutils.knockout.flows import parse_flow

    with pytest.raises(ValueError, match="cuts nothing: every .* comes after every"):
        parse_flow(flow)


@pytest.mark.parametrize("flow", ["question->last", "last->last", "labels->non_option_question", "frame:1->frame:3",
                                  "last->suffix", "video->video", "non-option question->labels"])
def test_flows_along_causal_order_are_accepted(flow, fm, questions):
    from flowutils.knockout.flows import flow_blocks, parse_flow

    parse_flow(flow)
    p = fm.prepare(questions[0].frames, questions[0].question, questions[0].candidates, questions[0].answer)
    (targets, sources), = flow_blocks(flow, p.layout)
    assert int(sources.min()) <= int(targets.max())  # some cut edge lies on or below the causal diagonal


def test_an_option_flow_that_is_empty_in_this_input_is_refused(fm, questions):
    """true option -> false options cuts nothing where every false option comes before the true one."""
    from flowutils.knockout.flows import flow_blocks

    s = questions[0]
    last = s.candidates[-1]  # the true option is the last one: every false option precedes it
    p = fm.prepare(s.frames, s.question, s.candidates, last)
    with pytest.raises(ValueError, match="cuts nothing in this input"):
        flow_blocks("true_option->false_options", p.layout)
    flow_blocks("false_options->true_option", p.layout)


@pytest.mark.parametrize("group, message", [("frame:-1", "names no frame"), ("frame:abc", "names no frame"),
                                            ("frame:", "names no frame")])
def test_a_frame_group_that_is_no_index_is_refused_when_parsed(group, message):
    from flowutils.knockout.flows import parse_flow

    with pytest.raises(ValueError, match=message):
        parse_flow(f"{group}->last")


def test_a_frame_past_the_last_is_refused_with_the_frame_count(fm, questions):
    s = questions[0]
    p = fm.prepare(s.frames, s.question, s.candidates, s.answer)
    n = p.layout.num_frames
    with pytest.raises(ValueError, match=rf"frame 99 does not exist: this input has {n} frames, valid: frame:0 .. frame:{n - 1}"):
        KnockoutPlan.from_flows(p.layout, ["frame:99->last"], [0])


def test_a_plan_built_for_another_input_is_refused(fm, questions):
    """A cross-frame plan of a 4-frame input on an 8-frame one would cut frames 1-3 only."""
    s = questions[0]
    four = fm.prepare(s.frames[:4], s.question, s.candidates, s.answer)
    eight = fm.prepare(s.frames[:8] if len(s.frames) >= 8 else list(s.frames) * 2, s.question, s.candidates, s.answer)
    assert four.layout.num_frames != eight.layout.num_frames
    plan = KnockoutPlan.from_flows(four.layout, ["cross-frame"], [0, 1])
    for backend in ("fast", "reference"):
        with pytest.raises(ValueError, match=r"built for another input \(4 frames, \d+ tokens\) than this one \(8 frames"):
            knockout_logits(fm, eight, [plan], backend)
    from flowutils.analysis.attention_maps import attention_to_video
    from flowutils.engine import generate

    with pytest.raises(ValueError, match="built for another input"):
        generate(fm, eight, plan, max_new_tokens=1)
    with pytest.raises(ValueError, match="built for another input"):
        attention_to_video(fm, eight, eight.layout.last, plan)
    knockout_logits(fm, four, [plan], "fast")  # its own input


def test_generate_and_attention_maps_check_plan_layers(fm, questions):
    from flowutils.analysis.attention_maps import attention_to_video
    from flowutils.engine import generate

    s = questions[0]
    p = fm.prepare(s.frames, s.question, s.candidates, s.answer)
    plan = KnockoutPlan.from_flows(p.layout, ["video->last"], [fm.n_layers])
    with pytest.raises(ValueError, match=rf"layers \[{fm.n_layers}\] outside 0..{fm.n_layers - 1}"):
        generate(fm, p, plan, max_new_tokens=1)
    with pytest.raises(ValueError, match=rf"layers \[{fm.n_layers}\] outside"):
        attention_to_video(fm, p, p.layout.last, plan)


@pytest.mark.parametrize("rows", [[-1], [10**6], [0.5]])
def test_attention_map_rows_outside_the_input_are_refused(fm, questions, rows):
    from flowutils.analysis.attention_maps import attention_to_video

    s = questions[0]
    p = fm.prepare(s.frames, s.question, s.candidates, s.answer)
    with pytest.raises(ValueError, match=rf"query positions \[{rows[0]}\] outside 0..{p.layout.n - 1}"):
        attention_to_video(fm, p, rows)


def test_a_numpy_integer_is_a_plan_layer(fm, questions):
    import numpy as np

    s = questions[0]
    p = fm.prepare(s.frames, s.question, s.candidates, s.answer)
    blocks = KnockoutPlan.from_flows(p.layout, ["video->last"], [1]).blocks[1]
    as_numpy = KnockoutPlan({np.int64(1): blocks})
    as_int = KnockoutPlan({1: blocks})
    assert list(as_numpy.blocks) == [1] and type(list(as_numpy.blocks)[0]) is int
    assert torch.equal(knockout_logits(fm, p, [as_numpy], "reference"), knockout_logits(fm, p, [as_int], "reference"))
    via_flows = KnockoutPlan.from_flows(p.layout, ["video->last"], np.arange(1, 3))
    assert sorted(via_flows.blocks) == [1, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error of a machine without a GPU")
def test_sweep_on_cuda_without_a_gpu_is_a_clear_error(bench, tmp_path):
    argv = ["sweep", "--model", "toy-videollm", "--benchmark", str(bench), "--flows", "video->last", "--device", "cuda",
            "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="--device cuda: no CUDA GPU is visible on this machine; valid here: --device cpu"):
        cli.main(argv)


@pytest.mark.parametrize("extra, env, message", [
    (["--shard", "0", "--num-shards", "2"], {}, r"--processes 2 shards the questions between its processes; leave "
                                                r"--shard/--num-shards out"),
    ([], {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "4"},
     r"--processes 2 launches its own ranks, and this process is already one of 4 ranks of a launcher \(WORLD_SIZE\): "
     r"leave --processes out under torchrun"),
    # a user's own torchrun of as many ranks: they would all land on one GPU instead of one GPU a rank
    ([], {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"},
     r"already one of 2 ranks of a launcher")])
def test_processes_that_would_sweep_questions_twice_are_refused(bench, tmp_path, monkeypatch, extra, env, message):
    """Before any rank starts: explicit shards would be run by every process, and a launcher's ranks would each
    launch ranks of their own."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    argv = ["sweep", "--model", "toy-videollm", "--benchmark", str(bench), "--flows", "video->last", "--device", "cpu",
            "--processes", "2", *extra, "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)
    assert not any(tmp_path.iterdir())  # nothing was launched or stored


@pytest.mark.parametrize("env", [{"RANK": "1", "WORLD_SIZE": "4"}, {"WORLD_SIZE": "2"}])
def test_stray_rank_without_a_launcher_is_a_clear_error(fm, questions, monkeypatch, env):
    """RANK/WORLD_SIZE left in the environment without torchrun would silently sweep a fraction of the questions."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match="not started by torchrun or accelerate"):
        run_sweep(fm, questions, Sweep(["video->last"], **SWEEP), progress=False)
    table = run_sweep(fm, questions, Sweep(["video->last"], **SWEEP), shard=0, num_shards=1, progress=False)  # on purpose: all of them
    assert table.sample_id.nunique() == len(questions)


def test_an_interval_past_the_end_of_the_video_is_a_clear_error(bench):
    video = next((bench / "video").rglob("*.mp4"))
    data.read_frames(video, 4, (0.0, 100.0))  # an end past the video's is clipped to it
    with pytest.raises(data.BenchmarkError, match=r"interval \[50.0, 60.0\] s of .* starts after the video ends"):
        data.read_frames(video, 4, (50.0, 60.0))


@pytest.mark.parametrize("flags", [(0, 1), (1, 2)])
def test_an_explicit_shard_given_to_every_rank_of_a_launch_is_refused(fm, questions, monkeypatch, flags):
    """torchrun ranks all given --shard 0 --num-shards 1 would each sweep, and store, the same questions."""
    for k, v in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=r"given to every one of the 2 ranks of this launch .* Leave shard and "
                                         r"num_shards \(--shard/--num-shards\) out under torchrun"):
        run_sweep(fm, questions, Sweep(["video->last"], **SWEEP), shard=flags[0], num_shards=flags[1], progress=False)


# ------------------------------------------------------------------ context length
def test_a_prompt_longer_than_the_context_is_a_counted_skip(questions, tmp_path):
    """Past its positions the model still answers, but not as it would: the question is skipped with its reason."""
    fm = tiny_llava_next_video()
    n = fm.prepare_sample(questions[0], 4).layout.n
    fm.model.config.text_config.max_position_embeddings = n - 1
    for out in (None, tmp_path):
        table = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=out, progress=False)
        assert len(table) == 0
        [skip] = table.attrs["skipped"]
        assert skip["kind"] == "context" and skip["reason"].startswith(
            f"context: prompt of {n} tokens (") and f"context of {n - 1} positions (max_position_embeddings)" in skip["reason"]
    fm.model.config.text_config.max_position_embeddings = n
    assert len(run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), progress=False))


# ------------------------------------------------------------------ summaries of one run only
@pytest.mark.parametrize("change, differing", [(dict(k=2), r"k: \['1', '2'\]"),
                                               (dict(style="inverse"), r"style: \['center', 'inverse'\]")])
def test_summarize_refuses_a_table_mixing_runs(fm, questions, change, differing):
    one = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), progress=False)
    two = run_sweep(fm, questions[:1], Sweep(["video->last"], **{**SWEEP, **change}), progress=False)
    with pytest.raises(ValueError, match=rf"mixes runs that differ in {differing}"):
        summarize(pd.concat([one, two], ignore_index=True))
    other = tiny_llava_next_video(seed=1, name="other")
    three = run_sweep(other, questions[:1], Sweep(["video->last"], **SWEEP), progress=False)
    with pytest.raises(ValueError, match=r"model: \['other', 'tiny'\]"):
        summarize(pd.concat([one, three], ignore_index=True))
    assert len(summarize(one)) == len(one)  # one run: one row per flow and layer


# ------------------------------------------------------------------ a notebook on an empty table
def test_an_empty_analysis_table_says_why(fm, questions):
    """What a notebook calls before it plots: an empty table says how many questions were excluded or skipped."""
    from flowutils.analysis import require_rows

    answered = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), progress=False).correct_baseline[0]
    mode = "wrong" if answered else "correct"  # the mode that leaves this question out
    table = run_sweep(fm, questions[:1], Sweep(["video->last"], **{**SWEEP, "sample_mode": mode}), progress=False)
    with pytest.raises(ValueError, match=rf"figure 3: no rows to show. 1 question\(s\) excluded by "
                                         rf"sample_mode='{mode}' .*; no question skipped. Try sample_mode='all'"):
        require_rows(table, "figure 3")
    fm_short = tiny_llava_next_video()  # all skipped: the skips are counted by kind
    fm_short.model.config.text_config.max_position_embeddings = 8
    skipped = run_sweep(fm_short, questions, Sweep(["video->last"], **SWEEP), progress=False)
    with pytest.raises(ValueError, match=r"figure 3: no rows to show. 3 question\(s\) skipped: 3 context. Try"):
        require_rows(skipped, "figure 3")
    full = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), progress=False)
    assert require_rows(full, "figure 3") is full


def test_a_skipped_question_is_tried_again_once_its_video_is_repaired(bench, tmp_path, capsys):
    """A resume refuses a finished question whose content changed, but a skipped one (a corrupt video) is measured
    once the video is repaired, into the same results folder, as a run on the good video measures it."""
    root = copy_benchmark(bench, tmp_path)
    video = root / "video" / "object_count" / "object_count_00000.mp4"
    good = video.read_bytes()
    video.write_text("not a video")
    argv = object_count_sweep(root, tmp_path / "out")
    assert cli.main(argv) == 0
    assert "1 rows from 1 question(s); 1 question(s) skipped: 1 video" in capsys.readouterr().out
    video.write_bytes(good)
    assert cli.main(argv) == 0
    assert "2 rows from 2 question(s); no question skipped" in capsys.readouterr().out
    fresh = object_count_sweep(root, tmp_path / "fresh")
    assert cli.main(fresh) == 0
    key = next((tmp_path / "out").iterdir()).name
    again, once = (load_results(tmp_path / d / key) for d in ("out", "fresh"))
    columns = ["sample_id", "logit_diff_change"]
    pd.testing.assert_frame_equal(again.sort_values("sample_id")[columns].reset_index(drop=True),
                                  once.sort_values("sample_id")[columns].reset_index(drop=True))


def test_a_question_measured_again_under_another_sharding_is_read_once(bench, tmp_path, capsys):
    """Skipped under two shards (two shard files), then measured by a run of one: its done record wins over the old
    skip, so a third run measures nothing again and the table equals a fresh run's."""
    root = copy_benchmark(bench, tmp_path)
    video = root / "video" / "object_count" / "object_count_00001.mp4"
    good = video.read_bytes()
    video.write_text("not a video")
    argv = object_count_sweep(root, tmp_path / "out")
    for shard in ("0", "1"):
        cli.main([*argv, "--shard", shard, "--num-shards", "2"])
    video.write_bytes(good)
    assert cli.main(argv) == 0
    assert "2 rows from 2 question(s); no question skipped" in capsys.readouterr().out
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 rows from 2 question(s); no question skipped" in out and "timings: no question computed" in out
    assert cli.main(object_count_sweep(root, tmp_path / "fresh")) == 0
    key = next((tmp_path / "out").iterdir()).name
    again, once = (load_results(tmp_path / d / key) for d in ("out", "fresh"))
    assert not again.attrs["skipped"] and len(again) == 2
    columns = ["sample_id", "logit_diff_change"]
    pd.testing.assert_frame_equal(again.sort_values("sample_id")[columns].reset_index(drop=True),
                                  once.sort_values("sample_id")[columns].reset_index(drop=True))


def test_processes_that_skipped_every_question_fail_with_the_reasons(bench, tmp_path):
    """The summary of a --processes run (the store its ranks wrote): every question skipped is a failed run."""
    root = copy_benchmark(bench, tmp_path)
    corrupt(root)
    argv = object_count_sweep(root, tmp_path / "out")
    started = time.time() - 1
    for shard in ("0", "1"):  # what the two ranks of --processes 2 write
        assert cli.main([*argv, "--shard", shard, "--num-shards", "2"]) == 1
    text, measured_nothing = cli.merged_summary(tmp_path / "out", started, 2)
    lines = text.splitlines()
    assert measured_nothing and lines[0].startswith("all 2 processes: 0 rows from 0 question(s) in the store; "
                                                    "2 question(s) skipped: 2 video")
    assert [line.split(":")[0] for line in lines[1:]] == ["  skipped object_count/0", "  skipped object_count/1"]


def test_a_library_error_keeps_its_traceback(bench, tmp_path, monkeypatch):
    """Only the errors flowutils raises for its input become one line: a missing file met inside a library (a
    compiler, say) is raised as it is."""
    def missing_compiler(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "g++")

    monkeypatch.setattr("flowutils.models.loading.load", missing_compiler)
    argv = ["sweep", "--model", "toy-videollm", "--benchmark", str(bench), "--flows", "video->last", "--device", "cpu",
            "--out", str(tmp_path / "out")]
    with pytest.raises(FileNotFoundError, match="g\\+\\+"):
        cli.main(argv)
