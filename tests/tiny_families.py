"""Tiny random-weight checkpoints of every model family, shared by the tests.

Each builder takes a checkpoint directory, builds a tiny config of the family's REAL
transformers classes with a word-level tokenizer over the test words (the toy models'
tokenizer builder), saves model, processor and config in the checkpoint's own on-disk layout
(legacy LLaVA names for PLLaVA; the remote code's names, fused vision qkv and an
``internvl_chat`` config.json for Mini-InternVL) and returns ``(model, processor)``:
:func:`tiny_checkpoint`. The layouts are written here by hand, not derived from the loader's
key mappings, so that loading them back checks those mappings.

These live with the tests, not in each family's module of ``flowutils.models.families``:
the tokenizer and the two toy families' configs come from ``flowutils.toy``, which no layer
of the package may import, and a checkpoint writer derived from the loader's own mappings
would check nothing.
"""

import json

import pytest
import torch
from safetensors.torch import save_file

from flowutils.toy.models import ToyConfig, build_tokenizer, build_toy

QUESTION, CANDIDATES = "What is the color the square", ["red", "blue", "green"]  # words of the toy vocabulary


def tiny_config(family: str) -> ToyConfig:
    """Sizes of the tiny toy-recipe models (``llava_next_video``, ``llava_onevision``) the tests build."""
    return ToyConfig(family=family, text_layers=4, text_hidden=64, text_heads=4, text_kv_heads=2,
                     text_intermediate=128, vision_layers=2, vision_hidden=32, vision_heads=2, image_size=32)


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
        model, processor = build_toy(tiny_config(family), seed=0)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        return model.float(), processor
    return build


DIGITS = " ".join([str(i) for i in range(10)] + [f"0{i}" for i in range(10)])  # timestamps, read back by the tests
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


def _tokenizer(words: str, named: dict, special=()):
    """The toy word-level tokenizer with the family's named special tokens (``tokenizer.<name>`` and
    ``<name>_id``, kept by save_pretrained, as the family's processor reads them) and other special tokens."""
    from transformers import PreTrainedTokenizerFast

    named = {"video_token": "<video>", "image_token": "<image>", **named}
    base = build_tokenizer(QUESTION + " " + " ".join(CANDIDATES) + " system user assistant " + words)
    tok = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, unk_token="<unk>", pad_token="<pad>",
                                  bos_token="<s>", eos_token="</s>", extra_special_tokens=named)
    tok.add_special_tokens({"additional_special_tokens": list(dict.fromkeys([*named.values(), *special]))},
                           replace_extra_special_tokens=False)
    return tok


def _lm(tok, model_type="qwen2", **kw):
    return {"model_type": model_type, "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
            "tie_word_embeddings": False, **kw}


def _save(tmp, model, processor):
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    return model, processor


def _qwen3_vl(tmp):
    import transformers

    named = {"video_token": "<|video_pad|>", "image_token": "<|image_pad|>", "vision_start_token": "<|vision_start|>",
             "vision_end_token": "<|vision_end|>"}
    tok = _tokenizer("seconds " + DIGITS, named, ["<|im_start|>", "<|im_end|>"])
    lm = _lm(tok, head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "mrope_section": [2, 3, 3], "mrope_interleaved": True})
    lm.pop("model_type")
    config = transformers.Qwen3VLConfig(
        text_config=lm,
        vision_config={"depth": 3, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "patch_size": 8, "temporal_patch_size": 2, "spatial_merge_size": 2, "num_position_embeddings": 16,
                       "deepstack_visual_indexes": [0, 1]},
        **{f"{k}_id": tok.convert_tokens_to_ids(v) for k, v in named.items()}, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.Qwen3VLForConditionalGeneration(config).eval()
    # Qwen3-VL bounds the pixels of the whole video (4 frames of at most 48 x 48)
    kw = dict(patch_size=8, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 4 * 32 * 32, "longest_edge": 4 * 48 * 48})
    processor = transformers.Qwen3VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(**kw), tokenizer=tok,
        video_processor=transformers.Qwen3VLVideoProcessor(**kw, do_sample_frames=False, cap_pixels_per_frame=False))
    return _save(tmp, model, processor)


def _video_llama_3(tmp):
    import transformers

    tok = _tokenizer("Time " + DIGITS, {"video_token": "<|video_pad|>", "image_token": "<|image_pad|>"}, ["<|im_start|>", "<|im_end|>"])
    config = transformers.VideoLlama3Config(
        text_config=_lm(tok),
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "patch_size": 8},
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"), image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"))
    torch.manual_seed(0)
    model = transformers.VideoLlama3ForConditionalGeneration(config).eval()
    kw = dict(patch_size=8, merge_size=2, min_pixels=32 * 32, max_pixels=48 * 48)
    # token compression ON in the saved processor, as in released checkpoints: the adapter must turn it off
    processor = transformers.VideoLlama3Processor(
        image_processor=transformers.VideoLlama3ImageProcessor(**kw), tokenizer=tok,
        video_processor=transformers.VideoLlama3VideoProcessor(**kw, use_token_compression=True, do_sample_frames=False))
    return _save(tmp, model, processor)


INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}


def _internvl(tmp):
    import transformers

    tok = _tokenizer("Frame1 Frame2 Frame3 Frame4", INTERNVL_TOKENS, ["<|im_start|>", "<|im_end|>"])
    config = transformers.InternVLConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        text_config=_lm(tok), image_token_id=tok.context_image_token_id, image_seq_length=4, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.InternVLForConditionalGeneration(config).eval()
    size = {"height": 32, "width": 32}
    processor = transformers.InternVLProcessor(
        image_processor=transformers.GotOcr2ImageProcessor(size=size), tokenizer=tok,
        video_processor=transformers.InternVLVideoProcessor(size=size), image_seq_length=4)
    return _save(tmp, model, processor)


