"""LLaVA-NeXT-Video (``llava_next_video``): the toy VideoLLM's family, and that of current LLaVA-NeXT-Video checkpoints.

Each frame's patch grid is average-pooled by ``spatial_pool_stride`` before it reaches the LM,
and the frames follow each other with nothing between them. The prompt is the paper's.
"""

from __future__ import annotations

from ...inputs.prompt import EVAL_MVBENCH
from ..adapter import FamilyAdapter, at_tower_size


def _tokens(config, height: int, width: int) -> int:
    patch = config.vision_config.patch_size
    stride = config.spatial_pool_stride
    return (height // patch // stride) * (width // patch // stride)


ADAPTER = FamilyAdapter(
    family="llava_next_video",
    model_class="LlavaNextVideoForConditionalGeneration",
    processor_class="LlavaNextVideoProcessor",
    template=EVAL_MVBENCH.name,
    video_token="<video>",
    video_token_id_attr="video_token_index",
    trailing_video_tokens=0,
    tokens_per_frame=_tokens,
    default_tokens_per_frame=at_tower_size(_tokens),
)
