"""Scene questions in words: the toy LM's language-pretraining curriculum.

The paper's ImageLLMs start from a pretrained LLM, which can already find in its context
the thing a question names and read off what is said of it (associative recall). A toy LM
trained from scratch on the synthetic questions does not learn this: the first toy
ImageLLM answered questions about one of two objects no better than picking either
object, with pixels and with a description of the scene alike (book appendix).

This module writes the benchmark's own multiple-choice questions with no pixels: a
description of the scene (``Blue square. Red circle.``, :func:`flowutils.data.synthetic.describe`)
goes where the video would (``training.encode_all(..., text="scene")``). Colour and shape
questions ask about one of up to ``max_objects`` objects (the benchmark's images hold one
or two), so that a guess among the objects present pays less and binding pays more.
Object Count questions follow the benchmark's own plan
(:func:`flowutils.data.synthetic.object_count_plan`), in words: ``Red begins. Red never.``.
"""

from __future__ import annotations

import numpy as np

from ..data.synthetic import (QUESTIONS, SHAPES, SyntheticSample, attribute_question, object_count_plan, object_list, scene_objects,
                        split_seed)

SCENE_TASKS = ("image_color", "image_shape", "image_count", "object_count")
NO_FRAMES = np.zeros((0, 1, 1, 3), np.uint8)
_STREAM = 7  # keeps these random streams apart from the pixel generator's


def scene_question(task: str, rng: np.random.Generator, slot: int, n_objects: int) -> SyntheticSample:
    """One question of ``task`` (a :data:`SCENE_TASKS` name) about a scene of ``n_objects``
    objects (colour and shape questions: 1 to 3; count questions draw their own). ``slot``
    balances the answer letter as the benchmark does."""
    if task == "object_count":
        plan = object_count_plan(rng, slot)
        return SyntheticSample(task, NO_FRAMES, QUESTIONS[task].format(color=plan["color"], phase=plan["phase"]),
                               ["0", "1", "2", "3"], str(plan["count"]),
                               plan)
    if task == "image_count":
        n = slot % 4 + 1
        shapes, colors = scene_objects(rng, n)
        return SyntheticSample(task, NO_FRAMES, QUESTIONS[task], ["1", "2", "3", "4"], str(n),
                               {"objects": object_list(colors, shapes)})
    if task not in ("image_color", "image_shape"):
        raise ValueError(f"unknown scene task {task!r}; valid: {SCENE_TASKS}")
    if not 1 <= n_objects <= len(SHAPES):
        raise ValueError(f"n_objects={n_objects}: colour and shape questions need 1 to {len(SHAPES)} objects "
                         "(every object a different shape and colour)")
    shapes, colors = scene_objects(rng, n_objects)
    k = int(rng.integers(n_objects))  # the object asked about
    question, candidates, answer = attribute_question(task, rng, shapes[k], colors[k], slot)
    return SyntheticSample(task, NO_FRAMES, question, candidates, answer,
                           {"shape": shapes[k], "color": colors[k], "objects": object_list(colors, shapes)})


def scene_questions(n_per_task: int, seed: int = 0, split: str = "train", max_objects: int = 3,
                    n_objects: int | None = None, tasks=SCENE_TASKS) -> list[SyntheticSample]:
    """``n_per_task`` deterministic questions per task of ``(seed, split)``. Colour and shape
    questions have ``n_objects`` objects, or a uniform draw from 1 to ``max_objects``."""
    entropy = split_seed(split)
    out = []
    for task in tasks:
        if task not in SCENE_TASKS:
            raise ValueError(f"unknown scene task {task!r}; valid: {SCENE_TASKS}")
        rng = np.random.default_rng([seed, entropy, SCENE_TASKS.index(task), _STREAM])
        for i in range(n_per_task):
            n = n_objects if n_objects is not None else int(rng.integers(1, max_objects + 1))
            out.append(scene_question(task, rng, i, n))
    return out
