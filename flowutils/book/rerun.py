"""The "Rerun on a real model" page: the section notebooks' papermill commands for a paper model, and the
run time and GPU memory to expect, built from the model manifests and the GPU shapes benchmark.

Time is estimated, not measured on the real checkpoint. Per section: the windowed knockout
plans it runs per question times the seconds per plan that ``benchmarks/model_shapes.py``
measured for a random-weight model of the same language-model shape (its full sweep's seconds
over its plans; these plans reuse the unchanged prefix), plus the full forwards it runs (plain
forwards, and plans cut from the first layer) times the reference backend's seconds per plan
of ``benchmarks/knockout_sweep.py`` scaled by weights x tokens to that shape; all times the
questions it reads (the benchmark manifest's task sizes). Decoding videos, the vision tower and
writing results are not included. Memory is the benchmark's peak for that shape, plus the ImageLLM
base's weights on the pages that load both models.
"""

from __future__ import annotations

import json
import shlex

from ..data.manifests import load_manifest
from ..knockout.flows import FLOW_SETS
from ..knockout.windows import protocol_for
from ..models.catalog import benchmark_results, shape_benchmarks
from ..models.loading import model_manifests
from ..paper.keywords import figure4_choice
from ..paper.pathways import resolve_random_rule

SECTIONS = ("temporal_interaction", "video_language_integration", "answer_generation", "effective_pathways")
WITH_BASE = ("temporal_interaction",)  # pages that also load the ImageLLM base
TABLE3_CONDITIONS = 7  # full attention, effective pathways, 5 random draws (the 3.5 page's defaults)


def plans_per_question(section: str, layers: int) -> dict[str, int]:
    """What a section runs per question: ``sweep`` plans (windowed knockouts, which reuse the unchanged
    prefix), ``forwards`` (plans cut from the first layer or plain forwards: a full forward each) and
    ``selection`` sweep plans on the selection task's questions only."""
    if section == "temporal_interaction":  # cross-frame at every layer in both models; the VideoLLM's two halves
        return {"sweep": 2 * layers, "forwards": 2, "selection": 0}
    if section == "video_language_integration":
        flows = FLOW_SETS["vql-to-ql"] + FLOW_SETS["question-and-options-to-last"] + FLOW_SETS["vq-to-true-opt"]
        return {"sweep": len(flows) * layers, "forwards": 1, "selection": 0}  # + the logit-lens forward
    if section == "answer_generation":
        return {"sweep": 0, "forwards": 1, "selection": 0}
    if section == "effective_pathways":  # Table E's sweep on one task, Table 3's conditions on every question
        return {"sweep": 0, "forwards": TABLE3_CONDITIONS, "selection": 3 * layers}
    raise ValueError(f"unknown section {section!r}; valid: {SECTIONS}")


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
    lines.append(f"$PM notebooks/reproduction_status.ipynb book/reproduction_status.ipynb -p results_dir {q(results_dir)}")
    return "\n".join(lines)


def _shape_row(name: str, bench: dict):
    """The benchmark row of model ``name``, or of a benchmarked model with the same layers and hidden size."""
    if name in bench:
        return bench[name]
    expected = model_manifests()[name].get("expected", {})
    same = [r for r in bench.values() if (r["layers"], r["hidden"]) == (expected.get("layers"), expected.get("hidden_size"))]
    return same[0] if same else None


def forward_seconds(row: dict, engine: dict) -> float:
    """Seconds of one full forward of the shape ``row``: the engine benchmark's reference backend (one
    full forward per plan), scaled by weights x tokens from its shape to ``row``'s."""
    per_forward = engine["reference_s_per_sample"] / engine["plans_per_sample"]
    return per_forward * row["weights_gib"] / engine["weights_gib"] * row["tokens"] / engine["tokens"]


def estimate(model: str, base_model: str | None, manifest: str, selection_task: str = "action_antonym",
             results_dir=None):
    """One row per section: plans per question, questions, estimated GPU hours and memory (DataFrame);
    ``results_dir``: the GPU benchmarks (default ``benchmarks/results/`` of the flowutils home)."""
    import pandas as pd

    results_dir = benchmark_results(results_dir)
    bench = shape_benchmarks(results_dir)
    manifests = model_manifests()
    for name in (model, base_model):
        if name is not None and name not in manifests:
            raise ValueError(f"model {name!r} has no manifest; valid: {sorted(manifests)}")
    row = _shape_row(model, bench)
    engines = sorted((results_dir / "speed").glob("knockout_sweep_*.json"))  # its reference: one forward per plan
    if row is None or not engines:
        raise ValueError(f"{results_dir}: no GPU shapes benchmark for {model!r} (nor for a model of its shape) or no "
                         f"speed/knockout_sweep_*.json: run benchmarks/model_shapes.py and benchmarks/knockout_sweep.py; "
                         f"benchmarked shapes: {sorted(bench)}")
    base_row = _shape_row(base_model, bench) if base_model else None
    per_plan = row["fast_s_per_question"] / row["plans"]
    per_forward = forward_seconds(row, json.loads(engines[0].read_text()))
    tasks = {t: v for t, v in load_manifest(manifest)["tasks"].items() if v.get("analysed", True)}
    questions = sum(v["questions"] for v in tasks.values())
    selection = tasks.get(selection_task, {"questions": 0})["questions"]
    rows = []
    for section in SECTIONS:
        plans = plans_per_question(section, row["layers"])
        seconds = ((plans["sweep"] * per_plan + plans["forwards"] * per_forward) * questions
                   + plans["selection"] * per_plan * selection)
        two = section in WITH_BASE and base_row is not None
        rows.append({"section": section, "models": 2 if two else 1, "sweep plans per question": plans["sweep"],
                     "full forwards per question": plans["forwards"],
                     f"{selection_task} sweep plans per question": plans["selection"], "questions": questions,
                     "estimated GPU hours": seconds / 3600,
                     "GPU memory GiB (estimate)": row["peak_mem_gib"] + (base_row["weights_gib"] if two else 0)})
    table = pd.DataFrame(rows)
    table.attrs.update(shape=row["model"], gpu=row["gpu"], s_per_plan=per_plan, s_per_forward=per_forward,
                       base_shape=base_row and base_row["model"])
    return table
