"""Loading TVBench-format (MVBench-style) multiple-choice video QA benchmarks.

On disk a benchmark is ``json/<task>.json`` (a list of ``{video, question, candidates,
answer, [start, end]}``) plus videos under a per-task folder. The synthetic benchmark
(:mod:`flowutils.data.synthetic`) and a user's copy of the real TVBench are read by the same
code; which folder holds each task's videos comes from the benchmark's manifest
(:mod:`flowutils.data.manifests`). Frames are read by :mod:`flowutils.data.video`, sampled uniformly as the
paper does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .video import BenchmarkError


@dataclass(frozen=True)
class VideoQASample:
    """One multiple-choice question about one video."""

    task: str
    index: int
    video_path: Path
    question: str
    candidates: tuple[str, ...]
    answer: str
    bound: tuple[float, float] | None = None

    @property
    def answer_index(self) -> int:
        return self.candidates.index(self.answer)

    @property
    def answer_letter(self) -> str:
        return chr(ord("A") + self.answer_index)

    @property
    def sample_id(self) -> str:
        return f"{self.task}/{self.index}"


def load_task(root: str | Path, task: str, json_file: str, video_dir: str) -> list[VideoQASample]:
    """Read ``root/json/<json_file>``; check every entry and that its video exists."""
    root = Path(root)
    path = root / "json" / json_file
    if not path.is_file():
        raise BenchmarkError(f"task {task!r}: question file not found: {path}")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BenchmarkError(f"task {task!r}: {path} is not valid JSON: {err}") from err
    samples = []
    for i, e in enumerate(entries):
        where = f"{path} entry {i}"
        missing = [k for k in ("video", "question", "candidates", "answer") if k not in e]
        if missing:
            raise BenchmarkError(f"{where}: missing keys {missing}")
        if e["answer"] not in e["candidates"]:
            raise BenchmarkError(f"{where}: answer {e['answer']!r} is not among candidates {e['candidates']}")
        video = root / video_dir / e["video"]
        if not video.is_file():
            raise BenchmarkError(f"{where}: video file not found: {video}")
        bound = (float(e["start"]), float(e["end"])) if "start" in e and "end" in e else None
        samples.append(VideoQASample(task, i, video, e["question"], tuple(e["candidates"]), e["answer"], bound))
    return samples


def load_benchmark(root: str | Path, manifest: str = "synthetic", tasks=None, n_per_task: int | None = None):
    """Samples of ``tasks`` (default: the manifest's analysed tasks) from a local benchmark copy.

    ``manifest`` names a file of ``data_manifests/`` (``synthetic``, ``tvbench``); its
    tasks give each task's question file and video folder.
    """
    from .manifests import load_manifest

    spec = load_manifest(manifest)
    known = spec["tasks"]
    tasks = list(tasks) if tasks is not None else [t for t, v in known.items() if v.get("analysed", True)]
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise BenchmarkError(f"unknown task(s) {unknown} for manifest {manifest!r}; valid: {list(known)}")
    out = []
    for t in tasks:
        samples = load_task(root, t, known[t]["json"], known[t]["video_dir"])
        out.extend(samples[:n_per_task] if n_per_task is not None else samples)
    return out


def option_letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]
