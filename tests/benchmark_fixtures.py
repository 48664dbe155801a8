"""Tiny copies of TOMATO, LongVideoBench, Video-MME and VCGBench in their releases' own layouts.

Each ``write_*`` function lays a handful of questions out under ``root`` exactly as the benchmark's
release does (file names, folders, record fields; see each loader's docstring for the source read)
and gives every video a real tiny H.264 clip: one synthetic clip rendered with
:func:`flowutils.data.synthetic.write_video` and copied, so the decode checks have something to open.
The constants name the records that tests look for.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from flowutils.data import synthetic

CLIP_FPS = 8  # synthetic clips: 16 frames, 64x64, so 2 seconds


def _clip(path: Path, source: Path | None = None) -> Path:
    """Put a tiny clip at ``path`` (rendered if there is no ``source`` yet, else copied from it; a video that
    several questions share is written once) and return the clip to copy next time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is None:
        frames = next(synthetic.generate("moving_direction", 1, seed=0, split="test")).frames
        synthetic.write_video(path, frames, CLIP_FPS)
        return path
    if not path.exists():
        shutil.copyfile(source, path)
    return source


def _json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1))


# ----------------------------------------------------------------------------- TOMATO
# Copied field for field from the release (github.com/yale-nlp/TOMATO, data/visual_cues.json, record "0";
# questions licensed CC BY-SA 4.0 by the TOMATO authors, see the Hugging Face card yale-nlp/TOMATO).
TOMATO_RELEASED = {
    "question": "Which musical instrument sounds last?",
    "options": ["Cello.", "None of them produces any sound.", "Flute.", "Violin.",
                "All instruments sound at the same time."],
    "answer": 2,
    "video_source_url": "",
    "motion_type": "visual cues",
    "variation": {"counterfactual": 0, "composite": 0, "zoom": 0, "first_person": 0},
    "demonstration_type": "object",
    "note": "",
    "key": "0731-00",
}


def _tomato_record(question, options, answer, key, demonstration_type, motion_type):
    """A record written from the release's schema (the fields every record of data/*.json has)."""
    return {"question": question, "options": options, "answer": answer, "video_source_url": "",
            "motion_type": motion_type,
            "variation": {"counterfactual": 0, "composite": 0, "zoom": 0, "first_person": 0},
            "demonstration_type": demonstration_type, "note": "", "key": key}


TOMATO_FILES = {
    "count.json": {  # two questions about one video, as the release has
        "0": _tomato_record("How many times does the hand wave?", ["1", "2", "3", "0"], 1, "0001-00", "human", "count"),
        "1": _tomato_record("How many fingers are raised at the end?", ["5", "4", "3", "2"], 3, "0001-00", "human",
                            "count"),
    },
    "direction.json": {"0": _tomato_record("Which way does the ball roll?", ["Left.", "Right.", "Not moving."], 0,
                                           "0002-00", "object", "direction")},
    "rotation.json": {  # ids need not be consecutive (the release's rotation.json skips some)
        "0": _tomato_record("Which way does the wheel turn?", ["Clockwise.", "Counter-clockwise."], 1, "0003-00",
                            "simulated", "rotation"),
        "5": _tomato_record("Which way does the top spin?", ["Clockwise.", "Counter-clockwise."], 0, "0003-01",
                            "object", "rotation"),
    },
    "shape&trend.json": {"0": _tomato_record("What shape does the hand draw?", ["Circle.", "Square.", "Triangle."], 2,
                                             "0004-00", "human", "shape&trend")},
    "velocity&frequency.json": {"0": _tomato_record("Does the cart speed up?", ["Yes.", "No.", "It stops."], 0,
                                                    "0005-00", "simulated", "velocity&frequency")},
    "visual_cues.json": {"0": TOMATO_RELEASED},
}


def write_tomato(root: Path) -> Path:
    clip = None
    for name, records in TOMATO_FILES.items():
        _json(root / "data" / name, records)
        for r in records.values():
            clip = _clip(root / "videos" / r["demonstration_type"] / f"{r['key']}.mp4", clip)
    return root


