"""Knockout plans: for each decoder layer, the blocks of (target, source) edges to cut.

A plan is pure data: what is cut, and where. The engine (:mod:`flowutils.engine`) turns it into
the device form its attention function reads layer by layer (:mod:`flowutils.engine.cuts`), on top
of the causal mask. :meth:`KnockoutPlan.dense` spells a layer's cut edges out as a boolean matrix.

``attention_edges`` counts the valid causal (query, key) pairs left over all layers, as
Table 3 of the paper does (full causal attention = ``L * N (N + 1) / 2``).
"""
from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..inputs.layout import TokenLayout
from .flows import Block, flow_blocks


@dataclass(frozen=True)
class FlatBlocks:
    """A block list as four arrays: each block's number of targets and of sources, then every block's targets and
    every block's sources, in block order. What the engine reads a list through: one pass over arrays instead of one
    Python step a block (a random-blocking layer has a block per query row, ~1,200 at 8 frames of a 7B model)."""

    target_counts: np.ndarray  # [blocks] int64
    source_counts: np.ndarray  # [blocks] int64
    targets: np.ndarray  # [target_counts.sum()] int64
    sources: np.ndarray  # [source_counts.sum()] int64

    @classmethod
    def read(cls, blocks) -> "FlatBlocks":
        """Block by block: any list of blocks (the obvious twin of the arrays a :class:`RowBlocks` carries)."""
        parts = [(t.cpu().numpy().reshape(-1), s.cpu().numpy().reshape(-1)) for t, s in blocks]
        cat = lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64)  # noqa: E731
        return cls(np.array([len(t) for t, _ in parts], np.int64), np.array([len(s) for _, s in parts], np.int64),
                   cat([t for t, _ in parts]), cat([s for _, s in parts]))

    @property
    def live(self) -> np.ndarray:
        """``[blocks]`` bool: the block cuts at least one edge (it has targets and sources)."""
        return (self.target_counts > 0) & (self.source_counts > 0)

    def key(self) -> bytes:
        """The content as bytes: equal for equal block lists, and only for them."""
        counts = np.stack([self.target_counts, self.source_counts]).tobytes()
        return b"|".join([str(len(self.target_counts)).encode(), counts, self.targets.tobytes(), self.sources.tobytes()])


