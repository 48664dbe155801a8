"""``flowutils.models.load``: manifest names, local directories, hub ids from the local cache only,
config checks against the manifest, and clear errors naming the path and the manifest."""

import shutil

import pytest
import torch
import transformers

from flowutils.models import ADAPTERS, adapter_for, load, loading, model_manifests
from tiny_families import tiny_checkpoint

PAPER_MODELS = ("llava-next-7b-video-ft", "llava-next-13b-video-ft", "mini-internvl-4b-video-ft", "videollama3-7b")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("pllava") / "ckpt"
    model, _ = tiny_checkpoint("pllava", path)
    return path, model


def test_every_paper_model_has_a_manifest_with_the_required_fields():
    specs = model_manifests()
    assert set(PAPER_MODELS) <= set(specs)
    for name, spec in specs.items():
        missing = {"name", "family", "source", "revision", "expected", "licence"} - set(spec)
        assert not missing, (name, missing)
        assert {"layers", "hidden_size", "tokens_per_frame"} <= set(spec["expected"]), name


def test_missing_checkpoint_names_the_paths_and_the_manifest(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWUTILS_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load("llava-next-7b-video-ft")
    msg = str(err.value)
    assert str(tmp_path / "llava-next-7b-video-ft") in msg and "llava-next-7b-video-ft.yaml" in msg
    with pytest.raises(FileNotFoundError, match="known names"):
        load(tmp_path / "nowhere")


def test_manifest_name_loads_from_the_model_dir_and_names_every_mismatch(monkeypatch, tmp_path, tiny_ckpt):
    path, _ = tiny_ckpt
    shutil.copytree(path, tmp_path / "llava-next-7b-video-ft")
    monkeypatch.setenv("FLOWUTILS_MODEL_DIR", str(tmp_path))
    with pytest.raises(ValueError) as err:
        load("llava-next-7b-video-ft")  # a tiny model is not the 7B the manifest describes
    msg = str(err.value)
    for part in ("layers: checkpoint has 4, manifest expects 32", "hidden_size: checkpoint has 64",
                 "video_token_id: checkpoint has", "llava-next-7b-video-ft.yaml"):
        assert part in msg, part
    # the manifest's pooling_shape (8, 12, 12) was applied before the check: 144 tokens per frame agree
    assert "tokens_per_frame" not in msg
    fm = load("llava-next-7b-video-ft", check_manifest=False, config_overrides={"pooling_shape": [2, 2, 2]})
    assert fm.adapter.family == "pllava" and fm.template.name == "eval_mvbench"


def test_manifest_values_agree_with_a_config_of_the_real_shape():
    """A config with the 7B checkpoint's shape (no weights) passes the 7B manifest's check, the 13B's fails."""
    config = transformers.LlavaNextConfig(
        text_config={"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096},
        image_token_index=32000)
    config.pooling_shape = [8, 12, 12]
    adapter = adapter_for(config, "pllava")
    specs = model_manifests()
    assert loading.config_mismatches(config, adapter, specs["llava-next-7b-video-ft"]["expected"]) == []
    assert loading.config_mismatches(config, adapter, specs["llava-v1.6-vicuna-7b"]["expected"]) == []
    bad = loading.config_mismatches(config, adapter, specs["llava-next-13b-video-ft"]["expected"])
    assert [b.split(":")[0] for b in bad] == ["layers", "hidden_size"]


def test_hub_id_from_the_local_cache_only(monkeypatch, tmp_path, tiny_ckpt):
    import huggingface_hub.constants

    path, model = tiny_ckpt
    repo = tmp_path / "models--someone--tiny-pllava"
    shutil.copytree(path, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fm = load("someone/tiny-pllava", dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(fm.model.state_dict().values(), model.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        load("someone/not-downloaded")


def test_unknown_family_names_the_valid_ones(tiny_ckpt):
    path, _ = tiny_ckpt
    with pytest.raises(ValueError, match="supported"):
        load(path, family="nope")


def test_supported_models_table_is_built_from_manifests_adapters_and_results(tmp_path):
    import json

    from flowutils.models import supported_models

    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "model_shapes_H200.json").write_text(json.dumps({"gpu": "NVIDIA H200", "tiny": False, "results": [
        {"model": "llava-next-7b-video-ft", "fast_s_per_question": 1.5, "peak_mem_gib": 15.0}]}))
    table = supported_models(tmp_path).set_index("model")
    assert set(model_manifests()) <= set(table.index) and "(any qwen2_5_vl checkpoint)" in table.index
    assert table.loc["llava-next-7b-video-ft", "s / question (sweep)"] == 1.5
    # the paper's k = 9 on its 40-layer 13B too; a 28-layer model the paper did not run gets 9 scaled: 7
    assert table.loc["llava-next-7b-video-ft", "window k"] == 9 and table.loc["llava-next-13b-video-ft", "window k"] == 9
    assert table.loc["qwen3-vl-2b", "window k"] == 7 and table.loc["qwen3-vl-2b", "protocol"] == "scaled"
    missing = set(table.index[table["verified here"] == "no adapter yet"])
    assert missing == {n for n, s in model_manifests().items() if s["family"] not in ADAPTERS}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only placement; the 2-GPU test covers GPUs")
def test_device_map_auto_loads_through_accelerate(tiny_ckpt):
    """``device_map="auto"`` (accelerate's placement; here all on the CPU) gives the plain load's logits."""
    pytest.importorskip("accelerate")
    import numpy as np

    from conftest import unmodified_logits
    from tiny_families import CANDIDATES, QUESTION

    path, _ = tiny_ckpt
    plain, auto = load(path), load(path, device_map="auto")
    assert auto.device.type == "cpu"  # the only device here: accelerate puts every module on it
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    a, b = (unmodified_logits(fm, fm.prepare(frames, QUESTION, CANDIDATES, "red")) for fm in (plain, auto))
    assert torch.equal(a, b)


def test_current_family_manifests_agree_with_configs_of_the_real_shape():
    """Configs with the example checkpoints' published shapes (no weights) pass their manifests' checks."""
    specs = model_manifests()
    configs = {
        "internvl3-1b": transformers.InternVLConfig(  # InternViT-300M at 448 px, patch 14, pixel shuffle 0.5
            text_config={"model_type": "qwen2", "num_hidden_layers": 24, "hidden_size": 896}, image_token_id=151667),
        "smolvlm2-256m-video": transformers.SmolVLMConfig(  # SigLIP at 512 px, patch 16, scale factor 4
            vision_config={"image_size": 512, "patch_size": 16}, scale_factor=4, image_token_id=49190,
            text_config={"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576}),
        "qwen3-vl-2b": transformers.Qwen3VLConfig(text_config={"num_hidden_layers": 28, "hidden_size": 2048}),
    }
    for name, config in configs.items():
        adapter = adapter_for(config)
        assert adapter.family == specs[name]["family"]
        assert loading.config_mismatches(config, adapter, specs[name]["expected"]) == [], name
    assert loading.config_mismatches(configs["internvl3-1b"], adapter_for(configs["internvl3-1b"]),
                                     specs["smolvlm2-256m-video"]["expected"])  # and they can fail


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (run on nvidia-h200-x2)")
def test_device_map_spreads_a_model_over_two_gpus(tiny_ckpt):
    """accelerate's placement over 2 GPUs: the unmodified logits and every knockout backend agree with the
    model on one GPU (fast == reference <= 1e-4 on random plans)."""
    import numpy as np
    from accelerate import infer_auto_device_map

    from conftest import unmodified_logits
    from flowutils.engine import knockout_logits
    from test_families import _random_plans
    from tiny_families import CANDIDATES, QUESTION

    path, model = tiny_ckpt
    one = load(path, device="cuda:0")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    placement = infer_auto_device_map(model, max_memory={0: size // 2, 1: 4 * size},
                                      no_split_module_classes=model._no_split_modules)
    assert set(placement.values()) == {0, 1}, placement
    two = load(path, device_map=placement)
    assert {p.device.index for p in two.model.parameters()} == {0, 1}
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    p1, p2 = (fm.prepare(frames, QUESTION, CANDIDATES, "red") for fm in (one, two))
    assert (unmodified_logits(one, p1).cpu() - unmodified_logits(two, p2).cpu()).abs().max() <= 1e-5
    plans = _random_plans(p1.layout, one.n_layers, seed=0)
    ref = knockout_logits(one, p1, plans, "reference").softmax(-1).cpu()
    for backend in ("reference", "fast"):
        spread = knockout_logits(two, p2, plans, backend).softmax(-1).cpu()
        assert (spread - ref).abs().max() <= 1e-4, backend


def test_a_loaded_model_carries_its_protocol():
    """The toy (a model the paper did not run) gets the depth-scaled protocol; a FlowModel told "paper" the paper's."""
    from flowutils.knockout import windows
    from flowutils.models import FlowModel

    fm = load("toy-videollm")
    assert fm.protocol == windows.scaled_protocol(fm.n_layers) and fm.protocol.window_size == 3
    paper = FlowModel(fm.model, fm.processor, fm.adapter, protocol="paper", name="as-paper")
    assert paper.protocol == windows.PAPER


def test_videollama3_manifest_gives_the_papers_frame_size_and_protocol(monkeypatch, tmp_path):
    """The paper's code caps VideoLLaMA3's video at 8 x 144 tokens: each frame at most 144 and at least 16 tokens of
    28 x 28 pixels, resized by the rule of transformers' smart_resize. By hand: 336 x 336 stays (12 x 12 = 144); a
    480 x 854 frame rounds to 476 x 840 > 112,896 pixels, beta = sqrt(480 x 854 / 112,896) = 1.906, so
    floor(480 / 1.906 / 28) = 8 and floor(854 / 1.906 / 28) = 16 tokens a side: 128. Loading the manifest
    name passes that size to every processor call, and the paper's protocol with Table 3's share 0.42."""
    from transformers.models.video_llama_3.video_processing_video_llama_3 import smart_resize

    from tiny_families import tiny_checkpoint

    size = model_manifests()["videollama3-7b"]["processor_kwargs"]["size"]
    assert size == {"shortest_edge": 16 * 28 * 28, "longest_edge": 144 * 28 * 28}
    assert smart_resize(336, 336, 28, size["shortest_edge"], size["longest_edge"]) == (12 * 28, 12 * 28)
    assert smart_resize(480, 854, 28, size["shortest_edge"], size["longest_edge"]) == (8 * 28, 16 * 28)
    tiny_checkpoint("video_llama_3", tmp_path / "videollama3-7b")
    monkeypatch.setenv("FLOWUTILS_MODEL_DIR", str(tmp_path))
    fm = load("videollama3-7b", check_manifest=False)
    assert fm.adapter.processor_kwargs == {"use_token_compression": False, "size": size}
    assert (fm.protocol.window_size, fm.protocol.interval, fm.protocol.random_share) == (9, 5, 0.42)


# ------------------------------------------------------------------ damaged or mismatched checkpoints, unreadable files
@pytest.fixture
def llava_ckpt(tmp_path):
    """A fresh tiny llava_next_video checkpoint, to damage."""
    from tiny_families import tiny_checkpoint

    path = tmp_path / "tiny"
    tiny_checkpoint("llava_next_video", path)
    return path


def test_a_damaged_copy_of_a_toy_is_refused_whatever_its_path(tmp_path):
    from flowutils.data.paths import home

    copy = tmp_path / "my-toy"
    shutil.copytree(home() / "models" / "toy-videollm", copy)
    assert load(copy).n_layers == load("toy-videollm").n_layers  # an intact copy loads
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-100] ^= 1  # one byte of one weight
    (copy / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ValueError, match=r"config.json is that of .*toy-videollm.*against toy-videollm: "
                                         r"model.safetensors \([0-9a-f]{64}\) differ"):
        load(copy)


@pytest.mark.parametrize("layers, kind", [(2, "unexpected"), (6, "missing")])
def test_a_config_json_of_another_depth_than_the_weights_is_an_error(llava_ckpt, layers, kind):
    """transformers only warns and initialises missing weights at random: a truncated or padded model."""
    import json

    config = json.loads((llava_ckpt / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = layers
    (llava_ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{llava_ckpt}: the weights do not match its config.json .*{layers} layers.*"
                                         rf"\d+ {kind}, e.g. \['model.language_model.layers"):
        load(llava_ckpt)


def test_internvl_chat_layer_scales_are_loaded(tmp_path):
    """InternVL-Chat's ls1/ls2 arrive as the vision layers' lambda_1/lambda_2 (they were left at their initial value)."""
    from safetensors.torch import load_file, save_file

    from tiny_families import tiny_checkpoint

    path = tmp_path / "chat"
    tiny_checkpoint("internvl_chat_phi3", path)
    state = load_file(path / "model.safetensors")
    for key in [k for k in state if k.endswith((".ls1", ".ls2"))]:
        state[key] = torch.rand_like(state[key])
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    loaded = load(path).model.state_dict()
    for i in range(2):
        for n in (1, 2):
            assert torch.equal(loaded[f"model.vision_tower.encoder.layer.{i}.lambda_{n}"],
                               state[f"vision_model.encoder.layers.{i}.ls{n}"])


def test_a_missing_tokenizer_file_is_named(llava_ckpt):
    (llava_ckpt / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=rf"{llava_ckpt}: no tokenizer file \(one of \['tokenizer.json'"):
        load(llava_ckpt)


@pytest.mark.parametrize("text, message", [("{not json", "not valid JSON"), ("[1, 2]", "holds a JSON object, not a list")])
def test_an_invalid_config_json_is_named(llava_ckpt, text, message):
    (llava_ckpt / "config.json").write_text(text)
    with pytest.raises(ValueError, match=rf"{llava_ckpt / 'config.json'}: .*{message}"):
        load(llava_ckpt)


def test_a_safetensors_file_with_a_bad_header_is_named(llava_ckpt):
    weights = llava_ckpt / "model.safetensors"
    weights.write_bytes(b"\xff" * 16 + weights.read_bytes()[16:])
    with pytest.raises(ValueError, match=rf"{weights}: not a readable safetensors file"):
        load(llava_ckpt)


@pytest.mark.parametrize("family", ["llava_onevision", "qwen2_5_vl", "internvl_chat_phi3"])
def test_a_wrong_family_says_so_and_names_the_valid_ones(llava_ckpt, family):
    with pytest.raises(ValueError, match=rf"family '{family}' does not match this checkpoint: .*model_type "
                                         r"'llava_next_video' is read by family 'llava_next_video'; valid families: \["):
        load(llava_ckpt, family=family)
