"""VideoLLaMA3 (``video_llama_3``): the paper's VideoLLaMA3-7B, in transformers' own classes.

Every frame keeps all its tokens (``use_token_compression`` off, the paper's setting),
after a ``Time t s:`` text.
"""

from __future__ import annotations

from ..adapter import FamilyAdapter


def video_grid(config, enc) -> tuple[int, int]:
    """``video_grid_thw`` = (T, H / patch, W / patch), ``video_merge_sizes`` x its square per token."""
    t, h, w = (int(x) for x in enc["video_grid_thw"][0])
    return t, h * w // int(enc["video_merge_sizes"][0]) ** 2


ADAPTER = FamilyAdapter(
    family="video_llama_3",
    model_class="VideoLlama3ForConditionalGeneration",
    processor_class="VideoLlama3Processor",
    template="videollama3",
    video_token="<|video_pad|>",
    video_token_id_attr="video_token_id",
    trailing_video_tokens=0,
    tokens_per_frame=lambda config, height, width: None,
    video_grid=video_grid,
    processor_kwargs={"use_token_compression": False},  # every frame keeps all its tokens (the paper's setting)
    frame_unit="frame, after its 'Time t s:' text",
)
