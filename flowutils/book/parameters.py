"""The section notebooks' parameters: defaults, validation, and the inputs they name.

Every section notebook has one papermill ``parameters`` cell, then a validation cell that
calls :func:`validate` with the notebook's globals. papermill only *warns* about a
parameter name the notebook does not define (it injects it as a new variable); here an
unknown name, a value of the wrong type or outside its valid choices is an error that
names the parameter and lists what is valid. :func:`load_inputs` then loads the models
and questions the parameters name, through the one model loader
(:func:`flowutils.models.load`), so a notebook runs a real checkpoint unchanged, and
:func:`sweep_store` points its knockout sweeps at the result store the ``sweep`` command writes.

The defaults run the toy VideoLLM and its ImageLLM base on the synthetic benchmark on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..data import load_benchmark, synthetic
from ..data.manifests import available_manifests, load_manifest, manifest_identity
from ..data.paths import home
from ..data.video import NUM_FRAMES
from ..knockout.windows import STYLES
from ..models import load
from ..analysis.runner import SAMPLE_MODES

DTYPES = ("float32", "bfloat16", "float16")
SYNTHETIC_DEFAULT = "data/synthetic-test-seed0-n48"


@dataclass(frozen=True)
class Parameter:
    """One notebook parameter: its default, what is valid, and a check returning an error or None."""

    default: Any
    valid: str
    check: Callable[[Any], bool]
    help: str = ""


def _int(lo: int | None = None):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)


def _opt(check):
    return lambda v: v is None or check(v)


def _str(v) -> bool:
    return isinstance(v, str) and bool(v)


def _tasks(v) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and all(_str(t) for t in v) and len(v) > 0)


PARAMETERS: dict[str, Parameter] = {
    "model": Parameter("toy-videollm", "a model name of flowutils/manifests/ or a checkpoint directory", _str,
                       "the VideoLLM analysed"),
    "base_model": Parameter("toy-imagellm", "a model name, a checkpoint directory, or None", _opt(_str),
                            "its ImageLLM base (Figure 2's comparison)"),
    "benchmark_root": Parameter(SYNTHETIC_DEFAULT, "a benchmark folder (the synthetic one is rendered if missing)",
                                _str, "relative paths are relative to the flowutils home (the checkout)"),
    "manifest": Parameter("synthetic", "one of flowutils/manifests/*.yaml", _str),
    "tasks": Parameter(None, "None (the manifest's analysed tasks) or a non-empty list of task names", _tasks),
    "n_per_task": Parameter(48, "an integer >= 1", _int(1), "questions per task (the first n of each task)"),
    "num_frames": Parameter(NUM_FRAMES, "an integer >= 1", _int(1), "frames sampled per video"),
    "window_size": Parameter(None, "None (the model's protocol: the paper's k = 9 on its models, scaled to the depth "
                                   "on the others) or an integer >= 1", _opt(_int(1))),
    "window_style": Parameter("center", f"one of {STYLES}", lambda v: v in STYLES),
    "sample_mode": Parameter("correct", f"one of {SAMPLE_MODES}", lambda v: v in SAMPLE_MODES),
    "device": Parameter("cpu", "'cpu', 'cuda' or 'cuda:<i>'", lambda v: isinstance(v, str) and
                        (v == "cpu" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit()))),
    "dtype": Parameter("float32", f"one of {DTYPES}", lambda v: v in DTYPES),
    "results_dir": Parameter("results", "a folder path (figures, tables and sweeps are written there)", _str),
    "seed": Parameter(0, "an integer >= 0", _int(0)),
}

# names IPython itself puts in a notebook's globals
_IPYTHON = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    """A notebook parameter is unknown or invalid (the message names it and what is valid)."""


# the pages that read layer intervals (Table E, Figure 4's bins) take it as an extra parameter
INTERVAL_SIZE = Parameter(None, "None (the model's protocol: the paper's 5 layers on its models, scaled to the depth "
                                "on the others) or an integer >= 1", _opt(_int(1)),
                          "layers per interval of Table E / bin of Figure 4")


def validate(scope: dict, names=None, extra: dict[str, Parameter] | None = None) -> dict:
    """Check a notebook's parameters; returns ``{name: value}``.

    ``scope``: the notebook's ``globals()`` right after its parameters (and papermill's
    injected parameters); every public name in it must be a known parameter. ``names``:
    the parameters this notebook has (default: all of :data:`PARAMETERS`); ``extra``: the
    notebook's own parameters.
    """
    spec = {n: PARAMETERS[n] for n in (names or PARAMETERS)} | (extra or {})
    given = {k: v for k, v in scope.items() if not k.startswith("_") and k not in _IPYTHON
             and not callable(v) and type(v).__name__ != "module" and not isinstance(v, Parameter)}
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; this notebook's parameters are {sorted(spec)}")
    missing = sorted(set(spec) - set(given))
    if missing:
        raise ParameterError(f"parameter(s) {missing} are not set; the parameters cell must define {sorted(spec)}")
    for name, p in spec.items():
        if not p.check(given[name]):
            raise ParameterError(f"parameter {name}={given[name]!r} is invalid; valid: {p.valid}")
    if "manifest" in given and given["manifest"] not in available_manifests():
        raise ParameterError(f"parameter manifest={given['manifest']!r} is invalid; valid: {available_manifests()}")
    if "tasks" in given and given["tasks"] is not None:
        known = list(load_manifest(given["manifest"])["tasks"])
        bad = [t for t in given["tasks"] if t not in known]
        if bad:
            raise ParameterError(f"parameter tasks has unknown task(s) {bad} for manifest "
                                 f"{given['manifest']!r}; valid: {known}")
    return {name: given[name] for name in spec}


def repository_path(path: str | Path) -> Path:
    """A relative path is relative to the flowutils home (:func:`flowutils.data.paths.home`: ``$FLOWUTILS_HOME``,
    else the checkout), not to the working directory (notebooks run from ``book/``)."""
    path = Path(path)
    return path if path.is_absolute() else home() / path


def benchmark_root(params: dict) -> Path:
    """The benchmark folder; the default synthetic benchmark is rendered (deterministically) where it is missing or
    unfinished (:func:`flowutils.data.synthetic.write_benchmark`: pages run at once render it once, the others
    wait for it)."""
    root = repository_path(params["benchmark_root"])
    if params["manifest"] == "synthetic" and params["benchmark_root"] == SYNTHETIC_DEFAULT \
            and not synthetic.is_complete(root):
        synthetic.write_benchmark(root, 48, seed=0, split="test", progress=False)
    return root


def sweep_store(params: dict) -> dict:
    """``out`` and ``benchmark`` of :func:`flowutils.analysis.sweep.run_sweep` for a notebook: sweeps go
    to ``<results_dir>/sweeps``, keyed as the ``sweep`` command keys them, so a notebook rerun after
    ``python -m flowutils sweep ... --out <results_dir>/sweeps`` reads those results and computes nothing twice."""
    return {"out": repository_path(params["results_dir"]) / "sweeps", "benchmark": manifest_identity(params["manifest"])}


def load_inputs(params: dict):
    """``(model, base model or None, questions)`` named by validated ``params``."""
    import torch

    dtype = getattr(torch, params["dtype"])
    fm = load(params["model"], dtype=dtype, device=params["device"])
    base = None
    if params.get("base_model"):
        base = load(params["base_model"], dtype=dtype, device=params["device"])
    samples = load_benchmark(benchmark_root(params), params["manifest"], params["tasks"], params["n_per_task"])
    for model in (fm, base):
        if model is not None:
            warning = weights_warning(model, params["dtype"])
            if warning:
                print(warning)
    return fm, base, samples


def weights_warning(fm, dtype: str) -> str | None:
    """What a page must say about ``fm``'s weights before its numbers: RANDOM WEIGHTS where its ``config.json`` says
    ``flowutils_random_weights`` (a rehearsal checkpoint, ``benchmarks/rehearsal.py``); for a model whose manifest
    names a paper checkpoint, WEIGHTS DIFFER where the manifest's ``weights_sha256`` (the state loaded in bfloat16,
    :func:`flowutils.analysis.store.state_sha256`) is not this run's, UNVERIFIED WEIGHTS where it pins none; else
    None."""
    from ..analysis.store import state_sha256
    from ..models.loading import model_manifests

    if getattr(fm.model.config, "flowutils_random_weights", False):
        return (f"RANDOM WEIGHTS: {fm.name} is a random-weight checkpoint (config.json: flowutils_random_weights); "
                "every number and verdict on this page measures the code path, not the paper's model.")
    spec = model_manifests().get(fm.name)
    if spec is None or "paper" not in spec.get("role", ""):
        return None
    pinned = spec.get("weights_sha256")
    if pinned is None:
        return (f"UNVERIFIED WEIGHTS: the manifest of {fm.name} pins no weights_sha256, so nothing shows that these are "
                "the paper's weights (the sha256 of this run's is in its saved claims' run identity)")
    if dtype == "bfloat16" and state_sha256(fm.model) != pinned:
        return (f"WEIGHTS DIFFER: {fm.name}'s weights are not the checkpoint its manifest pins (weights_sha256); "
                "every number and verdict on this page is of another model than the paper's.")
    return None


def run_identity(fm, params: dict, samples, base=None) -> dict:
    """What a page's saved claims record of its run (:data:`flowutils.paper.claims.RUN_COLUMNS`): the model's name
    and the sha256 of its weights as loaded (:func:`flowutils.analysis.store.state_sha256`), its parameter count, the
    benchmark (manifest and root), the questions loaded, the protocol in words, and :func:`weights_warning` of it and
    of the ImageLLM ``base`` where the page loads one (one line each; empty where it has nothing to say), for the
    status page to repeat."""
    from ..analysis.store import state_sha256

    return {"model": fm.name, "model_sha256": state_sha256(fm.model),
            "parameters": sum(p.numel() for p in fm.model.parameters()),
            "benchmark": f"{params['manifest']} ({params['benchmark_root']})", "questions": len(samples),
            "protocol": fm.protocol.rule,
            "weights": "\n".join(filter(None, (weights_warning(m, params["dtype"]) for m in (fm, base) if m)))}
