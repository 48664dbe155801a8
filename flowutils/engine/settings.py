"""The fast engine's tuning knobs, in one object.

They choose between kernels that compute the same attention; none changes a result beyond float
rounding. Tests and benchmarks set them on :data:`SETTINGS` (``monkeypatch.setattr(SETTINGS, ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineSettings:
    # A batch of plans copies the shared prefix keys/values once per plan unless these copies would exceed
    # this many bytes; then all plans' queries attend to the one prefix instead (``_packed_attention``),
    # which keeps memory flat at the cost of a second attention call and a merge.
    pack_above_bytes: int = 2**28
    # Devices whose rows that cut nothing get unmasked kernels (flash). Not the CPU: there the masked path is
    # as fast, and it keeps the CPU's numbers (the book's) as they were; the tests add "cpu" to check the split.
    flash_devices: tuple = ("cuda",)
    # A cutting row whose cut splits its queries into runs that are each plain causal among themselves (a
    # frame under the cross-frame cut: :meth:`flowutils.engine.cuts.CompactCut.runs`) attends run by run to
    # the keys it keeps, gathered, in one variable-length flash call, skipping the cut tiles that the masked
    # kernel would compute; unless the gathered keys would exceed this many times the row's keys.
    run_keys_max: int = 4
    # A packed batch splits off its rows that cut nothing (unmasked kernels) only where they have at least
    # this many queries: below it the split's extra launches cost the host more than the masked kernel costs
    # the GPU (on an H200, 192 plans of one query each spent 7 ms of host time a layer in up to a dozen runs).
    split_min_queries: int = 1024


SETTINGS = EngineSettings()
