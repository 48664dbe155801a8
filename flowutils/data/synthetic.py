"""A synthetic, TVBench-format video benchmark rendered with numpy.

Real benchmarks cannot be downloaded on the machines this book is built on, so the
embedded default data is rendered here: coloured shapes on plain or patterned
backgrounds. Five video tasks mirror the TVBench tasks the paper analyses
(Action Antonym, Action Sequence, Scene Transition, Moving Direction, Object Count)
and four single-frame image tasks (colour, shape, count, position) are what the toy
ImageLLM is trained on.

Every sample keeps its ground truth in ``meta``. The temporal tasks are built so that
no single frame answers them: reversing the frames swaps the answer of Action Antonym,
Action Sequence, Scene Transition and Moving Direction (``reverse_answer`` computes the
reversed video's correct answer from the ground truth, and the tests check it).

Videos are written as real H.264 mp4 files with PyAV (``write_benchmark``) and read back
with decord by :mod:`flowutils.data`, exactly as real TVBench videos are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .paths import write_atomic

VIDEO_TASKS = ("action_antonym", "action_sequence", "scene_transition", "moving_direction", "object_count")
IMAGE_TASKS = ("image_color", "image_shape", "image_count", "image_position")
TASK_TITLES = {
    "action_antonym": "Action Antonym",
    "action_sequence": "Action Sequence",
    "scene_transition": "Scene Transition",
    "moving_direction": "Moving Direction",
    "object_count": "Object Count",
    "image_color": "Image Colour",
    "image_shape": "Image Shape",
    "image_count": "Image Count",
    "image_position": "Image Position",
}
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}

COLORS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 220),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")
SCENES = {  # name: (background colour, pattern)
    "beach": ((210, 180, 100), "hstripes"),
    "forest": ((30, 110, 40), "vstripes"),
    "ocean": ((30, 60, 150), "waves"),
    "city": ((110, 110, 110), "grid"),
    "desert": ((200, 110, 40), "dots"),
    "night sky": ((15, 15, 50), "stars"),
}
ANTONYMS = (("Grow.", "Shrink."), ("Appear.", "Disappear."), ("Light up.", "Dim."))
SEQUENCE_ACTIONS = ("Jump.", "Blink.", "Pulse.", "Flash.")
DIRECTIONS = ("Up and to the left.", "Up and to the right.", "Down and to the left.", "Down and to the right.")
DIRECTION_VECTORS = {DIRECTIONS[0]: (-1, -1), DIRECTIONS[1]: (1, -1), DIRECTIONS[2]: (-1, 1), DIRECTIONS[3]: (1, 1)}
POSITIONS = ("Top left.", "Top right.", "Bottom left.", "Bottom right.")
BACKGROUND = (35, 35, 35)

QUESTIONS = {
    "action_antonym": "What is the action being performed in the video?",
    "action_sequence": "What did the object do first?",
    "scene_transition": "What's the right option for how the scenes in the video change?",
    "moving_direction": "Which direction does the {color} {shape} move in the video?",
    "object_count": "How many {color} objects are moving when the video {phase}?",
    "image_color": "What color is the {shape}?",
    "image_shape": "What shape is the {color} object?",
    "image_count": "How many objects are there?",
    "image_position": "Where is the {color} {shape}?",
}


# Object Count's {phase}: the temporal words of Figure 5, each the other's swap (the same video asked both ways).
PHASES = ("begins", "ends")
TEMPORAL_SWAP = {"begins": "ends", "ends": "begins"}


def swap_temporal_word(question: str, swap: dict | None = None) -> str | None:
    """``question`` with its one temporal word replaced by its swap (``swap``, default :data:`TEMPORAL_SWAP`):
    Object Count's "... when the video begins?" becomes "... when the video ends?" about the same video (the
    answer then is the other phase's count: ``meta["moving_at_end"]`` for a "begins" question). ``None`` where the
    question has none of the words as a whole word, or more than one."""
    swap = TEMPORAL_SWAP if swap is None else swap
    if not swap:
        return None
    pattern = re.compile(r"(?<![A-Za-z])(" + "|".join(map(re.escape, swap)) + r")(?![A-Za-z])", re.IGNORECASE)
    if len(pattern.findall(question)) != 1:
        return None
    return pattern.sub(lambda m: swap[m.group(1).lower()], question)


@dataclass
class RenderConfig:
    """How videos are rendered: frame size in pixels and frames per video."""

    size: int = 64
    video_frames: int = 16
    fps: int = 8


@dataclass
class SyntheticSample:
    """One rendered question. ``frames``: ``[time, height, width, 3]`` uint8."""

    task: str
    frames: np.ndarray
    question: str
    candidates: list[str]
    answer: str
    meta: dict = field(default_factory=dict)

    @property
    def answer_index(self) -> int:
        return self.candidates.index(self.answer)


# ----------------------------------------------------------------------------- drawing
def _shape_mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """Boolean ``[size, size]`` mask of a filled shape centred at (cx, cy)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        return (np.abs(dx) <= radius * 0.85) & (np.abs(dy) <= radius * 0.85)
    if shape == "triangle":  # apex up
        return (dy <= radius * 0.8) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)
    raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")


