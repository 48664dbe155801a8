"""The shipped toy models: checksums verified on load, accuracy re-measured on a held-out slice (CPU)."""

import shutil

import pytest

from flowutils.data.manifests import load_manifest
from flowutils.data.paths import home
from flowutils.models import load
from flowutils.toy.models import TOY_MODELS
from flowutils.toy.training import accuracy_table, heldout_samples, prediction_table

N = 48  # questions per task: the first N of the held-out stream the manifest's numbers (n=200) come from


@pytest.fixture(scope="module")
def measured():
    """``{model: {kind: accuracy table}}`` re-measured on the CPU."""
    spec = load_manifest("toy_models")["models"]["toy-videollm"]["heldout"]
    samples = heldout_samples(N, spec["seed"], spec["split"])
    out = {}
    for name in TOY_MODELS:
        fm = load(name)
        out[name] = {kind: accuracy_table(prediction_table(fm.model, fm.processor, fm.template, s))
                     for kind, s in samples.items()}
    return out


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    shutil.copytree(home() / "models" / "toy-imagellm", tmp_path / "models" / "toy-imagellm")
    weights = tmp_path / "models" / "toy-imagellm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("FLOWUTILS_HOME", str(tmp_path))  # the copy, not the shipped files
    with pytest.raises(ValueError, match="checksum mismatch"):
        load("toy-imagellm")


@pytest.mark.parametrize("name", TOY_MODELS)
def test_accuracy_matches_the_manifest(measured, name):
    """Within 20 points (3 sd of a 48-question slice) of the recorded n=200 accuracy, per task."""
    recorded = load_manifest("toy_models")["models"][name]["heldout"]["accuracy"]
    for kind, table in measured[name].items():
        for row in table.itertuples():
            assert abs(row.accuracy - recorded[kind][row.task]) <= 20, (name, kind, row.task, row.accuracy)


def test_no_shortcut_image_llm_and_blanked_video_near_chance(measured):
    """The ImageLLM (never saw video) and the VideoLLM without pixels stay near chance on the temporal tasks."""
    for table in (measured["toy-imagellm"]["video"], measured["toy-videollm"]["video_blanked"]):
        assert (abs(table.accuracy - table.chance) <= 20).all(), table.to_dict("records")
