"""What a family's processing of one prompt and video hands to the model and to the token layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VideoEncoding:
    """One processed prompt + video: the model's keyword inputs and what the token layout needs."""

    inputs: dict  # keyword arguments of the model's forward
    input_ids: torch.Tensor  # [1, n], the video placeholder id once per video token
    num_frames: int  # frame spans (or temporal groups) in the video
    tokens_per_frame: int  # expected tokens of each span
    replaced: tuple[int, int] | None = None  # characters of the prompt the processor replaced (None: the placeholder)
