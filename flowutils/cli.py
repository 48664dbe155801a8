"""Command line: ``python -m flowutils {data,validate,sweep} ...`` (``--help`` lists the subcommands).

``sweep`` runs a knockout sweep with no notebook into the result store that the notebooks read
(:mod:`flowutils.analysis.store`); under ``torchrun`` each rank runs its shard on its own GPU
(``LOCAL_RANK``), without oversubscribing the host's CPUs (:func:`flowutils.analysis.shards.rank_threads`);
``--processes N`` runs N ranks on one device (:func:`flowutils.analysis.shards.launch_on_one_device`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .analysis.store import StoreError
from .data import manifests, synthetic, tvbench
from .data.video import BenchmarkError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowutils", description="Map the Flow: information-flow analysis of video LLMs.")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="render the synthetic TVBench-format benchmark")
    d.add_argument("--root", default="data", help="parent folder; the benchmark goes in a subfolder named by its arguments")
    d.add_argument("--n-per-task", type=_at_least(1), default=24)
    d.add_argument("--seed", type=_at_least(0), default=0)
    d.add_argument("--split", default="test", choices=list(synthetic.SPLIT_SEEDS))
    d.add_argument("--size", type=_frame_size, default=synthetic.RenderConfig.size,
                   help="frame size in pixels, even, 16 to 4096 (the toy's 64; 336 renders at the paper models' "
                        "input resolution)")
    v = sub.add_parser("validate", help="compare a local benchmark copy with its manifest")
    v.add_argument("--manifest", required=True, choices=manifests.benchmark_manifests())
    v.add_argument("--root", required=True)
    v.add_argument("--no-counts", action="store_true", help="do not compare question counts (a subset)")
    v.add_argument("--decode-videos", action="store_true", help="also open every video and report corrupt ones")
    v.add_argument("--min-frames", type=_at_least(1), help="with --decode-videos: report videos with fewer frames")
    _sweep_parser(sub)
    args = ap.parse_args(argv)
    try:
        return _run(ap, args, list(sys.argv[1:] if argv is None else argv))
    except USER_ERRORS as err:
        if isinstance(err, (BenchmarkError, StoreError)) or _raised_here(err):  # the message was written for the user
            raise SystemExit(f"error: {err}") from None
        raise  # a library's or the system's: its traceback says where


def _raised_here(err: BaseException) -> bool:
    """Whether ``err`` was raised by flowutils' own code, not by a library it called."""
    import traceback
    from pathlib import Path

    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(Path(__file__).resolve().parent)


def _run(ap, args, argv: list[str]) -> int:
    from pathlib import Path

    if args.command == "sweep":
        return _sweep(args, argv)
    if args.command == "data":
        if Path(args.root).exists() and not Path(args.root).is_dir():
            ap.error(f"--root {args.root} is a file; give the folder the benchmark's folder goes in")
        folder = synthetic.benchmark_dir(args.root, args.seed, args.split, args.n_per_task)
        if args.size != synthetic.RenderConfig.size:  # one folder per configuration
            folder = folder.with_name(f"{folder.name}-{args.size}px")
        root = synthetic.write_benchmark(folder, args.n_per_task, args.seed, args.split,
                                         cfg=synthetic.RenderConfig(size=args.size))
        print(root)
        return 0
    if args.min_frames is not None and not args.decode_videos:
        ap.error("--min-frames needs --decode-videos: frames are counted by decoding every video")
    problems = tvbench.validate_benchmark(args.root, args.manifest, check_counts=not args.no_counts,
                                            decode_videos=args.decode_videos, min_frames=args.min_frames)
    for p in problems:
        print(p)
    print(f"{args.root}: {'OK' if not problems else f'{len(problems)} problem(s)'} against manifest {args.manifest!r}")
    return 1 if problems else 0


DTYPES = ("float32", "bfloat16", "float16")
# the errors flowutils raises for what it was given (a file, a name, an argument), shown as one line where flowutils
# raised them
USER_ERRORS = (BenchmarkError, StoreError, FileNotFoundError, NotADirectoryError, FileExistsError)


