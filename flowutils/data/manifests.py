"""Dataset and model manifests (``flowutils/manifests/*.yaml``, package data found by :mod:`importlib.resources`).

A manifest says what a benchmark or checkpoint is, where it comes from, its licence, the
expected layout and, for benchmarks, its on-disk ``format`` (the module of :mod:`flowutils.data`
that reads it; ``tvbench`` when absent), its tasks and, where published, question counts (a local
copy is checked against it by :func:`flowutils.data.tvbench.validate_benchmark`);
``verify_sha256`` checks shipped weights.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import yaml

# shipped inside the package (pyproject.toml's package-data), so an installed flowutils has them too;
# a Traversable (a Path when the package sits on disk)
MANIFEST_DIR = resources.files("flowutils") / "manifests"


def yaml_files(folder) -> list:
    """The ``*.yaml`` files of a manifest folder (``MANIFEST_DIR`` or one below it), by name."""
    return sorted((f for f in folder.iterdir() if f.name.endswith(".yaml") and f.is_file()), key=lambda f: f.name)


def available_manifests() -> list[str]:
    return [f.name.removesuffix(".yaml") for f in yaml_files(MANIFEST_DIR)]


def benchmark_manifests() -> list[str]:
    """The manifests that describe a benchmark (they list its tasks), not a model."""
    return [name for name in available_manifests() if "tasks" in load_manifest(name)]


def benchmark_catalog() -> list[dict]:
    """One row per benchmark manifest: what it is, where the paper uses it, what it needs on disk, and the
    command that checks a local copy (the Data page's table)."""
    rows = []
    for name in benchmark_manifests():
        spec = load_manifest(name)
        rows.append({"benchmark": name, "title": spec.get("title", ""),
                     "used in the paper": spec.get("used_in_paper", "(the book's own default)"),
                     "on disk": spec.get("layout", "").strip(), "licence": spec.get("licence", ""),
                     "check": f"python -m flowutils validate --manifest {name} --root <folder>"})
    return rows


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


def sha256(path) -> str:
    """sha256 of a file: a path or a Traversable (a manifest)."""
    h = hashlib.sha256()
    with (Path(path) if isinstance(path, str) else path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    actual = sha256(path)
    if actual != expected:
        raise ValueError(f"checksum mismatch for {path}: sha256 {actual}, manifest says {expected}")