def _background(size: int, scene: str | None) -> np.ndarray:
    frame = np.empty((size, size, 3), np.float32)
    if scene is None:
        frame[:] = BACKGROUND
        return frame
    color, pattern = SCENES[scene]
    frame[:] = color
    yy, xx = np.mgrid[0:size, 0:size]
    accent = {
        "hstripes": (yy // 6) % 2 == 0,
        "vstripes": (xx // 6) % 2 == 0,
        "waves": ((yy + 3 * np.sin(xx / 4.0)).astype(int) // 5) % 2 == 0,
        "grid": (xx % 10 < 2) | (yy % 10 < 2),
        "dots": (xx % 8 < 3) & (yy % 8 < 3),
        "stars": ((xx * 7 + yy * 13) % 37) == 0,
    }[pattern]
    frame[accent] = np.clip(np.asarray(color) * 0.55 + 255 * 0.45 * (pattern == "stars"), 0, 255)
    return frame


def _paint(frame: np.ndarray, shape: str, color, cx, cy, radius, alpha: float = 1.0) -> None:
    if radius <= 0 or alpha <= 0:
        return
    mask = _shape_mask(shape, cx, cy, radius, frame.shape[0])
    frame[mask] = (1 - alpha) * frame[mask] + alpha * np.asarray(color, np.float32)


def _to_uint8(frames: list[np.ndarray]) -> np.ndarray:
    return np.clip(np.stack(frames), 0, 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------- helpers
def _pick(rng: np.random.Generator, options, n: int | None = None):
    idx = rng.choice(len(options), size=n, replace=False) if n else rng.integers(len(options))
    return [options[i] for i in idx] if n else options[idx]


def _order_candidates(rng: np.random.Generator, answer: str, others: list[str], answer_slot: int) -> list[str]:
    """Put ``answer`` at ``answer_slot`` (balanced by the caller) and the others around it at random."""
    others = list(others)
    rng.shuffle(others)
    others.insert(answer_slot, answer)
    return others


def _ramp(t: np.ndarray, start: float, stop: float) -> np.ndarray:
    """0 before ``start``, 1 after ``stop``, linear in between (t in [0, 1])."""
    return np.clip((t - start) / max(stop - start, 1e-6), 0.0, 1.0)


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A triangle 0 -> 1 -> 0 of half-width ``width`` around ``centre``."""
    return np.clip(1.0 - np.abs(t - centre) / width, 0.0, 1.0)


# ----------------------------------------------------------------------------- video tasks
def _action_antonym(rng, cfg: RenderConfig, slot: int) -> SyntheticSample:
    pair = _pick(rng, ANTONYMS)
    action = pair[int(rng.integers(2))]
    shape, color = _pick(rng, SHAPES), _pick(rng, list(COLORS))
    s = cfg.size
    cx, cy = rng.uniform(0.35, 0.65, size=2) * s
    t = np.linspace(0, 1, cfg.video_frames)
    forward = action in ("Grow.", "Appear.", "Light up.")
    ramp = _ramp(t, *sorted(rng.uniform(0.2, 0.8, size=2)))
    level = ramp if forward else 1 - ramp
    frames = []
    for v in level:
        f = _background(s, None)
        if action in ("Grow.", "Shrink."):
            _paint(f, shape, COLORS[color], cx, cy, s * (0.07 + 0.17 * v))
        elif action in ("Appear.", "Disappear."):
            _paint(f, shape, COLORS[color], cx, cy, s * 0.16, alpha=float(v > 0.5))
        else:
            _paint(f, shape, np.asarray(COLORS[color]) * (0.2 + 0.8 * v), cx, cy, s * 0.16)
        frames.append(f)
    antonym = pair[1 - pair.index(action)]
    return SyntheticSample(
        "action_antonym", _to_uint8(frames), QUESTIONS["action_antonym"],
        _order_candidates(rng, action, [antonym], slot % 2), action,
        {"action": action, "antonym": antonym, "shape": shape, "color": color},
    )


def _action_sequence(rng, cfg: RenderConfig, slot: int) -> SyntheticSample:
    first, second = _pick(rng, SEQUENCE_ACTIONS, 2)
    shape, color = _pick(rng, SHAPES), _pick(rng, [c for c in COLORS if c != "white"])
    s = cfg.size
    cx, cy = rng.uniform(0.4, 0.6) * s, rng.uniform(0.5, 0.6) * s
    t = np.linspace(0, 1, cfg.video_frames)
    centres = (rng.uniform(0.2, 0.33), rng.uniform(0.67, 0.8))
    bumps = {first: _bump(t, centres[0], 0.17), second: _bump(t, centres[1], 0.17)}
    frames = []
    for i in range(cfg.video_frames):
        f = _background(s, None)
        y, radius, rgb, visible = cy, s * 0.14, np.asarray(COLORS[color], np.float32), True
        for act, b in bumps.items():
            if act == "Jump.":
                y = y - 0.3 * s * b[i]
            elif act == "Blink.":
                visible = visible and b[i] < 0.5
            elif act == "Pulse.":
                radius = radius * (1 + 0.8 * b[i])
            elif act == "Flash.":
                rgb = rgb * (1 - b[i]) + np.asarray(COLORS["white"]) * b[i]
        if visible:
            _paint(f, shape, rgb, cx, y, radius)
        frames.append(f)
    return SyntheticSample(
        "action_sequence", _to_uint8(frames), QUESTIONS["action_sequence"],
        _order_candidates(rng, first, [second], slot % 2), first,
        {"first": first, "second": second, "shape": shape, "color": color},
    )


def _scene_transition(rng, cfg: RenderConfig, slot: int) -> SyntheticSample:
    a, b = _pick(rng, list(SCENES), 2)
    cut = int(round(rng.uniform(0.35, 0.65) * cfg.video_frames))
    frames = [_background(cfg.size, a if i < cut else b) for i in range(cfg.video_frames)]
    answer, reverse = f"From the {a} to the {b}.", f"From the {b} to the {a}."
    return SyntheticSample(
        "scene_transition", _to_uint8(frames), QUESTIONS["scene_transition"],
        _order_candidates(rng, answer, [reverse], slot % 2), answer,
        {"from": a, "to": b, "cut": cut},
    )


def _moving_direction(rng, cfg: RenderConfig, slot: int) -> SyntheticSample:
    direction = DIRECTIONS[slot % 4]
    (shape, other_shape), (color, other_color) = _pick(rng, SHAPES, 2), _pick(rng, list(COLORS), 2)
    s = cfg.size
    dx, dy = DIRECTION_VECTORS[direction]
    travel = rng.uniform(0.3, 0.4) * s
    start = np.array([s / 2 - dx * travel / 2, s / 2 - dy * travel / 2]) + rng.uniform(-0.05, 0.05, 2) * s
    # the static distractor sits off the moving object's diagonal
    distractor = np.array([s / 2 + dx * 0.3 * s, s / 2 - dy * 0.3 * s])
    frames = []
    for v in np.linspace(0, 1, cfg.video_frames):
        f = _background(s, None)
        _paint(f, other_shape, COLORS[other_color], *distractor, s * 0.11)
        _paint(f, shape, COLORS[color], start[0] + dx * travel * v, start[1] + dy * travel * v, s * 0.12)
        frames.append(f)
    others = [d for d in DIRECTIONS if d != direction]
    return SyntheticSample(
        "moving_direction", _to_uint8(frames),
        QUESTIONS["moving_direction"].format(color=color, shape=shape),
        _order_candidates(rng, direction, others, int(rng.integers(4))), direction,
        {"direction": direction, "shape": shape, "color": color},
    )


def _cells(rng, n: int, size: int) -> list[tuple[float, float]]:
    """Centres of ``n`` distinct cells of a 3x3 grid (objects never overlap)."""
    cell = size / 3
    picks = rng.choice(9, size=n, replace=False)
    return [((p % 3 + 0.5) * cell, (p // 3 + 0.5) * cell) for p in picks]


def object_count_plan(rng, slot: int) -> dict:
    """What an Object Count video shows, before any drawing: the asked colour and phase, the
    answer (``count``, balanced by ``slot``) and ``objects``: ``[[colour, "begins"|"ends"|"never"]]``
    (when each object moves; 1 to 5 objects, targets first)."""
    count = slot % 4
    phase = _pick(rng, PHASES)
    color, other_color = _pick(rng, [c for c in COLORS if c != "white"], 2)
    n_target = int(rng.integers(max(count, 1), 4))
    # each target object moves in the first half, the second half, or never
    other_phase = "ends" if phase == "begins" else "begins"
    moves = [phase] * count + [str(m) for m in rng.choice([other_phase, "never"], size=n_target - count)]
    n_distractor = int(rng.integers(0, 3))
    objects = [[color, m] for m in moves]
    objects += [[other_color, _pick(rng, ("begins", "ends", "never"))] for _ in range(n_distractor)]
    return {"count": count, "phase": phase, "color": color, "objects": objects}


def _object_count(rng, cfg: RenderConfig, slot: int) -> SyntheticSample:
    plan = object_count_plan(rng, slot)
    count, phase, color, objects = plan["count"], plan["phase"], plan["color"], plan["objects"]
    moves = [w for c, w in objects if c == color]  # the targets' motions
    s = cfg.size
    centres = _cells(rng, len(objects), s)
    shapes = [_pick(rng, SHAPES) for _ in objects]
    axes = [rng.integers(2) for _ in objects]
    t = np.linspace(0, 1, cfg.video_frames)
    frames = []
    for i in range(cfg.video_frames):
        f = _background(s, None)
        half = "begins" if t[i] < 0.5 else "ends"
        for (col, when), (cx, cy), shp, axis in zip(objects, centres, shapes, axes):
            offset = 0.09 * s * np.sin(2 * np.pi * 2 * t[i]) if when == half else 0.0
            _paint(f, shp, COLORS[col], cx + offset * (axis == 0), cy + offset * (axis == 1), s * 0.08)
        frames.append(f)
    return SyntheticSample(
        "object_count", _to_uint8(frames),
        QUESTIONS["object_count"].format(color=color, phase=phase),
        ["0", "1", "2", "3"], str(count),
        {"count": count, "phase": phase, "color": color, "moving_at_begin": sum(m == "begins" for m in moves),
         "moving_at_end": sum(m == "ends" for m in moves), "objects": objects},
    )


# ----------------------------------------------------------------------------- image tasks
def scene_objects(rng, n: int) -> tuple[list[str], list[str]]:
    """Shapes and colours of an image scene's ``n`` objects: distinct colours, and distinct shapes
    up to three (a fourth repeats the first)."""
    shapes, colors = _pick(rng, SHAPES, min(n, 3)), _pick(rng, list(COLORS), n)
    return (shapes * 2)[:n], colors


def object_list(colors, shapes) -> list[list[str]]:
    """A scene's ``meta["objects"]``: ``[[colour, shape], ...]``."""
    return [list(o) for o in zip(colors, shapes)]


def _image_scene(rng, cfg: RenderConfig, n: int):
    s = cfg.size
    shapes, colors = scene_objects(rng, n)
    centres = _cells(rng, n, s)
    f = _background(s, None)
    for shp, col, (cx, cy) in zip(shapes, colors, centres):
        _paint(f, shp, COLORS[col], cx, cy, s * 0.12)
    return _to_uint8([f]), shapes, colors, centres


def _image_task(task: str, rng, cfg: RenderConfig, slot: int) -> SyntheticSample:
    if task == "image_count":
        n = slot % 4 + 1
        frames, shapes, colors, _ = _image_scene(rng, cfg, n)
        return SyntheticSample(task, frames, QUESTIONS[task], ["1", "2", "3", "4"], str(n),
                               {"count": n, "objects": object_list(colors, shapes)})
    if task == "image_position":
        shape, color, q = _pick(rng, SHAPES), _pick(rng, list(COLORS)), POSITIONS[slot % 4]
        s = cfg.size
        x, y = (0.25 if "left" in q else 0.75) * s, (0.25 if "Top" in q else 0.75) * s
        f = _background(s, None)
        _paint(f, shape, COLORS[color], x + rng.uniform(-4, 4), y + rng.uniform(-4, 4), s * 0.12)
        return SyntheticSample(
            task, _to_uint8([f]), QUESTIONS[task].format(color=color, shape=shape),
            _order_candidates(rng, q, [p for p in POSITIONS if p != q], int(rng.integers(4))), q, {"position": q},
        )
    frames, shapes, colors, _ = _image_scene(rng, cfg, int(rng.integers(1, 3)))
    question, candidates, answer = attribute_question(task, rng, shapes[0], colors[0], slot)
    return SyntheticSample(task, frames, question, candidates, answer,
                           {"shape": shapes[0], "color": colors[0], "objects": object_list(colors, shapes)})


def attribute_question(task: str, rng, shape: str, color: str, slot: int) -> tuple[str, list[str], str]:
    """``(question, candidates, answer)`` of a colour question about the ``shape`` or a shape question
    about the ``color`` object (``task``: image_color / image_shape; ``slot`` balances the letter)."""
    if task == "image_color":
        answer = color.capitalize() + "."
        others = [c.capitalize() + "." for c in _pick(rng, [c for c in COLORS if c != color], 3)]
        question, n_options = QUESTIONS[task].format(shape=shape), 4
    else:
        answer = shape.capitalize() + "."
        others = [s.capitalize() + "." for s in SHAPES if s != shape]
        question, n_options = QUESTIONS[task].format(color=color), 3
    return question, _order_candidates(rng, answer, others, slot % n_options), answer


_VIDEO_RENDERERS = {
    "action_antonym": _action_antonym,
    "action_sequence": _action_sequence,
    "scene_transition": _scene_transition,
    "moving_direction": _moving_direction,
    "object_count": _object_count,
}


def render_sample(task: str, rng: np.random.Generator, slot: int, cfg: RenderConfig | None = None) -> SyntheticSample:
    """Render one sample of ``task``. ``slot`` balances the answer letter (slot % n_options)."""
    cfg = cfg or RenderConfig()
    if task in _VIDEO_RENDERERS:
        return _VIDEO_RENDERERS[task](rng, cfg, slot)
    if task in IMAGE_TASKS:
        return _image_task(task, rng, cfg, slot)
    raise ValueError(f"unknown task {task!r}; valid: {VIDEO_TASKS + IMAGE_TASKS}")


def split_seed(split: str) -> int:
    """The entropy word of ``split`` in every random stream drawn for it (one of :data:`SPLIT_SEEDS`)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; valid: {tuple(SPLIT_SEEDS)}")
    return SPLIT_SEEDS[split]


def task_rng(seed: int, split: str, task: str, shard: int = 0) -> np.random.Generator:
    """The random stream of one (seed, split, task): splits never share samples. ``shard`` > 0
    gives a further independent stream of the same triple (shard 0 is the stream itself), so a
    large training set can be rendered in parallel pieces."""
    split_entropy = split_seed(split)
    all_tasks = VIDEO_TASKS + IMAGE_TASKS
    if task not in all_tasks:
        raise ValueError(f"unknown task {task!r}; valid: {all_tasks}")
    if shard < 0:
        raise ValueError(f"shard must be >= 0, got {shard}")
    return np.random.default_rng([seed, split_entropy, all_tasks.index(task)] + ([shard] if shard else []))


def generate(task: str, n: int, seed: int = 0, split: str = "test", cfg: RenderConfig | None = None, shard: int = 0):
    """Yield ``n`` deterministic samples of ``task`` for ``(seed, split)`` (and ``shard``: see :func:`task_rng`)."""
    rng = task_rng(seed, split, task, shard)
    for i in range(n):
        yield render_sample(task, rng, i, cfg)


def reverse_answer(sample: SyntheticSample) -> str | None:
    """The correct answer for the time-reversed video, from the ground truth (None: task not reversible)."""
    m = sample.meta
    if sample.task == "action_antonym":
        return m["antonym"]
    if sample.task == "action_sequence":
        return m["second"]
    if sample.task == "scene_transition":
        return f"From the {m['to']} to the {m['from']}."
    if sample.task == "moving_direction":
        dx, dy = DIRECTION_VECTORS[m["direction"]]
        return next(d for d, v in DIRECTION_VECTORS.items() if v == (-dx, -dy))
    if sample.task == "object_count":
        return str(m["moving_at_end"] if m["phase"] == "begins" else m["moving_at_begin"])
    return None


def opposite_answer(task: str, answer: str, candidates) -> str | None:
    """The opposite of ``answer`` where its text alone says what it is: the answer of the time-reversed video
    (:func:`reverse_answer`) for Action Antonym (the antonym pair's other word), Action Sequence (the other
    candidate: the action done second), Scene Transition (the two scenes swapped) and Moving Direction (the
    reversed direction); None for Object Count (the reversed count depends on the video) and other tasks."""
    if task == "action_antonym":
        return next((p[1 - p.index(answer)] for p in ANTONYMS if answer in p), None)
    if task == "action_sequence":
        others = [c for c in candidates if c != answer]
        return others[0] if len(others) == 1 else None
    if task == "scene_transition":
        m = re.fullmatch(r"From the (.+) to the (.+)\.", answer)
        return f"From the {m.group(2)} to the {m.group(1)}." if m else None
    if task == "moving_direction" and answer in DIRECTION_VECTORS:
        dx, dy = DIRECTION_VECTORS[answer]
        return next(d for d, v in DIRECTION_VECTORS.items() if v == (-dx, -dy))
    return None


def distractors(sample: SyntheticSample) -> int:
    """Objects in the scene that the question is not about: for Object Count those of another colour
    than the one asked, for a colour or shape question every object but the one it names, else 0."""
    objects, m = sample.meta.get("objects", []), sample.meta
    if sample.task == "object_count":
        return sum(c != m["color"] for c, _ in objects)
    if sample.task in ("image_color", "image_shape"):
        return sum([c, s] != [m["color"], m["shape"]] for c, s in objects)
    return 0


def describe(sample: SyntheticSample) -> str:
    """A text description of what the video shows, from the ground truth: ``Blue square. Red circle.``
    (every object, in alphabetical order) where ``meta`` lists the objects, else the answer itself.

    The toy models' language-pretraining stand-in reads these in place of the video, so the LM
    learns to pick out the object a question asks about before it ever sees pixels.
    """
    objects = sample.meta.get("objects")
    if not objects:
        return sample.answer
    return " ".join(f"{a.capitalize()} {b}." for a, b in sorted(objects))


def vocabulary() -> list[str]:
    """Every word and punctuation mark the generator can write (for the toy tokenizer)."""
    words = set()
    texts = list(QUESTIONS.values()) + list(DIRECTIONS) + list(POSITIONS) + list(SEQUENCE_ACTIONS)
    texts += [a for pair in ANTONYMS for a in pair] + ["From the to the ."] + list(SCENES)
    texts += [c.capitalize() for c in COLORS] + list(COLORS) + [s.capitalize() for s in SHAPES] + list(SHAPES)
    texts += ["begins ends never 0 1 2 3 4"]
    for text in texts:
        words.update(_split_words(re.sub(r"\{\w+\}", " ", text)))
    return sorted(words)


def _split_words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]", text)


# ----------------------------------------------------------------------------- on disk
def write_video(path: Path, frames: np.ndarray, fps: int, crf: int = 12) -> None:
    """Write ``frames`` ``[time, height, width, 3]`` uint8 as an H.264 mp4 with PyAV."""
    import av  # lazy: GPU machines without PyAV can still render in memory

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # x264's macroblock-tree rate control gave other bytes (and decoded pixels) on every run; without it
        # the same frames always encode to the same file, so every render of the benchmark is identical
        stream.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# what marks a folder as rendered here: the generation arguments, which no copy of a real benchmark holds
INFO_FILE = "benchmark_info.json"


def write_benchmark(
    root: str | Path,
    n_per_task: int,
    seed: int = 0,
    split: str = "test",
    tasks=VIDEO_TASKS,
    cfg: RenderConfig | None = None,
    progress: bool = True,
) -> Path:
    """Render a TVBench-format benchmark: ``json/<task>.json`` and ``video/<task>/<id>.mp4``.

    Rerunning with the same arguments reuses finished videos (the run can be resumed), and a finished folder is
    left as it is; ``benchmark_info.json`` records the arguments and is checked so that a folder is never
    silently filled with a mix of two configurations. One process renders a folder at a time (a file lock beside
    it: nbval runs two pages at once), and every file appears whole (written, then renamed), so that a reader never
    sees half of one.
    """
    from filelock import FileLock
    from tqdm.auto import tqdm

    cfg = cfg or RenderConfig()
    root = Path(root)
    info = {"seed": seed, "split": split, "n_per_task": n_per_task, "tasks": list(tasks),
            "size": cfg.size, "video_frames": cfg.video_frames, "fps": cfg.fps}
    info_path = root / INFO_FILE
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.parent / f".{root.name}.lock"):
        if info_path.exists() and json.loads(info_path.read_text()) != info:
            raise FileExistsError(f"{info_path} was written with other arguments; remove {root} or pick another folder")
        if info_path.exists() and is_complete(root, tasks):
            return root
        root.mkdir(parents=True, exist_ok=True)
        write_atomic(info_path, json.dumps(info, indent=1))
        for task in tasks:
            entries = []
            samples = generate(task, n_per_task, seed, split, cfg)
            for i, sample in enumerate(tqdm(samples, total=n_per_task, desc=task, disable=not progress)):
                name = f"{task}_{i:05d}.mp4"
                video = root / "video" / task / name
                if not video.exists():
                    tmp = video.with_suffix(".tmp.mp4")
                    write_video(tmp, sample.frames, cfg.fps)
                    tmp.rename(video)
                entries.append({"video": name, "question": sample.question, "candidates": sample.candidates,
                                "answer": sample.answer, "meta": sample.meta})
            (root / "json").mkdir(exist_ok=True)
            write_atomic(root / "json" / f"{task}.json", json.dumps(entries, indent=1))
    return root


def is_complete(root: str | Path, tasks=VIDEO_TASKS) -> bool:
    """Whether the benchmark folder ``root`` holds every task's question file and every video they list."""
    root = Path(root)
    for task in tasks:
        questions = root / "json" / f"{task}.json"
        if not questions.is_file():
            return False
        if not all((root / "video" / task / q["video"]).is_file() for q in json.loads(questions.read_text())):
            return False
    return True


def benchmark_dir(parent: str | Path, seed: int, split: str, n_per_task: int) -> Path:
    """The folder a benchmark of these arguments lives in (one folder per configuration)."""
    return Path(parent) / f"synthetic-{split}-seed{seed}-n{n_per_task}"
