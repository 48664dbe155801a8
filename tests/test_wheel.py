"""The built wheel works outside the checkout: manifests ship as package data, the toy checkpoints are
found through ``FLOWUTILS_HOME``.

The wheel is built (setuptools, no build isolation: nothing is downloaded) from a copy of the files a
``pip install .`` reads, and installed with ``--no-deps`` into a fresh venv whose only link to this
interpreter is a ``.pth`` line naming its site-packages (torch and the rest, not downloaded again; a
``.pth`` line adds the folder without running that folder's own ``.pth`` files, so an editable flowutils
installed there stays out). Everything then runs from a temporary folder with the checkout off
``sys.path``.
"""

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import flowutils
from flowutils.data import synthetic

ROOT = Path(__file__).resolve().parents[1]

# what the subprocess runs: the installed flowutils, first without FLOWUTILS_HOME, then with it
SCRIPT = """
import os, sys, sysconfig
from pathlib import Path

import numpy as np
import flowutils
from flowutils.data import synthetic
from flowutils.data.paths import HomeNotFoundError

checkout = Path(sys.argv[1])
assert Path(flowutils.__file__).is_relative_to(sysconfig.get_paths()["purelib"]), flowutils.__file__
assert all(Path(p or ".").resolve() != checkout for p in sys.path), sys.path
try:
    flowutils.load("toy-videollm")
    raise SystemExit("toy-videollm loaded with FLOWUTILS_HOME unset, outside a checkout")
except HomeNotFoundError as err:
    print("unset:", err)
os.environ["FLOWUTILS_HOME"] = str(checkout)
fm = flowutils.load("toy-videollm")
p = fm.prepare_sample(next(synthetic.generate("action_antonym", 1, seed=0, split="test")))
plan = flowutils.sweep_plans(p.layout, ["cross-frame"], fm.n_layers, k=3)[0]
np.save(sys.argv[2], flowutils.knockout_logits(fm, p, [plan]).numpy())
"""


def _run(argv, cwd, **kw):
    # the checkout stays off sys.path: no PYTHONPATH, no user site; the home only where the script sets it
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLOWUTILS_HOME")}
    run = subprocess.run(argv, cwd=cwd, env=env | {"PYTHONNOUSERSITE": "1"}, capture_output=True, text=True, **kw)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory):
    """The python of a fresh venv holding the wheel built from this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build's egg-info and build/ stay out of the checkout
    shutil.copytree(ROOT / "flowutils", src / "flowutils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", tmp / "dist", src], tmp)
    wheel = next((tmp / "dist").glob("flowutils-*.whl"))
    _run([sys.executable, "-m", "venv", "--without-pip", tmp / "venv"], tmp)
    python = tmp / "venv" / "bin" / "python"
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], tmp)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).stdout.strip()
    # after the install: pip would otherwise see the dependencies' environment's flowutils as installed
    (Path(purelib) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def test_command_line_runs_from_another_directory(venv_python, tmp_path):
    assert "{data,validate" in _run([venv_python, "-m", "flowutils", "--help"], tmp_path).stdout


def test_toy_model_loads_and_a_knockout_runs_from_another_directory(venv_python, tmp_path):
    run = _run([venv_python, "-c", SCRIPT, ROOT, tmp_path / "logits.npy"], tmp_path, timeout=300)
    assert "FLOWUTILS_HOME is not set" in run.stdout  # the error names the setting
    fm = flowutils.load("toy-videollm")  # this checkout's flowutils: the same numbers
    p = fm.prepare_sample(next(synthetic.generate("action_antonym", 1, seed=0, split="test")))
    plan = flowutils.sweep_plans(p.layout, ["cross-frame"], fm.n_layers, k=3)[0]
    expected = flowutils.knockout_logits(fm, p, [plan])
    assert torch.allclose(torch.from_numpy(np.load(tmp_path / "logits.npy")), expected, atol=1e-5)
