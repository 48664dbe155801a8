"""Knockout plans: for each decoder layer, the blocks of (target, source) edges to cut.

A plan is pure data. The attention function (:mod:`flowutils.knockout.attention`) asks it, layer
by layer, for a boolean ``[q_len, k_len]`` matrix of cut edges (True = cut) on top of the
causal mask. Query rows past the prompt (decode steps of open-ended generation) follow
the last prompt position's rule; keys past the prompt (generated tokens) are never cut.

``attention_edges`` counts the valid causal (query, key) pairs left over all layers, as
Table 3 of the paper does (full causal attention = ``L * N (N + 1) / 2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from .flows import Block, flow_blocks
from .spans import TokenLayout


@dataclass
class KnockoutPlan:
    """``blocks[layer]``: the blocks cut in that layer (0-based). ``label``: what the plan is."""

    blocks: dict[int, list[Block]] = field(default_factory=dict)
    label: dict = field(default_factory=dict)
    _dense: dict = field(default_factory=dict, repr=False, compare=False)  # (list id, n, device) -> rows

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
    def is_empty(self) -> bool:
        return not self._live

    @cached_property
    def first_layer(self) -> int | None:
        return min(self._live) if self._live else None

    @cached_property
    def first_target(self) -> int | None:
        """The earliest target position of any cut edge: earlier positions never change."""
        ts = [int(t.min()) for bl in self._live.values() for t, s in bl if len(t) and len(s)]
        return min(ts) if ts else None

    def cut(self, layer: int, q_start: int, q_len: int, k_len: int, n_prompt: int, device=None) -> torch.Tensor | None:
        """Boolean ``[q_len, k_len]`` of cut edges for queries ``q_start..q_start+q_len-1`` (None: nothing cut)."""
        if not self.blocks.get(layer):
            return None
        offset, rows = self._rows(layer, n_prompt, device)
        if offset <= q_start and q_start + q_len <= n_prompt and k_len == n_prompt:
            return rows[q_start - offset:q_start - offset + q_len]  # the prompt itself: a view
        idx = torch.clamp(torch.arange(q_start, q_start + q_len, device=rows.device), max=n_prompt - 1) - offset
        out = torch.zeros(q_len, k_len, dtype=torch.bool, device=rows.device)
        width = min(k_len, n_prompt)
        out[idx >= 0, :width] = rows[idx[idx >= 0]][:, :width]
        return out

    def _rows(self, layer: int, n: int, device=None) -> tuple[int, torch.Tensor]:
        """``(offset, [n - offset, n])``: cut edges of query rows ``offset..n-1``, built once per device.

        Rows before the plan's first target are never cut, so they are not stored: a plan
        that cuts edges into the last position holds one row, not ``n``.
        """
        blocks = self.blocks.get(layer, [])
        key = (id(blocks), n, str(device))
        if key not in self._dense:
            offset = min(self.first_target or 0, n)
            m = torch.zeros(n - offset, n, dtype=torch.bool)
            for t, s in blocks:
                if len(t) and len(s):
                    m[(t.cpu() - offset).reshape(-1, 1), s.cpu().reshape(1, -1)] = True
            self._dense[key] = (offset, m.to(device))
        return self._dense[key]

    def prepare(self, n: int, device=None) -> None:
        """Build every layer's cut rows on ``device`` now: built lazily in the middle of a
        forward, each host-to-device copy would wait for the queued GPU work to finish."""
        for layer in self._live:
            self._rows(layer, n, device)

    def dense(self, layer: int, n: int, device=None) -> torch.Tensor:
        """Boolean ``[n, n]`` matrix of the edges cut in ``layer`` (True = cut)."""
        offset, rows = self._rows(layer, n, device)
        return torch.cat([torch.zeros(offset, n, dtype=torch.bool, device=rows.device), rows])

    def attention_edges(self, n: int, n_layers: int) -> int:
        """Valid causal (query, key) pairs left over all ``n_layers`` layers of an ``n``-token input."""
        full = n * (n + 1) // 2
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        cut = sum(int((self.dense(l, n) & causal).sum()) for l in self.blocks if 0 <= l < n_layers)
        return n_layers * full - cut