# ----------------------------------------------------------------------------- LongVideoBench
# Written from the documented schema (longvideobench_dataset.py and the dataset card): the data are
# CC BY-NC-SA 4.0, so no released question is copied into this repository.
def _lvb_question(video_id, n, category, question, candidates, correct_choice):
    return {"video_id": video_id, "question": question, "question_wo_referring_query": question,
            "candidates": candidates, "correct_choice": correct_choice, "position": [0, 2],
            "topic_category": "KS-Knowledge-Science", "question_category": category, "level": "L2-Relation",
            "id": f"{video_id}_{n}", "video_path": f"{video_id}.mp4", "subtitle_path": f"{video_id}_en.json",
            "duration_group": 15, "starting_timestamp_for_subtitles": 0, "duration": 2.0, "view_count": 100}


LVB_QUESTIONS = [
    _lvb_question("vidA", 0, "O2E", "When the red ball appears, what happens next?",
                  ["It stops.", "It bounces.", "It rolls left.", "It rolls right."], 3),
    _lvb_question("vidA", 1, "O3O", "Which object appears after the red ball?",
                  ["A cube.", "A cone.", "Nothing."], 0),
    _lvb_question("vidB", 0, "SOS", "In the scene with the grid, where does the ball go next?",
                  ["To the beach.", "To the forest."], 1),
    _lvb_question("vidB", 1, "S2E", "What happens in the scene with the grid?",
                  ["The ball grows.", "The ball moves.", "The ball fades."], 1),
]


def write_longvideobench(root: Path) -> Path:
    _json(root / "lvb_val.json", LVB_QUESTIONS)
    clip = None
    for q in LVB_QUESTIONS:
        clip = _clip(root / "videos" / q["video_path"], clip)
        _json(root / "subtitles" / q["subtitle_path"],
              [{"start": "00:00:00.000", "end": "00:00:01.000", "line": "hello"}])
    return root


# ----------------------------------------------------------------------------- Video-MME
# Written from the documented schema (the lmms-lab/Video-MME card's features): Video-MME may not be
# copied or redistributed, so no released row is reproduced here.
def _videomme_row(video_id, n, video, task_type, question, options, answer):
    return {"video_id": video_id, "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
            "url": f"https://www.youtube.com/watch?v={video}", "videoID": video, "question_id": f"{video_id}-{n}",
            "task_type": task_type, "question": question, "options": options, "answer": answer}


VIDEOMME_ROWS = [
    _videomme_row("001", 1, "vmA", "Action Recognition", "What is the person doing?",
                  ["A. Running.", "B. Waving.", "C. Sitting.", "D. Jumping."], "B"),
    _videomme_row("001", 2, "vmA", "Spatial Perception", "Where is the ball?",
                  ["A. Top left.", "B. Top right.", "C. Bottom left.", "D. Bottom right."], "C"),
    _videomme_row("002", 1, "vmB", "Counting Problem", "How many balls are there?",
                  ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "A"),
]
VIDEOMME_QUESTIONS = "videomme/test-00000-of-00001.parquet"


def write_videomme(root: Path, parquet: bool = False) -> Path:
    """The rows as the release's parquet file (``parquet``: needs pyarrow) or as its JSON copy."""
    path = root / VIDEOMME_QUESTIONS
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(VIDEOMME_ROWS), path)
    else:
        _json(path.with_suffix(".json"), VIDEOMME_ROWS)
    clip = _clip(root / "data" / "vmA.mp4")
    _clip(root / "data" / "vmB.MP4", clip)  # lmms-eval also finds .MP4
    return root


# ----------------------------------------------------------------------------- VCGBench
# Written from the documented schema ({video_name, Q, A}, read by Video-ChatGPT's
# run_inference_benchmark_general.py): the release is CC BY-NC-SA 4.0, so no released question is copied.
VCG_QUESTIONS = [
    {"video_name": "v_abc", "Q": "What does the man do after he picks up the ball?",
     "A": "He throws it to the dog, which runs after it."},
    {"video_name": "v_abc", "Q": "What happens at the start of the video?", "A": "A man walks into the park."},
    {"video_name": "v_def", "Q": "In what order are the ingredients added?", "A": "First flour, then eggs, then milk."},
]


def write_vcgbench(root: Path) -> Path:
    _json(root / "Benchmarking_QA" / "temporal_qa.json", VCG_QUESTIONS)
    clip = _clip(root / "Test_Videos" / "v_abc.mp4")
    _clip(root / "Test_Videos" / "v_def.mkv", clip)  # the release's code also finds .avi, .mov, .mkv
    return root


WRITERS = {"tomato": write_tomato, "longvideobench": write_longvideobench, "videomme": write_videomme,
           "vcgbench": write_vcgbench}
