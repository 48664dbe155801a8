"""Loading TOMATO (Shangguan et al., 2024), the visual temporal reasoning benchmark of Table 3.

Read as the release lays it out (checked against github.com/yale-nlp/TOMATO at commit fe2025f:
``data/*.json``, ``src/evaluate.py``, ``src/config.json``, ``src/generate_lib/llava_next.py``)::

    <root>/data/<reasoning_type>.json             an object of records {"0": {...}, "1": {...}, ...}
    <root>/videos/<demonstration_type>/<key>.mp4  the videos (a separate download, unzipped into videos/)

One file per reasoning type: count, direction, rotation, shape&trend, velocity&frequency and
visual_cues are the tasks here. A record is ``{question, options, answer, key, demonstration_type,
motion_type, variation, video_source_url, note}``: ``options`` a list of strings, ``answer`` the
index of the true one, ``key`` the video's name and ``demonstration_type`` (human, object or
simulated) its folder. Record ids are strings of integers, not always consecutive (rotation.json
skips some); several questions share a video. The official prompt shows the options as letters
A, B, ... in list order, so a sample's candidates keep that order and its answer letter is
``chr(65 + answer)``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .tvbench import (VideoQASample, container_problems, count_problems, duplicate_problems, index_problems,
                      keys_problems, options_problems, read_json, read_per_task, text_problems, video_problems)

REQUIRED_KEYS = ("question", "options", "answer", "key", "demonstration_type")


def _file_ids(path: Path) -> list[str]:
    """The record ids of a file in order, repeats included (``json.loads`` keeps only the last of a repeated id)."""
    return [k for k, _ in json.loads(path.read_text(), object_pairs_hook=lambda pairs: pairs)]


def _record_problems(r, where: str, root: Path, spec: dict) -> list[str]:
    """Every problem of one record (empty: it is valid)."""
    missing = keys_problems(r, REQUIRED_KEYS, where)
    if missing:
        return missing
    bad_key = text_problems(r["key"], "key", where)
    bad_options = options_problems(r["options"], where, "options")
    problems = text_problems(r["question"], "question", where) + bad_key + bad_options
    if not bad_options:
        problems += index_problems(r["answer"], len(r["options"]), "answer", where)
    kinds = spec["demonstration_types"]
    if r["demonstration_type"] not in kinds:
        problems.append(f"{where}: demonstration_type {r['demonstration_type']!r} is not one of {kinds}")
    elif not bad_key:
        problems += video_problems(_video(root, spec, r), where)
    return problems


def _video(root: Path, spec: dict, r: dict) -> Path:
    return root / spec["video_dir"] / r["demonstration_type"] / f"{r['key']}.mp4"


def _read_task_file(root: Path, spec: dict, task: str, check_counts: bool):
    path = root / "data" / spec["tasks"][task]["json"]
    records, problems = read_json(path, f"task {task!r}: ")
    problems = problems or container_problems(
        records, dict, path, f"task {task!r}: ",
        f"an object of records {{\"0\": {{{', '.join(REQUIRED_KEYS)}, ...}}, ...}} (TOMATO format)")
    if problems:
        return [], problems
    ids = _file_ids(path)
    problems = [f"{path} record {rid!r}: the id appears {n} times (JSON keeps only the last)"
                for rid, n in Counter(ids).items() if n > 1]
    if check_counts:
        problems += count_problems(f"{task}: {path}", len(ids), spec["tasks"][task].get("questions"))
    samples, seen = [], {}
    for i, (rid, r) in enumerate(records.items()):
        where = f"{path} record {rid!r}"
        found = _record_problems(r, where, root, spec)
        if not found:
            key = json.dumps([r["key"], r["question"], r["options"], r["answer"]])
            found = duplicate_problems(seen, key, f"record {rid!r}", where, "key, question, options, answer")
        problems += found
        if not found:
            samples.append(VideoQASample(task, i, _video(root, spec, r), r["question"], tuple(r["options"]),
                                         r["options"][r["answer"]], record_id=rid))
    return samples, problems


def read_benchmark(root: Path, spec: dict, tasks: list[str], check_counts: bool = False):
    """``(samples, problems)`` of ``tasks`` (reasoning types) of a TOMATO copy; ``check_counts``: also
    compare each file's number of records with the task's ``questions`` in the manifest."""
    return read_per_task(_read_task_file, root, spec, tasks, check_counts)