PHI3_CHAT = ["<|system|>", "<|end|>", "<|user|>", "<|assistant|>"]
IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}  # InternVL-Chat's normalisation
# transformers InternVL names -> the InternVL-Chat remote code's names, in order (vision q/k/v fused below)
CHAT_NAMES = [("model.vision_tower.embeddings.cls_token", "vision_model.embeddings.class_embedding"),
              ("model.vision_tower.embeddings.position_embeddings", "vision_model.embeddings.position_embedding"),
              ("model.vision_tower.embeddings.patch_embeddings.projection.", "vision_model.embeddings.patch_embedding."),
              ("model.vision_tower.encoder.layer.", "vision_model.encoder.layers."), (".layernorm_before.", ".norm1."),
              (".layernorm_after.", ".norm2."), (".lambda_1", ".ls1"), (".lambda_2", ".ls2"),
              (".attention.projection_layer.", ".attn.proj."), (".attention.", ".attn."),
              ("model.multi_modal_projector.layer_norm.", "mlp1.0."), ("model.multi_modal_projector.linear_1.", "mlp1.1."),
              ("model.multi_modal_projector.linear_2.", "mlp1.3."), ("model.language_model.", "language_model.model.")]


def _internvl_chat_phi3(tmp):
    """Mini-InternVL-4B's layout: a transformers InternVL + Phi-3 (long RoPE, as Phi-3-mini-128k), saved the way
    the InternVL-Chat remote code saves it: its weight names, fused vision qkv, an ``internvl_chat`` config.json and
    a tokenizer whose image tokens are plain added tokens."""
    import transformers

    tok = _tokenizer("Frame1 Frame2 Frame3 Frame4", INTERNVL_TOKENS, PHI3_CHAT)
    rope = {"long_factor": [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5], "short_factor": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]}
    lm = _lm(tok, "phi3", pad_token_id=tok.pad_token_id, max_position_embeddings=512, original_max_position_embeddings=32)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32,
              "patch_size": 8, "layer_norm_eps": 1e-6}
    config = transformers.InternVLConfig(
        vision_config={**vision, "attention_bias": True},
        text_config={**lm, "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, **rope,
                                               "original_max_position_embeddings": 32}},
        image_token_id=tok.context_image_token_id, image_seq_length=4, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.InternVLForConditionalGeneration(config).eval()
    size = {"height": 32, "width": 32}
    processor = transformers.InternVLProcessor(
        image_processor=transformers.GotOcr2ImageProcessor(size=size, **IMAGENET), tokenizer=tok,
        video_processor=transformers.InternVLVideoProcessor(size=size, **IMAGENET), image_seq_length=4)
    state = {}
    for key, value in model.state_dict().items():
        for ours, theirs in CHAT_NAMES:
            key = key.replace(ours, theirs)
        state["language_model." + key if key.startswith("lm_head.") else key] = value.contiguous()
    for i in range(2):
        for p in ("weight", "bias"):
            at = f"vision_model.encoder.layers.{i}.attn."
            state[f"{at}qkv.{p}"] = torch.cat([state.pop(f"{at}{x}_proj.{p}") for x in "qkv"])
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps({
        "architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "template": "phi3-chat",
        "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"}, "select_layer": -1,
        "downsample_ratio": 0.5, "ps_version": "v2", "force_image_size": 32, "dynamic_image_size": True,
        "use_thumbnail": True, "max_dynamic_patch": 12, "min_dynamic_patch": 1,
        "vision_config": {**vision, "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "qkv_bias": True,
                          "qk_normalization": False, "norm_type": "layer_norm", "hidden_act": "gelu", "num_channels": 3,
                          "use_flash_attn": True, "drop_path_rate": 0.1},
        "llm_config": {**lm, "architectures": ["Phi3ForCausalLM"], "attn_implementation": "flash_attention_2",
                       "rope_theta": 10000.0, "rope_scaling": {"type": "su", **rope}},
    }))
    plain = transformers.PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, unk_token="<unk>",
                                                 pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    plain.save_pretrained(tmp)
    return model, processor


def _smolvlm(tmp):
    import transformers

    pytest.importorskip("num2words")  # SmolVLM2's processor writes the frame count in words

    named = {"fake_image_token": "<fake_token_around_image>", "global_image_token": "<global-img>",
             "end_of_utterance_token": "<end_of_utterance>"}
    tok = _tokenizer("You are provided the following series of four frames from a video Frame User Assistant System "
                     + DIGITS,
                     named, ["<|im_start|>"])
    config = transformers.SmolVLMConfig(
        text_config=_lm(tok, "llama"),
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "patch_size": 8, "image_size": 32},
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.SmolVLMForConditionalGeneration(config).eval()
    kw = dict(size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    processor = transformers.SmolVLMProcessor(
        image_processor=transformers.SmolVLMImageProcessor(**kw, do_image_splitting=False), tokenizer=tok,
        video_processor=transformers.SmolVLMVideoProcessor(**kw, do_sample_frames=False), image_seq_len=4)
    return _save(tmp, model, processor)


BUILDERS = {"pllava": _pllava, "llava_next_video": _toy_family("llava_next_video"),
            "llava_onevision": _toy_family("llava_onevision"), "qwen2_5_vl": _qwen2_5_vl, "qwen3_vl": _qwen3_vl,
            "video_llama_3": _video_llama_3, "internvl": _internvl, "smolvlm": _smolvlm,
            "internvl_chat_phi3": _internvl_chat_phi3}


def tiny_checkpoint(family: str, path):
    """Write the tiny checkpoint of ``family`` to ``path`` in its own on-disk layout: ``(model, processor)``."""
    return BUILDERS[family](path)
