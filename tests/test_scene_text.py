"""The scene-text curriculum: every answer re-derived from the listed objects and the question's words."""

import re
from collections import Counter

import pytest

from flowutils.toy.scene_text import SCENE_TASKS, scene_questions
from flowutils.data.synthetic import describe, distractors


def _brute_force_answer(q) -> str:
    """The answer a reader of the description gives, from the question's words alone."""
    objects = q.meta["objects"]
    if q.task == "image_color":
        shape = re.search(r"the (\w+)\?", q.question).group(1)
        colours = [c for c, s in objects if s == shape]
        assert len(colours) == 1, (q.question, objects)  # the question names one object
        return colours[0].capitalize() + "."
    if q.task == "image_shape":
        colour = re.search(r"the (\w+) object", q.question).group(1)
        shapes = [s for c, s in objects if c == colour]
        assert len(shapes) == 1, (q.question, objects)
        return shapes[0].capitalize() + "."
    if q.task == "image_count":
        return str(len(objects))
    colour, phase = re.search(r"many (\w+) objects are moving when the video (\w+)\?", q.question).groups()
    return str(sum(c == colour and w == phase for c, w in objects))


def test_answers_follow_from_the_description():
    questions = scene_questions(300, seed=4)
    assert Counter(q.task for q in questions) == {t: 300 for t in SCENE_TASKS}
    for q in questions:
        assert q.answer == _brute_force_answer(q)
        assert q.answer in q.candidates and len(set(q.candidates)) == len(q.candidates)
        for c, _ in q.meta["objects"]:
            assert c.capitalize() in describe(q)


def test_answer_letters_are_balanced_and_objects_drawn_up_to_max():
    questions = scene_questions(240, seed=5, max_objects=3)
    for task in SCENE_TASKS:
        qs = [q for q in questions if q.task == task]
        slots = Counter(q.answer_index for q in qs)
        assert len(slots) == len(qs[0].candidates) and max(slots.values()) - min(slots.values()) <= 1, (task, slots)
    counts = Counter(len(q.meta["objects"]) for q in questions if q.task in ("image_color", "image_shape"))
    assert set(counts) == {1, 2, 3}


def test_fixed_number_of_objects_and_determinism():
    a = scene_questions(20, seed=1, split="validation", n_objects=2, tasks=("image_color",))
    b = scene_questions(20, seed=1, split="validation", n_objects=2, tasks=("image_color",))
    assert [(q.question, q.candidates, q.meta) for q in a] == [(q.question, q.candidates, q.meta) for q in b]
    assert {len(q.meta["objects"]) for q in a} == {2}
    assert {distractors(q) for q in a} == {1}  # the ground truth names the asked object, as the benchmark's does
    c = scene_questions(20, seed=1, split="test", n_objects=2, tasks=("image_color",))
    assert [q.meta for q in a] != [q.meta for q in c]


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": ("moving_direction",)}, "valid"),
    ({"split": "dev"}, "valid"),
    ({"n_objects": 4, "tasks": ("image_color",)}, "1 to 3"),
])
def test_bad_arguments_name_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scene_questions(2, **kwargs)
