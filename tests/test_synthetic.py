from pathlib import Path

import numpy as np
import pytest

from flowutils.data import synthetic as S


def test_deterministic_and_splits_differ():
    a = [s.frames for s in S.generate("moving_direction", 3, seed=5, split="train")]
    b = [s.frames for s in S.generate("moving_direction", 3, seed=5, split="train")]
    c = [s.frames for s in S.generate("moving_direction", 3, seed=5, split="test")]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not any(np.array_equal(x, y) for x, y in zip(a, c))


def test_shards_are_further_streams():
    stream = [s.frames for s in S.generate("object_count", 6, seed=5, split="train")]
    again = [s.frames for s in S.generate("object_count", 6, seed=5, split="train", shard=0)]
    shard1 = [s.frames for s in S.generate("object_count", 6, seed=5, split="train", shard=1)]
    assert all(np.array_equal(x, y) for x, y in zip(stream, again))
    assert not any(np.array_equal(x, y) for x in stream for y in shard1)
    with pytest.raises(ValueError, match="shard"):
        next(S.generate("object_count", 1, shard=-1))


@pytest.mark.parametrize("task", S.VIDEO_TASKS + S.IMAGE_TASKS)
def test_answer_among_candidates_and_letters_balanced(task):
    ss = list(S.generate(task, 48, seed=1))
    assert all(s.answer in s.candidates for s in ss)
    letters = np.bincount([s.answer_index for s in ss], minlength=len(ss[0].candidates))
    assert letters.min() >= 48 / len(letters) / 2, letters  # every letter is correct often


@pytest.mark.parametrize("task", ["action_antonym", "action_sequence", "scene_transition", "moving_direction"])
def test_reversal_changes_the_answer(task):
    for s in S.generate(task, 40, seed=2):
        rev = S.reverse_answer(s)
        assert rev in s.candidates and rev != s.answer


def test_scene_transition_ground_truth_matches_pixels():
    def colours(frame):
        return {tuple(c) for c in np.unique(frame.reshape(-1, 3), axis=0)}

    for s in S.generate("scene_transition", 10, seed=3):
        a, b = S.SCENES[s.meta["from"]][0], S.SCENES[s.meta["to"]][0]
        assert a in colours(s.frames[0]) and b not in colours(s.frames[0])
        assert b in colours(s.frames[-1]) and a not in colours(s.frames[-1])


def test_moving_direction_ground_truth_matches_pixels():
    for s in S.generate("moving_direction", 12, seed=4):
        colour = np.array(S.COLORS[s.meta["color"]])
        def centre(frame):
            ys, xs = np.nonzero(np.abs(frame.astype(int) - colour).sum(-1) < 10)
            return xs.mean(), ys.mean()
        (x0, y0), (x1, y1) = centre(s.frames[0]), centre(s.frames[-1])
        dx, dy = S.DIRECTION_VECTORS[s.answer]
        assert np.sign(x1 - x0) == dx and np.sign(y1 - y0) == dy


def test_object_count_single_frames_cannot_tell():
    # objects that move in one half and those that never move look alike in any single frame:
    # the answer is set by motion; check the ground truth counts are consistent with the answer
    for s in S.generate("object_count", 20, seed=6):
        m = s.meta
        assert int(s.answer) == (m["moving_at_begin"] if m["phase"] == "begins" else m["moving_at_end"])


def test_unknown_task_and_split():
    with pytest.raises(ValueError, match="valid"):
        next(S.generate("nope", 1))
    with pytest.raises(ValueError, match="valid"):
        next(S.generate("object_count", 1, split="dev"))


def test_distractors_match_the_objects_seen_in_the_first_frame():
    """Counted from pixels: every object sits at the centre of its own cell of a 3x3 grid in the first
    frame (Object Count objects start still there), so a cell centre of another colour than the one the
    question names is a distractor."""
    palette = {tuple(v): k for k, v in S.COLORS.items()}
    for task in ("object_count", "image_color", "image_shape"):
        for s in S.generate(task, 40, seed=8):
            asked = s.meta["color"]
            centres = [s.frames[0, int((r + 0.5) * 64 / 3), int((c + 0.5) * 64 / 3)] for r in range(3) for c in range(3)]
            seen = [palette.get(tuple(int(x) for x in px)) for px in centres]
            assert S.distractors(s) == sum(c is not None and c != asked for c in seen), (task, s.meta)
    assert all(S.distractors(s) == 0 for s in S.generate("image_count", 5, seed=8))


def test_videos_encode_to_the_same_bytes_every_time(tmp_path):
    """A rendered benchmark must not change between renders: nbval compares notebooks that read it."""
    for i, sample in enumerate(S.generate("object_count", 6, seed=0, split="test")):
        encodings = set()
        for j in range(4):
            S.write_video(tmp_path / f"{i}-{j}.mp4", sample.frames, fps=8)
            encodings.add((tmp_path / f"{i}-{j}.mp4").read_bytes())
        assert len(encodings) == 1, f"object_count sample {i}: {len(encodings)} different encodings"


def test_the_data_command_renders_at_the_size_asked_in_a_folder_of_its_own(tmp_path, capsys):
    from flowutils.cli import main
    from flowutils.data import load_benchmark
    from flowutils.data.video import read_frames

    assert main(["data", "--root", str(tmp_path), "--n-per-task", "1", "--size", "96"]) == 0
    root = Path(capsys.readouterr().out.strip())
    assert root.name == "synthetic-test-seed0-n1-96px"
    sample = load_benchmark(root, "synthetic")[0]
    assert read_frames(sample.video_path, 4).shape == (4, 96, 96, 3)
