"""Loading Video-MME (Fu et al., 2024), the spatial-understanding comparison of Appendix F.2.

Read as the lmms-lab/Video-MME Hugging Face release lays it out (checked against its dataset card
and the lmms-eval task that reads it, ``lmms_eval/tasks/videomme/utils.py``)::

    <root>/videomme/test-00000-of-00001.parquet   one row per question
    <root>/data/<videoID>.mp4                     the videos_chunked_*.zip archives, unzipped

A row is ``{video_id, duration, domain, sub_category, url, videoID, question_id, task_type,
question, options, answer}``: ``options`` are strings that carry their letter (``"A. Apples."``),
``answer`` is the true letter and ``task_type`` one of 12 question types, mapped to the tasks here
(the paper analyses action recognition and spatial perception). A sample's candidates are the
option texts without their ``"A. "`` (the prompt letters the options itself), in letter order, so
its answer letter is the release's. Like lmms-eval, a video is looked for as .mp4, .MP4, then .mkv.

Reading parquet needs pyarrow. Without it, give a JSON copy of the same rows beside the parquet
file, ``test-00000-of-00001.json`` (a list of row objects, e.g. written where pyarrow is installed
by ``pandas.read_parquet(p).to_json(j, orient="records")``): the JSON copy is read when present.
"""

from __future__ import annotations

from pathlib import Path

from .tvbench import (VideoQASample, category_tasks, container_problems, count_problems, duplicate_problems, entry_id,
                      entry_where, find_video, keys_problems, options_problems, read_json, text_problems)

REQUIRED_KEYS = ("question_id", "videoID", "task_type", "question", "options", "answer")


def _rows(path: Path) -> tuple[list | None, list[str], Path]:
    """``(rows, problems, the file read)``: the JSON copy of ``path`` if present, else the parquet file."""
    copy = path.with_suffix(".json")
    if copy.is_file():
        rows, problems = read_json(copy)
        return rows, problems, copy
    if not path.is_file():
        return None, [f"question file not found: {path} (nor its JSON copy {copy})"], path
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq  # lazy: optional, and only this format needs it
    except ImportError:
        return None, [f"cannot read {path}: reading parquet needs pyarrow (pip install pyarrow); or write its rows "
                      f"as a JSON list to {copy}"], path
    try:
        return pq.read_table(path).to_pylist(), [], path
    except (pa.ArrowException, OSError) as err:
        return None, [f"{path} is not a readable parquet file: {err}"], path


def _option_texts(options, where: str) -> tuple[list[str], list[str]]:
    """``(texts, problems)``: each option without its ``"A. "``; option ``i`` must carry letter ``chr(65 + i)``."""
    problems = options_problems(options, where, "options")
    if problems:
        return [], problems
    texts = []
    for i, option in enumerate(options):
        prefix = f"{chr(ord('A') + i)}. "
        if not option.startswith(prefix):
            problems.append(f"{where}: option {i} {option!r} does not start with {prefix!r} "
                            f"(options are lettered A., B., ... in order)")
        texts.append(option.removeprefix(prefix))
    return texts, problems or options_problems(texts, where, "option texts")


def _row(r, where: str, root: Path, spec: dict, categories: dict):
    """``(video, option texts, problems)`` of one row (no problems: it is valid)."""
    missing = keys_problems(r, REQUIRED_KEYS, where)
    if missing:
        return None, [], missing
    problems = text_problems(r["question_id"], "question_id", where) + text_problems(r["question"], "question", where)
    texts, bad_options = _option_texts(r["options"], where)
    problems += bad_options
    letters = [chr(ord("A") + i) for i in range(len(texts))]
    if not bad_options and r["answer"] not in letters:
        problems.append(f"{where}: answer {r['answer']!r} is not one of the option letters {letters}")
    if not isinstance(r["task_type"], str) or r["task_type"] not in categories:
        problems.append(f"{where}: task_type {r['task_type']!r} is not a task of the manifest; "
                        f"valid: {list(categories)}")
    bad_id = text_problems(r["videoID"], "videoID", where)
    if bad_id:
        return None, texts, problems + bad_id
    video, bad_video = find_video(root / spec["video_dir"], r["videoID"], spec["video_extensions"], where)
    return video, texts, problems + bad_video


def read_benchmark(root: Path, spec: dict, tasks: list[str], check_counts: bool = False):
    """``(samples, problems)`` of ``tasks`` (question types) of a Video-MME copy. Every row of the file is
    checked, whatever its task; ``check_counts``: also compare the number of rows with the manifest's
    ``questions``."""
    rows, problems, path = _rows(root / spec["question_file"])
    problems = problems or container_problems(
        rows, list, path, "", f"a list of rows {{{', '.join(REQUIRED_KEYS)}, ...}} (Video-MME format)")
    if problems:
        return [], problems
    if check_counts:
        problems += count_problems(str(path), len(rows), spec.get("questions"))
    categories, samples, seen = category_tasks(spec), [], {}
    for i, r in enumerate(rows):
        where = entry_where(path, i, r, "question_id")
        video, texts, found = _row(r, where, root, spec, categories)
        rid = entry_id(r, "question_id")
        if rid is not None:
            found += duplicate_problems(seen, rid, f"entry {i}", where, "question_id")
        problems += found
        task = None if found else categories[r["task_type"]]
        if task in tasks:
            answer = texts[ord(r["answer"]) - ord("A")]
            samples.append(VideoQASample(task, i, video, r["question"], tuple(texts), answer,
                                         record_id=r["question_id"]))
    return samples, problems
