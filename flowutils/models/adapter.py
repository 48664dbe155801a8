"""``FamilyAdapter``: what one model family tells flowutils, declared as data.

An adapter names, for one family, the model and processor classes, the decoder-only
language model inside (its layers, final norm, rotary embedding), the LM head, the video
placeholder, how many placeholder tokens a frame gets and how many trail the whole video,
how positions are computed (1-D RoPE, or M-RoPE whose 3-D positions the engine reads from
the model's own forward), the default prompt template, the key mapping of an older
on-disk checkpoint layout (and, for a checkpoint transformers cannot read natively, how
its config, processor and fused weights are read), and the known paths that bypass
attention (a knockout cannot block them; results record them).

Each family declares its adapter in its own module of :mod:`.families`, which also keeps
the registry; nothing else in flowutils knows about model families. Supporting a new one is
a new module there plus a tiny-config builder in ``tests/tiny_families.py``.

Most families run their own processor on ``(text, video)``; a family whose video
embeddings transformers does not compute the way its checkpoints were trained (PLLaVA,
:mod:`.families.pllava`) supplies ``encode`` and feeds the decoder through ``inputs_embeds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

ROPE_1D, MROPE = "1-D RoPE", "M-RoPE (3-D position ids)"


@dataclass(frozen=True)
class FamilyAdapter:
    family: str
    model_class: str  # name in ``transformers``
    processor_class: str
    template: str  # name of the default prompt template (``flowutils.models.prompt_template``)
    video_token: str  # placeholder string in the prompt
    video_token_id_attr: str  # config attribute holding its id
    trailing_video_tokens: int  # placeholder tokens after the last frame (e.g. a newline embedding)
    tokens_per_frame: Callable[[object, int, int], int]  # (config, height, width) -> tokens of one frame
    model_types: tuple[str, ...] = ()  # ``config.model_type`` values served (default: ``(family,)``)
    # attribute paths from the ...ForConditionalGeneration instance
    decoder_path: str = "model.language_model"
    lm_head_path: str = "lm_head"
    positions: str = ROPE_1D
    frame_unit: str = "frame"  # what one frame span is (Qwen: a temporal group of 2 frames)
    key_mapping: dict | None = None  # regex: older checkpoint key layout -> transformers names
    bypasses: tuple[str, ...] = ()  # paths from the video to the LM that attention knockout does not block
    # (fm, text, frames [T, H, W, 3]) -> VideoEncoding; None: the family's processor on (text, video)
    encode: Callable | None = None
    default_tokens_per_frame: Callable[[object], int | None] = lambda config: None
    video_markers: tuple[str, str] = ("", "")  # text the family puts right around its video placeholder
    # (config, processor outputs) -> (frame spans, tokens per span) when the pixel tensor is not [1, T, C, H, W]
    video_grid: Callable | None = None
    processor_kwargs: dict = field(default_factory=dict)  # passed to every processor call (e.g. settings to pin)
    # a checkpoint whose config.json's model_type (one of model_types) transformers cannot read natively:
    read_config: Callable | None = None  # checkpoint dir -> transformers config
    read_processor: Callable | None = None  # (checkpoint dir, config) -> processor
    load_context: Callable | None = None  # () -> context manager around from_pretrained (weight converters)

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


# Pieces several families' adapters are built from


def at_tower_size(per_frame):
    """Tokens per frame at the vision tower's own input size."""
    def default(config):
        size = config.vision_config.image_size
        return per_frame(config, size, size)
    return default


def frames_then(pixel_key: str, frame_dim: int, per_frame):
    """(config, processor outputs) -> (frames: dim ``frame_dim`` of ``pixel_key``, ``per_frame(config)``)."""
    def grid(config, enc):
        return enc[pixel_key].shape[frame_dim], per_frame(config)
    return grid
