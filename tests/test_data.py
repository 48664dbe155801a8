import json
from pathlib import Path

import numpy as np
import pytest

from flowutils import data
from flowutils.data import manifests, paths, synthetic, tvbench

from conftest import copy_benchmark


def test_roundtrip_reads_uniform_frames(bench):
    samples = data.load_benchmark(bench, "synthetic")
    assert len(samples) == 10
    frames = data.read_frames(samples[0].video_path, 8)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    # decoded H.264 stays close to the rendered frames
    rendered = next(synthetic.generate(samples[0].task, 1, 0, "test")).frames
    idx = data.uniform_frame_indices(len(rendered), 8)
    assert np.abs(frames.astype(int) - rendered[idx].astype(int)).mean() < 6


def test_uniform_indices_follow_the_papers_sampling():
    # worked by hand: seg = 15 / 8 = 1.875; int(0.9375 + round(1.875 i)) for i = 0..7
    assert data.uniform_frame_indices(16, 8).tolist() == [0, 2, 4, 6, 8, 9, 11, 13]
    # bound (seconds) at 4 fps: frames 8..24, seg = 2, int(1 + 8 + 2 i)
    assert data.uniform_frame_indices(40, 8, bound=(2, 6), fps=4).tolist() == [9, 11, 13, 15, 17, 19, 21, 23]


def test_resume_and_conflicting_arguments(bench):
    synthetic.write_benchmark(bench, 2, seed=0, split="test", progress=False)  # resumes: no error
    with pytest.raises(FileExistsError, match="other arguments"):
        synthetic.write_benchmark(bench, 3, seed=0, split="test", progress=False)


def test_missing_json(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    (root / "json" / "object_count.json").unlink()
    with pytest.raises(data.BenchmarkError, match="object_count.json"):
        data.load_benchmark(root, "synthetic")


def test_missing_video(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    (root / "video" / "action_antonym" / "action_antonym_00001.mp4").unlink()
    with pytest.raises(data.BenchmarkError, match="action_antonym_00001.mp4"):
        data.load_benchmark(root, "synthetic")
    problems = tvbench.validate_benchmark(root, "synthetic", check_counts=False)
    assert len(problems) == 1 and "action_antonym_00001.mp4" in problems[0]


def test_truncated_video(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    video = root / "video" / "scene_transition" / "scene_transition_00000.mp4"
    video.write_bytes(video.read_bytes()[:200])
    with pytest.raises(data.BenchmarkError, match="scene_transition_00000.mp4"):
        data.read_frames(video, 8)


def test_too_few_frames(bench):
    video = bench / "video" / "object_count" / "object_count_00000.mp4"
    with pytest.raises(data.BenchmarkError, match="fewer than the 32"):
        data.read_frames(video, 32)


def test_answer_not_among_candidates(bench, tmp_path):
    root = copy_benchmark(bench, tmp_path)
    path = root / "json" / "moving_direction.json"
    entries = json.loads(path.read_text())
    entries[1]["answer"] = "Sideways."
    path.write_text(json.dumps(entries))
    with pytest.raises(data.BenchmarkError, match="entry 1.*Sideways"):
        data.load_benchmark(root, "synthetic")


def test_unknown_task(bench):
    with pytest.raises(data.BenchmarkError, match="valid"):
        data.load_benchmark(bench, "synthetic", tasks=["action_count"])


def test_manifests_parse_and_tvbench_counts():
    assert {"synthetic", "tvbench", "tomato", "longvideobench", "videomme", "vcgbench"} <= set(
        manifests.available_manifests())
    tv = manifests.load_manifest("tvbench")
    analysed = {t: v["questions"] for t, v in tv["tasks"].items() if v.get("analysed", True)}
    assert analysed == {"action_antonym": 320, "action_sequence": 528, "scene_transition": 185,
                        "moving_direction": 232, "object_count": 148}
    tomato = manifests.load_manifest("tomato")
    assert sum(t["questions"] for t in tomato["tasks"].values()) == tomato["total_questions"] == 1484


def test_validate_reports_wrong_counts(bench):
    problems = tvbench.validate_benchmark(bench, "tvbench")
    assert any("question file not found" in p for p in problems)  # synthetic copy lacks other tasks


def test_unknown_manifest():
    with pytest.raises(FileNotFoundError, match="valid"):
        manifests.load_manifest("kinetics")


def test_manifests_are_package_data():
    """Inside the package (what pyproject.toml's package-data ships), not next to it."""
    import flowutils

    assert manifests.MANIFEST_DIR.parent == Path(flowutils.__file__).parent
    assert manifests.yaml_files(manifests.MANIFEST_DIR / "models")


def test_home_is_the_setting_else_the_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWUTILS_HOME", raising=False)
    assert paths.home() == Path(__file__).resolve().parents[1] and paths.home_path("models").is_dir()
    monkeypatch.setenv("FLOWUTILS_HOME", str(tmp_path))
    assert paths.home() == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match=f"FLOWUTILS_HOME={tmp_path}.*folder holding benchmarks/results"):
        paths.home_path("benchmarks", "results")


def test_home_outside_a_checkout_names_the_setting(monkeypatch, tmp_path):
    """An installed copy (no pyproject.toml beside the package) without FLOWUTILS_HOME has no home."""
    monkeypatch.delenv("FLOWUTILS_HOME", raising=False)
    monkeypatch.setattr(paths.resources, "files", lambda package: tmp_path / "site-packages" / package)
    with pytest.raises(paths.HomeNotFoundError, match="FLOWUTILS_HOME is not set"):
        paths.home()


def test_sha256_verification(tmp_path):
    import hashlib

    f = tmp_path / "weights.bin"
    f.write_bytes(b"map the flow" * 1000)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    manifests.verify_sha256(f, digest)
    with pytest.raises(ValueError, match="checksum mismatch for .*weights.bin"):
        manifests.verify_sha256(f, "0" * 64)
