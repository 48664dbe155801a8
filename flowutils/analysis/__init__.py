"""Layer 6, ``analysis``: measurements and the machinery every measurement runs on.

The one per-question runner (:mod:`.runner`: parameter checks, the crash-safe result store
:mod:`.store`, sharding over GPUs and nodes :mod:`.shards`, counted skips, out-of-memory
retry, progress), knockout sweeps and their summaries (:mod:`.sweep`), the logit lens and the
layerwise answer probability (:mod:`.logit_lens`), attention maps (:mod:`.attention_maps`) and
uncertainty (:mod:`.uncertainty`). The paper's sections are built on them in :mod:`flowutils.paper`.
May import ``engine``, ``models``, ``knockout``, ``inputs`` and ``data``.
"""

from .attention_maps import attention_rows, attention_to_video
from .logit_lens import answer_probability, layer_logits, top_tokens
from .runner import require_rows, run_questions
from .store import load_results, load_skipped, skip_summary
from .sweep import Sweep, run_sweep, summarize, sweep_plans

__all__ = ["Sweep", "answer_probability", "attention_rows", "attention_to_video", "layer_logits", "load_results",
           "load_skipped", "require_rows", "run_questions", "run_sweep", "skip_summary", "summarize", "sweep_plans",
           "top_tokens"]
