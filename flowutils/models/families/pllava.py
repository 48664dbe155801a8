"""PLLaVA-style checkpoints (``pllava``): the paper's LLaVA-NeXT-7B/13B-Video-FT and their ImageLLM bases.

Per frame, the CLIP vision tower's features of layer ``config.vision_feature_layer`` (-2)
are taken without the CLS token (``[T, 24*24, C]`` at 336 px) and projected by the
multimodal projector (linear_1 -> GELU -> linear_2) to the LM width. Only then are the
projected features average-pooled in 3-D (time, height, width) to ``config.pooling_shape``
(``(8, 12, 12)``: 1152 tokens), flattened frame-major, and placed where the prompt's single
``<image>`` placeholder was. transformers' ``LlavaNextVideo`` pools *before* its projector;
with the GELU in between the two orders differ, so flowutils computes these embeddings
itself (:func:`encode`) and feeds the decoder through ``inputs_embeds`` (the model's own
modules, unchanged).

On disk these checkpoints keep the legacy LLaVA key layout (:data:`LEGACY_LLAVA_KEYS`), and
PLLaVA's own ``config.json`` says ``model_type: pllava``, which transformers does not know:
:func:`read_config` reads it as LLaVA. The ImageLLM bases (``llava``, ``llava_next``) are
read natively.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ...data.video import VideoClip
from ...inputs.prompt import EVAL_MVBENCH
from ..adapter import FamilyAdapter
from ..encoding import VideoEncoding, to_device

NATIVE_MODEL_TYPES = ("llava", "llava_next")  # read by transformers itself; any other is read as LLaVA

# The legacy LLaVA key layout of PLLaVA-style checkpoints (and of llava-v1.6-*-hf) -> transformers 5 names
LEGACY_LLAVA_KEYS = {
    r"^language_model\.model\.": "model.language_model.",
    r"^language_model\.lm_head\.": "lm_head.",
    r"^vision_tower\.": "model.vision_tower.",
    r"^multi_modal_projector\.": "model.multi_modal_projector.",
    r"^image_newline$": "model.image_newline",
}


def read_config(path: Path):
    """The checkpoint's config: ``llava`` / ``llava_next`` as transformers reads them, any other model type
    (PLLaVA's ``pllava``) as a ``LlavaConfig``."""
    from transformers import AutoConfig, LlavaConfig

    model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    reader = AutoConfig if model_type in NATIVE_MODEL_TYPES else LlavaConfig
    return reader.from_pretrained(path, local_files_only=True)


@torch.no_grad()
def video_embeddings(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """``pixel_values`` ``[T, 3, H, W]`` -> pooled video embeddings ``[T' * h * w, d_model]`` (frame-major)."""
    config = model.config
    inner = model.model
    tower = inner.vision_tower(pixel_values, output_hidden_states=True)
    features = tower.hidden_states[config.vision_feature_layer][:, 1:]  # [T, P, C], CLS dropped
    projected = inner.multi_modal_projector(features)  # [T, P, d]
    frames, patches, d = projected.shape
    side = int(round(patches ** 0.5))
    if side * side != patches:
        raise ValueError(f"PLLaVA pooling needs a square patch grid; the vision tower gave {patches} patches")
    grid = projected.reshape(1, frames, side, side, d).permute(0, 4, 1, 2, 3)  # [1, d, T, side, side]
    pooled = F.adaptive_avg_pool3d(grid, tuple(config.pooling_shape))  # [1, d, T', h, w]
    return pooled.permute(0, 2, 3, 4, 1).reshape(-1, d)


def encode(fm, text: str, clip: VideoClip) -> VideoEncoding:
    """Tokenise ``text`` (one ``<image>``), expand the placeholder to the pooled tokens, embed (the frames
    carry no timestamps into the prompt, so only ``clip.frames`` is read)."""
    config = fm.model.config
    pixel_values = fm.processor.image_processor(images=list(clip.frames), return_tensors="pt")["pixel_values"]
    video = video_embeddings(fm.model, to_device(pixel_values, fm.device, fm.dtype))
    ids = fm.tokenizer(text, return_tensors="pt")["input_ids"][0]
    placeholder = fm.adapter.video_token_id(config)
    where = (ids == placeholder).nonzero().flatten()
    if len(where) != 1:
        raise ValueError(f"{fm.name}: the PLLaVA prompt must hold exactly one {fm.adapter.video_token} "
                         f"(id {placeholder}); found {len(where)} in {text[:200]!r}...")
    at = int(where[0])
    ids = torch.cat([ids[:at], ids.new_full((len(video),), placeholder), ids[at + 1:]])[None]
    on_device = to_device(ids, fm.device)
    with torch.no_grad():
        embeds = fm.decoder.embed_tokens(on_device).clone()
    embeds[0, at:at + len(video)] = video.to(embeds.dtype)
    t, h, w = config.pooling_shape
    inputs = {"inputs_embeds": embeds, "attention_mask": torch.ones_like(on_device)}
    # the layout reads the ids on the host (a device copy read back would wait for the GPU's queue)
    return VideoEncoding(inputs, ids, num_frames=t, tokens_per_frame=h * w)


def _tokens(config, height: int, width: int) -> int:
    _, h, w = config.pooling_shape
    return h * w


# CLIP layer -2 without CLS, projector per frame, THEN a 3-D average pool to config.pooling_shape,
# in place of one <image>
ADAPTER = FamilyAdapter(
    family="pllava",
    model_types=(*NATIVE_MODEL_TYPES, "pllava"),
    model_class="AutoModelForImageTextToText",  # LlavaForConditionalGeneration or LlavaNext... by model_type
    processor_class="AutoProcessor",
    template=EVAL_MVBENCH.name,
    video_token="<image>",
    video_token_id_attr="image_token_index",
    trailing_video_tokens=0,
    tokens_per_frame=_tokens,
    key_mapping=LEGACY_LLAVA_KEYS,
    encode=encode,
    read_config=read_config,
    frame_unit="temporal bin of the 3-D pool (pooling_shape[0] bins; one frame when frames == bins)",
    default_tokens_per_frame=lambda config: _tokens(config, 0, 0),
)
