"""The package as a user meets it: the public API, the command line and the README's example."""

import re
import subprocess
import sys
from pathlib import Path

import flowutils
from flowutils.data import synthetic

ROOT = Path(__file__).resolve().parent.parent


def test_public_api_names_exist():
    missing = [name for name in flowutils.__all__ if not hasattr(flowutils, name)]
    assert not missing


def test_command_line_lists_its_subcommands():
    out = subprocess.run([sys.executable, "-m", "flowutils", "--help"], capture_output=True, text=True, check=True)
    assert "{data,validate" in out.stdout


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's minimal example, on a two-question-per-task benchmark, imports from flowutils alone."""
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"Minimal use.*?```python\n(.*?)```", readme, re.S).group(1)
    assert re.findall(r"^(?:from|import) (\S+)", code, re.M) == ["flowutils"]
    bench = synthetic.write_benchmark(tmp_path / "bench", 2, progress=False)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(code.replace("data/synthetic-test-seed0-n48", str(bench)), scope)
    assert scope["probs"].shape[0] == len(scope["plans"]) == scope["fm"].n_layers
    assert set(scope["table"]["flow"]) <= {"cross-frame", "video->last"} and any((tmp_path / "results" / "sweeps").glob("*/params.json"))
