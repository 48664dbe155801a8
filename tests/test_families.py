"""Every supported family and paper model, as a tiny random config of its REAL transformers classes.

Bars, per family: an empty plan equals the unmodified model (fp32, <= 1e-5); fast == reference
on random plans (<= 1e-4; M-RoPE families included); frame spans equal the processor's frame
count x tokens per frame, computed here from the inputs; question and option spans decode
back to the given text; a checkpoint saved in its own on-disk key layout (legacy LLaVA names
for PLLaVA) and loaded through ``flowutils.models.load`` gives the original module's logits.
"""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import unmodified_logits
from flowutils.engine import knockout_logits
from flowutils.knockout import flows, windows
from flowutils.knockout.plan import KnockoutPlan
from flowutils.models import FlowModel, load
from flowutils.toy.models import build_tokenizer

QUESTION, CANDIDATES = "What is the color the square", ["red", "blue", "green"]  # words of the toy vocabulary
ALL_FLOWS = [f for fam in flows.FAMILIES.values() for f in fam] + ["video->video", "system->video"]


# ---- tiny checkpoints in each family's on-disk layout -------------------------------------------------

def _pllava(tmp):
    import transformers

    tok = build_tokenizer(QUESTION + " " + " ".join(CANDIDATES))
    config = transformers.LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
                       "projection_dim": 32},
        text_config={"model_type": "llama", "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 512, "pad_token_id": tok.pad_token_id, "tie_word_embeddings": False},
        image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default", tie_word_embeddings=False,
        pooling_shape=[2, 2, 2],  # 4 frames x 4x4 patches -> 2 temporal bins of 2x2 tokens
    )
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    image = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = transformers.LlavaProcessor(image_processor=image, tokenizer=tok, patch_size=8)
    # the legacy LLaVA key layout of PLLaVA checkpoints (language_model.model.*, vision_tower.*, ...)
    legacy = {"model.language_model.": "language_model.model.", "lm_head.": "language_model.lm_head.",
              "model.vision_tower.": "vision_tower.", "model.multi_modal_projector.": "multi_modal_projector."}
    state = {}
    for key, value in model.state_dict().items():
        prefix = next(p for p in legacy if key.startswith(p))
        state[legacy[prefix] + key[len(prefix):]] = value.contiguous()
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    return model, processor


def _toy_family(family):
    """The two families the toy models use, through the toy builder, saved by save_pretrained."""
    def build(tmp):
        from flowutils.toy.models import ToyConfig, build_toy

        model, processor = build_toy(ToyConfig(family=family, text_layers=4, text_hidden=64, text_heads=4,
                                               text_kv_heads=2, text_intermediate=128, vision_layers=2,
                                               vision_hidden=32, vision_heads=2, image_size=32), seed=0)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        return model.float(), processor
    return build


QWEN_SPECIAL = ["<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>", "<|im_start|>", "<|im_end|>"]


def _qwen2_5_vl(tmp):
    import transformers

    tok = build_tokenizer(QUESTION + " " + " ".join(CANDIDATES) + " system user assistant")
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    tok.video_token, tok.image_token = "<|video_pad|>", "<|image_pad|>"
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    config = transformers.Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "tie_word_embeddings": False},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "patch_size": 8, "temporal_patch_size": 2, "spatial_merge_size": 2, "window_size": 16,
                       "fullatt_block_indexes": [1]},
        video_token_id=ids["<|video_pad|>"], image_token_id=ids["<|image_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config).eval()
    size = {"shortest_edge": 32 * 64, "longest_edge": 32 * 64}
    kw = dict(patch_size=8, temporal_patch_size=2, merge_size=2, size=size)
    processor = transformers.Qwen2_5_VLProcessor(image_processor=transformers.Qwen2VLImageProcessor(**kw),
                                                  video_processor=transformers.Qwen2VLVideoProcessor(**kw),
                                                  tokenizer=tok)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    return model, processor


BUILDERS = {"pllava": _pllava, "llava_next_video": _toy_family("llava_next_video"),
            "llava_onevision": _toy_family("llava_onevision"), "qwen2_5_vl": _qwen2_5_vl}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family(request, tmp_path_factory):
    """``(family, FlowModel of the original module, checkpoint directory)``."""
    path = tmp_path_factory.mktemp(request.param) / "ckpt"
    model, processor = BUILDERS[request.param](path)
    return request.param, FlowModel(model, processor, name=f"tiny-{request.param}"), path


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
        ref = knockout_logits(fm, p, plans, "reference").softmax(-1)
        fast = knockout_logits(fm, p, plans, "fast", batch_size=2).softmax(-1)
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
    if name == "qwen2_5_vl":  # a frame span is a temporal group of 2 frames
        t, h, w = prepared.inputs["video_grid_thw"][0].tolist()
        assert t == len(frames) // 2
        return t, h * w // 4
    raise AssertionError(name)


def test_frame_spans_match_the_processor(family, frames):
    name, fm, _ = family
    p = _prepared(fm, frames)
    n_frames, per_frame = _frames_times_tokens(name, fm, p, frames)
    lay = p.layout
    assert lay.num_frames == n_frames and all(len(f) == per_frame for f in lay.frames)
    assert len(lay.video) == n_frames * per_frame + fm.adapter.trailing_video_tokens
    assert [f.start for f in lay.frames] == [lay.video_span.start + i * per_frame for i in range(n_frames)]


def _squash(text):
    return "".join(text.split())


def test_question_and_option_spans_decode_to_the_text(family, frames):
    _, fm, _ = family
    p = _prepared(fm, frames, answer="green")
    ids = p.input_ids[0]
    decode = fm.tokenizer.decode
    lay = p.layout
    assert _squash(decode(ids[lay.non_option_question])) == _squash(f"Question: {QUESTION}\nOptions:")
    for i, c in enumerate(CANDIDATES):
        assert _squash(decode(ids[lay.options[i]])) == _squash(f"({chr(65 + i)}) {c}")
    assert lay.true_option == lay.options[2]
    assert all(int(ids[v]) == fm.adapter.video_token_id(fm.model.config) for v in lay.video)


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
    model, processor = _pllava(tmp_path / "ckpt")
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
    from flowutils.models.adapters import MROPE

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
