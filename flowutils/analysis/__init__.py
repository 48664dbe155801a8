"""Layer 5, ``analysis``: what the paper measures.

Knockout sweeps over questions and their summaries (:mod:`.sweep`), the logit lens and the
layerwise answer probability (:mod:`.logit_lens`), attention maps (:mod:`.attention_maps`).
May import ``engine``, ``models``, ``knockout`` and ``data``.
"""

from .attention_maps import attention_rows, attention_to_video
from .logit_lens import answer_probability, layer_logits, top_tokens
from .sweep import run_sweep, summarize, sweep_plans

__all__ = ["answer_probability", "attention_rows", "attention_to_video", "layer_logits", "run_sweep", "summarize",
           "sweep_plans", "top_tokens"]
