"""Reading a video's frames as the paper does: ``num_frames`` frames sampled uniformly.

The video (or a ``[start, end]`` interval of it, in seconds) is cut into equal segments
and the middle frame of each is read with decord (MVBench-style evaluation code). An
in-memory video (the synthetic renderer's frames) is sampled with the same indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


NUM_FRAMES = 8  # frames per video in the paper's main analyses: every ``num_frames`` default reads it


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


@dataclass(frozen=True)
class VideoClip:
    """Frames sampled from a video, and where in the video they were taken: a processor that writes
    timestamps into the prompt (Qwen3-VL, VideoLLaMA3, SmolVLM2) needs the real ones."""

    frames: np.ndarray  # [time, height, width, 3] uint8
    indices: tuple[int, ...]  # index of each sampled frame in the whole video
    fps: float | None  # the video's frame rate; None: unknown (the processor's default applies)
    n_video_frames: int  # frames in the whole video


def sample_clip(frames: np.ndarray, num_frames: int, fps: float | None = None) -> VideoClip:
    """An in-memory video ``[time, ...]`` sampled as :func:`read_clip` samples a file (all frames if fewer)."""
    idx = uniform_frame_indices(len(frames), min(num_frames, len(frames)))
    return VideoClip(frames[idx], tuple(int(i) for i in idx), fps, len(frames))


def sample_frames(frames: np.ndarray, num_frames: int) -> np.ndarray:
    """The frames of :func:`sample_clip`."""
    return sample_clip(frames, num_frames).frames


def question_clip(sample, num_frames: int = NUM_FRAMES) -> VideoClip:
    """A question's video, sampled: read from its file (``video_path``, ``bound``), or from its in-memory frames
    (a rendered synthetic sample)."""
    if hasattr(sample, "video_path"):
        return read_clip(sample.video_path, num_frames, sample.bound)
    return sample_clip(sample.frames, num_frames)


def read_frames(path: str | Path, num_frames: int = NUM_FRAMES, bound=None) -> np.ndarray:
    """The frames of :func:`read_clip`: ``[num_frames, height, width, 3]`` uint8."""
    return read_clip(path, num_frames, bound).frames


def read_clip(path: str | Path, num_frames: int = NUM_FRAMES, bound=None) -> VideoClip:
    """Read ``num_frames`` uniformly sampled frames with decord, with their indices and the video's fps."""
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
    fps = float(reader.get_avg_fps())
    if bound is not None and round(bound[0] * fps) > n - 1:  # else every frame would be the last one
        raise BenchmarkError(f"interval {list(bound)} s of {path} starts after the video ends ({n} frames at "
                             f"{fps:g} fps: {n / fps:.2f} s)")
    idx = uniform_frame_indices(n, num_frames, bound, fps)
    try:
        return VideoClip(reader.get_batch(idx.tolist()).asnumpy(), tuple(int(i) for i in idx), fps, n)
    except Exception as err:
        raise BenchmarkError(f"cannot read frames {idx.tolist()} of {path} (truncated file?): {err}") from err
