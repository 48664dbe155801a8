"""SmolVLM2 (``smolvlm``): frames as images at the tower's size, each after a ``Frame from MM:SS:`` text.

Its decoder is ``model.text_model``; the pixel-shuffle ``scale_factor`` merges
``scale_factor**2`` patches per token. Its chat format is its own.
"""

from __future__ import annotations

from ...inputs.prompt import SYSTEM_MVBENCH, PromptTemplate
from ..adapter import FamilyAdapter, frames_then

# SmolVLM2's chat format (role names, <end_of_utterance>) with the paper's system text and answer prefix
TEMPLATE = PromptTemplate(
    name="smolvlm",
    system="<|im_start|>System: " + SYSTEM_MVBENCH.rstrip("\n") + "<end_of_utterance>\n",
    before_video="User:",
    after_video="\n",
    suffix="\nOnly give the best option.<end_of_utterance>\nAssistant: Best option:(",
)


def _tokens(config, height=None, width=None) -> int:
    """Each frame at the tower's size (no splitting), scale_factor**2 patches per token."""
    side = config.vision_config.image_size // config.vision_config.patch_size
    return side * side // config.scale_factor ** 2


ADAPTER = FamilyAdapter(
    family="smolvlm",
    model_class="SmolVLMForConditionalGeneration",
    processor_class="SmolVLMProcessor",
    template=TEMPLATE.name,
    video_token="<video>",
    video_token_id_attr="image_token_id",  # frames are image runs after 'Frame from MM:SS:'
    trailing_video_tokens=0,
    tokens_per_frame=_tokens,
    decoder_path="model.text_model",
    video_grid=frames_then("pixel_values", 1, _tokens),  # [1, T, C, H, W] under the image key
    default_tokens_per_frame=_tokens,
    frame_unit="frame, inside its 'Frame from MM:SS:' text and wrapper tokens",
)
