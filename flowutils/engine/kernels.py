"""The attention kernels of the fast engine, each with its obviously correct CPU twin.

:func:`flow_attention <flowutils.engine.attention.flow_attention>` chooses among them per batch and
layer: SDPA under an additive mask (:func:`_sdpa`), the same with the shared prefix packed once
(:func:`_packed_attention`, merged by log-sum-exp), rows that cut nothing on flash and cutting rows
run by run of their queries (:func:`_by_rows`, :func:`_run_by_run`). On CUDA in half precision the
fused kernels run; elsewhere explicit fp32 softmaxes, their twins, which the tests compare.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.attention
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from .settings import SETTINGS

_SDPA_BACKENDS = [torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION, torch.nn.attention.SDPBackend.FLASH_ATTENTION,
                  torch.nn.attention.SDPBackend.MATH]


class Runs(NamedTuple):
    """Batch rows' queries as runs, each a sequence of its own (:meth:`KnockoutState.runs`): the keys of
    run ``i`` are the flat keys ``[rows * k_len, kv_heads, d]`` at ``index[cu_k[i]:cu_k[i + 1]]``, its queries the flat queries
    ``cu_q[i]:cu_q[i + 1]``; ``bounds``: the same offsets on the host, ``(q_a, q_b, k_a, k_b)`` per run."""

    index: torch.Tensor  # [gathered keys] row * k_len + position (rows counted from the first of the rows)
    cu_q: torch.Tensor  # [runs + 1] int32
    cu_k: torch.Tensor  # [runs + 1] int32
    max_q: int
    max_k: int
    bounds: list


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``[b, kv_heads, n, d]`` -> ``[b, kv_heads * n_rep, n, d]`` (grouped-query attention)."""
    if n_rep == 1:
        return x
    b, h, n, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, n, d).reshape(b, h * n_rep, n, d)


def _allowed(attention_mask, q_start: int, q_len: int, k_len: int, device) -> torch.Tensor:
    """Causal AND the model's own mask (padding), as booleans ``[b or 1, 1, q_len, k_len]``."""
    q_pos = torch.arange(q_start, q_start + q_len, device=device)[:, None]
    allowed = (torch.arange(k_len, device=device)[None, :] <= q_pos)[None, None]
    if attention_mask is not None:
        m = attention_mask[..., -q_len:, :k_len]
        allowed = allowed & (m if m.dtype == torch.bool else m == 0)
    return allowed


def _sdpa(query, key, value, bias, scaling, whole_rows: bool):
    """SDPA with an additive mask; with ``whole_rows``, rows with no allowed key output zeros
    (SDPA alone would give NaN)."""
    if whole_rows:
        any_key = (bias == 0).any(-1, keepdim=True)
        bias = bias.masked_fill(~any_key & (torch.arange(key.shape[2], device=query.device) == 0), 0.0)
    # not cuDNN: it builds a new execution plan for every new shape, and the fast engine's
    # batches change shape from layer to layer and from question to question
    with torch.nn.attention.sdpa_kernel(_SDPA_BACKENDS):
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scaling)
    return torch.where(any_key, out, 0.0) if whole_rows else out


def _flash(query) -> bool:
    """Whether rows that cut nothing get unmasked kernels on ``query``'s device (``SETTINGS.flash_devices``)."""
    return query.device.type in SETTINGS.flash_devices


def _row_groups(flags: list[bool]) -> list[tuple[int, int, bool]]:
    """``[(start, end, flag)]``: the maximal runs of equal ``flags``."""
    out: list = []
    for i, f in enumerate(flags):
        if out and out[-1][2] == f:
            out[-1] = (out[-1][0], i + 1, f)
        else:
            out.append((i, i + 1, f))
    return out