class RowBlocks(Sequence):
    """Blocks of one target each, from (query, key) pairs: a sequence of blocks that keeps only its
    :class:`FlatBlocks` (``flat``) and makes a block's tensors when it is read (the engine reads the arrays)."""

    def __init__(self, queries: np.ndarray, keys: np.ndarray):
        """``queries``/``keys``: ``[pairs]`` positions of the cut edges, sorted by query (row-major order)."""
        queries, keys = np.array(queries, np.int64), np.array(keys, np.int64)  # copies: the blocks are views of them
        if queries.ndim != 1 or queries.shape != keys.shape:
            raise ValueError(f"RowBlocks: queries and keys must be 1-D and as long as each other, not of shapes "
                             f"{queries.shape} and {keys.shape}")
        step = np.diff(queries)
        if (step < 0).any():
            raise ValueError("RowBlocks: the pairs must be sorted by query")
        starts = np.flatnonzero(np.r_[True, step > 0]) if len(queries) else np.zeros(0, np.int64)  # sorted: no unique
        counts = np.diff(np.append(starts, len(queries)))
        self.flat = FlatBlocks(np.ones(len(starts), np.int64), counts, queries[starts], keys)
        self._ends = np.cumsum(counts)  # where each block's keys end: a block read by index

    def __len__(self) -> int:
        return len(self.flat.targets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        end = int(self._ends[i])
        return (torch.from_numpy(self.flat.targets[i:i + 1]),
                torch.from_numpy(self.flat.sources[end - int(self.flat.source_counts[i]):end]))


def flat_blocks(blocks) -> FlatBlocks:
    """``blocks`` as a :class:`FlatBlocks`: the arrays a :class:`RowBlocks` carries, else read block by block."""
    if isinstance(blocks, FlatBlocks):
        return blocks
    carried = getattr(blocks, "flat", None)
    return carried if carried is not None else FlatBlocks.read(blocks)


def _distinct(blocks: dict) -> list:
    """``[(layer, block list)]``: each distinct list of ``blocks`` (``{layer: list}``) once, with the first layer that
    holds it (the layers of a window share one list)."""
    first = {}
    for layer, bl in blocks.items():
        first.setdefault(id(bl), (layer, bl))
    return list(first.values())


@dataclass
class KnockoutPlan:
    """``blocks[layer]``: the blocks cut in that layer (0-based). ``label``: what the plan is."""

    blocks: dict[int, list[Block]] = field(default_factory=dict)
    label: dict = field(default_factory=dict)
    # the layout its blocks were found in (TokenLayout.fingerprint; None: blocks given by position)
    layout: tuple | None = field(default=None, repr=False)
    # the engine's memo of this plan's device form (flowutils.engine.cuts.compact_cut), not part of the plan
    device_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        # a NumPy integer is a layer too (not a bool, which is an int to Python)
        self.blocks = {int(l) if isinstance(l, numbers.Integral) and not isinstance(l, bool) else l: bl
                       for l, bl in self.blocks.items()}

    @classmethod
    def from_flows(cls, layout: TokenLayout, flows, layers, **label) -> "KnockoutPlan":
        """Cut every flow of ``flows`` in every layer of ``layers``; the plan runs on ``layout`` only."""
        return cls.from_blocks(layout, [b for f in flows for b in flow_blocks(f, layout)], layers, **label)

    @classmethod
    def from_blocks(cls, layout: TokenLayout, blocks: list[Block], layers, **label) -> "KnockoutPlan":
        """Cut ``blocks`` (of :func:`flowutils.knockout.flows.flow_blocks` in ``layout``) in every layer of ``layers``.
        The layers share the one list (masks are cached per list), and so may plans of one flow in several windows
        (a sweep finds a flow's blocks once, not once a window)."""
        return cls({l: blocks for l in layers}, dict(label), layout.fingerprint)

    @classmethod
    def union(cls, plans, **label) -> "KnockoutPlan":
        plans = list(plans)
        layouts = {p.layout for p in plans} - {None}
        if len(layouts) > 1:
            raise ValueError("union of plans built for different inputs (token layouts)")
        out: dict[int, list[Block]] = {}
        for p in plans:
            for l, bl in p.blocks.items():
                out.setdefault(l, []).extend(bl)
        return cls(out, dict(label), layouts.pop() if layouts else None)

    def problems(self, n_layers: int, n: int | None = None, layout: TokenLayout | None = None) -> list[str]:
        """What makes this plan invalid for a model of ``n_layers`` decoder layers and an ``n``-token
        input of ``layout``: layers that are not integers in ``0..n_layers-1`` (a negative layer would silently
        index from the end), positions outside ``0..n-1``, a plan built for another layout (another question,
        frame count or model: its blocks would cut the wrong tokens). Empty: valid."""
        out = []
        if layout is not None and self.layout is not None and self.layout is not layout.fingerprint \
                and self.layout != layout.fingerprint:
            built = f"{len(self.layout[1])} frames, {self.layout[0]} tokens"
            out.append(f"plan {self.label or ''}: built for another input ({built}) than this one "
                       f"({layout.describe()}); build plans from this input's layout")
        bad = [l for l in self.blocks if not (isinstance(l, int) and not isinstance(l, bool) and 0 <= l < n_layers)]
        if bad:
            out.append(f"plan {self.label or ''}: layers {sorted(bad, key=str)} outside 0..{n_layers - 1} "
                       f"(the model has {n_layers} decoder layers; layers are 0-based)")
        if n is not None:
            for l, bl in _distinct(self.blocks):
                flat = self.flat_lists[id(bl)]  # one check a list: a random plan has n blocks
                pos = np.concatenate([flat.targets, flat.sources])
                if len(pos) and (int(pos.min()) < 0 or int(pos.max()) >= n):
                    out.append(f"plan {self.label or ''}: layer {l} cuts positions outside 0..{n - 1} "
                               f"(min {int(pos.min())}, max {int(pos.max())}) of the {n}-token input")
        return out

    def validate(self, n_layers: int, n: int | None = None, layout: TokenLayout | None = None) -> None:
        """Raise ``ValueError`` listing :meth:`problems` if there are any."""
        found = self.problems(n_layers, n, layout)
        if found:
            raise ValueError("; ".join(found))

    # A plan is not changed after it is built: these are computed once.
    @cached_property
    def flat_lists(self) -> dict:
        """``id(block list) -> FlatBlocks`` of each distinct block list of this plan: each list read once."""
        return {id(bl): flat_blocks(bl) for _, bl in _distinct(self.blocks)}

    @cached_property
    def live_layers(self) -> dict:
        """``layer -> blocks`` of the layers where this plan cuts at least one edge."""
        return {l: bl for l, bl in self.blocks.items() if self.flat_lists[id(bl)].live.any()}

    @cached_property
    def cut_layers(self) -> frozenset:
        """The layers where this plan cuts at least one edge."""
        return frozenset(self.live_layers)

    @cached_property
    def cut_digests(self) -> dict:
        """``layer -> digest`` (SHA-1) of the blocks cut there, for the layers of :attr:`live_layers`: plans whose
        digests agree in a layer cut the same blocks there, so the engine compares plans layer by layer without their
        tensors (:func:`flowutils.engine.logits.joins`)."""
        of_list = {id(bl): hashlib.sha1(self.flat_lists[id(bl)].key()).digest() for _, bl in _distinct(self.live_layers)}
        return {layer: of_list[id(bl)] for layer, bl in self.live_layers.items()}

    @cached_property
    def is_empty(self) -> bool:
        return not self.live_layers

    @cached_property
    def first_layer(self) -> int | None:
        return min(self.live_layers) if self.live_layers else None

    @cached_property
    def last_layer(self) -> int | None:
        return max(self.live_layers) if self.live_layers else None

    @cached_property
    def first_target(self) -> int | None:
        """The earliest target position of any cut edge: earlier positions never change."""
        ts = []
        for _, bl in _distinct(self.live_layers):
            flat = self.flat_lists[id(bl)]
            ts.append(flat.targets[np.repeat(flat.live, flat.target_counts)].min())
        return int(min(ts)) if ts else None

    def dense(self, layer: int, n: int, device=None) -> torch.Tensor:
        """Boolean ``[n, n]`` matrix of the edges cut in ``layer`` (True = cut), straight from the blocks."""
        m = torch.zeros(n, n, dtype=torch.bool, device=device)
        for t, s in self.blocks.get(layer, []):
            if len(t) and len(s):
                m[t.to(m.device).reshape(-1, 1), s.to(m.device).reshape(1, -1)] = True
        return m

    def attention_edges(self, n: int, n_layers: int) -> int:
        """Valid causal (query, key) pairs left over all ``n_layers`` layers of an ``n``-token input."""
        full = n * (n + 1) // 2
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        cut = sum(int((self.dense(l, n) & causal).sum()) for l in self.blocks if 0 <= l < n_layers)
        return n_layers * full - cut
