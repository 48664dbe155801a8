"""Qwen2.5-VL (``qwen2_5_vl``): M-RoPE positions, and frames merged in temporal groups of 2.

The processor decides the grid (``video_grid_thw``); one frame span is a temporal group of
``temporal_patch_size`` frames, 2x2 patches merged per token. The chat template wraps the
video placeholder in ``<|vision_start|>`` / ``<|vision_end|>``.
"""

from __future__ import annotations

from ...inputs.prompt import CHATML
from ..adapter import MROPE, FamilyAdapter


def video_grid(config, enc) -> tuple[int, int]:
    """``video_grid_thw`` = (T / temporal_patch, H / patch, W / patch); merge 2x2 patches per token."""
    t, h, w = (int(x) for x in enc["video_grid_thw"][0])
    return t, h * w // config.vision_config.spatial_merge_size ** 2


ADAPTER = FamilyAdapter(
    family="qwen2_5_vl",
    model_class="Qwen2_5_VLForConditionalGeneration",
    processor_class="Qwen2_5_VLProcessor",
    template=CHATML.name,
    video_token="<|video_pad|>",
    video_markers=("<|vision_start|>", "<|vision_end|>"),
    video_token_id_attr="video_token_id",
    trailing_video_tokens=0,
    tokens_per_frame=lambda config, height, width: None,  # from the processor's grid (video_grid)
    video_grid=video_grid,
    positions=MROPE,
    frame_unit="temporal group of temporal_patch_size (2) frames",
)
