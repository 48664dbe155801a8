"""Per-patch object labels against a brute-force loop over the shape masks; the vision pretraining step."""

import numpy as np
import torch

from flowutils.toy.models import ToyConfig, build_toy
from flowutils.data.synthetic import BACKGROUND, COLORS, _paint, _shape_mask, generate
from flowutils.toy.vision_pretraining import COLOR_CLASSES, SHAPE_CLASSES, labelled_frames, patch_labels, train_vision

SIZE, PATCH = 64, 8


def _brute_force(objects):
    """Loop over patches and objects: the object covering most of a patch, if at least a quarter."""
    colour = np.zeros((SIZE // PATCH, SIZE // PATCH), int)
    shape = np.zeros_like(colour)
    for i in range(SIZE // PATCH):
        for j in range(SIZE // PATCH):
            best, cover = None, 0.0
            for c, s, cx, cy, r in objects:
                frac = _shape_mask(s, cx, cy, r, SIZE)[i * PATCH:(i + 1) * PATCH, j * PATCH:(j + 1) * PATCH].mean()
                if frac > cover:
                    best, cover = (c, s), frac
            if best is not None and cover >= 0.25:
                colour[i, j], shape[i, j] = COLOR_CLASSES.index(best[0]), SHAPE_CLASSES.index(best[1])
    return colour, shape


def test_patch_labels_match_the_painted_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 4))
        colours = rng.choice(list(COLORS), n, replace=False)
        shapes = rng.choice(["circle", "square", "triangle"], n)
        # objects in distinct cells of a 3x3 grid, as the generator places them (no overlap)
        cells = rng.choice(9, n, replace=False)
        objects = [(str(c), str(s), (k % 3 + 0.5) * SIZE / 3 + rng.uniform(-3, 3), (k // 3 + 0.5) * SIZE / 3 + rng.uniform(-3, 3),
                    rng.uniform(5, 9)) for c, s, k in zip(colours, shapes, cells)]
        frame = np.empty((SIZE, SIZE, 3), np.float32)
        frame[:] = BACKGROUND
        for c, s, cx, cy, r in objects:
            _paint(frame, s, COLORS[c], cx, cy, r)
        colour, shape = patch_labels(frame.round().astype(np.uint8), [[c, s] for c, s, *_ in objects], PATCH)
        expected = _brute_force(objects)
        np.testing.assert_array_equal(colour, expected[0])
        np.testing.assert_array_equal(shape, expected[1])


def test_labelled_frames_keep_samples_that_list_their_objects():
    samples = list(generate("image_color", 6, seed=2)) + list(generate("image_position", 3, seed=2))
    data = labelled_frames(samples, PATCH)
    assert data["frames"].shape == (6, 3, SIZE, SIZE) and data["frames"].dtype == torch.uint8
    assert data["colour"].shape == data["shape"].shape == (6, (SIZE // PATCH) ** 2)
    for s, colour in zip(samples, data["colour"]):  # every listed object is labelled somewhere
        assert {COLOR_CLASSES.index(c) for c, _ in s.meta["objects"]} == set(colour.tolist()) - {0}


def test_train_vision_fits_and_leaves_the_language_model_alone():
    model, processor = build_toy(ToyConfig(vision_layers=2, vision_hidden=32, vision_heads=2, text_layers=2, text_hidden=32,
                                           text_heads=2, text_kv_heads=2, text_intermediate=64), seed=0)
    data = labelled_frames(list(generate("image_shape", 16, seed=3)), PATCH)
    lm = {k: v.clone() for k, v in model.model.language_model.state_dict().items()}
    tower = {k: v.clone() for k, v in model.model.vision_tower.state_dict().items()}
    log = train_vision(model, processor, data, steps=150, batch_size=16, lr=3e-3, log_every=50, progress=False)
    assert log[-1]["patches_loss"] < 0.5 * log[0]["patches_loss"], log
    assert log[-1]["colour_acc"] > 0.9, log
    assert all(torch.equal(v, lm[k]) for k, v in model.model.language_model.state_dict().items())
    assert any(not torch.equal(v, tower[k]) for k, v in model.model.vision_tower.state_dict().items())