def _with_prefix(prefix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[batch, kv_heads, t0 + len, d]``: the shared prefix ``[1, kv_heads, t0, d]`` before each row's own
    ``x``. Two copies into one buffer: ``torch.cat`` of the expanded prefix and the strided keys is slower.
    The buffer is position-major (``[batch, t0 + len, kv_heads, d]`` in memory, the layout of the model's own
    projections): :func:`_run_by_run` gathers whole positions from it."""
    batch, heads, n, d = x.shape
    out = x.new_empty(batch, prefix.shape[2] + n, heads, d)
    out[:, :prefix.shape[2]] = prefix.transpose(1, 2)
    out[:, prefix.shape[2]:] = x.transpose(1, 2)
    return out.transpose(1, 2)


def _causal_bias(q_len: int, k_len: int, dtype, device) -> torch.Tensor:
    """``[1, 1, q_len, k_len]`` additive causal mask aligned lower right (the queries are the last ``q_len``
    positions of the keys): the unmasked kernels' causal attention as a bias, for their twins."""
    future = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(k_len - q_len + 1)
    return torch.zeros(1, 1, q_len, k_len, dtype=dtype, device=device).masked_fill_(future, float("-inf"))


def _attend(query, key, value, bias, scaling, causal: bool = False):
    """Attention and its log-sum-exp: ``(out [b, h, q, d], lse [b, h, q] float32)``; ``bias``: additive,
    broadcast to ``[b, h, q, k]``, or None: every key (``causal``: key ``j`` for queries ``i >= j``, ``q == k``).
    A row with every key masked has ``lse = -inf`` and zero output.

    On CUDA the memory-efficient kernel returns both (the flash kernel where there is no bias, in half
    precision); elsewhere an explicit fp32 softmax, its twin."""
    b, h, q, _ = query.shape
    k = key.shape[2]
    if bias is None and query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, 0.0, causal,
                                                                      scale=scaling)[:2]
        return out, lse[..., :q]
    if bias is None:
        bias = (_causal_bias(q, k, query.dtype, query.device) if causal
                else torch.zeros(1, 1, q, k, dtype=query.dtype, device=query.device))
    if query.is_cuda:
        # the kernel reads the bias with a last-dim stride that is a multiple of 16 elements
        aligned = torch.empty(*bias.shape[:-1], -(-k // 16) * 16, dtype=query.dtype, device=query.device)
        aligned[..., :k] = bias
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, aligned[..., :k].expand(b, h, q, k), True, scale=scaling)[:2]
        # the kernel gives a row with no key lse 0; it has none (-inf)
        lse = torch.where((bias > float("-inf")).any(-1).expand(b, h, q), lse[..., :q], float("-inf"))
    else:
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scaling + bias.float()
        lse = torch.logsumexp(scores, -1)
        out = torch.matmul(torch.softmax(scores, -1), value.float()).to(query.dtype)
    return torch.where(torch.isfinite(lse)[..., None], out, 0.0), lse


def _packed_attention(query, key, value, pk, pv, bias, scaling, cutting):
    """Fast attention of a batch of plans that share the baseline prefix keys, without copying the prefix:
    ``[batch, q, heads, d]``.

    ``query``/``key``/``value``: the plans' recomputed positions ``[batch, heads, q, d]``;
    ``pk``/``pv``: the prefix ``[1, kv_heads, t0, d]``; ``bias``: ``[batch or 1, 1, q, t0 + q]``;
    ``cutting``: per row, whether its plan cuts anything here (the other rows attend to every prefix key
    and causally to their own keys: no mask). Attention over the keys ``[prefix, own]`` is split in two
    and merged exactly by the log-sum-exp of each part: the queries of a run of rows, as one sequence,
    against the shared prefix, and each plan's queries against its own keys. Each query is scored
    against its own plan's keys only.
    """
    batch, heads, q_len, d = query.shape
    t0, rep = pk.shape[2], heads // key.shape[1]
    pk, pv = _repeat_kv(pk, rep), _repeat_kv(pv, rep)
    key, value = _repeat_kv(key, rep), _repeat_kv(value, rep)
    out = query.new_empty(batch, q_len, heads, d)
    for a, b, cut in _row_groups(cutting):
        rows = b - a
        q = query[a:b]
        part = bias[a:b] if len(bias) > 1 else bias
        part = part.expand(rows, 1, q_len, t0 + q_len) if cut else None
        flat_q = q.transpose(0, 1).reshape(1, heads, rows * q_len, d)
        out_p, lse_p = _attend(flat_q, pk, pv, None if part is None else
                               part[..., :t0].reshape(1, 1, rows * q_len, t0), scaling)
        out_p = out_p.reshape(heads, rows, q_len, d).transpose(0, 1)
        lse_p = lse_p.reshape(heads, rows, q_len).transpose(0, 1)
        out_o, lse_o = _attend(q, key[a:b], value[a:b], None if part is None else part[..., t0:], scaling,
                               causal=part is None)
        lse = torch.logaddexp(lse_p, lse_o)
        some = torch.isfinite(lse)  # a row with no key in either part outputs zeros
        w_p = torch.where(some, torch.exp(lse_p - lse), 0.0)[..., None]
        w_o = torch.where(some, torch.exp(lse_o - lse), 0.0)[..., None]
        out[a:b] = (out_p.float() * w_p + out_o.float() * w_o).to(query.dtype).transpose(1, 2)
    return out


def _by_rows(query, key, value, cutting, scaling, state, layer: int):
    """``[batch, q, heads, d]``: attention of a batch whose rows (plans) that cut nothing in this layer
    (``cutting``) get ``causal_lower_right``, which the flash kernel applies without reading a mask; the
    others run by run of their queries (:func:`_run_by_run`) where their cut allows, else under the
    additive mask (:meth:`KnockoutState.bias <flowutils.engine.attention.KnockoutState.bias>`). ``key``/``value``: ``[batch, kv_heads, k, d]``."""
    batch, heads, q_len, d = query.shape
    k_len, rep = key.shape[2], heads // key.shape[1]
    out = query.new_empty(batch, q_len, heads, d)
    for a, b, cut in _row_groups(cutting):
        seg = state.runs(layer, k_len - q_len, q_len, k_len, batch, (a, b), query.device) if cut else None
        if seg is not None:
            out[a:b] = _run_by_run(query[a:b], key[a:b], value[a:b], seg, scaling)
            continue
        if cut:
            bias, whole_rows = state.bias(layer, k_len - q_len, q_len, k_len, batch, query.dtype, query.device)
            mask = bias[a:b] if len(bias) > 1 else bias
        else:
            mask, whole_rows = causal_lower_right(q_len, k_len), False
        out[a:b] = _sdpa(query[a:b], _repeat_kv(key[a:b], rep), _repeat_kv(value[a:b], rep), mask, scaling,
                         whole_rows).transpose(1, 2)
    return out


def _run_by_run(query, key, value, seg: Runs, scaling):
    """``[rows, q, heads, d]``: the rows' attention run by run (:meth:`KnockoutState.runs`): the queries
    of a run attend to their gathered keys, the run's own causally (the last keys, aligned lower right).
    ``query``: ``[rows, heads, q, d]``; ``key``/``value``: ``[rows, kv_heads, k, d]``.

    On CUDA in half precision one variable-length flash call; elsewhere its twin, run by run, an explicit
    lower-right causal mask."""
    rows, heads, q_len, d = query.shape
    flat_q = query.transpose(1, 2).reshape(rows * q_len, heads, d)
    # whole positions of position-major keys (:func:`_with_prefix`): a view, and a gather of contiguous rows
    k, v = (x.transpose(1, 2).reshape(-1, x.shape[1], d).index_select(0, seg.index) for x in (key, value))
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        out = torch.ops.aten._flash_attention_forward(flat_q, k, v, seg.cu_q, seg.cu_k, seg.max_q, seg.max_k, 0.0,
                                                      True, False, scale=scaling)[0]
    else:
        out = torch.empty_like(flat_q)
        rep = heads // k.shape[1]
        for qa, qb, ka, kb in seg.bounds:
            bias = _causal_bias(qb - qa, kb - ka, query.dtype, query.device)
            q_, k_, v_ = (x[None].transpose(1, 2) for x in (flat_q[qa:qb], k[ka:kb], v[ka:kb]))
            out[qa:qb] = _attend(q_, _repeat_kv(k_, rep), _repeat_kv(v_, rep), bias, scaling)[0][0].transpose(0, 1)
    return out.view(rows, q_len, heads, d)


