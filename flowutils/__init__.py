"""flowutils: Attention Knockout, logit lens and effective pathways for video LLMs.

The package is layered; each layer imports only the layers below it (``.importlinter``
states it and ``make test`` checks it):

1. :mod:`flowutils.data`: benchmarks, manifests, frame reading, the synthetic renderer;
2. :mod:`flowutils.inputs`: prompts as named parts, :class:`TokenLayout`;
3. :mod:`flowutils.knockout`: flows, windows, plans: what is cut, where;
4. :mod:`flowutils.models`: family adapters, :class:`FlowModel`, :func:`load`;
5. :mod:`flowutils.engine`: runs knockout plans on a model (``reference`` and ``fast``), the attention function;
6. :mod:`flowutils.analysis`: sweeps, logit lens, attention maps;
7. :mod:`flowutils.book.figures` and :mod:`flowutils.cli`.

:mod:`flowutils.toy` (the embedded default models' recipe) stands beside them; no layer
imports it.
"""

from .analysis import Sweep, answer_probability, attention_to_video, layer_logits, run_sweep, summarize, sweep_plans
from .data import VideoQASample, load_benchmark
from .engine import generate, knockout_logits, run_baseline
from .inputs import TokenLayout
from .knockout import FLOW_SETS, KnockoutPlan, scaled_window_size, window
from .models import FlowModel, PreparedInput, load

__version__ = "0.1.0"

__all__ = ["FLOW_SETS", "FlowModel", "KnockoutPlan", "PreparedInput", "Sweep", "TokenLayout", "VideoQASample",
           "answer_probability", "attention_to_video", "generate", "knockout_logits", "layer_logits", "load",
           "load_benchmark", "run_baseline", "run_sweep", "scaled_window_size", "summarize", "sweep_plans", "window"]
