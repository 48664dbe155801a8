"""What a family's processing of one prompt and video hands to the model and to the token layout, and how tensors
go between the host and the model's device without waiting for the device's queue."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VideoEncoding:
    """One processed prompt + video: the model's keyword inputs and what the token layout needs."""

    inputs: dict  # keyword arguments of the model's forward
    input_ids: torch.Tensor  # [1, n], the video placeholder id once per video token
    num_frames: int  # frame spans (or temporal groups) in the video
    tokens_per_frame: int  # expected tokens of each span
    replaced: tuple[int, int] | None = None  # characters of the prompt the processor replaced (None: the placeholder)


def to_device(x: torch.Tensor, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Host tensor ``x`` on ``device`` (in ``dtype``); to a GPU through pinned memory, without waiting: a plain
    host-to-device copy waits for the work already queued on the GPU (the runner's reader thread would wait for the
    decoder's knockouts). The cast is made on the host: the same rounding as on the device."""
    if dtype is not None:
        x = x.to(dtype)
    if device is None or torch.device(device).type != "cuda" or x.device.type != "cpu":
        return x if device is None else x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def to_host_later(x: torch.Tensor):
    """Queue a copy of ``x`` to the host now and return a function that returns it once it has arrived: on a GPU
    a copy into pinned memory and an event on ``x``'s device (not the thread's current one), so that the function
    waits for the work queued there before this call and not for what is queued after it (a later ``.cpu()`` would
    wait for everything queued by then). Elsewhere the function returns ``x`` itself: read it, do not modify it."""
    if x.device.type != "cuda":
        return lambda: x
    host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    with torch.cuda.device(x.device):
        host.copy_(x, non_blocking=True)
        arrived = torch.cuda.Event()
        arrived.record()

    def get() -> torch.Tensor:
        arrived.synchronize()
        return host

    return get
