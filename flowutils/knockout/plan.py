"""Knockout plans: for each decoder layer, the blocks of (target, source) edges to cut.

A plan is pure data. The attention function (:mod:`flowutils.knockout.attention`) asks it, layer
by layer, for the cut edges (True = cut) on top of the causal mask. Query rows past the prompt
(decode steps of open-ended generation) follow the last prompt position's rule; keys past the
prompt (generated tokens) are never cut.

Two spellings of the same edges:

* :meth:`KnockoutPlan.dense` / :meth:`KnockoutPlan.cut`: a boolean matrix built from the blocks
  on every call: obviously correct, ``N^2`` per call (the reference backend's mask).
* :class:`CompactCut` (:meth:`KnockoutPlan.compact`): what the fast backend keeps. The blocks of
  a layer split the positions into classes twice over: by the set of blocks a position is a
  target of (row classes) and the set it is a source of (column classes). Then
  ``cut(q, k) = table[row_class[q], col_class[k]]``. The paper's flows need a handful of classes
  (cross-frame: one per frame), so a plan holds ``O(N)`` integers and a tiny table, not ``N^2``
  booleans, and the memory per plan stays flat as videos get longer; only the current batch's
  rows are expanded, one layer at a time.

``attention_edges`` counts the valid causal (query, key) pairs left over all layers, as
Table 3 of the paper does (full causal attention = ``L * N (N + 1) / 2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from .flows import Block, flow_blocks
from .spans import TokenLayout


def to_device(x: torch.Tensor, device) -> torch.Tensor:
    """A host tensor on ``device``; to a GPU through pinned memory, without waiting: a plain host-to-device
    copy waits for the GPU work already queued."""
    if device is None or torch.device(device).type != "cuda":
        return x if device is None else x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def _classes(sets, n: int) -> np.ndarray:
    """Class of each of ``n`` positions: positions in exactly the same ``sets`` (index arrays) share one."""
    classes = np.zeros(n, np.int64)
    for start in range(0, len(sets), 62):  # 62 sets at a time as the bits of one integer per position
        bits = np.zeros(n, np.int64)
        for j, idx in enumerate(sets[start:start + 62]):
            bits[idx] |= 1 << j
        bits = np.unique(bits, return_inverse=True)[1].reshape(-1)
        classes = np.unique(classes * (bits.max() + 1) + bits, return_inverse=True)[1].reshape(-1)
    return classes


def _members(classes: np.ndarray, sets) -> np.ndarray:
    """``[classes, sets]``: whether each class lies in each set (its positions all do, or none)."""
    out = np.zeros((classes.max() + 1, len(sets)), np.float32)
    for j, idx in enumerate(sets):
        out[classes[idx], j] = 1
    return out


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
    host: tuple = field(repr=False, compare=False)  # rows, cols, table as numpy arrays: for :meth:`segments`

    @classmethod
    def from_blocks(cls, blocks, n: int, device=None) -> "CompactCut":
        live = [(t.cpu().numpy().reshape(-1), s.cpu().numpy().reshape(-1)) for t, s in blocks if len(t) and len(s)]
        targets, sources = [t for t, _ in live], [s for _, s in live]
        rows, cols = _classes(targets, n), _classes(sources, n)
        # a row class and a column class share a block: the float product counts them exactly
        table = _members(rows, targets) @ _members(cols, sources).T > 0
        table = np.concatenate([table, np.zeros((len(table), 1), bool)], 1)
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

    def segments(self, q_start: int, q_len: int) -> list[tuple[int, int, np.ndarray]] | None:
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


@dataclass
class KnockoutPlan:
    """``blocks[layer]``: the blocks cut in that layer (0-based). ``label``: what the plan is."""

    blocks: dict[int, list[Block]] = field(default_factory=dict)
    label: dict = field(default_factory=dict)
    _compact: dict = field(default_factory=dict, repr=False, compare=False)  # (list id, n, device) -> CompactCut

    @classmethod
    def from_flows(cls, layout: TokenLayout, flows, layers, **label) -> "KnockoutPlan":
        """Cut every flow of ``flows`` in every layer of ``layers``."""
        blocks = [b for f in flows for b in flow_blocks(f, layout)]
        return cls({int(l): blocks for l in layers}, dict(label))  # one shared list: masks are cached per list

    @classmethod
    def union(cls, plans, **label) -> "KnockoutPlan":
        out: dict[int, list[Block]] = {}
        for p in plans:
            for l, bl in p.blocks.items():
                out.setdefault(l, []).extend(bl)
        return cls(out, dict(label))

    def problems(self, n_layers: int, n: int | None = None) -> list[str]:
        """What makes this plan invalid for a model of ``n_layers`` decoder layers and an ``n``-token
        input: layers that are not integers in ``0..n_layers-1`` (a negative layer would silently
        index from the end), positions outside ``0..n-1``. Empty: valid."""
        out = []
        bad = [l for l in self.blocks if not (isinstance(l, int) and not isinstance(l, bool) and 0 <= l < n_layers)]
        if bad:
            out.append(f"plan {self.label or ''}: layers {sorted(bad, key=str)} outside 0..{n_layers - 1} "
                       f"(the model has {n_layers} decoder layers; layers are 0-based)")
        if n is not None:
            checked = set()  # windows share one block list: check each list once
            for l, bl in self.blocks.items():
                if id(bl) in checked:
                    continue
                checked.add(id(bl))
                for t, s in bl:
                    pos = torch.cat([t.reshape(-1), s.reshape(-1)])
                    if len(pos) and (int(pos.min()) < 0 or int(pos.max()) >= n):
                        out.append(f"plan {self.label or ''}: layer {l} cuts positions outside 0..{n - 1} "
                                   f"(min {int(pos.min())}, max {int(pos.max())}) of the {n}-token input")
                        break
        return out

    def validate(self, n_layers: int, n: int | None = None) -> None:
        """Raise ``ValueError`` listing :meth:`problems` if there are any."""
        found = self.problems(n_layers, n)
        if found:
            raise ValueError("; ".join(found))

    # A plan is not changed after it is built: these are computed once.
    @cached_property
    def _live(self):
        return {l: bl for l, bl in self.blocks.items() if any(len(t) and len(s) for t, s in bl)}

    @cached_property
    def cut_layers(self) -> frozenset:
        """The layers where this plan cuts at least one edge."""
        return frozenset(self._live)

    @cached_property
    def is_empty(self) -> bool:
        return not self._live

    @cached_property
    def first_layer(self) -> int | None:
        return min(self._live) if self._live else None

    @cached_property
    def last_layer(self) -> int | None:
        return max(self._live) if self._live else None

    @cached_property
    def first_target(self) -> int | None:
        """The earliest target position of any cut edge: earlier positions never change."""
        ts = [int(t.min()) for bl in self._live.values() for t, s in bl if len(t) and len(s)]
        return min(ts) if ts else None

    def cut(self, layer: int, q_start: int, q_len: int, k_len: int, n_prompt: int, device=None) -> torch.Tensor | None:
        """Boolean ``[q_len, k_len]`` of cut edges for queries ``q_start..q_start+q_len-1`` (None: nothing cut).

        Built from the blocks on every call (the reference backend's mask): the obviously correct
        twin of :meth:`CompactCut.mask`.
        """
        if not self.blocks.get(layer):
            return None
        rows = self.dense(layer, n_prompt, device)
        idx = torch.clamp(torch.arange(q_start, q_start + q_len, device=rows.device), max=n_prompt - 1)
        out = torch.zeros(q_len, k_len, dtype=torch.bool, device=rows.device)
        width = min(k_len, n_prompt)
        out[:, :width] = rows[idx][:, :width]
        return out

    def dense(self, layer: int, n: int, device=None) -> torch.Tensor:
        """Boolean ``[n, n]`` matrix of the edges cut in ``layer`` (True = cut), straight from the blocks."""
        m = torch.zeros(n, n, dtype=torch.bool, device=device)
        for t, s in self.blocks.get(layer, []):
            if len(t) and len(s):
                m[t.to(m.device).reshape(-1, 1), s.to(m.device).reshape(1, -1)] = True
        return m

    def compact(self, layer: int, n: int, device=None, shared: dict | None = None) -> "CompactCut | None":
        """The edges cut in ``layer`` of an ``n``-token prompt as a :class:`CompactCut` (None: nothing cut),
        built once per block list and device (windows share one list). ``shared``: a dict that plans
        with equal blocks (one flow in several windows) share their cuts through."""
        blocks = self.blocks.get(layer)
        if layer not in self._live:
            return None
        key = (id(blocks), n, str(device))
        if key not in self._compact:
            content = (n, str(device), tuple((t.cpu().numpy().tobytes(), s.cpu().numpy().tobytes()) for t, s in blocks))
            shared = {} if shared is None else shared
            if content not in shared:
                shared[content] = CompactCut.from_blocks(blocks, n, device)
            self._compact[key] = shared[content]
        return self._compact[key]

    def prepare(self, n: int, device=None, shared: dict | None = None) -> None:
        """Build every layer's compact cut on ``device`` now, not lazily in the middle of a forward (the
        host would build them between the layers' launches)."""
        for layer in self._live:
            self.compact(layer, n, device, shared)

    def attention_edges(self, n: int, n_layers: int) -> int:
        """Valid causal (query, key) pairs left over all ``n_layers`` layers of an ``n``-token input."""
        full = n * (n + 1) // 2
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        cut = sum(int((self.dense(l, n) & causal).sum()) for l in self.blocks if 0 <= l < n_layers)
        return n_layers * full - cut
