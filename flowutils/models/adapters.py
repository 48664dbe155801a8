"""Declarative adapters: where each model family keeps what flowutils needs.

An adapter names, for one family, the model and processor classes, the decoder-only
language model inside (its layers, final norm, rotary embedding), the LM head, the video
placeholder, how many placeholder tokens a frame gets and how many trail the whole video,
how positions are computed (1-D RoPE, or M-RoPE whose 3-D positions the engine reads from
the model's own forward), the default prompt template, the key mapping of an older
on-disk checkpoint layout (and, for a checkpoint written for remote code, how its config,
processor and fused weights are read: :mod:`.internvl_chat`), and the known paths that
bypass attention (a knockout cannot block them; results record them). Nothing else in flowutils knows about model families:
supporting a new one is a new entry here plus a tiny-config test.

Most families run their own processor on ``(text, video)``; a family whose video
embeddings transformers does not compute the way its checkpoints were trained (PLLaVA,
:mod:`.pllava`) supplies ``encode`` and feeds the decoder through ``inputs_embeds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

from torch import nn

from . import internvl_chat, pllava

ROPE_1D, MROPE = "1-D RoPE", "M-RoPE (3-D position ids)"


@dataclass(frozen=True)
class FamilyAdapter:
    family: str
    model_class: str  # name in ``transformers``
    processor_class: str
    template: str
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
    # a checkpoint transformers cannot read natively (model_types: its config.json's model_type):
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


def _llava_next_video_tokens(config, height: int, width: int) -> int:
    patch = config.vision_config.patch_size
    stride = config.spatial_pool_stride
    return (height // patch // stride) * (width // patch // stride)


def _llava_onevision_tokens(config, height: int, width: int) -> int:
    patch = config.vision_config.patch_size
    return math.ceil(height // patch / 2) * math.ceil(width // patch / 2)


def _at_tower_size(per_frame):
    """Tokens per frame at the vision tower's own input size."""
    def default(config):
        size = config.vision_config.image_size
        return per_frame(config, size, size)
    return default


def _pllava_tokens(config, height: int, width: int) -> int:
    _, h, w = config.pooling_shape
    return h * w


def _qwen_grid(config, enc) -> tuple[int, int]:
    """Qwen2.5-VL: ``video_grid_thw`` = (T / temporal_patch, H / patch, W / patch); merge 2x2 patches per token."""
    t, h, w = (int(x) for x in enc["video_grid_thw"][0])
    return t, h * w // config.vision_config.spatial_merge_size ** 2


def _video_llama_3_grid(config, enc) -> tuple[int, int]:
    """VideoLLaMA3: ``video_grid_thw`` = (T, H / patch, W / patch), ``video_merge_sizes`` x its square per token."""
    t, h, w = (int(x) for x in enc["video_grid_thw"][0])
    return t, h * w // int(enc["video_merge_sizes"][0]) ** 2


