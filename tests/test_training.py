"""Training/evaluation helpers of the toy models, checked against the processor and per-sample forwards."""

import numpy as np
import pandas as pd
import pytest
import torch

from flowutils.data import sample_frames
from flowutils.toy.models import ToyConfig, build_toy
from flowutils.inputs.prompt import build_prompt, prompt_text
from flowutils.models import prompt_template
from flowutils.data.synthetic import COLORS, IMAGE_TASKS, describe, generate
from flowutils.toy.training import (STAGE_COLUMNS, accuracy_table, blanked, continuation, encode_all, heldout_bars_table,
                                    pixel_values, prediction_table, recipe_table, render_samples, scene_text_table,
                                    stage_table, train, training_curves)

TEMPLATE = "eval_mvbench"
TINY = ToyConfig(vision_layers=1, vision_hidden=32, vision_heads=2, text_layers=2, text_hidden=32, text_heads=2,
                 text_kv_heads=2, text_intermediate=64)


@pytest.fixture(scope="module")
def toy():
    return build_toy(TINY, seed=0)


@pytest.fixture(scope="module")
def videos():
    return render_samples(["moving_direction", "object_count"], 3, seed=0, split="test")


def _processor_inputs(processor, sample):
    prompt = prompt_text(build_prompt(prompt_template(TEMPLATE), "<video>", sample.question, sample.candidates))
    return processor(text=prompt, videos=[sample.frames], return_tensors="pt")


def test_encoding_and_pixels_match_the_processor(toy, videos):
    model, processor = toy
    enc = encode_all(processor, TEMPLATE, videos)
    tok = processor.tokenizer
    for i, s in enumerate(videos):
        ref = _processor_inputs(processor, s)
        last = int(enc["last"][i])
        assert enc["input_ids"][i, :last + 1].tolist() == ref["input_ids"][0].tolist()
        target = enc["input_ids"][i, last + 1:last + 1 + int(enc["n_target"][i])]
        assert tok.decode(target).replace(" ", "") == continuation(s).replace(" ", "")
        assert tok.decode(target[:1]) == chr(65 + s.answer_index) == chr(65 + int(enc["gold"][i]))
        torch.testing.assert_close(pixel_values(enc["frames"][i:i + 1], processor), ref["pixel_values_videos"],
                                   atol=1e-5, rtol=0)


def test_text_contexts_replace_the_video(toy, videos):
    _, processor = toy
    tok = processor.tokenizer
    for text, expected in (("answer", lambda s: s.answer), ("scene", describe)):
        enc = encode_all(processor, TEMPLATE, videos, text=text)
        assert "frames" not in enc
        for i, s in enumerate(videos):
            prompt = tok.decode(enc["input_ids"][i, :int(enc["last"][i]) + 1])
            assert tok.decode(tok(expected(s))["input_ids"]) in prompt and "<video>" not in prompt
    with pytest.raises(ValueError, match="unknown text context 'caption'.*answer.*scene"):
        encode_all(processor, TEMPLATE, videos, text="caption")


def test_predictions_match_a_forward_per_sample(toy, videos):
    """Batched, padded, option-restricted predictions == one unpadded processor forward per sample."""
    model, processor = toy
    table = prediction_table(model, processor, TEMPLATE, videos)
    letters = processor.tokenizer.convert_tokens_to_ids([chr(65 + k) for k in range(8)])
    for row, s in zip(table.itertuples(), videos):
        with torch.no_grad():
            logits = model(**_processor_inputs(processor, s)).logits[0, -1]
        options = logits[letters[:len(s.candidates)]]
        assert row.predicted == int(options.argmax())
        assert row.letter_is_top_token == (int(logits.argmax()) == letters[row.predicted])
        assert row.gold == s.answer_index and row.objects == len(s.meta.get("objects", []))


def test_accuracy_table_counts_like_a_loop():
    rng = np.random.default_rng(0)
    p = pd.DataFrame({"task": rng.choice(["a", "b"], 50), "objects": rng.integers(1, 3, 50), "n_options": 4,
                      "gold": rng.integers(0, 4, 50), "predicted": rng.integers(0, 4, 50),
                      "letter_is_top_token": rng.random(50) < 0.5})
    table = accuracy_table(p, by=("task", "objects"))
    for row in table.itertuples():
        rows = [r for r in p.itertuples() if r.task == row.task and r.objects == row.objects]
        assert row.n == len(rows)
        assert row.accuracy == round(100 * sum(r.gold == r.predicted for r in rows) / len(rows), 1)
        assert row.letter_is_top_token == round(100 * sum(r.letter_is_top_token for r in rows) / len(rows), 1)
        assert row.chance == 25.0


