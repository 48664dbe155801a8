"""The per-question runner under every analysis: each resumes from the result store without computing a
finished question again, counts a skip instead of crashing, and retries or skips out-of-memory; the
runner's own rules (sample mode, one question per task, the baseline run once) against plain loops."""

import numpy as np
import pandas as pd
import pytest
import torch

from flowutils.book import explore
from flowutils.analysis import runner
from flowutils.paper import answer, integration, keywords, pathways, temporal
from flowutils.analysis.sweep import Sweep, run_sweep
from flowutils.data import load_benchmark
from flowutils.engine import generate
from flowutils.knockout.plan import KnockoutPlan
from flowutils.models import load

from conftest import copy_benchmark, tiny_llava_next_video, unmodified_logits

EFFECTIVE = {"cross-frame": (0, 1), "video->question": (1, 2), "question->last": (2, 3)}
# every analysis that loops over questions, as (model fixture, call); open-ended answers need questions the
# model answers correctly, which the random-weight tiny model does not
ANALYSES = {
    "run_sweep": ("tiny_fm", lambda fm, qs, **kw: run_sweep(fm, qs, Sweep(["video->last"], k=1, sample_mode="all",
                                                                             num_frames=4), progress=False, **kw)),
    "run_pathways": ("tiny_fm", lambda fm, qs, **kw: pathways.run_pathways(fm, qs, EFFECTIVE, seeds=[0, 1],
                                                                          num_frames=4, progress=False, **kw)),
    "answer_table": ("tiny_fm", lambda fm, qs, **kw: answer.answer_table(fm, qs, 4, progress=False, **kw)),
    "keyword_hits": ("tiny_fm", lambda fm, qs, **kw: keywords.keyword_hits(fm, qs, keywords.synthetic_keywords(),
                                                                          num_frames=4, sample_mode="all", **kw)),
    "word_attention": ("tiny_fm", lambda fm, qs, **kw: integration.word_attention(fm, qs, [1, 2], num_frames=4, **kw)),
    "open_ended_examples": ("toy_fm", lambda fm, qs, **kw: temporal.open_ended_examples(fm, qs, [0, 1], 4, **kw)),
}


@pytest.fixture(scope="module")
def tiny_fm():
    return tiny_llava_next_video()


@pytest.fixture(scope="module")
def toy_fm():
    return load("toy-videollm", device="cpu")


@pytest.fixture(scope="module")
def broken(bench, tmp_path_factory):
    """The two-per-task benchmark with action_antonym/0's video overwritten by zeros."""
    root = copy_benchmark(bench, tmp_path_factory.mktemp("broken"))
    (root / "video" / "action_antonym" / "action_antonym_00000.mp4").write_bytes(b"\0" * 4096)
    return load_benchmark(root, "synthetic")


def table_of(result):
    return result[0] if isinstance(result, tuple) else result  # word_attention: (table, maps)


def assert_same(a, b):
    pd.testing.assert_frame_equal(table_of(a), table_of(b))
    assert table_of(a).attrs["skipped"] == table_of(b).attrs["skipped"]
    if isinstance(a, tuple):
        assert a[1].keys() == b[1].keys() and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


