"""The "Rerun on a real model" page: the section notebooks' papermill commands for a paper model, and the
run time and GPU memory to expect, built from the model manifests and the GPU benchmarks.

Time is estimated from measured parts: :func:`section_work` counts what a page runs (starting its
kernel, loading its checkpoints, preparing each question once per analysis that reads it,
baselines, windowed sweep plans, generated tokens, the logit-lens, keyword, word-attention and
Table 3 measurements, and the panels of its figures), and :func:`unit_costs` gives each part's
seconds, measured per question on a GPU by ``benchmarks/rehearsal.py`` for a 7B shape and moved to
other shapes by weights x tokens (:func:`scaled_units`). The rehearsal then times the pages
themselves and checks this estimate against them. Memory is the shapes benchmark's peak for that
shape, plus the ImageLLM base's weights on the page that loads both models.
"""

from __future__ import annotations

import json
import shlex

from ..data.manifests import load_manifest
from ..knockout.flows import FLOW_SETS
from ..knockout.windows import protocol_for
from ..models.catalog import benchmark_results, shape_benchmarks
from ..models.loading import model_manifests
from ..paper.keywords import LENSES, figure4_choice
from ..paper.pathways import EFFECTIVE_FLOWS, resolve_random_rule
from ..paper.temporal import ANSWER_TOKENS, EXAMPLE_TOKENS

SECTIONS = ("temporal_interaction", "video_language_integration", "answer_generation", "effective_pathways")
WITH_BASE = ("temporal_interaction",)  # pages that also load the ImageLLM base
# what a page's work is made of, each measured on the GPU per question (``benchmarks/rehearsal.py``): starting the
# kernel and importing, loading a checkpoint, preparing a question (decoding its video, the processor, the vision
# tower), a full forward, one windowed sweep plan of a flow into the text after the video ("plan": only that text is
# recomputed) and of the cross-frame flow ("frame_plan": its cut starts in the first frames, so nearly the whole
# prompt is recomputed from the window on; tens of times a "plan"), one generated token, and the measurements of
# one question of the logit-lens answer table, the keyword hits, the word attention and Table 3's conditions, and one
# panel of a figure drawn, saved and shown with its bootstrap bands (host work, so not scaled to other shapes)
UNITS = ("startup", "load", "prepare", "forward", "plan", "frame_plan", "token", "lens", "keywords", "attention",
         "table3", "panel")
OPEN_ENDED_PER_TASK = 16  # the 3.2 page's open_ended_per_task: questions per task whose answers are generated


def section_work(section: str, layers: int, tasks: dict[str, int], sample_mode: str = "correct",
                 accuracy: float = 1.0, selection_task: str = "action_antonym", keyword_task: str | None = None,
                 counting_task: str = "object_count") -> dict[str, float]:
    """How many of each unit (:data:`UNITS`) a section spends on a benchmark of ``tasks`` (``{task: questions}``),
    as its notebook runs: every question is prepared and its baseline run by each analysis that reads it; the
    knockouts, lens and generations run on the questions the sample mode keeps (``accuracy``: the share the model
    answers correctly). ``keyword_task``: Figure 4's task (None: every task)."""
    n, n_tasks = sum(tasks.values()), len(tasks)
    share = {"all": 1.0, "correct": accuracy, "wrong": 1 - accuracy}[sample_mode]
    kept = n * share
    work = dict.fromkeys(UNITS, 0.0)
    work["startup"], work["load"] = 1, 2 if section in WITH_BASE else 1

    def visit(questions, **units):  # an analysis through the runner: prepare + baseline per question
        work["prepare"] += questions
        work["forward"] += questions
        for unit, count in units.items():
            work[unit] += count

    # figure panels: a knockout figure has a row per task (``all_tasks``: one more) and a column per metric (two)
    if section == "temporal_interaction":
        work["panel"] += 2 * n_tasks + n_tasks  # Figure 2; the ImageLLM over every question, one metric
        visit(n, frame_plan=kept * layers)  # Figure 2, the VideoLLM
        visit(n, frame_plan=n * layers)  # the ImageLLM, over every question
        visit(n, forward=kept)  # Table 2, first half: cut from layer 0, a full forward
        visit(n, forward=kept / 2)  # second half: the upper half of the layers
        found = min(n, n_tasks / accuracy) if accuracy > 0 else n  # the examples: each task's first correct question
        visit(found, token=2 * EXAMPLE_TOKENS * (n_tasks if accuracy > 0 else 0))
        asked = sum(min(OPEN_ENDED_PER_TASK, q) for q in tasks.values())  # Table 2's answers, two forms
        work["prepare"] += 2 * asked  # sample mode "all" and no baseline: the two generations only
        work["token"] += 2 * asked * 2 * ANSWER_TOKENS
    elif section == "video_language_integration":
        flows = sum(len(FLOW_SETS[s]) for s in ("vql-to-ql", "question-and-options-to-last", "vq-to-true-opt"))
        # Figures 3 and 6 (all tasks first), 7, 4 (one panel per lens) and 5 (two words, two conditions: each row of
        # frames counted as one panel, its images drawing much faster than curves)
        work["panel"] += 2 * 2 * (n_tasks + 1) + 2 * n_tasks + len(LENSES) + 4
        visit(n, plan=kept * flows * layers)
        asked = tasks.get(keyword_task, 0) if keyword_task else n
        visit(asked, keywords=asked * share)
        counting = tasks.get(counting_task, 0)
        visit(counting, attention=counting)
    elif section == "answer_generation":
        work["panel"] += 2 * (n_tasks + 1)  # Figure 8: all tasks, then each; two columns
        visit(n, lens=n)  # the answer table (every question); the sweep is read back from the store
    elif section == "effective_pathways":
        chosen = tasks.get(selection_task, 0)
        work["panel"] += 2 + 1 + 1  # the selection task's curves, Table E's heat map, Table 3's bars
        swept = chosen * share * layers  # Table E's selection sweep: the cross-frame flow and the two into the text
        visit(chosen, frame_plan=swept, plan=swept * (len(EFFECTIVE_FLOWS) - 1))
        work["prepare"] += n  # Table 3: every question, its conditions measured together
        work["table3"] += n
    else:
        raise ValueError(f"unknown section {section!r}; valid: {SECTIONS}")
    return work