def test_sharded_rendering_continues_with_the_next_streams():
    whole = render_samples(["object_count"], 5, seed=0, split="train")
    sharded = render_samples(["object_count", "image_color"], 5, seed=0, split="train", shard_size=2, workers=2)
    assert [s.task for s in sharded] == ["object_count"] * 5 + ["image_color"] * 5
    # pieces of 2: shard 0 is the unsharded stream, then shards 1 and 2 from their own starts
    expected = [s.frames for s in whole[:2]] + [sample_frames(s.frames, 8) for j, n in ((1, 2), (2, 1))
                                                for s in generate("object_count", n, 0, "train", shard=j)]
    assert all(np.array_equal(a.frames, b) for a, b in zip(sharded[:5], expected))
    assert not np.array_equal(sharded[2].frames, whole[2].frames)


def test_blanked_copies_are_grey(videos):
    grey = blanked(videos)
    for g, s in zip(grey, videos):
        assert (g.frames == 128).all() and g.frames.shape == s.frames.shape
        assert g.question == s.question and g.candidates == s.candidates and g.answer == s.answer
        assert not (s.frames == 128).all()


@pytest.mark.parametrize("task", ["image_color", "image_shape", "image_count", "object_count"])
def test_describe_names_the_colours_drawn(task):
    """The description lists exactly the palette colours found in the pixels."""
    for s in render_samples([task], 6, seed=3, split="test"):
        pixels = {tuple(int(v) for v in c) for c in s.frames.reshape(-1, 3)}
        drawn = {name for name, rgb in COLORS.items() if tuple(rgb) in pixels}
        said = {word.lower().strip(".") for word in describe(s).split()} & set(COLORS)
        assert said == drawn, (describe(s), drawn)


def test_describe_falls_back_to_the_answer():
    s = render_samples(["moving_direction"], 1, seed=0, split="test")[0]
    assert describe(s) == s.answer


def test_train_fits_a_small_set():
    """A few AdamW steps on eight text questions bring the loss well down."""
    model, processor = build_toy(TINY, seed=1)
    enc = encode_all(processor, TEMPLATE, render_samples(IMAGE_TASKS, 2, seed=0, split="train"), text="answer")
    log = train(model, processor, {"text": (enc, 1.0)}, steps=60, batch_size=8, lr=3e-3, log_every=10,
                noise=0.0, progress=False)
    assert log[-1]["text_loss"] < 0.5 * log[0]["text_loss"], [e["text_loss"] for e in log]


def test_training_curves_put_stages_one_after_another():
    record = {"logs": {"text_0": [{"step": 5, "text_loss": 2.0, "text_train_acc": 0.5},
                                  {"step": 10, "text_loss": 1.0, "text_train_acc": 0.7, "heldout": {"x": 40.0}}],
                       "image_0": [{"step": 4, "image_loss": 0.5, "image_train_acc": 0.9, "heldout": {"x": 80.0}}]}}
    losses, heldout = training_curves(record)
    assert losses.step.tolist() == [5, 10, 14] and losses.set.tolist() == ["text", "text", "image"]
    assert heldout.to_dict("records") == [{"stage": "text_0", "step": 10, "task": "x", "accuracy": 40.0},
                                          {"stage": "image_0", "step": 14, "task": "x", "accuracy": 80.0}]


def test_recipe_table_reads_stages_contexts_and_accuracies():
    image_args = {"command": "image", "text_steps": 10, "text_context": "scene"}
    record = {"config": {"patch_size": 4}, "args": {"command": "video"}, "image_args": [image_args],
              "logs": {"text_0": [{"step": 10, "heldout": {"a": 30.0}}],
                       "image_0": [{"step": 5}, {"step": 20, "heldout": {"a": 70.0, "b": 60.0}}]},
              "heldout": {"accuracy": {"image": [{"task": "a", "accuracy": 65.0}], "video": []}}}
    old = {"config": {"patch_size": 8}, "args": {"command": "image", "text_steps": 3},
           "logs": {"text": [{"step": 3, "heldout": {"a": 20.0}}]}}
    table = recipe_table({"new": record, "old": old}, ["a", "b"]).set_index("record")
    assert table.loc["new", "stages"] == "text_0 10, image_0 20" and table.loc["new", "LM pretraining"] == "scene"
    assert (table.loc["new", "a val"], table.loc["new", "a test"], table.loc["new", "b val"]) == (70.0, 65.0, 60.0)
    assert table.loc["old", "LM pretraining"] == "answer" and table.loc["old", "patch"] == 8
    assert table.loc["old", "a val"] == 20.0 and pd.isna(table.loc["old", "a test"])
    assert (table.loc["old", "heads"], table.loc["old", "vision"]) == (4, "answer loss")
    # the shipped recipe's chain: scene curriculum -> vision pretraining -> image stage with the tower frozen
    chain = {"config": {"patch_size": 8, "text_heads": 8}, "args": {"command": "image", "text_steps": 0, "freeze_vision": True},
             "earlier_args": [{"command": "vision"}, {"command": "text"}], "data_args": {"count_per_task": 96000},
             "logs": {"scene_text": [{"step": 8}], "vision": [{"step": 2}], "image_2": [{"step": 5, "heldout": {"a": 99.0}}]}}
    row = recipe_table({"chain": chain}, ["a"]).iloc[0]
    assert (row["heads"], row["LM pretraining"], row["vision"]) == (8, "scene curriculum", "patch labels, frozen")
    assert row["stages"] == "scene_text 8, vision 2, image_2 5" and row["a val"] == 99.0
    assert (row["count samples"], table.loc["old", "count samples"]) == (96000, 24000)


