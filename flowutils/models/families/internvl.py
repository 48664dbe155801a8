"""InternVL (``internvl``), and InternVL-Chat checkpoints with a Phi-3 LM (``internvl_chat_phi3``).

``internvl``: transformers' own InternVL classes. Every frame is resized to the tower's size
and stacked as an image; pixel shuffle keeps ``downsample_ratio**2`` of the patches, and each
frame's run of ``<IMG_CONTEXT>`` stands inside a ``FrameN: <img>...</img>`` text.

``internvl_chat_phi3``, the paper's Mini-InternVL-4B-Video-FT, is the same adapter
(:data:`CHAT_PHI3`, a ``dataclasses.replace`` of :data:`ADAPTER`) for a checkpoint written for
remote code: its ``config.json`` has ``model_type: internvl_chat`` with a ``vision_config``
(InternViT), an ``llm_config`` (here Phi-3) and the glue (``select_layer``,
``downsample_ratio``, ``ps_version``, ``force_image_size``); its weights use the remote code's
names (``vision_model.*``, ``mlp1.*``, ``language_model.model.*``) and store each vision
attention's q, k and v as one fused ``attn.qkv`` (concatenated on dim 0). flowutils reads it
into the same transformers classes with ``trust_remote_code`` off, through transformers' own seams:

* :func:`chat_config` translates ``config.json`` field by field into an ``InternVLConfig``
  (``InternVLVisionConfig`` + ``Phi3Config``); the image token id comes from the
  checkpoint's tokenizer, as the remote code takes it at run time;
* :func:`chat_processor` builds an ``InternVLProcessor`` from the checkpoint's tokenizer files
  (``<img>``, ``</img>``, ``<IMG_CONTEXT>``; one 448 px tile per frame, ImageNet
  normalisation, as the remote code's video loader);
* :data:`CHAT_KEY_MAPPING` renames the weights (``from_pretrained(key_mapping=...)``);
* :func:`fused_qkv_split` splits each fused ``attn.qkv`` with a transformers
  ``WeightConverter`` (``Chunk`` on dim 0);
* :data:`PHI3` is its prompt: Phi-3's chat format with the paper's system text and answer prefix.

Why the converter is registered only while an InternVL-Chat checkpoint loads: transformers
keeps conversion mappings in one process-wide registry, keyed by model type, and applies
them not only when loading but also, reversed, when ``save_pretrained`` writes a model that
was built from a config (not loaded). A permanent registration for the vision tower
(``internvl_vision``) would therefore make every freshly built transformers InternVL save its
vision attention as a fused ``attn.qkv``, an InternVL-Chat file, although its source
pattern only ever matches InternVL-Chat names when loading. :func:`fused_qkv_split` adds
the converter to whatever is registered for ``internvl_vision`` (merging, never
replacing), and puts the previous entry back when the load ends, also on error; nested or
repeated use is harmless. A model loaded this way remembers the conversions it used
(transformers' rule), so its ``save_pretrained`` writes the InternVL-Chat weight names back.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ...inputs.prompt import CHATML, SYSTEM_MVBENCH, PromptTemplate
from ..adapter import FamilyAdapter, frames_then

VISION_MODEL_TYPE = "internvl_vision"  # transformers' model type of the InternVL vision tower
IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}
VIDEO_TOKEN = "<video>"  # the prompt's placeholder; the processor expands it into one <img>...</img> run per frame


def _tokens(config, height=None, width=None) -> int:
    """Every frame is resized to the tower's size; pixel shuffle keeps downsample_ratio**2 of the patches."""
    size, patch = config.vision_config.image_size, config.vision_config.patch_size
    return round(size[0] // patch[0] * (size[1] // patch[1]) * config.downsample_ratio ** 2)


ADAPTER = FamilyAdapter(
    family="internvl",
    model_class="InternVLForConditionalGeneration",
    processor_class="InternVLProcessor",
    template=CHATML.name,
    video_token=VIDEO_TOKEN,
    video_token_id_attr="image_token_id",  # frames are runs of <IMG_CONTEXT> inside 'FrameN: <img>...</img>'
    trailing_video_tokens=0,
    tokens_per_frame=_tokens,
    video_grid=frames_then("pixel_values", 0, _tokens),  # frames stacked as images [T, C, H, W]
    default_tokens_per_frame=_tokens,
    frame_unit="frame, inside its 'FrameN: <img>...</img>' text",
)

# ---- InternVL-Chat (remote-code layout) with a Phi-3 LM ------------------------------------------------

# Phi-3 chat format (Mini-InternVL-4B's LM) with the paper's system text and answer prefix
PHI3 = PromptTemplate(
    name="phi3",
    system="<|system|>\n" + SYSTEM_MVBENCH + "<|end|>\n",
    before_video="<|user|>\n",
    after_video="\n",
    suffix="\nOnly give the best option.<|end|>\n<|assistant|>\nBest option:(",
)

# InternVL-Chat weight names -> transformers InternVL names (regexes, applied in order; later ones see earlier results)
CHAT_KEY_MAPPING = {
    r"^vision_model\.embeddings\.class_embedding$": "model.vision_tower.embeddings.cls_token",
    r"^vision_model\.embeddings\.position_embedding$": "model.vision_tower.embeddings.position_embeddings",
    r"^vision_model\.embeddings\.patch_embedding\.": "model.vision_tower.embeddings.patch_embeddings.projection.",
    r"^vision_model\.encoder\.layers\.(\d+)\.": r"model.vision_tower.encoder.layer.\1.",
    r"^(model\.vision_tower\.encoder\.layer\.\d+)\.norm1\.": r"\1.layernorm_before.",
    r"^(model\.vision_tower\.encoder\.layer\.\d+)\.norm2\.": r"\1.layernorm_after.",
    # one rule per layer scale: transformers' renaming substitutes \1 only (a \2 stayed literal, and the layer
    # scales were left at their initial value)
    r"^(model\.vision_tower\.encoder\.layer\.\d+)\.ls1$": r"\1.lambda_1",
    r"^(model\.vision_tower\.encoder\.layer\.\d+)\.ls2$": r"\1.lambda_2",
    r"^(model\.vision_tower\.encoder\.layer\.\d+)\.attn\.proj\.": r"\1.attention.projection_layer.",
    r"^(model\.vision_tower\.encoder\.layer\.\d+)\.attn\.(q_norm|k_norm)\.": r"\1.attention.\2.",
    r"^mlp1\.0\.": "model.multi_modal_projector.layer_norm.",
    r"^mlp1\.1\.": "model.multi_modal_projector.linear_1.",
    r"^mlp1\.3\.": "model.multi_modal_projector.linear_2.",
    r"^language_model\.model\.": "model.language_model.",
    r"^language_model\.lm_head\.": "lm_head.",
}

# InternVisionConfig field -> InternVLVisionConfig field
VISION_FIELDS = {
    "hidden_size": "hidden_size", "num_hidden_layers": "num_hidden_layers", "num_attention_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size", "hidden_act": "hidden_act", "norm_type": "norm_type",
    "layer_norm_eps": "layer_norm_eps", "patch_size": "patch_size", "num_channels": "num_channels",
    "qkv_bias": "attention_bias", "qk_normalization": "use_qk_norm", "attention_dropout": "attention_dropout",
}
# llm_config entries that describe the remote code's runtime, not the Phi-3 network
LLM_RUNTIME_KEYS = ("architectures", "auto_map", "_name_or_path", "attn_implementation", "_attn_implementation",
                    "use_flash_attn")

_registry_lock = threading.Lock()


def _qkv_converters():
    from transformers.core_model_loading import Chunk, WeightConverter

    return [WeightConverter(rf"attn\.qkv\.{p}", [rf"attention.{x}_proj.{p}" for x in "qkv"], operations=[Chunk(dim=0)])
            for p in ("weight", "bias")]


@contextmanager
def fused_qkv_split():
    """While active, loading splits each vision layer's fused ``attn.qkv`` into q/k/v (see the module docstring)."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping

    with _registry_lock:
        previous = get_checkpoint_conversion_mapping(VISION_MODEL_TYPE)  # a copy, or None
        register_checkpoint_conversion_mapping(VISION_MODEL_TYPE, (previous or []) + _qkv_converters(), overwrite=True)
        try:
            yield
        finally:
            # an empty list behaves as no entry (transformers has no unregister)
            register_checkpoint_conversion_mapping(VISION_MODEL_TYPE, previous or [], overwrite=True)


def chat_tokenizer(path: Path):
    """An InternVL-Chat checkpoint's tokenizer, its image tokens named as transformers' InternVL processor reads them."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True, extra_special_tokens={**IMAGE_TOKENS,
                                                                                           "video_token": VIDEO_TOKEN})
    tok.add_special_tokens({"additional_special_tokens": [*IMAGE_TOKENS.values(), VIDEO_TOKEN]},
                           replace_extra_special_tokens=False)
    return tok


