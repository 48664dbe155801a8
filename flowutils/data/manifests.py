"""Dataset and model manifests (``data_manifests/*.yaml``).

A manifest says what a benchmark or checkpoint is, where it comes from, its licence, the
expected layout and, for benchmarks, its on-disk ``format`` (the module of :mod:`flowutils.data`
that reads it; ``tvbench`` when absent), its tasks and, where published, question counts (a local
copy is checked against it by :func:`flowutils.data.tvbench.validate_benchmark`);
``verify_sha256`` checks shipped weights.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

MANIFEST_DIR = Path(__file__).resolve().parent.parent.parent / "data_manifests"


def available_manifests() -> list[str]:
    return sorted(p.stem for p in MANIFEST_DIR.glob("*.yaml"))


def benchmark_manifests() -> list[str]:
    """The manifests that describe a benchmark (they list its tasks), not a model."""
    return [name for name in available_manifests() if "tasks" in load_manifest(name)]


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
