"""VideoLLaMA3 (``video_llama_3``): the paper's VideoLLaMA3-7B, in transformers' own classes.

Every frame keeps all its tokens (``use_token_compression`` off, the paper's setting),
after a ``Time t s:`` text, frames joined by ``,``; its prompt is its own (no system message, no answer
prefix), the text the paper's code builds with the model's chat template. Where the input still differs from
the paper's code (frame sampling and timestamps, the comma and timestamp text in a frame's cross-frame span),
the "Rerun on a real model" page says; the paper's frame size (at most 144 tokens a frame) is set by the
VideoLLaMA3-7B manifest's ``processor_kwargs``.
"""

from __future__ import annotations

from ...inputs.prompt import PromptTemplate
from ..adapter import FamilyAdapter

# no system message, its own instruction, no "Best option:(" prefix
TEMPLATE = PromptTemplate(
    name="videollama3",
    system="",
    before_video="<|im_start|>user\n",
    after_video="\n",
    suffix="\nAnswer with the option's letter from the given choices directly and only give the best "
    "option.<|im_end|>\n<|im_start|>assistant\n",
)


def video_grid(config, enc) -> tuple[int, int]:
    """``video_grid_thw`` = (T, H / patch, W / patch), ``video_merge_sizes`` x its square per token."""
    t, h, w = (int(x) for x in enc["video_grid_thw"][0])
    return t, h * w // int(enc["video_merge_sizes"][0]) ** 2


ADAPTER = FamilyAdapter(
    family="video_llama_3",
    model_class="VideoLlama3ForConditionalGeneration",
    processor_class="VideoLlama3Processor",
    template=TEMPLATE.name,
    video_token="<|video_pad|>",
    video_token_id_attr="video_token_id",
    trailing_video_tokens=0,
    tokens_per_frame=lambda config, height, width: None,
    video_grid=video_grid,
    processor_kwargs={"use_token_compression": False},  # every frame keeps all its tokens (the paper's setting)
    frame_unit="frame, after its 'Time t s:' text",
)
