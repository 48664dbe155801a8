"""Loading TVBench-format (MVBench-style) multiple-choice video QA benchmarks.

On disk a benchmark is ``json/<task>.json`` (a list of ``{video, question, candidates,
answer, [start, end]}``) plus videos under a per-task folder. The synthetic benchmark
(:mod:`flowutils.data.synthetic`) and a user's copy of the real TVBench are read by the same
code; which folder holds each task's videos comes from the benchmark's manifest
(:mod:`flowutils.data.manifests`); :func:`validate_benchmark` lists every way a local copy
differs from it. Frames are read by :mod:`flowutils.data.video`, sampled uniformly as the
paper does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .manifests import load_manifest
from .video import BenchmarkError, read_frames


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


REQUIRED_KEYS = ("video", "question", "candidates", "answer")


def _entry_problems(e, where: str, video_root: Path) -> list[str]:
    """Every problem of one question entry (empty: it is valid)."""
    if not isinstance(e, dict):
        return [f"{where}: an entry is an object {{video, question, candidates, answer}}, got {type(e).__name__}"]
    missing = [k for k in REQUIRED_KEYS if k not in e]
    if missing:
        return [f"{where}: missing keys {missing} (required: {list(REQUIRED_KEYS)})"]
    problems = []
    if not isinstance(e["question"], str) or not e["question"].strip():
        problems.append(f"{where}: question must be a non-empty string, got {e['question']!r}")
    cands = e["candidates"]
    if not isinstance(cands, list) or len(cands) < 2 or not all(isinstance(c, str) and c.strip() for c in cands):
        problems.append(f"{where}: candidates must be a list of at least 2 non-empty strings, got {cands!r}")
    elif len(set(cands)) != len(cands):
        problems.append(f"{where}: candidates contain duplicates: {cands}")
    elif e["answer"] not in cands:
        problems.append(f"{where}: answer {e['answer']!r} is not among candidates {cands}")
    if ("start" in e) != ("end" in e):
        problems.append(f"{where}: give both start and end (seconds) or neither, got only "
                        f"{'start' if 'start' in e else 'end'}")
    elif "start" in e:
        start, end = e["start"], e["end"]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (start, end)):
            problems.append(f"{where}: start and end must be numbers of seconds, got start={start!r}, end={end!r}")
        elif not 0 <= start < end:
            problems.append(f"{where}: bounds must satisfy 0 <= start < end, got start={start}, end={end}")
    if not isinstance(e["video"], str) or not e["video"]:
        problems.append(f"{where}: video must be a file name, got {e['video']!r}")
    else:
        video = video_root / e["video"]
        if not video.is_file():
            problems.append(f"{where}: video file not found: {video}")
        elif video.stat().st_size == 0:
            problems.append(f"{where}: video file is empty (0 bytes): {video}")
    return problems


def read_task(root: str | Path, task: str, json_file: str, video_dir: str) -> tuple[list[VideoQASample], list[str]]:
    """``(samples, problems)`` of ``root/json/<json_file>``: every problem of every entry is listed
    (not only the first); only valid entries become samples."""
    root = Path(root)
    path = root / "json" / json_file
    if not path.is_file():
        return [], [f"task {task!r}: question file not found: {path}"]
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return [], [f"task {task!r}: {path} is not valid JSON: {err}"]
    if not isinstance(entries, list):
        return [], [f"task {task!r}: {path} holds a JSON {type(entries).__name__}; expected a list of entries "
                    f"{{{', '.join(REQUIRED_KEYS)}, [start, end]}} (MVBench format)"]
    if not entries:
        return [], [f"task {task!r}: {path} has no questions"]
    samples, problems, first_seen = [], [], {}
    for i, e in enumerate(entries):
        where = f"{path} entry {i}"
        found = _entry_problems(e, where, root / video_dir)
        if isinstance(e, dict) and not found:
            key = json.dumps([e[k] for k in REQUIRED_KEYS], sort_keys=True)
            if key in first_seen:
                found.append(f"{where}: duplicate of entry {first_seen[key]} (same video, question, candidates, answer)")
            first_seen.setdefault(key, i)
        problems += found
        if not found:
            bound = (float(e["start"]), float(e["end"])) if "start" in e else None
            samples.append(VideoQASample(task, i, root / video_dir / e["video"], e["question"],
                                         tuple(e["candidates"]), e["answer"], bound))
    return samples, problems


def _raise_problems(problems: list[str], what: str) -> None:
    if problems:
        shown = problems[:50]
        more = f"\n... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise BenchmarkError(f"{what}: {len(problems)} problem(s):\n- " + "\n- ".join(shown) + more)


def load_task(root: str | Path, task: str, json_file: str, video_dir: str) -> list[VideoQASample]:
    """Read ``root/json/<json_file>``; every entry is checked and all problems are reported at once."""
    samples, problems = read_task(root, task, json_file, video_dir)
    _raise_problems(problems, f"task {task!r} of {root}")
    return samples


def load_benchmark(root: str | Path, manifest: str = "synthetic", tasks=None, n_per_task: int | None = None):
    """Samples of ``tasks`` (default: the manifest's analysed tasks) from a local benchmark copy.

    ``manifest`` names a file of ``data_manifests/`` (``synthetic``, ``tvbench``); its
    tasks give each task's question file and video folder. Every problem of every task is
    reported at once (a :class:`BenchmarkError` listing them).
    """
    spec = load_manifest(manifest)
    known = spec["tasks"]
    if n_per_task is not None and not (isinstance(n_per_task, int) and not isinstance(n_per_task, bool)
                                       and n_per_task >= 1):
        raise BenchmarkError(f"n_per_task must be an integer >= 1 or None (all questions), got {n_per_task!r}")
    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = list(tasks) if tasks is not None else [t for t, v in known.items() if v.get("analysed", True)]
    if not tasks:
        raise BenchmarkError(f"no tasks asked for; valid for manifest {manifest!r}: {list(known)}")
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise BenchmarkError(f"unknown task(s) {unknown} for manifest {manifest!r}; valid: {list(known)}")
    if not Path(root).is_dir():
        raise BenchmarkError(f"benchmark folder not found: {root} (manifest {manifest!r})")
    out, problems = [], []
    for t in dict.fromkeys(tasks):
        samples, found = read_task(root, t, known[t]["json"], known[t]["video_dir"])
        problems += found
        out.extend(samples[:n_per_task] if n_per_task is not None else samples)
    _raise_problems(problems, f"benchmark {root} (manifest {manifest!r})")
    return out


def validate_benchmark(root: str | Path, name: str, check_counts: bool = True, decode_videos: bool = False,
                       min_frames: int | None = None) -> list[str]:
    """Problems found in the local copy ``root`` of benchmark ``name`` (an empty list: it matches).

    Every problem is listed, not only the first: per task, a missing or unparsable question
    file, a question count that differs from the manifest (unless ``check_counts`` is false,
    e.g. for a subset), and per entry what :func:`read_task` checks
    (keys, answer among candidates, duplicates, bounds, missing or empty videos).
    ``decode_videos``: also open every video (decord) and report the corrupt ones and those
    with fewer than ``min_frames`` frames.
    """
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


def option_letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]
