"""Loading TVBench-format (MVBench-style) multiple-choice video QA benchmarks, and any benchmark by its manifest.

On disk a TVBench-format benchmark is ``json/<task>.json`` (a list of ``{video, question,
candidates, answer, [start, end]}``) plus videos under a per-task folder. The synthetic benchmark
(:mod:`flowutils.data.synthetic`) and a user's copy of the real TVBench are read by the same
code; which folder holds each task's videos comes from the benchmark's manifest
(:mod:`flowutils.data.manifests`). Frames are read by :mod:`flowutils.data.video`, sampled
uniformly as the paper does.

This module also holds what every on-disk format shares: the question type
:class:`VideoQASample`, the checks of a question's fields (one message per problem, naming the
file and the entry), and :func:`load_benchmark` / :func:`validate_benchmark`, which read the
manifest's ``format`` (default ``tvbench``) and hand the folder to that format's module
(:mod:`.tomato`, :mod:`.longvideobench`, :mod:`.videomme`, :mod:`.vcgbench`); each module's
``read_benchmark(root, spec, tasks, check_counts)`` returns ``(samples, problems)``.
:func:`validate_benchmark` lists every way a local copy differs from its manifest.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from .manifests import benchmark_manifests, load_manifest
from .synthetic import INFO_FILE
from .video import BenchmarkError, read_frames


@dataclass(frozen=True)
class VideoQASample:
    """One question about one video: multiple choice, or open-ended (``open_ended``: no candidates,
    ``answer`` is the reference answer text).

    ``index``: the question's position in its question file; ``record_id``: the benchmark's own id
    of the question where its release has one (TOMATO's record key, LongVideoBench's ``id``,
    Video-MME's ``question_id``); ``subtitle_path``: the video's subtitle file where the release
    names one per question (LongVideoBench).
    """

    task: str
    index: int
    video_path: Path
    question: str
    candidates: tuple[str, ...]
    answer: str
    bound: tuple[float, float] | None = None
    record_id: str | None = None
    open_ended: bool = False
    subtitle_path: Path | None = None

    @property
    def answer_index(self) -> int:
        if self.open_ended:
            raise ValueError(f"{self.sample_id} is open-ended: it has no options, so no answer index or letter")
        return self.candidates.index(self.answer)

    @property
    def answer_letter(self) -> str:
        return chr(ord("A") + self.answer_index)

    @property
    def sample_id(self) -> str:
        return f"{self.task}/{self.index}"


# ----------------------------------------------------------------------------- checks every format shares
def read_json(path: Path, prefix: str = "") -> tuple[object, list[str]]:
    """``(content, [])`` of a JSON question file, or ``(None, [why not])``; ``prefix`` starts the message."""
    if not path.is_file():
        return None, [f"{prefix}question file not found: {path}"]
    try:
        return json.loads(path.read_text()), []
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, [f"{prefix}{path} is not valid JSON: {err}"]


def container_problems(content, kind: type, path: Path, prefix: str, expected: str) -> list[str]:
    """Whether a question file's parsed ``content`` is a non-empty ``kind`` (``expected`` says what it should hold)."""
    if not isinstance(content, kind):
        return [f"{prefix}{path} holds a JSON {type(content).__name__}; expected {expected}"]
    return [] if content else [f"{prefix}{path} has no questions"]


def keys_problems(e, required, where: str) -> list[str]:
    """Whether ``e`` is an object holding every ``required`` key."""
    if not isinstance(e, dict):
        return [f"{where}: an entry is an object {{{', '.join(required)}}}, got {type(e).__name__}"]
    missing = [k for k in required if k not in e]
    return [f"{where}: missing keys {missing} (required: {list(required)})"] if missing else []


def text_problems(value, field: str, where: str) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return [f"{where}: {field} must be a non-empty string, got {value!r}"]
    return []


def options_problems(options, where: str, field: str = "candidates") -> list[str]:
    """Options must be at least two distinct non-empty strings: a repeated one would make the answer's
    letter ambiguous (the letter is the position of the answer text)."""
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(c, str) and c.strip() for c in options):
        return [f"{where}: {field} must be a list of at least 2 non-empty strings, got {options!r}"]
    if len(set(options)) != len(options):
        return [f"{where}: {field} contain duplicates: {options}"]
    return []


