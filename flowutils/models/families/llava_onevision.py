"""LLaVA-OneVision (``llava_onevision``): the toy ImageLLM's family, and that of current LLaVA-OneVision checkpoints.

Each frame's patch grid is pooled 2x2 (rounding up), and one ``image_newline`` embedding
follows the whole video. The prompt is the ChatML one its Qwen2 LM was tuned on.
"""

from __future__ import annotations

import math

from ...inputs.prompt import CHATML
from ..adapter import FamilyAdapter, at_tower_size


def _tokens(config, height: int, width: int) -> int:
    patch = config.vision_config.patch_size
    return math.ceil(height // patch / 2) * math.ceil(width // patch / 2)


ADAPTER = FamilyAdapter(
    family="llava_onevision",
    model_class="LlavaOnevisionForConditionalGeneration",
    processor_class="LlavaOnevisionProcessor",
    template=CHATML.name,
    video_token="<video>",
    video_token_id_attr="video_token_index",
    trailing_video_tokens=1,  # one image_newline embedding after the whole video
    tokens_per_frame=_tokens,
    default_tokens_per_frame=at_tower_size(_tokens),
)
