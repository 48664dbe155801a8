"""Command line: ``python -m flowutils {data,validate} ...`` (``--help`` lists the subcommands)."""

from __future__ import annotations

import argparse
import sys

from .data import manifests, synthetic


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowutils", description="Map the Flow: information-flow analysis of video LLMs.")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="render the synthetic TVBench-format benchmark")
    d.add_argument("--root", default="data", help="parent folder; the benchmark goes in a subfolder named by its arguments")
    d.add_argument("--n-per-task", type=int, default=24)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--split", default="test", choices=list(synthetic.SPLIT_SEEDS))
    v = sub.add_parser("validate", help="compare a local benchmark copy with its manifest")
    v.add_argument("--manifest", required=True, choices=manifests.available_manifests())
    v.add_argument("--root", required=True)
    v.add_argument("--no-counts", action="store_true", help="do not compare question counts (a subset)")
    args = ap.parse_args(argv)
    if args.command == "data":
        root = synthetic.write_benchmark(synthetic.benchmark_dir(args.root, args.seed, args.split, args.n_per_task),
                                         args.n_per_task, args.seed, args.split)
        print(root)
        return 0
    problems = manifests.validate_benchmark(args.root, args.manifest, check_counts=not args.no_counts)
    for p in problems:
        print(p)
    print(f"{args.root}: {'OK' if not problems else f'{len(problems)} problem(s)'} against manifest {args.manifest!r}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
