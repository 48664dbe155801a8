"""The device form of a plan's cut edges, which the attention function reads layer by layer.

Two spellings of the same edges:

* :func:`reference_cut`: a boolean matrix built from the plan's blocks on every call
  (:meth:`flowutils.knockout.plan.KnockoutPlan.dense`): obviously correct, ``N^2`` per call (the
  reference backend's mask).
* :class:`CompactCut` (:func:`compact_cut`): what the fast backend keeps. The blocks of a layer
  split the positions into classes twice over: by the set of blocks a position is a target of (row
  classes) and the set it is a source of (column classes). Then
  ``cut(q, k) = table[row_class[q], col_class[k]]``. The paper's flows need a handful of classes
  (cross-frame: one per frame), so a plan holds ``O(N)`` integers and a tiny table, not ``N^2``
  booleans, and the memory per plan stays flat as videos get longer; only the current batch's
  rows are expanded, one layer at a time.

Query rows past the prompt (decode steps of open-ended generation) follow the last prompt
position's rule; keys past the prompt (generated tokens) are never cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..knockout.plan import KnockoutPlan, flat_blocks
from ..models.encoding import to_device


def _classes(counts: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """Class of each of ``n`` positions: positions in exactly the same sets share one. The sets are given flat:
    set ``j`` is the next ``counts[j]`` entries of ``positions``."""
    classes = np.zeros(n, np.int64)
    ends = np.cumsum(counts)
    for start in range(0, len(counts), 62):  # 62 sets at a time as the bits of one integer per position
        stop = min(start + 62, len(counts))
        a, b = (ends[start - 1] if start else 0), ends[stop - 1]
        bits = np.zeros(n, np.int64)
        np.bitwise_or.at(bits, positions[a:b], np.left_shift(1, np.repeat(np.arange(stop - start), counts[start:stop])))
        bits = np.unique(bits, return_inverse=True)[1].reshape(-1)
        classes = np.unique(classes * (bits.max() + 1) + bits, return_inverse=True)[1].reshape(-1)
    return classes


@dataclass(frozen=True)
class CompactCut:
    """The edges one layer cuts in an ``n``-token prompt: ``cut(q, k) = table[rows[q], cols[k]]``.

    ``rows``/``cols``: ``[n]`` class of each position as a target / as a source; ``table``:
    ``[row classes, column classes + 1]``, the last column False (keys past the prompt are never
    cut). ``key``: the content (equal cuts of different plans share one mask in a batch);
    ``whole_rows``: some query row may lose every key (only if its edge to position 0, which
    causal attention always allows, is cut).
    """

    rows: torch.Tensor
    cols: torch.Tensor
    table: torch.Tensor
    key: bytes
    whole_rows: bool
    host: tuple = field(repr=False, compare=False)  # rows, cols, table as numpy arrays: for :meth:`runs`

    @classmethod
    def from_blocks(cls, blocks, n: int, device=None) -> "CompactCut":
        flat = flat_blocks(blocks)
        t_counts, s_counts, targets, sources = flat.target_counts, flat.source_counts, flat.targets, flat.sources
        live = flat.live
        if not live.all():  # empty blocks cut nothing
            targets, sources = targets[np.repeat(live, t_counts)], sources[np.repeat(live, s_counts)]
            t_counts, s_counts = t_counts[live], s_counts[live]
        rows, cols = _classes(t_counts, targets, n), _classes(s_counts, sources, n)
        # a row class and a column class are cut where they share a block (a class lies in a block wholly or not
        # at all). Blocks of one target (a random plan's thousand rows) in one scatter; the others, few and wide
        # (a frame's tokens), one class product each
        table = np.zeros((rows.max() + 1, cols.max() + 2), bool)  # the last column: keys past the prompt
        single = t_counts == 1
        # a random plan's blocks all have one target: no selection (a copy of every key)
        t1, s1 = (targets, sources) if single.all() else \
            (targets[np.repeat(single, t_counts)], sources[np.repeat(single, s_counts)])
        table[np.repeat(rows[t1], s_counts[single]), cols[s1]] = True
        t_ends, s_ends = np.cumsum(t_counts), np.cumsum(s_counts)
        for j in np.flatnonzero(~single):
            t = targets[t_ends[j] - t_counts[j]:t_ends[j]]
            src = sources[s_ends[j] - s_counts[j]:s_ends[j]]
            table[np.ix_(np.unique(rows[t]), np.unique(cols[src]))] = True
        key = b"|".join(x.tobytes() for x in (rows, cols, table)) + str(table.shape).encode()
        return cls(*(to_device(torch.from_numpy(x), device) for x in (rows, cols, table)), key, bool(table[:, cols[0]].any()),
                   (rows, cols, table))

    def mask(self, q_start: int, q_len: int, k_len: int) -> torch.Tensor:
        """Boolean ``[q_len, k_len]`` of cut edges for queries ``q_start..q_start+q_len-1``."""
        n, device = len(self.rows), self.rows.device
        q = torch.clamp(torch.arange(q_start, q_start + q_len, device=device), max=n - 1)
        k = torch.arange(k_len, device=device)
        cols = torch.where(k < n, self.cols[torch.clamp(k, max=n - 1)], self.table.shape[1] - 1)
        return self.table[self.rows[q][:, None], cols[None, :]]

    def runs(self, q_start: int, q_len: int) -> list[tuple[int, int, np.ndarray]] | None:
        """Queries ``q_start..q_start+q_len-1`` (prompt positions) as runs ``[(a, b, before)]`` of equal row
        class: queries ``a..b-1`` attend to the keys ``before`` (earlier than ``a``, not cut) and causally to
        ``a..b-1``. None where a run cuts an edge among its own positions (it is not plain causal there).
        A frame under the cross-frame cut is one run whose ``before`` is the positions before the video."""
        rows, cols, table = self.host
        q_rows = rows[q_start:q_start + q_len]
        starts = q_start + np.flatnonzero(np.r_[True, q_rows[1:] != q_rows[:-1]])
        out = []
        for a, b in zip(starts, np.r_[starts[1:], q_start + q_len]):
            cut = table[rows[a], cols[:b]]
            if cut[a:].any():
                return None
            out.append((int(a), int(b), np.flatnonzero(~cut[:a])))
        return out


def reference_cut(plan: KnockoutPlan, layer: int, q_start: int, q_len: int, k_len: int, n_prompt: int,
                  device=None) -> torch.Tensor | None:
    """Boolean ``[q_len, k_len]`` of ``plan``'s cut edges for queries ``q_start..q_start+q_len-1`` (None: nothing
    cut). Built from the blocks on every call (the reference backend's mask): the obviously correct twin of
    :meth:`CompactCut.mask`.
    """
    if not plan.blocks.get(layer):
        return None
    rows = plan.dense(layer, n_prompt, device)
    idx = torch.clamp(torch.arange(q_start, q_start + q_len, device=rows.device), max=n_prompt - 1)
    out = torch.zeros(q_len, k_len, dtype=torch.bool, device=rows.device)
    width = min(k_len, n_prompt)
    out[:, :width] = rows[idx][:, :width]
    return out


def compact_cut(plan: KnockoutPlan, layer: int, n: int, device=None, shared: dict | None = None) -> CompactCut | None:
    """The edges ``plan`` cuts in ``layer`` of an ``n``-token prompt as a :class:`CompactCut` (None: nothing cut),
    built once per block list and device (windows share one list) and kept on the plan. ``shared``: a dict
    that plans with equal blocks (one flow in several windows) share their cuts through."""
    blocks = plan.blocks.get(layer)
    if layer not in plan.live_layers:
        return None
    key = (id(blocks), n, str(device))
    if key not in plan.device_cache:
        shared = {} if shared is None else shared
        # plans that share one block list (a flow's windows in a sweep) share its cut without comparing the content
        # again; the entry holds the list, so that no other list can take its id while ``shared`` lives
        if key not in shared:
            flat = plan.flat_lists[id(blocks)]
            content = (n, str(device), flat.key())
            if content not in shared:
                shared[content] = CompactCut.from_blocks(flat, n, device)
            shared[key] = (blocks, shared[content])
        plan.device_cache[key] = shared[key][1]
    return plan.device_cache[key]


def prepare_cuts(plan: KnockoutPlan, n: int, device=None, shared: dict | None = None) -> None:
    """Build every layer's compact cut of ``plan`` on ``device`` now, not lazily in the middle of a forward (the
    host would build them between the layers' launches)."""
    for layer in plan.live_layers:
        compact_cut(plan, layer, n, device, shared)
