"""Dataset and model manifests (``data_manifests/*.yaml``) and local-copy validation.

A manifest says what a benchmark or checkpoint is, where it comes from, its licence, the
expected layout and, for benchmarks, each task's question file, video folder and question
count. ``validate_benchmark`` compares a user's local copy with its manifest and lists
exactly what is missing or different; ``verify_sha256`` checks shipped weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

MANIFEST_DIR = Path(__file__).resolve().parent.parent.parent / "data_manifests"


def available_manifests() -> list[str]:
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.yaml"))


def load_manifest(name: str) -> dict:
    path = MANIFEST_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest {name!r} in {MANIFEST_DIR}; valid: {available_manifests()}")
    return yaml.safe_load(path.read_text())


def manifest_identity(name: str) -> dict:
    """``{"manifest": name, "sha256": ...}``: what a result set records of the benchmark it read
    (pass it as ``run_sweep(..., benchmark=...)``; the ``sweep`` command does)."""
    load_manifest(name)
    return {"manifest": name, "sha256": sha256(MANIFEST_DIR / f"{name}.yaml")}


def validate_benchmark(root: str | Path, name: str, check_counts: bool = True, decode_videos: bool = False,
                       min_frames: int | None = None) -> list[str]:
    """Problems found in the local copy ``root`` of benchmark ``name`` (an empty list: it matches).

    Every problem is listed, not only the first: per task, a missing or unparsable question
    file, a question count that differs from the manifest (unless ``check_counts`` is false,
    e.g. for a subset), and per entry what :func:`flowutils.data.tvbench.read_task` checks
    (keys, answer among candidates, duplicates, bounds, missing or empty videos).
    ``decode_videos``: also open every video (decord) and report the corrupt ones and those
    with fewer than ``min_frames`` frames.
    """
    from .tvbench import read_task
    from .video import BenchmarkError, read_frames

    spec = load_manifest(name)
    root = Path(root)
    if not root.is_dir():
        return [f"benchmark folder not found: {root}"]
    problems = []
    for task, t in spec.get("tasks", {}).items():
        samples, found = read_task(root, task, t["json"], t["video_dir"])
        problems += found
        qfile = root / "json" / t["json"]
        expected = t.get("questions")
        if check_counts and expected is not None and qfile.is_file() and not any(
                "not valid JSON" in p or "holds a JSON" in p for p in found):
            n = len(json.loads(qfile.read_text()))
            if n != expected:
                problems.append(f"{task}: {qfile} has {n} questions, manifest says {expected}")
        if decode_videos:
            for s in samples:
                try:
                    read_frames(s.video_path, min_frames or 1, s.bound)
                except BenchmarkError as err:
                    problems.append(f"{task} entry {s.index}: {err}")
    return problems


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    actual = sha256(path)
    if actual != expected:
        raise ValueError(f"checksum mismatch for {path}: sha256 {actual}, manifest says {expected}")