def index_problems(value, n: int, field: str, where: str) -> list[str]:
    """An answer given as the index of an option (TOMATO's ``answer``, LongVideoBench's ``correct_choice``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        return [f"{where}: {field} {value!r} is not an option index; valid: 0..{n - 1}"]
    return []


def video_problems(video: Path, where: str) -> list[str]:
    if not video.is_file():
        return [f"{where}: video file not found: {video}"]
    if video.stat().st_size == 0:
        return [f"{where}: video file is empty (0 bytes): {video}"]
    return []


def find_video(folder: Path, stem: str, extensions, where: str) -> tuple[Path | None, list[str]]:
    """``(video, problems)``: the first of ``folder/<stem><ext>`` that exists, trying ``extensions`` in order
    (the release's own evaluation code looks its videos up so), or None and why."""
    for ext in extensions:
        video = folder / f"{stem}{ext}"
        if video.is_file():
            return video, video_problems(video, where)
    return None, [f"{where}: video file not found: {folder / stem}{extensions[0]} (nor {', '.join(extensions[1:])})"]


def entry_id(e, id_key: str) -> str | None:
    """The entry's own id (its ``id_key`` field) if it is a non-empty string, else None."""
    rid = e.get(id_key) if isinstance(e, dict) else None
    return rid if isinstance(rid, str) and rid.strip() else None


def entry_where(path: Path, i: int, e, id_key: str) -> str:
    """How a problem names an entry of a question file: its position and, when it has one, its id."""
    rid = entry_id(e, id_key)
    return f"{path} entry {i}" + (f" ({id_key} {rid!r})" if rid is not None else "")


def duplicate_problems(seen: dict, key, name: str, where: str, what: str) -> list[str]:
    """A problem if ``key`` was already seen in another entry; ``seen`` maps each key to the ``name`` of the
    first entry that had it (``entry 3``, TOMATO's ``record '3'``)."""
    first = seen.setdefault(key, name)
    return [] if first == name else [f"{where}: duplicate of {first} (same {what})"]


def category_tasks(spec: dict) -> dict[str, str]:
    """For a benchmark whose one question file holds every task: the record's category value -> task
    (a task's ``category`` in the manifest, default its name)."""
    return {t.get("category", name): name for name, t in spec["tasks"].items()}


def read_per_task(read_task_file, root: Path, spec: dict, tasks: list[str], check_counts: bool):
    """``(samples, problems)`` of a format with one question file per task (TVBench, TOMATO, VCGBench):
    those of ``read_task_file(root, spec, task, check_counts)`` for each task, in order."""
    samples, problems = [], []
    for task in tasks:
        found_samples, found = read_task_file(root, spec, task, check_counts)
        samples += found_samples
        problems += found
    return samples, problems


def count_problems(where: str, n: int, expected: int | None) -> list[str]:
    if expected is None or n == expected:
        return []
    return [f"{where} has {n} questions, manifest says {expected}"]


# ----------------------------------------------------------------------------- the TVBench format
REQUIRED_KEYS = ("video", "question", "candidates", "answer")


def _entry_problems(e, where: str, video_root: Path) -> list[str]:
    """Every problem of one question entry (empty: it is valid)."""
    missing = keys_problems(e, REQUIRED_KEYS, where)
    if missing:
        return missing
    problems = text_problems(e["question"], "question", where)
    cands = e["candidates"]
    bad_candidates = options_problems(cands, where)
    problems += bad_candidates
    if not bad_candidates and e["answer"] not in cands:
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
        problems += video_problems(video_root / e["video"], where)
    return problems


def _read_task(root: Path, task: str, json_file: str, video_dir: str):
    """:func:`read_task`, plus the number of entries in the file (None if it holds no list of entries)."""
    path = root / "json" / json_file
    entries, problems = read_json(path, f"task {task!r}: ")
    problems = problems or container_problems(
        entries, list, path, f"task {task!r}: ",
        f"a list of entries {{{', '.join(REQUIRED_KEYS)}, [start, end]}} (MVBench format)")
    if problems:
        return [], problems, None
    samples, seen = [], {}
    for i, e in enumerate(entries):
        where = f"{path} entry {i}"
        found = _entry_problems(e, where, root / video_dir)
        if not found:
            key = json.dumps([e[k] for k in REQUIRED_KEYS], sort_keys=True)
            found = duplicate_problems(seen, key, f"entry {i}", where, "video, question, candidates, answer")
        problems += found
        if not found:
            bound = (float(e["start"]), float(e["end"])) if "start" in e else None
            samples.append(VideoQASample(task, i, root / video_dir / e["video"], e["question"],
                                         tuple(e["candidates"]), e["answer"], bound))
    return samples, problems, len(entries)


def read_task(root: str | Path, task: str, json_file: str, video_dir: str) -> tuple[list[VideoQASample], list[str]]:
    """``(samples, problems)`` of ``root/json/<json_file>``: every problem of every entry is listed
    (not only the first); only valid entries become samples."""
    samples, problems, _ = _read_task(Path(root), task, json_file, video_dir)
    return samples, problems


def _read_task_file(root: Path, spec: dict, task: str, check_counts: bool):
    t = spec["tasks"][task]
    samples, problems, n = _read_task(root, task, t["json"], t["video_dir"])
    if check_counts and n is not None:
        problems += count_problems(f"{task}: {root / 'json' / t['json']}", n, t.get("questions"))
    return samples, problems


def read_benchmark(root: Path, spec: dict, tasks: list[str], check_counts: bool = False):
    """``(samples, problems)`` of ``tasks`` of a TVBench-format copy; ``check_counts``: also compare each
    question file's number of entries with the task's ``questions`` in the manifest."""
    return read_per_task(_read_task_file, root, spec, tasks, check_counts)


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


# ----------------------------------------------------------------------------- any benchmark, by its manifest
FORMATS = ("tvbench", "tomato", "longvideobench", "videomme", "vcgbench")


def _reader(spec: dict, name: str):
    """The ``read_benchmark`` of the manifest's ``format`` (default ``tvbench``)."""
    fmt = spec.get("format", "tvbench")
    if fmt not in FORMATS:
        raise BenchmarkError(f"manifest {name!r}: unknown format {fmt!r}; valid: {list(FORMATS)}")
    if fmt == "tvbench":
        return read_benchmark
    # imported when asked for: each format module imports this one (VideoQASample and the shared checks)
    return importlib.import_module(f".{fmt}", __package__).read_benchmark


def load_benchmark(root: str | Path, manifest: str = "synthetic", tasks=None, n_per_task: int | None = None):
    """Samples of ``tasks`` (default: the manifest's analysed tasks) from a local benchmark copy.

    ``manifest`` names a file of ``flowutils/manifests/`` (``synthetic``, ``tvbench``, ``tomato``,
    ``longvideobench``, ``videomme``, ``vcgbench``); its ``format`` says how the copy is laid out
    and its tasks which questions to read. Every problem of every question file read is reported
    at once (a :class:`BenchmarkError` listing them). ``n_per_task``: the first N questions of each task.
    """
    spec = load_manifest(manifest)
    known = spec.get("tasks") or {}
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
        raise BenchmarkError(f"{folder_problem(Path(root))} (manifest {manifest!r})")
    by_task = {t: [] for t in dict.fromkeys(tasks)}
    samples, problems = _reader(spec, manifest)(Path(root), spec, list(by_task))
    _raise_problems(origin_problems(Path(root), manifest) + problems, f"benchmark {root} (manifest {manifest!r})")
    for s in samples:
        by_task[s.task].append(s)
    return [s for task_samples in by_task.values() for s in task_samples[:n_per_task]]


def folder_problem(root: Path) -> str:
    """What is wrong with a benchmark folder ``root`` that is no folder."""
    return f"benchmark folder {'a file, not a folder' if root.exists() else 'not found'}: {root}"


def origin_problems(root: Path, manifest: str) -> list[str]:
    """Where the folder's origin contradicts ``manifest``: a benchmark rendered by ``python -m flowutils data`` (it
    holds :data:`flowutils.data.synthetic.INFO_FILE`) read as a real benchmark's copy, or a folder without that file
    read as the synthetic benchmark. Either way its results would be stored under another benchmark's name."""
    rendered = (root / INFO_FILE).is_file()
    if manifest == "synthetic" and not rendered:
        inside = sorted(str(f.parent) for f in root.glob(f"*/{INFO_FILE}"))  # --root data names the parent folder
        if inside:
            return [f"{root} is the folder the data command renders benchmarks in, not a benchmark: give one of {inside}"]
        real = [m for m in benchmark_manifests() if m != "synthetic"]
        return [f"{root} has no {INFO_FILE}, which every synthetic benchmark (python -m flowutils data) has: if it is "
                f"a copy of a real benchmark, name that benchmark's manifest (valid: {real})"]
    if manifest != "synthetic" and rendered:
        return [f"{root} holds {INFO_FILE}: it is a synthetic benchmark rendered by python -m flowutils data, not a "
                f"copy of {manifest!r}; read it with the manifest 'synthetic'"]
    return []


def validate_benchmark(root: str | Path, name: str, check_counts: bool = True, decode_videos: bool = False,
                       min_frames: int | None = None) -> list[str]:
    """Problems found in the local copy ``root`` of benchmark ``name`` (an empty list: it matches).

    Every problem of every task is listed, not only the first: a missing or unreadable question
    file, a question count that differs from the manifest (unless ``check_counts`` is false, e.g.
    for a subset) and, per question, what the format's reader checks (keys, answer among the
    options, duplicates, bounds, missing or empty videos). ``decode_videos``: also open every video
    (decord) and report the corrupt ones and those with fewer than ``min_frames`` frames.
    """
    spec = load_manifest(name)
    root = Path(root)
    if not root.is_dir():
        return [folder_problem(root)]
    if not spec.get("tasks"):
        return [f"manifest {name!r} lists no tasks: there is nothing to compare {root} with"]
    try:
        reader = _reader(spec, name)
    except BenchmarkError as err:
        return [str(err)]
    samples, problems = reader(root, spec, list(spec["tasks"]), check_counts)
    problems = origin_problems(root, name) + problems
    if decode_videos:
        problems += _decode_problems(samples, min_frames or 1)
    return problems


def _decode_problems(samples, min_frames: int) -> list[str]:
    """One problem per question whose video (its ``bound`` interval) cannot be decoded or has fewer than
    ``min_frames`` frames; a video that several questions share is decoded once."""
    errors, problems = {}, []
    for s in samples:
        key = (s.video_path, s.bound)
        if key not in errors:
            try:
                read_frames(s.video_path, min_frames, s.bound)
                errors[key] = None
            except BenchmarkError as err:
                errors[key] = str(err)
        if errors[key]:
            problems.append(f"{s.task} entry {s.index}: {errors[key]}")
    return problems


def option_letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]