def out_of_memory(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory")


def spy(monkeypatch):
    """The ids of the questions the runner computes from now on."""
    ran, question = [], runner._question
    monkeypatch.setattr(runner, "_question", lambda fm, sample, index, sid, *a, **kw: ran.append(sid) or question(
        fm, sample, index, sid, *a, **kw))
    return ran


@pytest.mark.parametrize("name", list(ANALYSES))
def test_each_analysis_resumes_from_the_store_and_counts_a_skip(name, broken, tmp_path, monkeypatch, request):
    model, run = ANALYSES[name]
    fm = request.getfixturevalue(model)
    memory = run(fm, broken)  # no store: the reference
    assert len(table_of(memory)) > 0
    skipped = pd.DataFrame(table_of(memory).attrs["skipped"])
    assert list(skipped.sample_id) == ["action_antonym/0"] and list(skipped.kind) == ["video"]
    assert "action_antonym_00000.mp4" in skipped.reason[0]  # a counted skip with its reason, not a crash
    part = run(fm, broken[:5], out=tmp_path)
    assert table_of(part).attrs["skipped"] == table_of(memory).attrs["skipped"]
    ran = spy(monkeypatch)
    resumed = run(fm, broken, out=tmp_path)
    assert ran and not set(ran) & {q.sample_id for q in broken[:5]}  # only the questions not stored ran
    assert_same(resumed, memory)
    assert table_of(resumed).attrs["store"] == table_of(part).attrs["store"] is not None
    # a third call computes nothing at all: no question prepared, no forward
    for method in ("prepare_sample", "forward"):
        monkeypatch.setattr(fm, method, lambda *a, **k: pytest.fail("a finished question was computed again"))
    ran.clear()
    assert_same(run(fm, broken, out=tmp_path), memory)
    assert ran == []


@pytest.mark.parametrize("name", list(ANALYSES))
def test_out_of_memory_in_any_forward_is_a_counted_skip_that_a_rerun_retries(name, broken, tmp_path, monkeypatch,
                                                                             request):
    model, run = ANALYSES[name]
    fm = request.getfixturevalue(model)
    questions = broken[1:]  # readable videos only
    reference = run(fm, questions)
    # the questions that need a forward: those with rows (open-ended examples, which have no id column, run
    # the baseline of every question for the sample mode)
    measured = set(table_of(reference).get("sample_id", [q.sample_id for q in questions]))
    with monkeypatch.context() as m:
        m.setattr(fm, "forward", out_of_memory)
        starved = run(fm, questions, out=tmp_path)
    skipped = pd.DataFrame(table_of(starved).attrs["skipped"])
    assert len(table_of(starved)) == 0 and set(skipped.kind) == {"oom"}
    assert measured <= set(skipped.sample_id)  # every question that gives rows was skipped, none crashed the run
    assert_same(run(fm, questions, out=tmp_path), reference)  # with memory again, the oom skips run


def test_table3_halves_its_batch_on_out_of_memory_then_skips_and_a_rerun_retries(tiny_fm, samples, tmp_path,
                                                                                 monkeypatch):
    """Table 3's knockouts go through the runner's retry (the sweep's numbers under it: test_bad_input)."""
    kw = dict(seeds=[0, 1, 2], num_frames=4, progress=False, batch_size=8)
    seen = []

    def no_memory(*args, batch_size, **kwargs):
        seen.append(batch_size)
        raise torch.OutOfMemoryError("CUDA out of memory")

    with monkeypatch.context() as m:
        m.setattr(runner, "knockout_logits", no_memory)
        skipped = pathways.run_pathways(tiny_fm, samples, EFFECTIVE, out=tmp_path, **kw)
    assert seen == [8, 4, 2, 1] * len(samples) and len(skipped) == 0
    reasons = pd.DataFrame(skipped.attrs["skipped"]).reason
    assert len(reasons) == len(samples) and reasons.str.startswith("oom: out of memory even with one plan").all()
    rerun = pathways.run_pathways(tiny_fm, samples, EFFECTIVE, out=tmp_path, **kw)
    pd.testing.assert_frame_equal(rerun, pathways.run_pathways(tiny_fm, samples, EFFECTIVE, **kw))


def test_open_ended_examples_are_the_first_correct_question_of_each_task(toy_fm, broken, tmp_path):
    """Against a plain loop: the first question of each task that the unmodified model answers correctly."""
    layers = [0, 1]
    first_sentence = lambda text: "".join(text.partition(".")[:2]).strip()  # noqa: E731
    expected = []
    for sample in broken[1:]:
        if sample.task in {task for task, _ in expected}:
            continue
        p = toy_fm.prepare_sample(sample, 4)
        if int(unmodified_logits(toy_fm, p)[0, -1].argmax()) == p.gold_id:
            plan = KnockoutPlan.from_flows(p.layout, ["cross-frame"], layers)
            expected.append((sample.task, [first_sentence(generate(toy_fm, p, x, 10)) for x in (None, plan)]))
    table = temporal.open_ended_examples(toy_fm, broken, layers, 4)
    assert len(expected) >= 2 and len(table) == len(expected)
    assert list(table.task) == [temporal.task_title(t) for t, _ in expected]
    for row, (_, texts) in zip(table.itertuples(), expected):
        assert [row.baseline, row.knockout] == texts and row.changed == (texts[0] != texts[1])
    # a resume from a store holding some of them picks the same questions
    temporal.open_ended_examples(toy_fm, broken[:4], layers, 4, out=tmp_path)
    pd.testing.assert_frame_equal(temporal.open_ended_examples(toy_fm, broken, layers, 4, out=tmp_path), table)


@pytest.mark.parametrize("mode", ["correct", "wrong", "all"])
def test_the_sample_mode_keeps_the_questions_a_plain_loop_keeps_and_runs_the_baseline_once(toy_fm, broken, mode,
                                                                                          monkeypatch):
    questions = broken[1:]
    correct = {}
    for s in questions:
        p = toy_fm.prepare_sample(s, 4)
        correct[s.sample_id] = int(unmodified_logits(toy_fm, p)[0, -1].argmax()) == p.gold_id
    kept = [sid for sid, c in correct.items() if mode == "all" or c == (mode == "correct")]
    assert 0 < sum(correct.values()) < len(questions)  # both kinds present: the modes differ
    baselines, real = [], runner.run_baseline
    monkeypatch.setattr(runner, "run_baseline", lambda fm, p: baselines.append(p.sample_id) or real(fm, p))

    def measure(question):  # uses the baseline the sample mode already ran
        return [{"sample_id": question.sample_id, "correct": question.correct,
                 "p": float(question.baseline.probs.max())}]

    table = runner.run_questions(toy_fm, questions, measure, analysis="test", num_frames=4, sample_mode=mode,
                                 progress=False)
    assert list(table.sample_id) == kept and table.correct.tolist() == [correct[sid] for sid in kept]
    assert baselines == [s.sample_id for s in questions]  # one baseline per question, whoever asks first


def test_a_measurements_skip_is_counted_and_its_errors_are_not(tiny_fm, samples):
    def measure(question):
        if question.index == 1:
            raise runner.Skip("custom", "nothing to measure here")
        return [{"sample_id": question.sample_id, "index": question.index}]

    table = runner.run_questions(tiny_fm, samples, measure, analysis="test", num_frames=4, progress=False)
    assert list(table["index"]) == [0, 2, 3, 4]
    assert table.attrs["skipped"] == [{"sample_id": samples[1].sample_id, "task": samples[1].task, "kind": "custom",
                                       "reason": "custom: nothing to measure here"}]

    def broken_measure(question):
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        runner.run_questions(tiny_fm, samples, broken_measure, analysis="test", num_frames=4, progress=False)


def test_the_explorer_measures_through_the_runner(tiny_fm, samples, broken):
    entry = explore.measure_question(tiny_fm, samples[0], ["video->last", "cross-frame"], k=1, num_frames=4)
    sweep = run_sweep(tiny_fm, samples[:1], Sweep(["video->last", "cross-frame"], k=1, sample_mode="all", num_frames=4),
                      progress=False)
    for flow, g in sweep.groupby("flow"):
        assert entry["knockout"][flow] == np.round(g.relative_change_pct.to_numpy(), 3).tolist()
    assert entry["predicted"] == sweep.predicted.iloc[0] and entry["layers"] == tiny_fm.n_layers
    with pytest.raises(ValueError, match=r"question action_antonym/0 skipped: video: .*action_antonym_00000\.mp4"):
        explore.measure_question(tiny_fm, broken[0], ["video->last"], k=1, num_frames=4)


def test_videos_are_read_ahead_while_a_question_is_measured_and_give_what_a_plain_loop_gives(tiny_fm, broken,
                                                                                              monkeypatch):
    import threading

    read, third_read = [], threading.Event()  # question 0's video is broken: 1 is the first measured

    def recording_clip(sample, num_frames):
        read.append(sample.sample_id)
        if len(read) == 3:
            third_read.set()
        return question_clip(sample, num_frames)

    from flowutils.data.video import question_clip
    monkeypatch.setattr(runner, "question_clip", recording_clip)
    overlapped = []

    def measure(question):
        if question.index == 1:  # the reader thread must fetch the next video while this one is measured
            overlapped.append(third_read.wait(timeout=20))
        pixels = question.prepared.inputs["pixel_values_videos"].double().sum().item()
        return [{"sample_id": question.sample_id, "pixels": pixels}]

    table = runner.run_questions(tiny_fm, broken, measure, analysis="test", num_frames=4, progress=False)
    assert overlapped == [True]
    # the plain loop: each video read when its question comes (the broken one is the runner's "video" skip)
    plain = []
    for i, sample in enumerate(broken):
        try:
            prepared = tiny_fm.prepare_sample(sample, 4)
        except runner.BenchmarkError:
            continue
        plain.append({"sample_id": runner.sample_id(sample, i),
                      "pixels": prepared.inputs["pixel_values_videos"].double().sum().item()})
    pd.testing.assert_frame_equal(table, pd.DataFrame(plain))
    assert [r["kind"] for r in table.attrs["skipped"]] == ["video"]


def test_on_a_gpu_the_reader_thread_prepares_ahead_with_its_own_tokenizer_and_the_sweep_is_unchanged(
        tiny_fm, broken, monkeypatch):
    import threading

    sweep = Sweep(["video->last", "cross-frame"], k=1, sample_mode="all", num_frames=4)
    serial = run_sweep(tiny_fm, broken, sweep, progress=False)  # the CPU default: prepared in the main thread
    assert not serial.attrs["timings"]["prepared_ahead"]
    prepared_in = []  # (thread name, the tokenizer used) per question prepared
    original = type(tiny_fm).prepare_sample

    def recording(self, sample, *args, **kwargs):
        prepared_in.append((threading.current_thread().name, self.tokenizer))
        return original(self, sample, *args, **kwargs)

    monkeypatch.setattr(runner, "prepares_ahead", lambda fm: True)
    monkeypatch.setattr(type(tiny_fm), "prepare_sample", recording)
    ahead = run_sweep(tiny_fm, broken, sweep, progress=False)
    assert ahead.attrs["timings"]["prepared_ahead"]
    # every question that was read (the broken video is not) prepared in the reader thread, on its own tokenizer
    assert len(prepared_in) == len(broken) - 1
    assert all(name.startswith("flowutils-video") and tok is not tiny_fm.tokenizer for name, tok in prepared_in)
    pd.testing.assert_frame_equal(ahead, serial)
    assert ahead.attrs["skipped"] == serial.attrs["skipped"] and [r["kind"] for r in ahead.attrs["skipped"]] == ["video"]


def test_on_a_gpu_a_sweep_reads_a_questions_rows_after_the_next_questions_launch_and_gives_the_same_table(
        tiny_fm, broken, tmp_path, monkeypatch):
    from flowutils.analysis import sweep as sweep_module

    sweep = Sweep(["video->last", "cross-frame"], k=1, sample_mode="all", num_frames=4)
    launch, events = sweep_module.launch_sweep, []
    poisoned = broken[3].sample_id  # its rows fail when read: a skip found after the next question's launch

    def recording(fm, question, *args, **kwargs):
        events.append(("launch", question.sample_id))
        rows = launch(fm, question, *args, **kwargs)

        def read():
            events.append(("read", question.sample_id))
            if question.sample_id == poisoned:
                raise runner.Skip("non-finite", "knockout logits contain NaN or inf (injected)")
            return rows()
        return read

    monkeypatch.setattr(sweep_module, "launch_sweep", recording)
    serial = run_sweep(tiny_fm, broken, sweep, progress=False, out=tmp_path / "serial")  # the CPU default
    assert [kind for kind, _ in events] == ["launch", "read"] * (len(broken) - 1)
    events.clear()
    monkeypatch.setattr(runner, "pipelines", lambda fm: True)
    piped = run_sweep(tiny_fm, broken, sweep, progress=False, out=tmp_path / "piped")
    measured = [sid for kind, sid in events if kind == "launch"]
    assert [sid for kind, sid in events if kind == "read"] == measured
    for before, after in zip(measured, measured[1:]):  # each question's rows read after the next one's launch
        assert events.index(("read", before)) > events.index(("launch", after))
    pd.testing.assert_frame_equal(piped, serial)
    assert piped.attrs["skipped"] == serial.attrs["skipped"]
    assert sorted(r["kind"] for r in piped.attrs["skipped"]) == ["non-finite", "video"]
    assert piped.attrs["timings"]["questions"] == len(broken)
    again = run_sweep(tiny_fm, broken, sweep, progress=False, out=tmp_path / "piped")  # resumed: all stored
    assert again.attrs["timings"]["questions"] == 0
    pd.testing.assert_frame_equal(again, serial)


def test_a_pipelined_question_measured_before_an_interrupt_is_stored_and_not_measured_again(
        tiny_fm, broken, tmp_path, monkeypatch):
    from flowutils.analysis import sweep as sweep_module

    sweep = Sweep(["video->last"], k=1, sample_mode="all", num_frames=4)
    launch, interrupt_at = sweep_module.launch_sweep, broken[3].sample_id

    def interrupted(fm, question, *args, **kwargs):
        if question.sample_id == interrupt_at:
            raise KeyboardInterrupt
        return launch(fm, question, *args, **kwargs)

    monkeypatch.setattr(runner, "pipelines", lambda fm: True)
    monkeypatch.setattr(sweep_module, "launch_sweep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny_fm, broken, sweep, progress=False, out=tmp_path)
    monkeypatch.setattr(sweep_module, "launch_sweep", launch)
    ran = spy(monkeypatch)
    resumed = run_sweep(tiny_fm, broken, sweep, progress=False, out=tmp_path)
    # question 2 was pending when question 3 was interrupted: stored, so only 3 and later run again
    assert ran == [s.sample_id for s in broken[3:]]
    pd.testing.assert_frame_equal(resumed, run_sweep(tiny_fm, broken, sweep, progress=False))


def test_the_runner_times_its_phases_per_question_and_writes_them_to_the_provenance(tiny_fm, bench, tmp_path):
    import json
    import time

    samples = load_benchmark(bench, "synthetic")  # videos on disk: their decoding is timed

    calls = []

    def measure(question):  # the first question slow, as a compilation makes it, and the second slower still
        time.sleep((0.5, 1.0)[len(calls)] if len(calls) < 2 else 0.05)
        calls.append(question.sample_id)
        return [{"sample_id": question.sample_id, "p": float(question.baseline.logits.max())}]

    start = time.perf_counter()
    table = runner.run_questions(tiny_fm, samples, measure, analysis="timed", num_frames=4, progress=False,
                                 out=tmp_path)
    wall = time.perf_counter() - start
    timings = table.attrs["timings"]
    n = len(samples)
    assert n > 1 and timings["questions"] == n
    assert 0.05 * n + 1.4 <= timings["measure_s"] < 0.05 * n + 3  # the sleeps, not the baseline
    # the first question's time holds its slow measurement and not the second's, which comes after it
    assert 0.5 <= timings["first_question_s"] < 1.4 and timings["questions_after_first"] == n - 1
    assert timings["baseline_s"] > 0 and timings["prepare_s"] > 0 and timings["decode_s"] > 0
    phases = sum(timings[f"{p}_s"] for p in runner.Timings.PHASES if p != "decode")
    assert phases <= timings["wall_s"] <= wall
    (provenance,) = (tmp_path / "").glob("*/provenance-*.json")
    assert json.loads(provenance.read_text())["timings"] == timings
    rerun = runner.run_questions(tiny_fm, samples, measure, analysis="timed", num_frames=4, progress=False,
                                 out=tmp_path)
    assert rerun.attrs["timings"]["questions"] == 0  # every question read back from the store
    assert rerun.attrs["timings"]["first_question_s"] is None and rerun.attrs["timings"]["questions_after_first"] == 0


def test_the_timing_line_gives_the_rate_after_the_first_question():
    from flowutils.cli import timing_summary

    timings = {"questions": 3, "wall_s": 10.0, "first_question_s": 4.0, "questions_after_first": 2, "prepared_ahead": True,
               **{f"{p}_s": 0.3 for p in runner.Timings.PHASES}}
    line = timing_summary(timings)
    assert "3 question(s) in 10.0 s, 1080 questions/hour; after the first (4.0 s), 3.000 s/question;" in line
    # one question, or a provenance written before the first question was timed: no rate after it
    assert "after the first" not in timing_summary(dict(timings, questions=1, questions_after_first=0))
    assert "after the first" not in timing_summary({k: v for k, v in timings.items() if k != "first_question_s"})
