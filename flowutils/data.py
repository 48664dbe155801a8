"""Loading TVBench-format (MVBench-style) multiple-choice video QA benchmarks.

On disk a benchmark is ``json/<task>.json`` (a list of ``{video, question, candidates,
answer, [start, end]}``) plus videos under a per-task folder. The synthetic benchmark
(:mod:`flowutils.synthetic`) and a user's copy of the real TVBench are read by the same
code; which folder holds each task's videos comes from the benchmark's manifest
(:mod:`flowutils.manifests`). Frames are read with decord and sampled uniformly, as the
paper does (8 frames, the middle of 8 equal segments).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class BenchmarkError(ValueError):
    """A benchmark file or sample is missing or malformed (the message names which)."""


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


def uniform_frame_indices(n_video_frames: int, num_frames: int, bound=None, fps: float = 1.0) -> np.ndarray:
    """Frame indices sampled as the paper's (MVBench-style) evaluation code samples them.

    The video (or the ``bound`` interval, in seconds) is cut into ``num_frames`` equal
    segments of ``seg`` frames; frame ``i`` is ``int(start + seg / 2 + round(seg * i))``.
    """
    start, end = 0, n_video_frames - 1
    if bound is not None:
        start, end = max(start, round(bound[0] * fps)), min(end, round(bound[1] * fps))
    seg = (end - start) / num_frames
    idx = np.array([int(start + seg / 2 + np.round(seg * i)) for i in range(num_frames)])
    return np.clip(idx, 0, n_video_frames - 1)


def sample_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """Frames of an in-memory video ``[time, ...]`` sampled as ``read_frames`` samples a file (all if fewer)."""
    return frames[uniform_frame_indices(len(frames), min(num_frames, len(frames)))]


def read_frames(path: str | Path, num_frames: int = 8, bound=None) -> np.ndarray:
    """Read ``num_frames`` uniformly sampled frames with decord: ``[num_frames, height, width, 3]`` uint8."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"video file not found: {path}")
    import decord  # lazy: not installed on every machine

    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        n = len(reader)
    except Exception as err:  # decord raises its own DECORDError
        raise BenchmarkError(f"cannot decode video {path}: {err}") from err
    if n < num_frames:
        raise BenchmarkError(f"video {path} has {n} frames, fewer than the {num_frames} asked for")
    idx = uniform_frame_indices(n, num_frames, bound, reader.get_avg_fps())
    try:
        return reader.get_batch(idx.tolist()).asnumpy()
    except Exception as err:
        raise BenchmarkError(f"cannot read frames {idx.tolist()} of {path} (truncated file?): {err}") from err


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
