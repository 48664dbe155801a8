"""Layer 5, ``engine``: everything about running knockout plans on a model.

Run a question once, then query it under many knockout plans.

Two backends give the same probabilities (tested to 1e-4 in fp32):

``reference``
    One full forward of the unchanged model per plan, eager attention with a dense
    ``-inf`` mask: the paper's method, kept as the oracle and the speed baseline.

``fast``
    One baseline forward stores, for every decoder layer, its input hidden states and its
    keys/values (:class:`Baseline`). Under causal attention a plan whose earliest cut edge
    targets position ``t0`` and whose earliest cut layer is ``l0`` cannot change any position
    ``< t0`` nor any layer ``< l0``; so a plan only recomputes positions ``t0..N-1`` of layers
    ``l0..L-1``, starting from the stored hidden states, with the stored keys/values of the
    earlier positions as a prefix. Only the last position goes through the final norm and
    LM head. Plans with the same ``t0`` share one batch that grows layer by layer: a plan
    joins at its own ``l0`` (:func:`.logits.batches`, :func:`.logits._recompute`), or, where another plan of the
    batch cut the same edges as it from ``l0`` up to some layer (windows clipped at layer 0, bottom-up and inverse
    windows), at that layer with a copy of that plan's row, so those layers run once (:func:`.logits.joins`); the plans of a batch
    share the prefix keys/values, packed into one sequence where copying them per plan would take
    much memory (:mod:`.attention`, its kernels in :mod:`.kernels`). The logits of all batches stay on the device
    until the end, so the host never waits for a batch before queueing the next, and two batches run
    layer by layer in turn, a heavy one beside a light one (:func:`.logits._interleaved`), so that the host
    launches the light one's small kernels while the GPU works through the heavy one's. Each plan's cut edges are kept as classes
    of positions (:class:`.cuts.CompactCut`), not ``N x N`` masks. The
    vision tower runs once per question.

The decoder layers are the model's own modules, called in order with the model's own
rotary embedding; attention inside them goes through :mod:`.attention`.
What the model adds to the hidden states between two decoder layers outside them (Qwen3-VL's
DeepStack vision features) is not attention, so no plan changes it: the recomputation adds
the baseline's additions back (``Baseline.between``), as the model's own forward does.

Modules: :mod:`.arm` (taking hold of a model), :mod:`.baseline` (the recorded forward),
:mod:`.logits` (both backends, batching, recomputation), :mod:`.generation` (greedy generation
under a plan), :mod:`.attention` (the attention function and its per-call state), :mod:`.kernels`,
:mod:`.cuts` (a plan's device form) and :mod:`.settings` (the kernels' knobs).
"""

from .arm import arm, check_plans, compile_layers, knockout_state
from .attention import BACKENDS, KnockoutState
from .baseline import Baseline, run_baseline
from .generation import generate
from .logits import batches, knockout_logits
from .settings import SETTINGS, EngineSettings

__all__ = ["BACKENDS", "Baseline", "EngineSettings", "KnockoutState", "SETTINGS", "arm", "batches", "check_plans", "compile_layers",
           "generate", "knockout_logits", "knockout_state", "run_baseline"]
