"""Benchmark: questions per hour of a full sweep on one GPU, end to end (issue #16's throughput bar).

What is timed: ``python -m flowutils sweep`` from its launch to its exit, as a user runs it: the
interpreter and imports, loading the checkpoint with :func:`flowutils.load` and hashing it for the
result store, and for each question (``--n-per-task`` of each of ``--tasks``: 64 by default) reading its
video (decord) and prompt, the processor, the vision tower, the baseline and the knockout plans of the paper's
four flow sets at every layer (k = 9 of 32), and writing its rows to the result store. The sweep alone (store
opened to store closed) is read from the store's provenance. ``--processes N`` passes the sweep's own ``--processes N``:
N torchrun ranks on the one GPU, each a shard of the questions (issue 26: one process's host launched the GPU's
work slower than the H200 ran it).

Setup (not timed):

* a seeded random-weight 7B-shaped LLaVA-NeXT-Video checkpoint in the toy recipe's architecture
  (Vicuna-7B-shaped Llama: 32 layers, width 4096, 32 heads; CLIP ViT-L/14 at 336 px; 2x2 pooling,
  so 144 tokens per frame), built on the GPU, cast to bf16 and saved to ``--workdir``;
* the synthetic benchmark in TVBench format (``--benchmark``; mp4 files, rendered elsewhere with PyAV);
  64 questions: the first 16 of four tasks, whose prompts differ in length (the JSON gives the
  range of their question-and-option token counts);
* one process that imports what the sweep imports and starts CUDA (no cold start in the timed run).

With ``--checkpoint DIR`` the sweep runs on that checkpoint instead, under its model manifest's name (the
folder's name, found through ``$FLOWUTILS_MODEL_DIR``): the rehearsal's PLLaVA-layout LLaVA-NeXT-7B-Video-FT
shape (``benchmarks/rehearsal.py``), with its pooling to 144 tokens per frame and the paper's protocol; where the
folder holds no checkpoint yet, the rehearsal's writer writes it there first (seed 0, a tokenizer over the
benchmark's words), untimed.

Also reported: the GPU's busy time (``nvidia-smi``'s utilisation, sampled every 200 ms, averaged from launch to exit
and over the sweep alone) and the seconds per question of each phase (the runner's timings in the store's
provenance: waiting for the reader thread, preparing, baseline, knockouts, store writes; on a GPU the reader
thread decodes and prepares the next questions, overlapped with them). Since the vision tower then runs in the
reader thread, beside the decoder's work, its own time is measured after the sweep, in this process, on
``--serial`` questions one at a time with the GPU synchronised around each step: decoding, the processor and
the vision tower (CUDA events around the tower's forward), the baseline.

GPU: ``python benchmarks/throughput.py --benchmark DIR`` (writes ``benchmarks/results/throughput/throughput_<gpu>.json``).
CPU smoke test: ``python benchmarks/throughput.py --device cpu --size tiny --n-per-task 1 --json /tmp/tp.json``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import host  # noqa: E402
from sharding import SIZES as SHARDING_SIZES, parameter_count, run, shard_times, warm_up, workdir_inputs  # noqa: E402

TASKS = ["action_antonym", "action_sequence", "scene_transition", "object_count"]
SIZES = {  # ToyConfig fields
    "7b": dict(text_layers=32, text_hidden=4096, text_heads=32, text_kv_heads=32, text_intermediate=11008,
               vision_layers=24, vision_hidden=1024, vision_heads=16, image_size=336, patch_size=14,
               max_positions=4096),
    "tiny": SHARDING_SIZES["tiny"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--size", default="7b", choices=list(SIZES))
    ap.add_argument("--n-per-task", type=int, default=16, help="questions of each task")
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--checkpoint", type=Path, help="an existing checkpoint folder named by its model manifest "
                    "(default: build the toy recipe's architecture at --size)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--benchmark", help="synthetic benchmark folder (rendered there if missing; needs PyAV)")
    ap.add_argument("--workdir", default="/tmp/flowutils-throughput")
    ap.add_argument("--compile", action="store_true", help="sweep --compile (compiled decoder layers; the "
                                                           "compilation counts in the wall time)")
    ap.add_argument("--processes", type=int, default=1, help="sweep --processes N: N processes on the one GPU, each "
                    "a shard of the questions (where one process's host launches the GPU's work slower than the GPU "
                    "runs it, several keep it busy)")
    ap.add_argument("--serial", type=int, default=20, help="questions timed one step at a time after the sweep")
    ap.add_argument("--json", help="default: benchmarks/results/throughput/throughput_<gpu>[_compiled].json")
    ap.add_argument("--lease", help="what the JSON says of the run's lease (the machine, the commit, what ran beside it)")
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from flowutils.analysis import load_results
    from flowutils.analysis.runner import Timings
    from flowutils.analysis.store import load_questions
    from flowutils.data.tvbench import load_benchmark
    from flowutils.knockout.flows import FLOW_SETS

    work = Path(args.workdir)
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    # the checkpoint is built on the GPU: a 7B model initialises in seconds there, minutes on CPUs
    checkpoint, bench = workdir_inputs(work, args.size, SIZES[args.size], getattr(torch, dtype), args.device,
                                       args.benchmark, args.n_per_task, build=args.checkpoint is None)
    model = str(checkpoint)
    if args.checkpoint is not None:
        checkpoint, model = args.checkpoint.resolve(), args.checkpoint.name
        os.environ["FLOWUTILS_MODEL_DIR"] = str(checkpoint.parent)
        if not (checkpoint / "config.json").is_file():
            from rehearsal import write_checkpoint

            words = " ".join(f"{s.question} {' '.join(s.candidates)}" for s in load_benchmark(bench, "synthetic"))
            write_checkpoint(checkpoint, words, seed=0, device=args.device, smoke=args.device == "cpu")
    device = "cuda:0" if args.device == "cuda" else "cpu"
    sweep_args = ["--model", model, "--benchmark", str(bench), "--manifest", "synthetic",
                  "--tasks", *args.tasks, "--n-per-task", str(args.n_per_task), "--flow-set", *FLOW_SETS,
                  "--sample-mode", "all", "--frames", str(args.frames), "--dtype", dtype, "--device", device]
    sweep_args += ["--compile"] if args.compile else []
    warm_up([device])
    sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu", "--format=csv,noheader,nounits",
                                "-lms", "200"], stdout=subprocess.PIPE, text=True) if args.device == "cuda" else None
    sweep_args += ["--processes", str(args.processes)] if args.processes > 1 else []
    timed = run([sys.executable], sweep_args, work / "results", work / "log.txt")
    busy = []  # (local time, percent)
    if sampler is not None:
        sampler.terminate()
        for line in sampler.communicate()[0].splitlines():
            stamp, _, value = line.rpartition(",")
            if value.strip().isdigit():
                busy.append((datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").astimezone(), int(value)))
    store = next(d for d in (work / "results").iterdir() if d.is_dir())
    rows, questions = load_results(store), load_questions(store)
    shards = shard_times(store, timed["launched"], timed["wall_s"])
    n_questions = len(questions)
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    lengths = [len(tokenizer(f"{s.question} {' '.join(s.candidates)}")["input_ids"])
               for s in load_benchmark(bench, "synthetic", args.tasks, args.n_per_task)]
    # every process's phases, summed: with several processes they overlap, so a question's phases add up to more than the
    # wall time per question; the sweep: the first rank's store opened to the last one's closed
    provenances = [json.loads(f.read_text()) for f in sorted(store.glob("provenance-*.json"))]
    phases = {k: sum(p["timings"][k] for p in provenances)
              for k in ("questions", "wall_s", *(f"{phase}_s" for phase in Timings.PHASES))}
    # after each process's first question (the compilation's): the processes' rates add up
    after_first = [s for p in provenances if (s := Timings.s_per_question_after_first(p["timings"])) is not None]
    started = min(datetime.fromisoformat(p["started"]) for p in provenances)
    finished = max(datetime.fromisoformat(p["finished"]) for p in provenances)
    sweep_s = (finished - started).total_seconds()
    in_sweep = [v for t, v in busy if started <= t <= finished]
    per_question = {k[:-2]: round(v / phases["questions"], 4) for k, v in phases.items() if k.endswith("_s")}
    result = {
        "device": gpu, "host": host(), "lease": args.lease, "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "size": args.size, "model": SIZES[args.size], "parameters": parameter_count(checkpoint), "dtype": dtype,
        "frames": args.frames, "tasks": args.tasks, "questions": n_questions, "rows": len(rows),
        "question_and_option_tokens": {"min": min(lengths), "max": max(lengths), "distinct": len(set(lengths))},
        "sweep": "the paper's four flow sets, every layer, k = 9 (scaled), sample_mode all, backend fast",
        "compiled_layers": args.compile, "processes": args.processes,
        "command": timed["command"],
        "wall_s": round(timed["wall_s"], 2), "sweep_s": round(sweep_s, 2),
        "startup_s": max(s["startup_s"] for s in shards),  # until the last process opened its store
        "questions_per_hour": round(n_questions / timed["wall_s"] * 3600, 1),
        "questions_per_hour_sweep_only": round(n_questions / sweep_s * 3600, 1),
        "s_per_question": round(timed["wall_s"] / n_questions, 3),
        "s_per_question_by_phase": per_question,
        "first_question_s": max((t for p in provenances if (t := p["timings"]["first_question_s"]) is not None),
                                default=None),
        "s_per_question_after_first": round(1 / sum(1 / s for s in after_first), 4) if after_first else None,
        "after_first_how": "each process's questions after its first measured one over its sweep loop's time after it "
                           "(the runner's first_question_s and questions_after_first), the processes' rates added",
        **({"shards": shards, "phases_how": "each process's seconds per phase, summed over the processes, per "
            "question: they run at once, so a question's phases add up to about processes x s_per_question"}
           if args.processes > 1 else {}),
        "gpu_busy_pct": None if not busy else {
            "mean_over_wall": round(sum(v for _, v in busy) / len(busy), 1), "samples": len(busy),
            "mean_over_sweep": round(sum(in_sweep) / len(in_sweep), 1) if in_sweep else None,
            "samples_in_sweep": len(in_sweep),
            "how": "nvidia-smi utilization.gpu every 200 ms; over the wall: launch to exit (startup and loading "
                   "included); over the sweep: the store's provenance, opened to closed"},
        "included": "launch, imports, loading and hashing the checkpoint, video decoding, processor, vision tower, "
                    "baseline, knockouts, result store writes",
    }
    out = Path(args.json or ROOT / "benchmarks" / "results" / "throughput" / f"throughput_{gpu.replace('NVIDIA ', '').split()[0]}{'_compiled' if args.compile else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))  # the sweep's figures first: a run cut off in the serial steps keeps them
    result["serial_s_per_question"] = serial_phases(model, bench, args.tasks, args.serial, args.frames,
                                                    getattr(torch, dtype), device)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def serial_phases(model: str, bench, tasks, n: int, frames: int, dtype, device: str) -> dict:
    """Seconds per question of each step, one question at a time and the GPU synchronised after each step (eager
    layers): ``decode``, ``processor`` (prepare without the vision tower: the processor, and for PLLaVA the
    projector, pooling and embedding), ``vision`` (the vision tower's forward, between CUDA events; PLLaVA runs it
    in prepare, the other families in the baseline), ``baseline`` (the forward, without the vision tower)."""
    import time

    import torch

    from flowutils.data.tvbench import load_benchmark
    from flowutils.data.video import question_clip
    from flowutils.engine import run_baseline
    from flowutils.models import load

    cuda = device.startswith("cuda")

    def mark():  # on the CPU every step is synchronous: the host's clock
        if not cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def between(marks) -> float:
        return sum((b - a) if not cuda else a.elapsed_time(b) / 1000 for a, b in marks)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    fm = load(model, dtype=dtype, device=device)
    samples = load_benchmark(bench, "synthetic", tasks, -(-n // len(tasks)))[:n]
    tower, marks = fm.model.model.vision_tower, []
    tower.register_forward_pre_hook(lambda *a: marks.append([mark()]))
    tower.register_forward_hook(lambda *a: marks[-1].append(mark()))
    steps = {"decode": 0.0, "prepare": 0.0, "baseline": 0.0}
    vision = {"prepare": 0.0, "baseline": 0.0}
    with torch.no_grad():
        for i, sample in enumerate(samples[:1] + samples):  # the first question once before, untimed: a warm-up
            t0 = time.perf_counter()
            clip = question_clip(sample, frames)
            t1 = time.perf_counter()
            marks.clear()
            prepared = fm.prepare_sample(sample, clip=clip)
            sync()
            t2 = time.perf_counter()
            in_prepare = between(marks)
            marks.clear()
            run_baseline(fm, prepared)
            sync()
            t3 = time.perf_counter()
            in_baseline = between(marks)
            if i == 0:
                continue
            for step, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2)):
                steps[step] += seconds
            vision["prepare"] += in_prepare
            vision["baseline"] += in_baseline
    count = len(samples)
    return {"questions": count, "decode": round(steps["decode"] / count, 4),
            "processor": round((steps["prepare"] - vision["prepare"]) / count, 4),
            "vision": round((vision["prepare"] + vision["baseline"]) / count, 4),
            "vision_runs_in": "prepare" if vision["prepare"] else "baseline",
            "baseline": round((steps["baseline"] - vision["baseline"]) / count, 4),
            "how": "one question at a time, the GPU synchronised after each step, eager layers; the first question "
                   "run once before, untimed"}


if __name__ == "__main__":
    main()
