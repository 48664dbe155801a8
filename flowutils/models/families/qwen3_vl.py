"""Qwen3-VL (``qwen3_vl``): Qwen2.5-VL's adapter, with a timestamp before each temporal group and DeepStack.

Its processor writes ``<t seconds>`` and its own ``<|vision_start|>`` / ``<|vision_end|>``
around each temporal group. DeepStack adds vision-tower features to the video positions'
hidden states after the first decoder layers: a path from the video to the LM that
attention knockout cannot block, so the adapter names it and every sweep records it.
"""

from __future__ import annotations

from dataclasses import replace

from . import qwen2_5_vl

ADAPTER = replace(
    qwen2_5_vl.ADAPTER,
    family="qwen3_vl",
    model_class="Qwen3VLForConditionalGeneration",
    processor_class="Qwen3VLProcessor",
    frame_unit="temporal group of temporal_patch_size (2) frames, after its '<t seconds>' text",
    bypasses=("DeepStack: vision-tower features added to the video positions' hidden states after the first "
              "len(deepstack_visual_indexes) decoder layers",),
)