def section_parameters(section: str, model: str, manifest: str) -> dict:
    """The parameters that pin a section page to the paper's protocol, spelled out in its command: the window size
    and interval of ``model``'s protocol (its manifest's), Figure 4's keyword list and task on ``manifest``
    (:func:`flowutils.paper.keywords.figure4_choice`: Table D and Action Sequence on TVBench), Table 3's random
    rule and share. A model without a manifest gets Figure 4's choice only (the page resolves the rest)."""
    out = {}
    if section == "video_language_integration":
        keywords, task = figure4_choice(manifest)
        out.update(keywords=keywords, **({"keyword_task": task} if task else {}))
    spec = model_manifests().get(model)
    if spec is None:
        return out
    protocol = protocol_for(spec["expected"]["layers"], spec.get("protocol"), spec.get("random_blocking_share"))
    if section in ("temporal_interaction", "video_language_integration", "effective_pathways"):
        out["window_size"] = protocol.window_size
    if section in ("video_language_integration", "effective_pathways"):
        out["interval_size"] = protocol.interval
    if section == "effective_pathways":
        rule, share = resolve_random_rule(protocol)
        out.update(random_rule=rule, **({"random_share": share} if share is not None else {}))
    return out


def commands(model: str, base_model: str, benchmark_root: str, manifest: str, results_dir: str,
             dtype: str = "bfloat16", device: str = "cuda") -> str:
    """The shell lines that run every section and the status page on ``model`` (bash); each section's line
    names the protocol's parameters (:func:`section_parameters`)."""
    q = shlex.quote
    common = (f"-p model {q(model)} -p benchmark_root {q(benchmark_root)} -p manifest {q(manifest)} "
              f"-p n_per_task 100000 -p device {device} -p dtype {dtype} -p results_dir {q(results_dir)}")
    lines = [f'REAL="{common}"', 'PM="papermill --no-progress-bar -k flowutils --cwd book"']
    for section in SECTIONS:
        base = f" -p base_model {q(base_model)}" if section in WITH_BASE else ""
        pinned = "".join(f" -p {k} {q(str(v))}" for k, v in section_parameters(section, model, manifest).items())
        lines.append(f"$PM notebooks/{section}.ipynb book/{section}.ipynb $REAL{base}{pinned}")
    # its "why the toy differs" measurements are the toy's, on the default synthetic benchmark: not this model's
    lines.append(f"$PM notebooks/reproduction_status.ipynb book/reproduction_status.ipynb -p results_dir {q(results_dir)} "
                 "-p toy_measurements False")
    return "\n".join(lines)


def _shape_row(name: str, bench: dict):
    """The benchmark row of model ``name``, or of a benchmarked model with the same layers and hidden size."""
    if name in bench:
        return bench[name]
    expected = model_manifests()[name].get("expected", {})
    same = [r for r in bench.values() if (r["layers"], r["hidden"]) == (expected.get("layers"), expected.get("hidden_size"))]
    return same[0] if same else None


