"""Loading the temporal subset of VCGBench (Video-ChatGPT's benchmark, Maaz et al., 2024), open-ended (Appendix C).

Read as the Video-ChatGPT release lays it out (checked against github.com/mbzuai-oryx/Video-ChatGPT:
``quantitative_evaluation/README.md``, ``video_chatgpt/eval/run_inference_benchmark_general.py``,
which reads the question file and finds each video, and
``quantitative_evaluation/evaluate_benchmark_4_temporal.py``, which scores the answers)::

    <root>/Benchmarking_QA/temporal_qa.json   a list of {video_name, Q, A}
    <root>/Test_Videos/<video_name>.mp4       or .avi, .mov, .mkv: tried in that order, as the release's code does

``Q`` is an open-ended question and ``A`` the reference answer that GPT-3.5 compares a generated
answer with. There are no options: a sample is ``open_ended``, its candidates are empty and its
``answer`` is the reference text, so multiple-choice code (``answer_index``, ``answer_letter``, a
model's ``prepare``) refuses it rather than inventing options. ``video_name`` has no extension;
several questions may share a video.
"""

from __future__ import annotations

import json
from pathlib import Path

from .tvbench import (VideoQASample, container_problems, count_problems, duplicate_problems, find_video,
                      keys_problems, read_json, read_per_task, text_problems)

QUESTION_DIR = "Benchmarking_QA"
REQUIRED_KEYS = ("video_name", "Q", "A")


def _read_task_file(root: Path, spec: dict, task: str, check_counts: bool):
    t = spec["tasks"][task]
    path = root / QUESTION_DIR / t["json"]
    entries, problems = read_json(path, f"task {task!r}: ")
    problems = problems or container_problems(
        entries, list, path, f"task {task!r}: ",
        f"a list of questions {{{', '.join(REQUIRED_KEYS)}}} (Video-ChatGPT format)")
    if problems:
        return [], problems
    if check_counts:
        problems += count_problems(f"{task}: {path}", len(entries), t.get("questions"))
    samples, seen = [], {}
    for i, e in enumerate(entries):
        where = f"{path} entry {i}"
        found = keys_problems(e, REQUIRED_KEYS, where)
        if not found:
            found = [p for k in REQUIRED_KEYS for p in text_problems(e[k], k, where)]
        video = None
        if not found:
            video, found = find_video(root / spec["video_dir"], e["video_name"], spec["video_extensions"], where)
            key = json.dumps([e["video_name"], e["Q"]])
            found += duplicate_problems(seen, key, f"entry {i}", where, "video_name, Q")
        problems += found
        if not found:
            samples.append(VideoQASample(task, i, video, e["Q"], (), e["A"], open_ended=True))
    return samples, problems


def read_benchmark(root: Path, spec: dict, tasks: list[str], check_counts: bool = False):
    """``(samples, problems)`` of ``tasks`` of a VCGBench copy (open-ended samples); ``check_counts``: also
    compare each question file's number of questions with the task's ``questions`` in the manifest."""
    return read_per_task(_read_task_file, root, spec, tasks, check_counts)
