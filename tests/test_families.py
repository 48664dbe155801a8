"""Every supported family and paper model, as a tiny random config of its REAL transformers classes.

Bars, per family: an empty plan equals the unmodified model (fp32, <= 1e-5); fast == reference
on random plans (<= 1e-4; M-RoPE families included); frame spans equal the processor's frame
count x tokens per frame, computed here from the inputs; question and option spans decode
back to the given text; a checkpoint saved in its own on-disk key layout (legacy LLaVA names
for PLLaVA) and loaded through ``flowutils.models.load`` gives the original module's logits.
The tiny checkpoints are built by ``tiny_families.py``.
"""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import unmodified_logits
from flowutils.engine import knockout_logits
from flowutils.knockout import flows, windows
from flowutils.knockout.plan import KnockoutPlan
from flowutils.models import FlowModel, family_adapter, load
from tiny_families import BUILDERS, CANDIDATES, QUESTION, tiny_checkpoint

ALL_FLOWS = [f for fam in flows.FLOW_SETS.values() for f in fam] + ["video->video", "system->video"]


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family(request, tmp_path_factory):
    """``(family, FlowModel of the original module, checkpoint directory)``."""
    path = tmp_path_factory.mktemp(request.param) / "ckpt"
    model, processor = tiny_checkpoint(request.param, path)
    return request.param, FlowModel(model, processor, family_adapter(request.param), name=f"tiny-{request.param}"), path


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)


def _prepared(fm, frames, answer="blue"):
    return fm.prepare(frames, QUESTION, CANDIDATES, answer)


def _random_plans(layout, n_layers, seed, n=6):
    rng = random.Random(seed)
    plans = []
    for _ in range(n):
        flow_list = rng.sample(ALL_FLOWS, rng.randint(1, 3))
        layers = windows.window(rng.randrange(n_layers), rng.randint(1, n_layers), n_layers,
                                rng.choice(windows.STYLES))
        plans.append(KnockoutPlan.from_flows(layout, flow_list, layers))
    return plans


# ---- bars ----------------------------------------------------------------------------------------------

def test_empty_plan_equals_unmodified_model(family, frames):
    _, fm, _ = family
    p = _prepared(fm, frames)
    ref = unmodified_logits(fm, p)[0, -1]
    for backend in ("reference", "fast"):
        assert (knockout_logits(fm, p, [KnockoutPlan()], backend)[0] - ref).abs().max() <= 1e-5, backend


def test_fast_equals_reference_on_random_plans(family, frames):
    _, fm, _ = family
    p = _prepared(fm, frames)
    for seed in range(3):
        plans = _random_plans(p.layout, fm.n_layers, seed)
        ref = knockout_logits(fm, p, plans, "reference")
        fast = knockout_logits(fm, p, plans, "fast", batch_size=2)
        assert (ref - fast).abs().max() <= 1e-4
        assert any((ref[i] - ref[0]).abs().max() > 1e-6 for i in range(len(plans)))  # the plans do cut something