def unit_costs(results_dir=None) -> dict | None:
    """The newest measured unit costs (``user_path/unit_costs_*.json`` of :func:`benchmarks/rehearsal.py`): the
    seconds of each of :data:`UNITS` on one GPU for one model shape, with that shape's weights and tokens; None
    where no GPU run has measured them."""
    files = sorted((benchmark_results(results_dir) / "user_path").glob("unit_costs_*.json"))
    return json.loads(files[-1].read_text()) if files else None


def scaled_units(units: dict, row: dict) -> dict[str, float]:
    """``units``' seconds moved to the shape ``row`` (a shapes benchmark row): compute by weights x tokens,
    loading and generated tokens by weights (reading them dominates), the rest as measured (host work). A unit the
    file does not hold (measured before that unit existed) is left out: see :func:`estimate`'s ``unmeasured``."""
    weights = row["weights_gib"] / units["weights_gib"]
    compute = weights * row["tokens"] / units["tokens"]
    by = {"load": weights, "token": weights, "startup": 1.0, "prepare": 1.0, "panel": 1.0}
    return {u: units["seconds"][u] * by.get(u, compute) for u in UNITS if u in units["seconds"]}


def estimate(model: str, base_model: str | None, manifest: str, selection_task: str = "action_antonym",
             results_dir=None, sample_mode: str = "correct", accuracy: float | None = None, tasks: dict | None = None):
    """One row per section: its work, questions, estimated GPU hours and memory (DataFrame). Seconds are the
    units measured on a GPU (:func:`unit_costs`, moved to ``model``'s shape) times :func:`section_work`'s counts
    (no hours, ``attrs["units"]`` None, where no GPU run has measured the units; ``attrs["unmeasured"]``: the units
    that run did not measure, left out of the hours).
    ``tasks``: ``{task: questions}`` (default: the manifest's analysed tasks); ``accuracy``: the share of questions
    answered correctly (default: the model manifest's ``paper_accuracy`` on ``manifest``, the paper's Table 3, else
    1.0: every question analysed, the most work); ``results_dir``: the GPU benchmarks (default
    ``benchmarks/results/`` of the flowutils home)."""
    import pandas as pd

    results_dir = benchmark_results(results_dir)
    bench = shape_benchmarks(results_dir)
    manifests = model_manifests()
    for name in (model, base_model):
        if name is not None and name not in manifests:
            raise ValueError(f"model {name!r} has no manifest; valid: {sorted(manifests)}")
    row = _shape_row(model, bench)
    if row is None:
        raise ValueError(f"{results_dir}: no GPU shapes benchmark for {model!r} (nor for a model of its shape): run "
                         f"benchmarks/model_shapes.py; benchmarked shapes: {sorted(bench)}")
    units = unit_costs(results_dir)
    seconds = scaled_units(units, row) if units else None  # no GPU run yet: the counts without hours
    source = "given"
    if accuracy is None:
        paper = manifests[model].get("paper_accuracy", {}).get(manifest)
        accuracy, source = (paper / 100, f"the paper's Table 3 on {manifest}") if paper else (1.0, "every question")
    base_row = _shape_row(base_model, bench) if base_model else None
    if tasks is None:
        tasks = {t: v["questions"] for t, v in load_manifest(manifest)["tasks"].items() if v.get("analysed", True)}
    _, keyword_task = figure4_choice(manifest)
    rows = []
    for section in SECTIONS:
        work = section_work(section, row["layers"], tasks, sample_mode, accuracy, selection_task, keyword_task)
        two = section in WITH_BASE and base_row is not None
        rows.append({"section": section, "models": 2 if two else 1, "questions": sum(tasks.values()),
                     **{f"{u} ({'per page' if u in ('startup', 'load') else 'count'})": round(work[u], 1)
                        for u in UNITS if work[u]},
                     "estimated GPU hours": sum(work[u] * seconds[u] for u in seconds) / 3600 if seconds else None,
                     "GPU memory GiB (estimate)": row["peak_mem_gib"] + (base_row["weights_gib"] if two else 0)})
    table = pd.DataFrame(rows)
    counts = [c for c in table if c.endswith(("(count)", "(per page)"))]
    table[counts] = table[counts].fillna(0)  # a unit a section does not spend
    table.attrs.update(shape=row["model"], gpu=units and units["gpu"], units=seconds, units_shape=units and units["shape"],
                       unmeasured=[u for u in UNITS if seconds is not None and u not in seconds],
                       base_shape=base_row and base_row["model"], accuracy=accuracy, accuracy_source=source)
    return table
