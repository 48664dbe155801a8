"""Loading LongVideoBench (Wu et al., 2024), the long-video benchmark of Appendix F.1: its validation set.

Read as the release lays it out (the Hugging Face dataset longvideobench/LongVideoBench; checked
against the README of github.com/longvideobench/LongVideoBench, which says to untar videos.tar and
subtitles.tar beside the question files, and its ``longvideobench/longvideobench_dataset.py``,
which reads them)::

    <root>/lvb_val.json              a list of questions
    <root>/videos/<video_path>
    <root>/subtitles/<subtitle_path>

A question is ``{id, video_id, video_path, subtitle_path, question, question_wo_referring_query,
candidates, correct_choice, question_category, topic_category, level, position, duration_group,
duration, starting_timestamp_for_subtitles, view_count}``: ``candidates`` are the options (the
official loader writes them as ``A. candidate``), ``correct_choice`` the index of the true one and
``question_category`` one of 17 codes, the tasks here (the paper analyses O2E, O3O and SOS). The
official loader samples frames only from the first ``duration`` seconds of the video, so a
sample's ``bound`` is ``(0, duration)``. The test set (``lvb_test_wo_gt.json``) has no answers and
is not read.
"""

from __future__ import annotations

from pathlib import Path

from .tvbench import (VideoQASample, category_tasks, container_problems, count_problems, duplicate_problems, entry_id,
                      entry_where, index_problems, keys_problems, options_problems, read_json, text_problems,
                      video_problems)

REQUIRED_KEYS = ("id", "video_path", "subtitle_path", "question", "candidates", "correct_choice",
                 "question_category", "duration")


def _entry_problems(e, where: str, root: Path, spec: dict, categories: dict) -> list[str]:
    """Every problem of one question (empty: it is valid)."""
    missing = keys_problems(e, REQUIRED_KEYS, where)
    if missing:
        return missing
    bad_candidates = options_problems(e["candidates"], where)
    problems = text_problems(e["id"], "id", where) + text_problems(e["question"], "question", where) + bad_candidates
    if not bad_candidates:
        problems += index_problems(e["correct_choice"], len(e["candidates"]), "correct_choice", where)
    if not isinstance(e["question_category"], str) or e["question_category"] not in categories:
        problems.append(f"{where}: question_category {e['question_category']!r} is not a task of the manifest; "
                        f"valid: {list(categories)}")
    duration = e["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0:
        problems.append(f"{where}: duration must be a positive number of seconds, got {duration!r}")
    bad_video = text_problems(e["video_path"], "video_path", where)
    problems += bad_video or video_problems(root / spec["video_dir"] / e["video_path"], where)
    bad_subtitle = text_problems(e["subtitle_path"], "subtitle_path", where)
    return problems + (bad_subtitle or _subtitle_problems(root / spec["subtitle_dir"] / e["subtitle_path"], where))


def _subtitle_problems(subtitle: Path, where: str) -> list[str]:
    return [] if subtitle.is_file() else [f"{where}: subtitle file not found: {subtitle}"]


def read_benchmark(root: Path, spec: dict, tasks: list[str], check_counts: bool = False):
    """``(samples, problems)`` of ``tasks`` (question categories) of a LongVideoBench copy. Every question
    of the file is checked, whatever its task; ``check_counts``: also compare the file's number of
    questions with the manifest's ``questions``."""
    path = root / spec["question_file"]
    entries, problems = read_json(path)
    problems = problems or container_problems(
        entries, list, path, "", f"a list of questions {{{', '.join(REQUIRED_KEYS)}, ...}} (LongVideoBench format)")
    if problems:
        return [], problems
    if check_counts:
        problems += count_problems(str(path), len(entries), spec.get("questions"))
    categories, samples, seen = category_tasks(spec), [], {}
    for i, e in enumerate(entries):
        where = entry_where(path, i, e, "id")
        found = _entry_problems(e, where, root, spec, categories)
        rid = entry_id(e, "id")
        if rid is not None:
            found += duplicate_problems(seen, rid, f"entry {i}", where, "id")
        problems += found
        task = None if found else categories[e["question_category"]]
        if task in tasks:
            candidates = tuple(e["candidates"])
            samples.append(VideoQASample(
                task, i, root / spec["video_dir"] / e["video_path"], e["question"], candidates,
                candidates[e["correct_choice"]], (0.0, float(e["duration"])), record_id=e["id"],
                subtitle_path=root / spec["subtitle_dir"] / e["subtitle_path"]))
    return samples, problems
