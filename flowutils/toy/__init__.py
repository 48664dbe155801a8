"""The embedded default models, beside the layers: the toy ImageLLM and VideoLLM.

Their config, word-level tokenizer and builder (:mod:`.models`), the training recipe
(:mod:`.training`), the LM's scene-text curriculum (:mod:`.scene_text`) and the vision
tower's pretraining (:mod:`.vision_pretraining`). It may import every layer; no layer
imports it (the shipped checkpoints load through :func:`flowutils.models.load`).
"""

from .models import TOY_MODELS, ToyConfig, architecture, build_toy

__all__ = ["TOY_MODELS", "ToyConfig", "architecture", "build_toy"]
