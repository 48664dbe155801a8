"""SmolVLM2 (``smolvlm``): frames as images at the tower's size, each after a ``Frame from MM:SS:`` text.

Its decoder is ``model.text_model``; the pixel-shuffle ``scale_factor`` merges
``scale_factor**2`` patches per token.
"""

from __future__ import annotations

from ..adapter import FamilyAdapter, frames_then


def _tokens(config, height=None, width=None) -> int:
    """Each frame at the tower's size (no splitting), scale_factor**2 patches per token."""
    side = config.vision_config.image_size // config.vision_config.patch_size
    return side * side // config.scale_factor ** 2


ADAPTER = FamilyAdapter(
    family="smolvlm",
    model_class="SmolVLMForConditionalGeneration",
    processor_class="SmolVLMProcessor",
    template="smolvlm",
    video_token="<video>",
    video_token_id_attr="image_token_id",  # frames are image runs after 'Frame from MM:SS:'
    trailing_video_tokens=0,
    tokens_per_frame=_tokens,
    decoder_path="model.text_model",
    video_grid=frames_then("pixel_values", 1, _tokens),  # [1, T, C, H, W] under the image key
    default_tokens_per_frame=_tokens,
    frame_unit="frame, inside its 'Frame from MM:SS:' text and wrapper tokens",
)
