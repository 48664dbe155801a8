"""Declarative adapters: where each transformers model family keeps what flowutils needs.

An adapter names, for one ``config.model_type``, the model and processor classes, the
decoder-only language model inside (its layers, final norm, rotary embedding), the LM
head, the video placeholder, how many placeholder tokens a frame gets and how many trail
the whole video, and the default prompt template. Nothing else in flowutils knows about
model families: supporting a new one is a new entry here plus a tiny-config test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class FamilyAdapter:
    model_type: str
    model_class: str  # name in ``transformers``
    processor_class: str
    template: str
    video_token: str  # placeholder string in the prompt
    video_token_id_attr: str  # config attribute holding its id
    trailing_video_tokens: int  # placeholder tokens after the last frame (e.g. a newline embedding)
    tokens_per_frame: Callable[[object, int, int], int]  # (config, height, width) -> tokens of one frame
    # attribute paths from the ...ForConditionalGeneration instance
    decoder_path: str = "model.language_model"
    lm_head_path: str = "lm_head"

    def decoder(self, model: nn.Module) -> nn.Module:
        """The decoder-only LM: has ``layers``, ``norm``, ``rotary_emb``, ``embed_tokens``."""
        return _get(model, self.decoder_path)

    def lm_head(self, model: nn.Module) -> nn.Module:
        return _get(model, self.lm_head_path)

    def video_token_id(self, config) -> int:
        return getattr(config, self.video_token_id_attr)

    def model_cls(self):
        import transformers

        return getattr(transformers, self.model_class)

    def processor_cls(self):
        import transformers

        return getattr(transformers, self.processor_class)


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _llava_next_video_tokens(config, height: int, width: int) -> int:
    patch = config.vision_config.patch_size
    stride = config.spatial_pool_stride
    return (height // patch // stride) * (width // patch // stride)


def _llava_onevision_tokens(config, height: int, width: int) -> int:
    patch = config.vision_config.patch_size
    return math.ceil(height // patch / 2) * math.ceil(width // patch / 2)


ADAPTERS = {
    "llava_next_video": FamilyAdapter(
        model_type="llava_next_video",
        model_class="LlavaNextVideoForConditionalGeneration",
        processor_class="LlavaNextVideoProcessor",
        template="eval_mvbench",
        video_token="<video>",
        video_token_id_attr="video_token_index",
        trailing_video_tokens=0,
        tokens_per_frame=_llava_next_video_tokens,
    ),
    "llava_onevision": FamilyAdapter(
        model_type="llava_onevision",
        model_class="LlavaOnevisionForConditionalGeneration",
        processor_class="LlavaOnevisionProcessor",
        template="chatml",
        video_token="<video>",
        video_token_id_attr="video_token_index",
        trailing_video_tokens=1,  # one image_newline embedding after the whole video
        tokens_per_frame=_llava_onevision_tokens,
    ),
}


def get_adapter(model_type: str) -> FamilyAdapter:
    if model_type not in ADAPTERS:
        raise ValueError(f"model family {model_type!r} is not supported; supported: {sorted(ADAPTERS)}")
    return ADAPTERS[model_type]
