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


def validate_benchmark(root: str | Path, name: str, check_counts: bool = True) -> list[str]:
    """Problems found in the local copy ``root`` of benchmark ``name`` (an empty list: it matches).

    Checks that each task's question file exists and parses, that its number of questions
    matches the manifest (unless ``check_counts`` is false, e.g. for a subset), and that
    every referenced video exists.
    """
    spec = load_manifest(name)
    root = Path(root)
    problems = []
    if not root.is_dir():
        return [f"benchmark folder not found: {root}"]
    for task, t in spec.get("tasks", {}).items():
        qfile = root / "json" / t["json"]
        if not qfile.is_file():
            problems.append(f"{task}: question file missing: {qfile}")
            continue
        try:
            entries = json.loads(qfile.read_text())
        except json.JSONDecodeError as err:
            problems.append(f"{task}: {qfile} is not valid JSON ({err})")
            continue
        expected = t.get("questions")
        if check_counts and expected is not None and len(entries) != expected:
            problems.append(f"{task}: {qfile} has {len(entries)} questions, manifest says {expected}")
        missing = [e.get("video") for e in entries if not (root / t["video_dir"] / str(e.get("video"))).is_file()]
        if missing:
            problems.append(f"{task}: {len(missing)} video(s) missing under {root / t['video_dir']}, e.g. {missing[:3]}")
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
