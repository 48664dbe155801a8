"""Shared fixtures: tiny random-weight models of every supported family (fp32, CPU)."""

import shutil

import pytest
import torch

from flowutils.data import synthetic
from flowutils.models.flow_model import FlowModel
from flowutils.toy.models import build_toy
from tiny_families import tiny_config

FAMILIES = ("llava_next_video", "llava_onevision")


def tiny_llava_next_video(seed: int = 0, name: str = "tiny") -> FlowModel:
    """A FlowModel around the tiny random-weight llava_next_video model (the same weights for a seed)."""
    model, processor = build_toy(tiny_config("llava_next_video"), seed=seed)
    return FlowModel(model.float(), processor, name=name)


@pytest.fixture(scope="session")
def bench(tmp_path_factory):
    """A two-question-per-task synthetic benchmark on disk; tests that change it work on copy_benchmark."""
    root = tmp_path_factory.mktemp("bench") / "synthetic"
    synthetic.write_benchmark(root, 2, seed=0, split="test", progress=False)
    return root


def copy_benchmark(bench, tmp_path):
    return shutil.copytree(bench, tmp_path / "copy")


@pytest.fixture(scope="session", params=FAMILIES)
def tiny(request):
    """A FlowModel around a random-weight tiny model of each family."""
    model, processor = build_toy(tiny_config(request.param), seed=0)
    return FlowModel(model.float(), processor, name=f"tiny-{request.param}")


def rendered_questions(tasks, per_task: int) -> list:
    """The first ``per_task`` test questions of each of ``tasks`` (seed 0), every 4th frame kept for speed, with the
    ids ``task/i`` the analyses' store keys read."""
    out = []
    for task in tasks:
        for i, s in enumerate(synthetic.generate(task, per_task, seed=0, split="test")):
            s.frames, s.sample_id = s.frames[::4], f"{task}/{i}"
            out.append(s)
    return out


@pytest.fixture(scope="session")
def samples():
    """One rendered sample per video task (frames sampled to 4 for speed), with the id the analyses give it."""
    out = []
    for i, task in enumerate(synthetic.VIDEO_TASKS):
        s = next(synthetic.generate(task, 1, seed=0, split="test"))
        s.frames, s.sample_id = s.frames[::4], f"{task}/{i}"
        out.append(s)
    return out


def unmodified_logits(fm: FlowModel, prepared) -> torch.Tensor:
    """Logits of the same weights with transformers' own SDPA attention (no flowutils in the path)."""
    armed = fm.model.config._attn_implementation
    fm.model.set_attn_implementation("sdpa")
    try:
        with torch.no_grad():
            return fm.model(**prepared.inputs).logits
    finally:
        fm.model.set_attn_implementation(armed)
