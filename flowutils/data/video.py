"""Reading a video's frames as the paper does: ``num_frames`` frames sampled uniformly.

The video (or a ``[start, end]`` interval of it, in seconds) is cut into equal segments
and the middle frame of each is read with decord (MVBench-style evaluation code). An
in-memory video (the synthetic renderer's frames) is sampled with the same indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class BenchmarkError(ValueError):
    """A benchmark file or sample is missing or malformed (the message names which)."""



def uniform_frame_indices(n_video_frames: int, num_frames: int, bound=None, fps: float = 1.0) -> np.ndarray:
    """Frame indices sampled as the paper's (MVBench-style) evaluation code samples them.

    The video (or the ``bound`` interval, in seconds) is cut into ``num_frames`` equal
    segments of ``seg`` frames; frame ``i`` is ``int(start + seg / 2 + round(seg * i))``.
    """
    start, end = 0, n_video_frames - 1
    if bound is not None:
        start, end = max(start, round(bound[0] * fps)), min(end, round(bound[1] * fps))
    seg = (end - start) / num_frames
    idx = np.array([int(start + seg / 2 + np.round(seg * i)) for i in range(num_frames)])
    return np.clip(idx, 0, n_video_frames - 1)


def sample_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """Frames of an in-memory video ``[time, ...]`` sampled as ``read_frames`` samples a file (all if fewer)."""
    return frames[uniform_frame_indices(len(frames), min(num_frames, len(frames)))]


def read_frames(path: str | Path, num_frames: int = 8, bound=None) -> np.ndarray:
    """Read ``num_frames`` uniformly sampled frames with decord: ``[num_frames, height, width, 3]`` uint8."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"video file not found: {path}")
    import decord  # lazy: not installed on every machine

    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        n = len(reader)
    except Exception as err:  # decord raises its own DECORDError
        raise BenchmarkError(f"cannot decode video {path}: {err}") from err
    if n < num_frames:
        raise BenchmarkError(f"video {path} has {n} frames, fewer than the {num_frames} asked for")
    idx = uniform_frame_indices(n, num_frames, bound, reader.get_avg_fps())
    try:
        return reader.get_batch(idx.tolist()).asnumpy()
    except Exception as err:
        raise BenchmarkError(f"cannot read frames {idx.tolist()} of {path} (truncated file?): {err}") from err
