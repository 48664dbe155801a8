"""TOMATO, LongVideoBench, Video-MME and VCGBench: loading and validating tiny copies in their releases' layouts.

The copies come from ``benchmark_fixtures`` (one record of TOMATO copied from its release, the
others written from each release's documented schema). Every bad-copy test states the exact list
of problems :func:`validate_benchmark` must return, so a missing, extra or reworded problem fails.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark_fixtures as fx
from flowutils import cli
from flowutils.data import BenchmarkError, VideoQASample, load_benchmark, tvbench, validate_benchmark
from flowutils.data.manifests import benchmark_manifests, load_manifest

NEW = ("tomato", "longvideobench", "videomme", "vcgbench")


@pytest.fixture(scope="session")
def copies(tmp_path_factory):
    base = tmp_path_factory.mktemp("benchmarks")
    return {name: write(base / name) for name, write in fx.WRITERS.items()}


def copy_of(copies, name, tmp_path) -> Path:
    return Path(shutil.copytree(copies[name], tmp_path / name))


def edit(path: Path, change) -> Path:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return path


# ----------------------------------------------------------------------------- loaders
def test_tomato_samples_keep_the_release_s_options_answer_index_and_video(copies):
    root = copies["tomato"]
    samples = load_benchmark(root, "tomato")
    assert [s.sample_id for s in samples] == ["count/0", "count/1", "direction/0", "rotation/0", "rotation/1",
                                               "shape&trend/0", "velocity&frequency/0", "visual_cues/0"]
    released = samples[-1]  # the record copied from the release: answer 2 of five options
    assert released == VideoQASample("visual_cues", 0, root / "videos" / "object" / "0731-00.mp4",
                                     "Which musical instrument sounds last?", tuple(fx.TOMATO_RELEASED["options"]),
                                     "Flute.", record_id="0")
    assert released.answer_letter == "C"
    rotation = samples[4]  # record "5", second in its file
    assert (rotation.index, rotation.record_id, rotation.answer, rotation.answer_letter) == (1, "5", "Clockwise.", "A")
    assert samples[0].video_path == samples[1].video_path == root / "videos" / "human" / "0001-00.mp4"
    assert [s.answer_letter for s in samples[:2]] == ["B", "D"]


def test_longvideobench_samples_by_question_category(copies):
    root = copies["longvideobench"]
    samples = load_benchmark(root, "longvideobench")  # the analysed categories: O2E, O3O, SOS
    assert [s.sample_id for s in samples] == ["O2E/0", "O3O/1", "SOS/2"]
    assert samples[0] == VideoQASample(
        "O2E", 0, root / "videos" / "vidA.mp4", "When the red ball appears, what happens next?",
        ("It stops.", "It bounces.", "It rolls left.", "It rolls right."), "It rolls right.", (0.0, 2.0),
        record_id="vidA_0", subtitle_path=root / "subtitles" / "vidA_en.json")
    assert [s.answer_letter for s in samples] == ["D", "A", "B"]
    assert [s.sample_id for s in load_benchmark(root, "longvideobench", tasks=["S2E"])] == ["S2E/3"]
    assert [s.sample_id for s in load_benchmark(root, "longvideobench", n_per_task=1)] == ["O2E/0", "O3O/1", "SOS/2"]


def test_videomme_options_lose_their_letter_and_keep_its_position(copies):
    root = copies["videomme"]  # the rows as the JSON copy of the parquet file
    samples = load_benchmark(root, "videomme")
    assert [s.sample_id for s in samples] == ["spatial_perception/1", "action_recognition/0"]
    assert samples[1] == VideoQASample("action_recognition", 0, root / "data" / "vmA.mp4", "What is the person doing?",
                                       ("Running.", "Waving.", "Sitting.", "Jumping."), "Waving.", record_id="001-1")
    assert [s.answer_letter for s in samples] == ["C", "B"]
    counting = load_benchmark(root, "videomme", tasks=["counting_problem"])[0]
    assert (counting.video_path, counting.answer, counting.answer_letter) == (root / "data" / "vmB.MP4", "1.", "A")


def _fields(samples):
    return [(s.task, s.index, s.video_path.name, s.question, s.candidates, s.answer, s.record_id) for s in samples]


def test_videomme_parquet_reads_as_its_json_copy(copies, tmp_path):
    pytest.importorskip("pyarrow")
    root = fx.write_videomme(tmp_path / "parquet", parquet=True)
    assert not (root / fx.VIDEOMME_QUESTIONS).with_suffix(".json").exists()
    tasks = list(load_manifest("videomme")["tasks"])
    from_json = load_benchmark(copies["videomme"], "videomme", tasks)
    assert _fields(load_benchmark(root, "videomme", tasks)) == _fields(from_json)


def test_videomme_parquet_without_pyarrow_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails, installed or not
    root = fx.write_videomme(tmp_path / "copy")
    copy = (root / fx.VIDEOMME_QUESTIONS).with_suffix(".json")
    copy.rename(root / fx.VIDEOMME_QUESTIONS)  # only a "parquet" file: it cannot be read
    assert validate_benchmark(root, "videomme", check_counts=False) == [
        f"cannot read {root / fx.VIDEOMME_QUESTIONS}: reading parquet needs pyarrow (pip install pyarrow); or write "
        f"its rows as a JSON list to {copy}"]


def test_vcgbench_samples_are_open_ended(copies):
    root = copies["vcgbench"]
    samples = load_benchmark(root, "vcgbench")
    assert samples[0] == VideoQASample("temporal", 0, root / "Test_Videos" / "v_abc.mp4", fx.VCG_QUESTIONS[0]["Q"], (),
                                       fx.VCG_QUESTIONS[0]["A"], open_ended=True)
    assert samples[2].video_path == root / "Test_Videos" / "v_def.mkv"
    with pytest.raises(ValueError, match="temporal/0 is open-ended: it has no options"):
        samples[0].answer_letter


def test_manifests_name_the_papers_tasks_and_published_counts():
    specs = {name: load_manifest(name) for name in NEW}
    analysed = {name: [t for t, v in s["tasks"].items() if v.get("analysed", True)] for name, s in specs.items()}
    assert analysed == {"tomato": ["count", "direction", "rotation", "shape&trend", "velocity&frequency",
                                   "visual_cues"],
                        "longvideobench": ["O2E", "O3O", "SOS"],
                        "videomme": ["spatial_perception", "action_recognition"],
                        "vcgbench": ["temporal"]}
    assert {name: s["format"] for name, s in specs.items()} == {name: name for name in NEW}
    assert (len(specs["longvideobench"]["tasks"]), len(specs["videomme"]["tasks"])) == (17, 12)
    assert (specs["longvideobench"]["questions"], specs["videomme"]["questions"],
            specs["vcgbench"]["tasks"]["temporal"]["questions"]) == (1337, 2700, 499)


# ----------------------------------------------------------------------------- validation: each kind of bad copy
def _tomato_cases():
    def missing_file(root):
        (root / "data" / "rotation.json").unlink()
        return [f"task 'rotation': question file not found: {root / 'data' / 'rotation.json'}"]

    def malformed_record(root):
        path = edit(root / "data" / "count.json",
                    lambda rs: {**rs, "1": {k: v for k, v in rs["1"].items() if k != "options"}})
        return [f"{path} record '1': missing keys ['options'] "
                f"(required: ['question', 'options', 'answer', 'key', 'demonstration_type'])"]

    def answer_outside_candidates(root):
        path = edit(root / "data" / "count.json", lambda rs: {**rs, "0": {**rs["0"], "answer": 4}})
        return [f"{path} record '0': answer 4 is not an option index; valid: 0..3"]

    def duplicate_id(root):  # JSON itself would keep only the last "1"
        path = root / "data" / "count.json"
        records = json.loads(path.read_text())
        again = json.dumps({**records["1"], "question": "Asked again?"})
        path.write_text(json.dumps(records)[:-1] + f', "1": {again}}}')
        return [f"{path} record '1': the id appears 2 times (JSON keeps only the last)"]

    def duplicate_question(root):  # another id, the same video, question, options and answer
        path = edit(root / "data" / "count.json", lambda rs: {**rs, "7": rs["0"]})
        return [f"{path} record '7': duplicate of record '0' (same key, question, options, answer)"]

    def missing_video(root):
        (root / "videos" / "object" / "0002-00.mp4").unlink()
        return [f"{root / 'data' / 'direction.json'} record '0': video file not found: "
                f"{root / 'videos' / 'object' / '0002-00.mp4'}"]

    def unknown_demonstration_type(root):
        path = edit(root / "data" / "direction.json", lambda rs: {"0": {**rs["0"], "demonstration_type": "robot"}})
        return [f"{path} record '0': demonstration_type 'robot' is not one of ['human', 'object', 'simulated']"]

    return {"missing file": missing_file, "malformed record": malformed_record,
            "answer outside candidates": answer_outside_candidates, "duplicate id": duplicate_id,
            "duplicate question": duplicate_question, "missing video": missing_video,
            "unknown demonstration type": unknown_demonstration_type}


def _longvideobench_cases():
    def question_file(root):
        return root / "lvb_val.json"

    def missing_file(root):
        question_file(root).unlink()
        return [f"question file not found: {question_file(root)}"]

    def malformed_record(root):
        path = edit(question_file(root), lambda qs: [qs[0], {**qs[1], "candidates": "A cube."}, *qs[2:]])
        return [f"{path} entry 1 (id 'vidA_1'): candidates must be a list of at least 2 non-empty strings, "
                f"got 'A cube.'"]

    def answer_outside_candidates(root):
        path = edit(question_file(root), lambda qs: [{**qs[0], "correct_choice": 4}, *qs[1:]])
        return [f"{path} entry 0 (id 'vidA_0'): correct_choice 4 is not an option index; valid: 0..3"]

    def duplicate_id(root):
        path = edit(question_file(root), lambda qs: [*qs[:3], {**qs[3], "id": "vidB_0"}])
        return [f"{path} entry 3 (id 'vidB_0'): duplicate of entry 2 (same id)"]

    def missing_video(root):
        (root / "videos" / "vidB.mp4").unlink()
        return [f"{question_file(root)} entry {i} (id 'vidB_{n}'): video file not found: {root / 'videos' / 'vidB.mp4'}"
                for i, n in ((2, 0), (3, 1))]

    def missing_subtitle(root):
        (root / "subtitles" / "vidA_en.json").unlink()
        return [f"{question_file(root)} entry {i} (id 'vidA_{i}'): subtitle file not found: "
                f"{root / 'subtitles' / 'vidA_en.json'}" for i in (0, 1)]

    def unknown_category(root):
        path = edit(question_file(root), lambda qs: [*qs[:3], {**qs[3], "question_category": "XYZ"}])
        return [f"{path} entry 3 (id 'vidB_1'): question_category 'XYZ' is not a task of the manifest; "
                f"valid: {list(load_manifest('longvideobench')['tasks'])}"]

    return {"missing file": missing_file, "malformed record": malformed_record,
            "answer outside candidates": answer_outside_candidates, "duplicate id": duplicate_id,
            "missing video": missing_video, "missing subtitle": missing_subtitle, "unknown category": unknown_category}


def _videomme_cases():
    def rows(root):
        return (root / fx.VIDEOMME_QUESTIONS).with_suffix(".json")

    def missing_file(root):
        rows(root).unlink()
        return [f"question file not found: {root / fx.VIDEOMME_QUESTIONS} (nor its JSON copy {rows(root)})"]

    def malformed_record(root):
        unlettered = ["A. Top left.", "Top right.", "C. Bottom left.", "D. Bottom right."]
        path = edit(rows(root), lambda rs: [rs[0], {**rs[1], "options": unlettered}, rs[2]])
        return [f"{path} entry 1 (question_id '001-2'): option 1 'Top right.' does not start with 'B. ' "
                f"(options are lettered A., B., ... in order)"]

    def answer_outside_candidates(root):
        path = edit(rows(root), lambda rs: [{**rs[0], "answer": "E"}, *rs[1:]])
        return [f"{path} entry 0 (question_id '001-1'): answer 'E' is not one of the option letters "
                f"['A', 'B', 'C', 'D']"]

    def duplicate_id(root):
        path = edit(rows(root), lambda rs: [*rs[:2], {**rs[2], "question_id": "001-1"}])
        return [f"{path} entry 2 (question_id '001-1'): duplicate of entry 0 (same question_id)"]

    def missing_video(root):
        (root / "data" / "vmB.MP4").unlink()
        return [f"{rows(root)} entry 2 (question_id '002-1'): video file not found: {root / 'data' / 'vmB'}.mp4 "
                f"(nor .MP4, .mkv)"]

    return {"missing file": missing_file, "malformed record": malformed_record,
            "answer outside candidates": answer_outside_candidates, "duplicate id": duplicate_id,
            "missing video": missing_video}


def _vcgbench_cases():
    def questions(root):
        return root / "Benchmarking_QA" / "temporal_qa.json"

    def missing_file(root):
        questions(root).unlink()
        return [f"task 'temporal': question file not found: {questions(root)}"]

    def malformed_record(root):
        path = edit(questions(root), lambda qs: [qs[0], {**qs[1], "Q": 3}, qs[2]])
        return [f"{path} entry 1: Q must be a non-empty string, got 3"]

    def missing_reference_answer(root):  # open-ended: the answer is the reference text, not one of options
        path = edit(questions(root), lambda qs: [qs[0], {k: v for k, v in qs[1].items() if k != "A"}, qs[2]])
        return [f"{path} entry 1: missing keys ['A'] (required: ['video_name', 'Q', 'A'])"]

    def duplicate_question(root):  # the release has no ids: the same question about the same video twice
        path = edit(questions(root), lambda qs: [qs[0], {**qs[0], "A": "Another answer."}, qs[2]])
        return [f"{path} entry 1: duplicate of entry 0 (same video_name, Q)"]

    def missing_video(root):
        (root / "Test_Videos" / "v_def.mkv").unlink()
        return [f"{questions(root)} entry 2: video file not found: {root / 'Test_Videos' / 'v_def'}.mp4 "
                f"(nor .avi, .mov, .mkv)"]

    return {"missing file": missing_file, "malformed record": malformed_record,
            "missing reference answer": missing_reference_answer, "duplicate question": duplicate_question,
            "missing video": missing_video}


CASES = {"tomato": _tomato_cases(), "longvideobench": _longvideobench_cases(), "videomme": _videomme_cases(),
         "vcgbench": _vcgbench_cases()}


@pytest.mark.parametrize("name, kind", [(name, kind) for name, cases in CASES.items() for kind in cases])
def test_each_kind_of_bad_copy_gives_exactly_its_problems(copies, tmp_path, name, kind):
    root = copy_of(copies, name, tmp_path)
    expected = CASES[name][kind](root)
    assert validate_benchmark(root, name, check_counts=False) == expected
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(root, name)
    assert f"{len(expected)} problem(s)" in str(err.value) and all(p in str(err.value) for p in expected)


def test_every_problem_of_a_copy_is_listed_at_once(copies, tmp_path):
    root = copy_of(copies, "longvideobench", tmp_path)
    expected = [p for kind in ("answer outside candidates", "missing subtitle", "duplicate id")
                for p in CASES["longvideobench"][kind](root)]
    assert sorted(validate_benchmark(root, "longvideobench", check_counts=False)) == sorted(expected)


# per copy: a video to corrupt, and the questions that use it (each is reported; the video is decoded once)
SHARED_VIDEOS = {
    "tomato": ("videos/human/0001-00.mp4", ["count entry 0", "count entry 1"]),
    "longvideobench": ("videos/vidB.mp4", ["SOS entry 2", "S2E entry 3"]),
    "videomme": ("data/vmB.MP4", ["counting_problem entry 2"]),
    "vcgbench": ("Test_Videos/v_def.mkv", ["temporal entry 2"]),
}


@pytest.mark.parametrize("name", NEW)
def test_an_undecodable_video_is_found_when_decoding(copies, tmp_path, name):
    root = copy_of(copies, name, tmp_path)
    video, questions = SHARED_VIDEOS[name]
    (root / video).write_bytes(b"\0" * 4096)
    assert validate_benchmark(root, name, check_counts=False) == []  # not decoded: not seen
    problems = validate_benchmark(root, name, check_counts=False, decode_videos=True)
    assert len(problems) == len(questions)
    for problem, question in zip(problems, questions):
        assert problem.startswith(f"{question}: cannot decode video {root / video}: ")


@pytest.mark.parametrize("name", NEW)
def test_too_short_videos_are_found_when_decoding(copies, name):
    problems = validate_benchmark(copies[name], name, check_counts=False, decode_videos=True, min_frames=32)
    assert problems and all("has 16 frames, fewer than the 32 asked for" in p for p in problems)


def test_question_counts_are_compared_with_the_manifest(copies):
    tomato = copies["tomato"]
    assert validate_benchmark(tomato, "tomato") == [
        f"{task}: {tomato / 'data' / t['json']} has {len(fx.TOMATO_FILES[t['json']])} questions, "
        f"manifest says {t['questions']}"
        for task, t in load_manifest("tomato")["tasks"].items()]
    assert validate_benchmark(copies["longvideobench"], "longvideobench") == [
        f"{copies['longvideobench'] / 'lvb_val.json'} has 4 questions, manifest says 1337"]
    assert validate_benchmark(copies["videomme"], "videomme") == [
        f"{(copies['videomme'] / fx.VIDEOMME_QUESTIONS).with_suffix('.json')} has 3 questions, manifest says 2700"]
    assert validate_benchmark(copies["vcgbench"], "vcgbench") == [
        f"temporal: {copies['vcgbench'] / 'Benchmarking_QA' / 'temporal_qa.json'} has 3 questions, manifest says 499"]


# ----------------------------------------------------------------------------- validation: an empty folder fails
def _empty_problems(root: Path, name: str) -> list[str]:
    spec = load_manifest(name)
    if name == "tomato":
        return [f"task {t!r}: question file not found: {root / 'data' / v['json']}" for t, v in spec["tasks"].items()]
    if name == "longvideobench":
        return [f"question file not found: {root / 'lvb_val.json'}"]
    if name == "videomme":
        return [f"question file not found: {root / fx.VIDEOMME_QUESTIONS} "
                f"(nor its JSON copy {(root / fx.VIDEOMME_QUESTIONS).with_suffix('.json')})"]
    if name == "vcgbench":
        return [f"task 'temporal': question file not found: {root / 'Benchmarking_QA' / 'temporal_qa.json'}"]
    missing = [f"task {t!r}: question file not found: {root / 'json' / v['json']}" for t, v in spec["tasks"].items()]
    if name == "synthetic":  # nor the file every rendered benchmark has
        missing.insert(0, f"{root} has no benchmark_info.json, which every synthetic benchmark (python -m flowutils "
                          f"data) has: if it is a copy of a real benchmark, name that benchmark's manifest (valid: "
                          f"{[m for m in benchmark_manifests() if m != 'synthetic']})")
    return missing


@pytest.mark.parametrize("name", [*NEW, "tvbench", "synthetic"])
def test_an_empty_folder_fails(tmp_path, name, capsys):
    expected = _empty_problems(tmp_path, name)
    assert validate_benchmark(tmp_path, name) == expected
    assert cli.main(["validate", "--manifest", name, "--root", str(tmp_path)]) == 1
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert last_line == f"{tmp_path}: {len(expected)} problem(s) against manifest {name!r}"


@pytest.mark.parametrize("name", NEW)
def test_python_m_flowutils_validate_exits_nonzero_on_an_empty_folder(tmp_path, name):
    repo = Path(__file__).resolve().parents[1]  # this checkout's flowutils, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "flowutils", "validate", "--manifest", name, "--root", str(tmp_path)]
    run = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    missing = _empty_problems(tmp_path, name)
    assert run.stdout.splitlines() == [*missing, f"{tmp_path}: {len(missing)} problem(s) against manifest {name!r}"]


def test_a_manifest_without_tasks_or_of_unknown_format_is_refused(tmp_path, monkeypatch):
    assert validate_benchmark(tmp_path, "toy_models") == [
        f"manifest 'toy_models' lists no tasks: there is nothing to compare {tmp_path} with"]
    monkeypatch.setattr(tvbench, "load_manifest", lambda name: {"format": "kinetics", "tasks": {"t": {}}})
    unknown = f"manifest 'x': unknown format 'kinetics'; valid: {list(tvbench.FORMATS)}"
    assert validate_benchmark(tmp_path, "x") == [unknown]
    with pytest.raises(BenchmarkError, match="unknown format 'kinetics'"):
        load_benchmark(tmp_path, "x", tasks=["t"])


def test_the_data_page_lists_all_six_benchmarks_with_their_layout_and_check():
    from flowutils.data.manifests import benchmark_catalog

    rows = {r["benchmark"]: r for r in benchmark_catalog()}
    assert set(rows) == {"synthetic", "tvbench", "tomato", "longvideobench", "videomme", "vcgbench"}
    for name, row in rows.items():
        assert row["on disk"].startswith("<root>/") and f"--manifest {name} " in row["check"]
