"""The "Supported models" table: one row per model manifest and per family adapter without one.

Built from :data:`.families.ADAPTERS`, the model manifests (``flowutils/manifests/models/``) and, when
present, the GPU shapes benchmark (``benchmarks/results/shapes/model_shapes_*.json`` of the flowutils home,
:func:`flowutils.data.paths.home`), never typed by
hand. Every adapter family passes the tiny-config bars of ``tests/test_families.py`` (that file
checks it builds a tiny model of every adapter); a manifest whose family has no adapter is
listed as not supported yet.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data.paths import home_path
from ..knockout.windows import protocol_for
from .families import ADAPTERS
from .loading import model_manifests


def benchmark_results(results_dir: str | Path | None = None) -> Path:
    """``results_dir``, or by default ``benchmarks/results/`` of the flowutils home (an error names
    ``FLOWUTILS_HOME`` when it is missing)."""
    return Path(results_dir) if results_dir is not None else home_path("benchmarks", "results")


def shape_benchmarks(results_dir: str | Path | None = None) -> dict:
    """``{model name: benchmark row}`` of every non-tiny ``shapes/model_shapes_*.json`` (with its GPU)."""
    out = {}
    for path in sorted((benchmark_results(results_dir) / "shapes").glob("model_shapes_*.json")):
        record = json.loads(path.read_text())
        if record.get("tiny"):
            continue
        for row in record["results"]:
            out[row["model"]] = dict(row, gpu=record["gpu"])
    return out


def supported_models(results_dir: str | Path | None = None):
    """A DataFrame, one row per model manifest, then one per adapter family no manifest uses."""
    import pandas as pd

    bench = shape_benchmarks(results_dir)
    rows = []
    manifests = model_manifests()
    for name, spec in manifests.items():
        expected, family = spec.get("expected", {}), spec["family"]
        adapter = ADAPTERS.get(family)
        layers = expected.get("layers")
        b = bench.get(name)
        rows.append({
            "model": name, "role": spec.get("role", ""), "family": family,
            "example checkpoint": spec.get("hub_id") or spec.get("source", ""),
            "tokens per frame": expected.get("tokens_per_frame"), "decoder layers": layers,
            "window k": protocol_for(layers, spec.get("protocol")).window_size if layers else None,
            "interval": protocol_for(layers, spec.get("protocol")).interval if layers else None,
            "protocol": spec.get("protocol", "scaled"),
            "Table 3 random blocking": (f"{spec['random_blocking_share']:g} of n(n+1)/2 pairs per layer (the paper's)"
                                        if spec.get("random_blocking_share") else "matched to the question's plan"),
            "positions": adapter.positions if adapter else "",
            "frame span": adapter.frame_unit if adapter else "",
            "bypasses attention": "; ".join(adapter.bypasses) if adapter else "",
            "verified here": "tiny-config bars, round trip" if adapter else "no adapter yet",
            "needs a real-weight run": "accuracy, config check against the manifest",
            "s / question (sweep)": b["fast_s_per_question"] if b else None,
            "peak GPU GiB": b["peak_mem_gib"] if b else None,
            "benchmark GPU": b["gpu"] if b else "",
            "run the sections": f"papermill -k flowutils -p model {name} notebooks/<section>.ipynb book/<section>.ipynb",
        })
    used = {spec["family"] for spec in manifests.values()}
    for family, adapter in ADAPTERS.items():
        if family in used:
            continue
        rows.append({"model": f"(any {family} checkpoint)", "role": "current family", "family": family,
                     "positions": adapter.positions, "frame span": adapter.frame_unit,
                     "bypasses attention": "; ".join(adapter.bypasses),
                     "verified here": "tiny-config bars, round trip",
                     "needs a real-weight run": "accuracy, tokens per frame at the checkpoint's size",
                     "run the sections": "papermill -k flowutils -p model <local dir or hub id> notebooks/<section>.ipynb "
                                         "book/<section>.ipynb"})
    return pd.DataFrame(rows).astype({"tokens per frame": "Int64", "decoder layers": "Int64", "window k": "Int64"})
