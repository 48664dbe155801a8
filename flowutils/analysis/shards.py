"""Sharding a sweep's questions over GPUs and nodes, on existing launchers (no scheduler of our own).

Question ``i`` of the sample list belongs to shard ``i % num_shards`` (round robin: every shard
gets every task). Each shard writes its own file of the result store (:mod:`.store`), and the
loader merges them, so the shards never coordinate.

* GPUs of one host: ``torchrun --nproc-per-node 2 -m flowutils sweep ...`` or
  ``accelerate launch``; each rank reads ``RANK``/``WORLD_SIZE`` (:func:`resolve_shard`),
  ``LOCAL_RANK`` picks its GPU (:func:`local_device`) and the ranks do not oversubscribe the
  host's CPUs (:func:`rank_threads`).
* One device, several processes: ``python -m flowutils sweep --processes 2 ...`` runs the same command as two
  torchrun ranks on that one device (:func:`launch_on_one_device`). Where one process's host launches the GPU's
  work slower than a fast GPU runs it (the 7B sweep on an H200: the GPU idle 43% of the time), the second rank's
  work fills the gaps; each rank holds its own copy of the weights.
* Nodes: :func:`submit_shards` submits one SLURM array task per shard with ``submitit``
  (its ``LocalExecutor`` runs the same tasks as local processes, which is how it is tested).
"""

from __future__ import annotations

import os


def resolve_shard(shard: int | None = None, num_shards: int | None = None) -> tuple[int, int]:
    """``(shard, num_shards)``: the arguments if given, else ``RANK``/``WORLD_SIZE`` of torchrun or
    accelerate, else ``(0, 1)``."""
    if (shard is None) != (num_shards is None):
        raise ValueError(f"give both shard and num_shards or neither (got shard={shard!r}, num_shards={num_shards!r})")
    launched = int(os.environ.get("WORLD_SIZE", 1)) if "LOCAL_RANK" in os.environ else 1
    if shard is not None and launched > 1:
        raise ValueError(f"shard={shard}, num_shards={num_shards} given to every one of the {launched} ranks of this "
                         "launch (WORLD_SIZE): each would run, and store, the same questions. Leave shard and "
                         "num_shards (--shard/--num-shards) out under torchrun: each rank takes its own")
    if shard is None:
        stray = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE") if k in os.environ}
        if stray and "LOCAL_RANK" not in os.environ:  # every launcher (torchrun, accelerate) sets LOCAL_RANK too
            raise ValueError(f"{' and '.join(f'{k}={v}' for k, v in stray.items())} set in the environment, but this "
                             "process was not started by torchrun or accelerate (no LOCAL_RANK): it would run only "
                             "that share of the questions. Unset them, or pass shard and num_shards "
                             "(--shard/--num-shards) to run one shard on purpose")
        shard, num_shards = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    for name, value in (("shard", shard), ("num_shards", num_shards)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in 0..num_shards-1 with num_shards >= 1, got shard={shard}, "
                         f"num_shards={num_shards}")
    return shard, num_shards


def shard_indices(n: int, shard: int, num_shards: int) -> list[int]:
    """Indices of the ``n`` questions that shard ``shard`` of ``num_shards`` runs."""
    return list(range(shard, n, num_shards))


# set by launch_on_one_device to its number of processes: its ranks stay on the device the command names
ONE_DEVICE = "FLOWUTILS_ONE_DEVICE"


def local_device(device: str = "cuda") -> str:
    """The device a sweep process runs on, with its index: where ``device`` is plain ``cuda``, ``cuda:<LOCAL_RANK>``
    under a launcher that sets ``LOCAL_RANK`` (one GPU a rank), else the current GPU (also for the ranks of
    :func:`launch_on_one_device`, which share it); any other ``device`` unchanged."""
    if device != "cuda":
        return device
    if "LOCAL_RANK" in os.environ and ONE_DEVICE not in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    import torch

    return f"cuda:{torch.cuda.current_device()}"


def rank_threads() -> int | None:
    """CPU threads for this rank when a launcher starts several ranks on the host (``LOCAL_WORLD_SIZE`` > 1)
    and left ``OMP_NUM_THREADS`` unset: an even share of the CPUs this process may use; else None (keep
    ``OMP_NUM_THREADS`` or torch's default, every CPU).

    N ranks of torch's default thread count each would oversubscribe the host (two ranks of a sweep
    ran 4x slower so). torchrun sets ``OMP_NUM_THREADS=1``, which is kept: a rank's CPU side
    (decoding, the processor, the result rows) is small next to its GPU work, and small CPU ops run
    fastest on one thread."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if ranks <= 1 or "OMP_NUM_THREADS" in os.environ:
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # not on macOS
    return max(1, cpus // ranks)


def one_device_rank(processes: int) -> bool:
    """Whether this process is a rank of :func:`launch_on_one_device` with ``processes`` ranks (its marker, and
    torchrun's ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE`` all say so)."""
    return all(os.environ.get(k) == str(processes) for k in (ONE_DEVICE, "WORLD_SIZE", "LOCAL_WORLD_SIZE"))


def launch_on_one_device(argv: list[str], processes: int) -> int:
    """Run ``python -m flowutils <argv>`` as ``processes`` torchrun ranks on this host (``--standalone``), all on
    the device ``argv`` names (:data:`ONE_DEVICE`), each on its round-robin shard (:func:`resolve_shard`), writing
    one result store; returns torchrun's exit status (128 + the signal where a signal ended it).

    torchrun runs in a session of its own, and an interrupt or termination of this process is passed on to it
    once, which passes it to the ranks (each stores the question it has measured and closes its store); a
    terminal's Ctrl-C would otherwise reach the ranks twice, and a signal to this process alone would leave them
    running. torchrun stops the other ranks if one fails."""
    import signal
    import subprocess
    import sys
    import threading

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
           "-m", "flowutils", *argv]
    proc = subprocess.Popen(cmd, env={**os.environ, ONE_DEVICE: str(processes)}, start_new_session=True)
    passed_on = (signal.SIGINT, signal.SIGTERM)
    main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    before = {sig: signal.signal(sig, lambda sig, _frame: proc.send_signal(sig)) for sig in passed_on} if main else {}
    try:
        code = proc.wait()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def submit_shards(function, num_shards: int, folder, executor=None, **parameters) -> list:
    """Submit ``function(shard, num_shards)`` as ``num_shards`` array tasks; returns submitit jobs
    (``job.result()`` waits for one). ``executor``: a submitit executor (default
    ``submitit.AutoExecutor(folder)``, i.e. SLURM where there is one); ``parameters`` go to its
    ``update_parameters`` (e.g. ``slurm_partition``, ``gpus_per_node``, ``timeout_min``)."""
    import submitit  # lazy: only the nodes that submit need it

    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    executor = executor or submitit.AutoExecutor(folder=folder)
    if parameters:
        executor.update_parameters(**parameters)
    return executor.map_array(function, list(range(num_shards)), [num_shards] * num_shards)