def _at_least(least: int):
    """An argparse type: an integer >= ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text!r}")
        return value
    return parse


def _frame_size(text: str) -> int:
    """An argparse type: an even frame size in pixels, 16 to 4096 (H.264 needs even sides)."""
    value = _at_least(16)(text)
    if value % 2 or value > 4096:
        raise argparse.ArgumentTypeError(f"must be an even number of pixels from 16 to 4096, got {text!r}")
    return value


def _sweep_parser(sub) -> None:
    from .analysis.runner import SAMPLE_MODES
    from .analysis.sweep import Sweep
    from .engine import BACKENDS
    from .knockout.flows import FLOW_SETS
    from .knockout.windows import STYLES

    s = sub.add_parser("sweep", help="run an Attention Knockout sweep into a results directory (resumable)")
    s.add_argument("--model", required=True, help="a model name of the model manifest (e.g. toy-videollm) or a checkpoint directory")
    s.add_argument("--benchmark", required=True, help="root of the local benchmark copy")
    s.add_argument("--manifest", default="synthetic", choices=manifests.benchmark_manifests(),
                   help="the benchmark's manifest (default: synthetic, the benchmark rendered by the data command)")
    s.add_argument("--tasks", nargs="+", help="tasks to sweep (default: the manifest's analysed tasks)")
    s.add_argument("--n-per-task", type=_at_least(1), help="first N questions of each task (default: all)")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--flows", nargs="+", help="flows, e.g. 'video->last' cross-frame")
    which.add_argument("--flow-set", nargs="+", choices=list(FLOW_SETS), help="flow sets of the paper")
    s.add_argument("--k", type=_at_least(1), help="window size (default: the paper's 9 of 32 layers, scaled to the depth)")
    s.add_argument("--style", default=Sweep.style, choices=STYLES)
    s.add_argument("--layers", type=_at_least(0), nargs="+", help="sweep layers, 0-based (default: every layer)")
    s.add_argument("--frames", type=_at_least(1), default=Sweep.num_frames, help="frames sampled per video")
    s.add_argument("--sample-mode", default=Sweep.sample_mode, choices=SAMPLE_MODES)
    s.add_argument("--backend", default=Sweep.backend, choices=BACKENDS)
    s.add_argument("--dtype", default="float32", choices=DTYPES)
    s.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available; under torchrun "
                                                   "LOCAL_RANK picks the GPU, unless --processes puts every rank on "
                                                   "this one)")
    s.add_argument("--batch-size", type=_at_least(1), default=256, help="plans per batch of the fast backend")
    s.add_argument("--compile", action="store_true", help="compile the decoder layers (flowutils.engine.compile_layers): faster on a "
                                                          "GPU once the first questions have paid the compilation")
    s.add_argument("--threads", type=_at_least(1), help="CPU threads (default: OMP_NUM_THREADS, which torchrun sets to 1, or "
                                              "with several ranks on the host an even share of its CPUs, else torch's)")
    s.add_argument("--processes", type=_at_least(1), default=1,
                   help="sweep processes on the one device, each a shard of the questions (this command again, as "
                        "torchrun's ranks): where one process cannot launch the GPU's work as fast as the GPU runs "
                        "it, several keep it busy; each holds its own copy of the weights")
    s.add_argument("--shard", type=_at_least(0), help="run shard i of --num-shards (default: torchrun's RANK/WORLD_SIZE)")
    s.add_argument("--num-shards", type=_at_least(1))
    s.add_argument("--out", required=True, help="results directory (the sweep writes under OUT/<hash>/)")


def _sweep(args, argv: list[str]) -> int:
    import torch

    from pathlib import Path

    from .analysis.shards import launch_on_one_device, local_device, one_device_rank, rank_threads, resolve_shard
    from .analysis.store import skip_summary
    from .analysis.sweep import Sweep, run_sweep
    from .data.tvbench import load_benchmark
    from .knockout.flows import flow_set
    from .models.loading import load

    # what can be checked before the model loads (minutes for a 7B checkpoint)
    try:
        kind = torch.device(args.device).type if args.device else None
    except RuntimeError:
        raise SystemExit(f"error: --device {args.device!r} is not a device; valid: cuda, cuda:N, cpu") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA GPU is visible on this machine; valid here: --device cpu")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise SystemExit(f"error: --out {args.out} is a file; give a results folder (it is made where missing)")
    flows = args.flows or [f for name in args.flow_set for f in flow_set(name)]
    sweep = Sweep(flows, args.k, args.style, args.layers, args.backend, args.sample_mode, args.frames)
    flow_problems = sweep.flow_problems()
    if flow_problems:
        raise SystemExit("error: --flows: " + "; ".join(flow_problems))
    if args.processes == 1:
        try:
            resolve_shard(args.shard, args.num_shards)
        except ValueError as err:
            raise SystemExit(f"error: --shard/--num-shards: {err}") from None
    else:
        if args.shard is not None or args.num_shards is not None:
            raise SystemExit(f"--processes {args.processes} shards the questions between its processes; leave "
                             f"--shard/--num-shards out (or run one shard per command without --processes)")
        if "LOCAL_RANK" not in os.environ:
            started = time.time()
            code = launch_on_one_device(argv, args.processes)
            if code == 0:
                summary, measured_nothing = merged_summary(args.out, started, args.processes)
                print(summary)
                code = 1 if measured_nothing else 0
            return code
        if not one_device_rank(args.processes):
            raise SystemExit(f"--processes {args.processes} launches its own ranks, and this process is already one "
                             f"of {os.environ.get('WORLD_SIZE', '?')} ranks of a launcher (WORLD_SIZE): leave "
                             f"--processes out under torchrun")
    threads = args.threads or rank_threads()
    if threads:
        torch.set_num_threads(threads)
    device = local_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(device)  # else a rank's stray default-device work opens a context on GPU 0
    samples = load_benchmark(args.benchmark, args.manifest, args.tasks, args.n_per_task)
    fm = load(args.model, dtype=getattr(torch, args.dtype), device=device)
    if args.compile:
        from .engine import compile_layers

        compile_layers(fm)
    problems = sweep.problems(fm.n_layers)
    if problems:
        raise SystemExit(f"error: {fm.name} has {fm.n_layers} layers: " + "; ".join(problems) + " (--k, --layers)")
    table = run_sweep(fm, samples, sweep, out=args.out, benchmark=manifests.manifest_identity(args.manifest),
                      shard=args.shard, num_shards=args.num_shards, batch_size=args.batch_size)
    questions = table.sample_id.nunique() if len(table) else 0
    skipped = table.attrs["skipped"]
    print("\n".join([f"{len(table)} rows from {questions} question(s); {skip_summary(skipped)}",
                     *skipped_lines(skipped)]))
    print(f"results: {table.attrs['store']}  (read them with flowutils.analysis.load_results; shards are merged)")
    print(timing_summary(table.attrs["timings"]))
    # a run that measured nothing because every question was skipped failed; a rank of a launch judges only its
    # shard, so there the launching command judges (--processes: merged_summary; torchrun: no one)
    return 1 if skipped and not questions and "LOCAL_RANK" not in os.environ else 0


SKIPS_SHOWN = 10  # the sweep's last lines name the skipped questions and why, up to this many


def skipped_lines(skipped) -> list[str]:
    """A line per skipped question (records: ``sample_id``, ``reason``) with its reason, up to :data:`SKIPS_SHOWN`."""
    lines = [f"  skipped {s['sample_id']}: {s['reason']}" for s in skipped[:SKIPS_SHOWN]]
    more = len(skipped) - SKIPS_SHOWN
    return lines + ([f"  ... and {more} more (flowutils.analysis.load_skipped)"] if more > 0 else [])


def merged_summary(out, since: float, processes: int) -> tuple[str, bool]:
    """What ``processes`` processes of one sweep stored together in ``out`` (the result set whose provenance they
    wrote after ``since``, a time.time()): its line and the skipped questions' (:func:`skipped_lines`), and
    whether they measured nothing because they skipped every question."""
    from pathlib import Path

    from .analysis.store import load_questions, settled, skip_summary, skipped_frame

    sets = [d for d in Path(out).iterdir() if d.is_dir() and any(f.stat().st_mtime >= since
                                                                   for f in d.glob("provenance-*.json"))]
    if len(sets) != 1:
        return f"all {processes} processes: {len(sets)} result sets written in {out} during this run", False
    q = settled(load_questions(sets[0]))  # read once: the done and the skipped questions both come from it
    done, s = q[q.status == "done"], q[q.status == "skipped"]
    skipped = skipped_frame(s.sample_id, s.task, s.reason).to_dict("records")
    line = (f"all {processes} processes: {int(done.n_rows.sum())} rows from {len(done)} question(s) in the store; "
            f"{skip_summary(skipped)}; results: {sets[0]}")
    return "\n".join([line, *skipped_lines(skipped)]), bool(skipped) and done.empty


def timing_summary(timings: dict) -> str:
    """One line: questions per hour and seconds per question by phase (the runner's :class:`Timings`)."""
    n = timings["questions"]
    if not n:
        return "timings: no question computed (all read back from the result store)"
    from .analysis.runner import Timings

    thread = ["decode", "prepare"] if timings.get("prepared_ahead") else ["decode"]
    phases = ", ".join(f"{p} {timings[f'{p}_s'] / n:.3f}" for p in Timings.PHASES if p not in thread)
    overlapped = ", ".join(f"{p} {timings[f'{p}_s'] / n:.3f}" for p in thread)
    rate = Timings.s_per_question_after_first(timings)
    after = f"; after the first ({timings['first_question_s']:.1f} s), {rate:.3f} s/question" if rate is not None else ""
    return (f"timings: {n} question(s) in {timings['wall_s']:.1f} s, {3600 * n / timings['wall_s']:.0f} questions/hour"
            f"{after}; s/question: {phases} ({overlapped}: in the reader thread, overlapped)")


if __name__ == "__main__":
    sys.exit(main())