def _internvl_tokens(config, height=None, width=None) -> int:
    """InternVL: every frame is resized to the tower's size; pixel shuffle keeps downsample_ratio**2 of the patches."""
    size, patch = config.vision_config.image_size, config.vision_config.patch_size
    return round(size[0] // patch[0] * (size[1] // patch[1]) * config.downsample_ratio ** 2)


def _smolvlm_tokens(config, height=None, width=None) -> int:
    """SmolVLM2: each frame at the tower's size (no splitting), scale_factor**2 patches per token."""
    side = config.vision_config.image_size // config.vision_config.patch_size
    return side * side // config.scale_factor ** 2


def _frames_then(pixel_key: str, frame_dim: int, per_frame):
    """(config, processor outputs) -> (frames: dim ``frame_dim`` of ``pixel_key``, ``per_frame(config)``)."""
    def grid(config, enc):
        return enc[pixel_key].shape[frame_dim], per_frame(config)
    return grid


# The legacy LLaVA key layout of PLLaVA-style checkpoints (and of llava-v1.6-*-hf) -> transformers 5 names
LEGACY_LLAVA_KEYS = {
    r"^language_model\.model\.": "model.language_model.",
    r"^language_model\.lm_head\.": "lm_head.",
    r"^vision_tower\.": "model.vision_tower.",
    r"^multi_modal_projector\.": "model.multi_modal_projector.",
    r"^image_newline$": "model.image_newline",
}

INTERNVL = FamilyAdapter(
    family="internvl",
    model_class="InternVLForConditionalGeneration",
    processor_class="InternVLProcessor",
    template="chatml",
    video_token="<video>",
    video_token_id_attr="image_token_id",  # frames are runs of <IMG_CONTEXT> inside 'FrameN: <img>...</img>'
    trailing_video_tokens=0,
    tokens_per_frame=_internvl_tokens,
    video_grid=_frames_then("pixel_values", 0, _internvl_tokens),  # frames stacked as images [T, C, H, W]
    default_tokens_per_frame=_internvl_tokens,
    frame_unit="frame, inside its 'FrameN: <img>...</img>' text",
)

ADAPTERS = {
    "llava_next_video": FamilyAdapter(
        family="llava_next_video",
        model_class="LlavaNextVideoForConditionalGeneration",
        processor_class="LlavaNextVideoProcessor",
        template="eval_mvbench",
        video_token="<video>",
        video_token_id_attr="video_token_index",
        trailing_video_tokens=0,
        tokens_per_frame=_llava_next_video_tokens,
        default_tokens_per_frame=_at_tower_size(_llava_next_video_tokens),
    ),
    "llava_onevision": FamilyAdapter(
        family="llava_onevision",
        model_class="LlavaOnevisionForConditionalGeneration",
        processor_class="LlavaOnevisionProcessor",
        template="chatml",
        video_token="<video>",
        video_token_id_attr="video_token_index",
        trailing_video_tokens=1,  # one image_newline embedding after the whole video
        tokens_per_frame=_llava_onevision_tokens,
        default_tokens_per_frame=_at_tower_size(_llava_onevision_tokens),
    ),
    "qwen2_5_vl": FamilyAdapter(
        family="qwen2_5_vl",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessor",
        template="chatml",
        video_token="<|video_pad|>",
        video_markers=("<|vision_start|>", "<|vision_end|>"),
        video_token_id_attr="video_token_id",
        trailing_video_tokens=0,
        tokens_per_frame=lambda config, height, width: None,  # from the processor's grid (video_grid)
        video_grid=_qwen_grid,
        positions=MROPE,
        frame_unit="temporal group of temporal_patch_size (2) frames",
    ),
    "qwen3_vl": FamilyAdapter(
        family="qwen3_vl",
        model_class="Qwen3VLForConditionalGeneration",
        processor_class="Qwen3VLProcessor",
        template="chatml",
        video_token="<|video_pad|>",
        video_markers=("<|vision_start|>", "<|vision_end|>"),  # the chat template's; the processor adds its own per group
        video_token_id_attr="video_token_id",
        trailing_video_tokens=0,
        tokens_per_frame=lambda config, height, width: None,
        video_grid=_qwen_grid,
        positions=MROPE,
        frame_unit="temporal group of temporal_patch_size (2) frames, after its '<t seconds>' text",
        bypasses=("DeepStack: vision-tower features added to the video positions' hidden states after the first "
                  "len(deepstack_visual_indexes) decoder layers",),
    ),
    "video_llama_3": FamilyAdapter(
        family="video_llama_3",
        model_class="VideoLlama3ForConditionalGeneration",
        processor_class="VideoLlama3Processor",
        template="videollama3",
        video_token="<|video_pad|>",
        video_token_id_attr="video_token_id",
        trailing_video_tokens=0,
        tokens_per_frame=lambda config, height, width: None,
        video_grid=_video_llama_3_grid,
        processor_kwargs={"use_token_compression": False},  # every frame keeps all its tokens (the paper's setting)
        frame_unit="frame, after its 'Time t s:' text",
    ),
    "internvl": INTERNVL,
    # the paper's Mini-InternVL-4B-Video-FT: an InternVL-Chat checkpoint (remote-code layout, Phi-3 LM) read into
    # the same classes; its fused vision qkv is split by a transformers weight converter while it loads
    "internvl_chat_phi3": replace(
        INTERNVL, family="internvl_chat_phi3", model_types=("internvl_chat",), template="phi3",
        key_mapping=internvl_chat.KEY_MAPPING, read_config=internvl_chat.config,
        read_processor=internvl_chat.processor, load_context=internvl_chat.fused_qkv_split),
    "smolvlm": FamilyAdapter(
        family="smolvlm",
        model_class="SmolVLMForConditionalGeneration",
        processor_class="SmolVLMProcessor",
        template="smolvlm",
        video_token="<video>",
        video_token_id_attr="image_token_id",  # frames are image runs after 'Frame from MM:SS:'
        trailing_video_tokens=0,
        tokens_per_frame=_smolvlm_tokens,
        decoder_path="model.text_model",
        video_grid=_frames_then("pixel_values", 1, _smolvlm_tokens),  # [1, T, C, H, W] under the image key
        default_tokens_per_frame=_smolvlm_tokens,
        frame_unit="frame, inside its 'Frame from MM:SS:' text and wrapper tokens",
    ),
    # The paper's LLaVA-NeXT-7B/13B-Video-FT (PLLaVA-style) and their ImageLLM bases: CLIP layer -2
    # without CLS, projector per frame, THEN a 3-D average pool to config.pooling_shape, in place of one <image>
    "pllava": FamilyAdapter(
        family="pllava",
        model_types=("llava", "llava_next", "pllava"),
        model_class="AutoModelForImageTextToText",  # LlavaForConditionalGeneration or LlavaNext... by model_type
        processor_class="AutoProcessor",
        template="eval_mvbench",
        video_token="<image>",
        video_token_id_attr="image_token_index",
        trailing_video_tokens=0,
        tokens_per_frame=_pllava_tokens,
        key_mapping=LEGACY_LLAVA_KEYS,
        encode=pllava.encode,
        frame_unit="temporal bin of the 3-D pool (pooling_shape[0] bins; one frame when frames == bins)",
        default_tokens_per_frame=lambda config: _pllava_tokens(config, 0, 0),
    ),
}


def get_adapter(family: str) -> FamilyAdapter:
    """The adapter of ``family`` (a key of :data:`ADAPTERS`)."""
    if family not in ADAPTERS:
        raise ValueError(f"model family {family!r} is not supported; supported: {sorted(ADAPTERS)}")
    return ADAPTERS[family]


def adapter_for(config, family: str | None = None) -> FamilyAdapter:
    """The adapter of a checkpoint: ``family`` if given, else PLLaVA when the config has a
    ``pooling_shape``, else the family whose ``model_types`` include ``config.model_type``."""
    if family is not None:
        return get_adapter(family)
    if getattr(config, "pooling_shape", None) is not None:
        return ADAPTERS["pllava"]
    for adapter in ADAPTERS.values():
        if config.model_type in (adapter.model_types or (adapter.family,)):
            return adapter
    raise ValueError(f"model type {config.model_type!r} is not supported; supported families: {sorted(ADAPTERS)} "
                     "(pass family=... to load a checkpoint of a supported family under another model type)")
