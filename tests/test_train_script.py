"""`make toy-models`'s pipeline end to end on the CPU, at a few steps per stage (tiny data, the real sizes)."""

import json
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

SCRIPT = [sys.executable, str(Path(__file__).parent.parent / "scripts" / "train_toy_models.py"), "--device", "cpu",
          "--workers", "1"]


def _run(*args):
    subprocess.run(SCRIPT + list(args), check=True, capture_output=True, text=True)


def _tower(path):
    return {k: v for k, v in load_file(Path(path) / "model.safetensors").items() if "vision_tower" in k}


def test_shipped_recipe_runs_and_keeps_the_pretrained_vision_tower(tmp_path):
    cache, t, v, i, o = (str(tmp_path / n) for n in ("cache", "text", "vision", "image", "video"))
    _run("data", "--cache", cache, "--image-per-task", "4", "--video-per-task", "2", "--count-per-task", "3",
         "--shard-size", "2", "--val-per-task", "2")
    _run("text", "--out", t, "--steps", "2", "--per-task", "8", "--val-per-task", "2", "--batch-size", "4")
    _run("vision", "--cache", cache, "--init", t, "--out", v, "--steps", "2", "--batch-size", "4")
    _run("image", "--cache", cache, "--init", v, "--out", i, "--text-steps", "0", "--text-context", "scene",
         "--freeze-vision", "--image-steps", "2", "--batch-size", "4", "--eval-every", "2")
    _run("video", "--cache", cache, "--init", i, "--out", o, "--video-steps", "2", "--batch-size", "4", "--eval-every", "2")
    record = json.loads((Path(o) / "training_log.json").read_text())
    assert list(record["logs"]) == ["scene_text", "vision", "image_2", "video"]
    assert [a["command"] for a in record["image_args"]] == ["image", "vision", "text"]
    assert record["data_args"]["count_per_task"] == 3  # which data the stage trained on
    assert json.loads((Path(i) / "training_log.json").read_text())["data_args"] == record["data_args"]
    # vision moved in its own stage, and only there
    before, after = _tower(t), _tower(v)
    assert any(not (before[k] == after[k]).all() for k in before)
    for stage in (i, o):
        assert all((after[k] == w).all() for k, w in _tower(stage).items())