def chat_config(path: Path):
    """``config.json`` of an InternVL-Chat checkpoint with a Phi-3 LM, as a transformers ``InternVLConfig``."""
    from transformers import InternVLConfig, InternVLVisionConfig, Phi3Config

    raw = json.loads((Path(path) / "config.json").read_text())
    llm = {k: v for k, v in raw["llm_config"].items() if k not in LLM_RUNTIME_KEYS}
    architecture = raw["llm_config"].get("architectures", ["?"])[0]
    if architecture != "Phi3ForCausalLM":
        raise ValueError(f"{path}: InternVL-Chat with a {architecture} LM; flowutils reads the Phi-3 one "
                         "(Mini-InternVL-4B) only")
    if raw.get("ps_version") != "v2":
        raise ValueError(f"{path}: ps_version {raw.get('ps_version')!r}; transformers' pixel shuffle is 'v2' "
                         "(v1 leaves the feature map transposed)")
    rope = llm.get("rope_scaling")
    if rope and rope.get("type", rope.get("rope_type")) in ("su", "longrope"):
        # transformers 5 reads Phi-3's long-RoPE base length from the rope parameters, older configs keep it beside them
        llm["rope_scaling"] = {"original_max_position_embeddings": llm.get("original_max_position_embeddings"), **rope}
    vision = raw["vision_config"]
    size = raw.get("force_image_size") or vision["image_size"]
    vision_config = InternVLVisionConfig(image_size=size, use_absolute_position_embeddings=True,
                                         **{ours: vision[theirs] for theirs, ours in VISION_FIELDS.items() if theirs in vision})
    text_config = Phi3Config(**{**llm, "tie_word_embeddings": False})  # InternVL-Chat never ties them
    patches = (size // vision_config.patch_size[0]) ** 2
    image_token_id = chat_tokenizer(path).convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"])
    return InternVLConfig(vision_config=vision_config, text_config=text_config, image_token_id=image_token_id,
                          image_seq_length=round(patches * raw["downsample_ratio"] ** 2),
                          downsample_ratio=raw["downsample_ratio"], vision_feature_layer=raw["select_layer"],
                          vision_feature_select_strategy="default", tie_word_embeddings=False)


def chat_processor(path: Path, config):
    """An ``InternVLProcessor``: each frame resized to the tower's size (one tile, bicubic), ImageNet mean and std."""
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

    height, width = config.vision_config.image_size
    pixels = dict(size={"height": height, "width": width}, image_mean=IMAGENET_DEFAULT_MEAN,
                  image_std=IMAGENET_DEFAULT_STD, resample=PILImageResampling.BICUBIC)
    return InternVLProcessor(image_processor=GotOcr2ImageProcessor(**pixels, crop_to_patches=False),
                             video_processor=InternVLVideoProcessor(**pixels), tokenizer=chat_tokenizer(path),
                             image_seq_length=config.image_seq_length)


# the paper's Mini-InternVL-4B-Video-FT: an InternVL-Chat checkpoint (remote-code layout, Phi-3 LM) read into
# the same classes; its fused vision qkv is split by a transformers weight converter while it loads
CHAT_PHI3 = replace(
    ADAPTER, family="internvl_chat_phi3", model_types=("internvl_chat",), template=PHI3.name,
    key_mapping=CHAT_KEY_MAPPING, read_config=chat_config, read_processor=chat_processor,
    load_context=fused_qkv_split)
