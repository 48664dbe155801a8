"""Layer 5, ``analysis``: what the paper measures.

Knockout sweeps over questions and their summaries (:mod:`.sweep`), their crash-safe result
store (:mod:`.store`) and sharding over GPUs and nodes (:mod:`.shards`), the logit lens and the
layerwise answer probability (:mod:`.logit_lens`), attention maps (:mod:`.attention_maps`).
May import ``engine``, ``models``, ``knockout`` and ``data``.
"""

from .attention_maps import attention_rows, attention_to_video
from .logit_lens import answer_probability, layer_logits, top_tokens
from .store import load_results, load_skipped, skip_summary
from .sweep import run_sweep, summarize, sweep_plans

__all__ = ["answer_probability", "attention_rows", "attention_to_video", "layer_logits", "load_results",
           "load_skipped", "run_sweep", "skip_summary", "summarize", "sweep_plans", "top_tokens"]