def _frames_times_tokens(name, fm, prepared, frames):
    """Frames x tokens per frame, from the config and the inputs (not from the layout)."""
    config = fm.model.config
    if name == "pllava":
        t, h, w = config.pooling_shape
        assert t <= len(frames)
        return t, h * w
    if name in ("llava_next_video", "llava_onevision"):
        pixels = prepared.inputs["pixel_values_videos"]  # [1, T, 3, H, W]
        side = pixels.shape[-1] // config.vision_config.patch_size
        pooled = side // 2 if name == "llava_next_video" else -(-side // 2)
        return pixels.shape[1], pooled * pooled
    if name in ("qwen2_5_vl", "qwen3_vl"):  # a frame span is a temporal group of 2 frames
        t, h, w = prepared.inputs["video_grid_thw"][0].tolist()
        assert t == len(frames) // 2
        return t, h * w // 4
    if name == "video_llama_3":  # 2x2 patches merged per token, every frame (compression off)
        t, h, w = prepared.inputs["video_grid_thw"][0].tolist()
        assert t == len(frames)
        return t, h * w // 4
    if name in ("internvl", "internvl_chat_phi3"):  # frames stacked as images; pixel shuffle keeps a quarter of the 4x4 patches
        pixels = prepared.inputs["pixel_values"]
        return pixels.shape[0], (pixels.shape[-1] // 8) ** 2 // 4
    if name == "smolvlm":  # [1, T, 3, 32, 32]; scale factor 2 merges 2x2 patches
        pixels = prepared.inputs["pixel_values"]
        return pixels.shape[1], (pixels.shape[-1] // 8) ** 2 // 4
    raise AssertionError(name)


def test_the_reader_thread_prepares_what_the_main_thread_prepares_on_its_own_processor(family, frames):
    """The runner's reader thread (on a GPU) prepares the next questions on a view of the model with its own
    processor copy: the same inputs, and no autograd graph (grad mode is per thread)."""
    from types import SimpleNamespace

    from flowutils.analysis.runner import Timings, VideoReader

    _, fm, _ = family
    sample = SimpleNamespace(frames=frames, question=QUESTION, candidates=CANDIDATES, answer="blue", task="t",
                             sample_id="s")
    with torch.no_grad():
        main = fm.prepare_sample(sample, len(frames))
    reader = VideoReader([sample], [0], len(frames), Timings(), fm=fm)
    try:
        ahead = reader.take(0)  # prepared in the reader thread, outside this thread's grad mode
    finally:
        reader.close()
    assert reader.fm.model is fm.model and reader.fm.tokenizer is not fm.tokenizer
    assert main.inputs.keys() == ahead.inputs.keys()
    for key, value in main.inputs.items():
        assert torch.equal(value, ahead.inputs[key]), key
        assert not ahead.inputs[key].requires_grad, key
    assert main.layout == ahead.layout and main.option_ids == ahead.option_ids


def test_frame_spans_match_the_processor(family, frames):
    name, fm, _ = family
    p = _prepared(fm, frames)
    n_frames, per_frame = _frames_times_tokens(name, fm, p, frames)
    lay = p.layout
    assert lay.num_frames == n_frames and all(len(f) == per_frame for f in lay.frames)
    ids = p.input_ids[0]
    video_id = fm.adapter.video_token_id(fm.model.config)
    trailing = [i for i in lay.video_text if ids[i] == video_id]
    text_pos = [i for i in lay.video_text if ids[i] != video_id]
    assert len(trailing) == fm.adapter.trailing_video_tokens and trailing == lay.video[len(lay.video) - len(trailing):]
    assert len(lay.video) == n_frames * per_frame + len(trailing) + len(text_pos)
    text = _video_text(name, n_frames)
    if not text:  # one run: frames back to back from the region's start
        assert [f.start for f in lay.frames] == [lay.video_span.start + i * per_frame for i in range(n_frames)]
    # the video region's text (frame labels, timestamps, wrappers) is the processor's, from protocol-facts.md
    tok = fm.tokenizer
    assert _squash(tok.decode(ids[text_pos])) == _squash(tok.decode(tok(text, add_special_tokens=False)["input_ids"]))
    assert set(lay.video_text).isdisjoint(lay.question + lay.system + lay.suffix)


def _video_text(name, n_frames, times=(0, 1 / 24, 2 / 24, 3 / 24), duration=None):
    """The text a family's processor puts into the video region, written out by hand, for 4 frames shown at
    ``times`` seconds in a video of ``duration`` seconds (default: the processors' default fps of 24 for
    frames 0..3, VideoLLaMA3's 1; no duration: SmolVLM2 takes the last frame's time)."""
    if name in ("internvl", "internvl_chat_phi3"):
        return "\n".join(f"Frame{i + 1}: <img></img>" for i in range(n_frames))
    if name == "qwen3_vl":  # mean timestamp of each group of 2 frames
        return "".join(f"<{(times[2 * g] + times[2 * g + 1]) / 2:.1f} seconds><|vision_start|><|vision_end|>"
                       for g in range(n_frames))
    if name == "video_llama_3":
        times = range(n_frames) if times == _video_text.__defaults__[0] else times
        return ",".join(f"Time {t:.1f}s:" for t in times)
    if name == "smolvlm":
        seconds = int(duration if duration is not None else times[-1])
        frames = "".join(f"\nFrame from {int(t // 60):02d}:{int(t % 60):02d}:"
                         "<fake_token_around_image><global-img><fake_token_around_image>" for t in times)
        return (f"You are provided the following series of four frames from a 0:{seconds // 60:02d}:{seconds % 60:02d} "
                "[H:MM:SS] video.\n" + frames + "\n\n")
    return ""


@pytest.mark.parametrize("name", ["qwen3_vl", "video_llama_3", "smolvlm"])
def test_the_processor_is_given_the_real_timestamps(name, tmp_path, frames):
    """Frames read from a video carry their indices and the video's fps into the processor, whose timestamps
    text is then the real one (not its default fps), and the layout still finds every group."""
    from flowutils.data import VideoClip

    model, processor = tiny_checkpoint(name, tmp_path / "ckpt")
    fm = FlowModel(model, processor, family_adapter(name), name=f"tiny-{name}")
    indices, fps, n_video_frames = (5, 33, 61, 89), 4.0, 100  # 1.25, 8.25, 15.25 and 22.25 s of a 25 s video
    p = fm.prepare(VideoClip(frames, indices, fps, n_video_frames), QUESTION, CANDIDATES, "blue")
    lay, ids, tok = p.layout, p.input_ids[0], fm.tokenizer
    text_pos = [i for i in lay.video_text if ids[i] != fm.adapter.video_token_id(fm.model.config)]
    want = _video_text(name, lay.num_frames, times=[i / fps for i in indices], duration=n_video_frames / fps)
    assert _squash(tok.decode(ids[text_pos])) == _squash(tok.decode(tok(want, add_special_tokens=False)["input_ids"]))
    assert _squash(tok.decode(ids[lay.true_option])) == "(B)blue"


def _squash(text):
    return "".join(text.split())


def test_question_and_option_spans_decode_to_the_text(family, frames):
    _, fm, _ = family
    p = _prepared(fm, frames, answer="green")
    ids = p.input_ids[0]
    decode = fm.tokenizer.decode
    lay = p.layout
    assert _squash(decode(ids[lay.non_option_question])) == _squash(QUESTION)  # the raw question, as the paper's code
    assert _squash(decode(ids[lay.labels])) == "Question:Options:"
    for i, c in enumerate(CANDIDATES):
        assert _squash(decode(ids[lay.options[i]])) == _squash(f"({chr(65 + i)}) {c}")
    assert lay.true_option == lay.options[2]
    video_id = fm.adapter.video_token_id(fm.model.config)
    assert all(int(ids[v]) == video_id for f in lay.frames for v in f)
    assert int((ids == video_id).sum()) == sum(map(len, lay.frames)) + fm.adapter.trailing_video_tokens


def test_round_trip_through_load(family, frames):
    _, fm, path = family
    loaded = load(path, name="reloaded")
    assert type(loaded.model) is type(fm.model) and loaded.adapter == fm.adapter
    p = _prepared(fm, frames)
    q = _prepared(loaded, frames)
    assert q.layout == p.layout
    a, b = unmodified_logits(fm, p), unmodified_logits(loaded, q)
    assert a.shape == b.shape and (a - b).abs().max() <= 1e-5
    # every weight arrived under its transformers name (a missing key would be randomly initialised)
    sa, sb = fm.model.state_dict(), loaded.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- PLLaVA: the pooled video embeddings, computed independently ---------------------------------------

def test_pllava_video_embeddings_project_then_pool(frames, tmp_path):
    model, processor = tiny_checkpoint("pllava", tmp_path / "ckpt")
    fm = FlowModel(model, processor, name="tiny-pllava")
    p = _prepared(fm, frames)
    pixels = processor.image_processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states
        feats = hidden[-2][:, 1:]  # layer -2, CLS dropped: [4 frames, 16 patches, 32]
        proj = model.model.multi_modal_projector
        x = F.linear(feats, proj.linear_1.weight, proj.linear_1.bias)
        x = F.linear(F.gelu(x), proj.linear_2.weight, proj.linear_2.bias)  # [4, 16, 64]
    # average over 2 frames x 2 x 2 patch blocks, by explicit loops, frame-major then row-major
    grid = x.reshape(4, 4, 4, -1)
    want = torch.stack([grid[2 * t:2 * t + 2, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean((0, 1, 2))
                        for t in range(2) for i in range(2) for j in range(2)])
    got = p.inputs["inputs_embeds"][0, p.layout.video]
    assert got.shape == want.shape == (8, 64)
    assert (got - want).abs().max() <= 1e-5
    # the order matters: pooling before the projector (transformers' LlavaNextVideo) gives other embeddings
    pooled_first = F.avg_pool3d(feats.reshape(1, 4, 4, 4, -1).permute(0, 4, 1, 2, 3), 2).permute(0, 2, 3, 4, 1)
    with torch.no_grad():
        other = proj(pooled_first.reshape(8, -1))
    assert (other - want).abs().max() > 1e-3
    # text positions hold the embedding matrix's rows of their token ids
    text = [i for i in range(p.layout.n) if i not in set(p.layout.video)]
    rows = model.get_input_embeddings().weight[p.input_ids[0, text]]
    assert torch.equal(p.inputs["inputs_embeds"][0, text], rows)


def test_mrope_suffix_positions_are_the_models_own(family, frames):
    """M-RoPE families: the 3-D positions the engine recomputes with differ from 1-D ``arange`` positions
    (so fast == reference above really exercises them); 1-D families get ``arange``."""
    from flowutils.engine import run_baseline
    from flowutils.models.adapter import MROPE

    _, fm, _ = family
    p = _prepared(fm, frames)
    base = run_baseline(fm, p)
    arange = torch.arange(p.layout.n)
    ids = base.position_ids
    if fm.adapter.positions == MROPE:
        assert ids is None or ids.shape[-1] == p.layout.n
        cos = base.position_embeddings[0]
        flat = fm.decoder.rotary_emb(base.layer_inputs[0], arange[None].expand(3, 1, -1))[0]
        assert cos.shape == flat.shape and (cos - flat).abs().max() > 1e-3
    else:
        assert torch.equal(ids.reshape(-1).cpu(), arange)


def test_every_adapter_has_a_tiny_config_here():
    """The Supported-models page marks every adapter family as passing these bars: keep that true."""
    from flowutils.models import ADAPTERS

    assert set(BUILDERS) == set(ADAPTERS)


def test_figure5_finds_the_question_words_in_every_family(family, frames):
    """Figure 5's word positions read the prompt's token ids, also where the family feeds the decoder
    ``inputs_embeds`` (PLLaVA): each question word is found once, at a token that decodes to it."""
    from flowutils.paper.integration import word_positions

    _, fm, _ = family
    prepared = _prepared(fm, frames)
    found = word_positions(fm, prepared, {"color", "square"})
    assert sorted(found) == ["color", "square"] and all(len(v) == 1 for v in found.values())
    for word, (pos,) in found.items():
        assert fm.tokenizer.decode([int(prepared.input_ids[0, pos])]).strip().lower() == word


def test_sweep_records_the_paths_knockout_does_not_block(frames, tmp_path):
    """Qwen3-VL's DeepStack bypasses attention: the sweep table and the stored parameters say so;
    a family without such a path records none."""
    from types import SimpleNamespace

    from flowutils.analysis.store import load_results
    from flowutils.analysis.sweep import Sweep, run_sweep

    sample = SimpleNamespace(sample_id="q0", task="color", question=QUESTION, candidates=CANDIDATES, answer="blue",
                             frames=frames)
    for name in ("qwen3_vl", "internvl"):
        fm = FlowModel(*tiny_checkpoint(name, tmp_path / name), name=name)
        table = run_sweep(fm, [sample], Sweep(["video->last"], k=1, layers=[0], sample_mode="all", num_frames=4), out=tmp_path / "results", progress=False)
        want = "DeepStack" if name == "qwen3_vl" else None
        assert len(table) == 1
        if want:
            assert want in table.bypasses[0] and any(want in b for b in load_results(table.attrs["store"]).attrs["params"]["bypasses"])
        else:
            assert table.bypasses[0] == "" and load_results(table.attrs["store"]).attrs["params"]["bypasses"] == []


# ---- Mini-InternVL-4B-Video-FT: the manifest, and the weight converter's scope ----------------------------------

MINI_INTERNVL = "mini-internvl-4b-video-ft"


def test_mini_internvl_loads_by_its_manifest_name(frames, tmp_path, monkeypatch):
    """The short name finds the checkpoint under $FLOWUTILS_MODEL_DIR, checks the manifest's expected values against
    the translated config (the tiny one fails them, each named) and uses the manifest's family and template."""
    model, processor = tiny_checkpoint("internvl_chat_phi3", tmp_path / MINI_INTERNVL)
    monkeypatch.setenv("FLOWUTILS_MODEL_DIR", str(tmp_path))
    with pytest.raises(ValueError) as err:
        load(MINI_INTERNVL)
    for want in ("layers: checkpoint has 4, manifest expects 32", "hidden_size: checkpoint has 64, manifest expects 3072",
                 "tokens_per_frame: checkpoint has 4, manifest expects 256"):
        assert want in str(err.value)
    loaded = load(MINI_INTERNVL, check_manifest=False)
    assert loaded.adapter.family == "internvl_chat_phi3" and loaded.template.name == "phi3"
    fm = FlowModel(model, processor, family_adapter("internvl_chat_phi3"))
    assert (unmodified_logits(fm, _prepared(fm, frames)) - unmodified_logits(loaded, _prepared(loaded, frames))).abs().max() <= 1e-5


def test_mini_internvl_manifest_matches_its_real_config(tmp_path):
    """The manifest's expected values hold for an InternVL-Chat config.json of the real sizes (InternViT-300M-448px,
    Phi-3-mini-128k; no weights needed): 32 layers, width 3072, (448 / 14)^2 / 4 = 256 tokens per frame."""
    from flowutils.models.families import internvl
    from flowutils.models.loading import config_mismatches, model_manifests

    tiny_checkpoint("internvl_chat_phi3", tmp_path)  # its tokenizer files
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["vision_config"].update(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                                image_size=448, patch_size=14)
    raw["force_image_size"] = 448
    raw["llm_config"].update(hidden_size=3072, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                             intermediate_size=8192, max_position_embeddings=131072, original_max_position_embeddings=4096,
                             sliding_window=262144, rope_scaling={"type": "su", "long_factor": [1.0] * 48,
                                                                  "short_factor": [1.0] * 48})
    (tmp_path / "config.json").write_text(json.dumps(raw))
    config = internvl.chat_config(tmp_path)
    assert config.text_config.model_type == "phi3" and config.text_config.rope_parameters["rope_type"] == "longrope"
    assert config.text_config._attn_implementation != "flash_attention_2"  # the remote code's runtime choice is dropped
    manifest = model_manifests()[MINI_INTERNVL]
    assert manifest["family"] == "internvl_chat_phi3"
    assert config_mismatches(config, family_adapter("internvl_chat_phi3"), manifest["expected"]) == []


def test_fused_qkv_converter_is_active_only_while_internvl_chat_loads(tmp_path):
    """A freshly built transformers InternVL still saves separate q/k/v after an InternVL-Chat load (transformers
    reverts every registered conversion when saving a model built from a config)."""
    from safetensors import safe_open
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    tiny_checkpoint("internvl_chat_phi3", tmp_path / "chat")
    load(tmp_path / "chat")
    assert not get_checkpoint_conversion_mapping("internvl_vision")
    model, _ = tiny_checkpoint("internvl", tmp_path / "hf")
    with safe_open(tmp_path / "hf" / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any(".attention.q_proj." in k for k in keys) and not any("qkv" in k for k in keys)