def test_scene_text_table_one_row_per_evaluation():
    record = {"config": {"text_heads": 8}, "args": {"command": "text", "lr": 1e-3, "max_objects": 3},
              "logs": {"scene_text": [{"step": 50}, {"step": 100, "heldout": {"a/2": 60.0, "a/3": 40.0, "b/2": 1.0}},
                                      {"step": 200, "heldout": {"a/2": 100.0, "a/3": 90.0}}]}}
    table = scene_text_table({"r": record}, tasks=("a",))
    assert table.to_dict("records") == [
        {"record": "r", "heads": 8, "lr": 1e-3, "max objects": 3, "step": 100, "a/2": 60.0, "a/3": 40.0},
        {"record": "r", "heads": 8, "lr": 1e-3, "max objects": 3, "step": 200, "a/2": 100.0, "a/3": 90.0}]
    built_on = {"config": {"text_heads": 8}, "args": {"command": "video"}, "image_args": [{"command": "image"}, record["args"]],
                "logs": record["logs"]}
    assert scene_text_table({"m": built_on}, tasks=("a",)).drop(columns="record").equals(table.drop(columns="record"))


def test_cache_config_refuses_only_an_encoding_mismatch(tmp_path):
    """The script's guard: a model may differ from the cache in LM sizes, not in what the processor encodes."""
    import importlib.util
    import json
    from dataclasses import asdict
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_toy_models", Path(__file__).parent.parent / "scripts" / "train_toy_models.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    (tmp_path / "config.json").write_text(json.dumps(asdict(ToyConfig())))
    wider = asdict(ToyConfig(text_heads=4, text_kv_heads=4))
    assert script.cache_config(tmp_path, wider) == ToyConfig(text_heads=4, text_kv_heads=4)
    assert script.cache_config(tmp_path) == ToyConfig()
    with pytest.raises(ValueError, match="patch_size"):
        script.cache_config(tmp_path, asdict(ToyConfig(patch_size=4)))


def test_stage_table_first_stage_first_with_dashes():
    record = {"args": {"command": "video", "video_steps": 30, "lr": 1e-3},
              "image_args": [{"command": "image", "image_steps": 20, "freeze_vision": True}],
              "earlier_args": [{"command": "text", "steps": 10}]}
    table = stage_table(record)
    assert table["stage"].tolist() == ["text", "image", "video"]
    assert table.loc[0, "steps"] == 10 and table.loc[0, "video_steps"] == "-"
    assert table.loc[1, "freeze_vision"] == True and table.loc[2, "lr"] == 1e-3  # noqa: E712
    assert list(table.columns) == ["stage", *STAGE_COLUMNS]


def test_heldout_bars_table_meets_and_misses():
    def model(image, video, blanked):
        return {"heldout": {"chance": {"a": 50.0, "b": 25.0},
                            "accuracy": {"image": {"b": image}, "video": {"a": video}, "video_blanked": {"a": blanked}}}}
    table = heldout_bars_table({"toy-videollm": model(100.0, 95.0, 55.0), "toy-imagellm": model(89.0, 61.0, 50.0)})
    met = {(r.model, r.input): r.met for r in table.itertuples()}
    assert met == {("toy-videollm", "video"): True, ("toy-imagellm", "image"): False,  # 89 < 90
                   ("toy-imagellm", "video"): False,  # 61 is 11 points from chance
                   ("toy-videollm", "video_blanked"): True}
    assert table[table.model == "toy-imagellm"].bar.tolist() == [">= 90", "within 10 of chance"]
