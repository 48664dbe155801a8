"""Small real-architecture models: the toy Image/Video LLMs and tiny random-weight test models.

Both are instances of real transformers classes (``LlavaNextVideoForConditionalGeneration``,
``LlavaOnevisionForConditionalGeneration``) with small configs, a word-level tokenizer built
with ``tokenizers`` over the synthetic benchmark's vocabulary, and the family's own
processor, so the adapter that serves them serves the real 7B checkpoints too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..data.synthetic import vocabulary
from ..models.families import family_adapter, prompt_template

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<video>", "<image>"]
# the templates whose words the toy vocabulary holds: the shipped toy models were built with these,
# so a template added later (for a real family) must not change the vocabulary
TOY_TEMPLATES = ("eval_mvbench", "chatml", "videollama3")


def build_tokenizer(extra_text: str = ""):
    """A word-level fast tokenizer over the synthetic vocabulary and the prompt templates' words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ..data.synthetic import _split_words

    words = set(vocabulary())
    for t in map(prompt_template, TOY_TEMPLATES):
        words.update(_split_words(t.system + t.before_video + t.after_video + t.suffix + " Question Options"))
    words.update(_split_words(extra_text))
    words.update(chr(ord("A") + i) for i in range(8))
    words.update("()")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in sorted(words - set(vocab)):
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(r"<video>|<image>", behavior="isolated"),
         pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"video_token": "<video>", "image_token": "<image>"},
    )
    fast.add_special_tokens({"additional_special_tokens": ["<video>", "<image>"]})
    return fast


@dataclass
class ToyConfig:
    """Sizes of a toy model (defaults: the shipped toy Image/Video LLMs)."""

    family: str = "llava_next_video"
    image_size: int = 64
    patch_size: int = 8
    vision_layers: int = 4
    vision_hidden: int = 128
    vision_heads: int = 4
    text_layers: int = 12
    text_hidden: int = 128
    text_heads: int = 8  # 4 heads of 32 never learned to bind (scene_text's curriculum, book appendix)
    text_kv_heads: int = 8
    text_intermediate: int = 384
    max_positions: int = 1024


def build_config(cfg: ToyConfig, tokenizer):
    """The transformers config of a toy model of family ``cfg.family``."""
    import transformers

    text = dict(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads, num_key_value_heads=cfg.text_kv_heads,
        max_position_embeddings=cfg.max_positions, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    vision = dict(
        hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 4, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
    )
    ids = dict(video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
               image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    if cfg.family == "llava_next_video":
        return transformers.LlavaNextVideoConfig(
            vision_config={"model_type": "clip_vision_model", "projection_dim": cfg.vision_hidden, **vision},
            text_config={"model_type": "llama", **text},
            vision_feature_layer=-2, vision_feature_select_strategy="default", spatial_pool_stride=2,
            image_grid_pinpoints=[[cfg.image_size, cfg.image_size]], tie_word_embeddings=False, **ids,
        )
    if cfg.family == "llava_onevision":
        return transformers.LlavaOnevisionConfig(
            vision_config={"model_type": "siglip_vision_model", **vision},
            text_config={"model_type": "qwen2", **text},
            vision_feature_layer=-1, vision_feature_select_strategy="full",
            image_grid_pinpoints=[[cfg.image_size, cfg.image_size]], tie_word_embeddings=False, **ids,
        )
    raise ValueError(f"no toy config for family {cfg.family!r}; valid: llava_next_video, llava_onevision")


def build_processor(cfg: ToyConfig, tokenizer):
    """The family's own processor, sized for the toy model (frames resized to ``image_size``)."""
    import transformers

    size = {"height": cfg.image_size, "width": cfg.image_size}
    if cfg.family == "llava_next_video":
        video = transformers.LlavaNextVideoVideoProcessor(
            size={"shortest_edge": cfg.image_size}, crop_size=size, do_center_crop=True)
        image = transformers.LlavaNextImageProcessor(
            size={"shortest_edge": cfg.image_size}, crop_size=size, image_grid_pinpoints=[[cfg.image_size] * 2])
        return transformers.LlavaNextVideoProcessor(
            video_processor=video, image_processor=image, tokenizer=tokenizer, patch_size=cfg.patch_size,
            vision_feature_select_strategy="default", num_additional_image_tokens=1,
        )
    if cfg.family == "llava_onevision":
        video = transformers.LlavaOnevisionVideoProcessor(size=size)
        image = transformers.LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[[cfg.image_size] * 2])
        return transformers.LlavaOnevisionProcessor(
            video_processor=video, image_processor=image, tokenizer=tokenizer,
            num_image_tokens=(cfg.image_size // cfg.patch_size) ** 2, vision_feature_select_strategy="full",
        )
    raise ValueError(f"no toy processor for family {cfg.family!r}")


def build_toy(cfg: ToyConfig | None = None, seed: int = 0):
    """A randomly initialised toy model, its processor, and the config record: ``(model, processor)``."""
    import torch

    cfg = cfg or ToyConfig()
    tokenizer = build_tokenizer()
    config = build_config(cfg, tokenizer)
    torch.manual_seed(seed)
    model = family_adapter(cfg.family).model_cls()(config).eval()
    return model, build_processor(cfg, tokenizer)


def toy_config_dict(cfg: ToyConfig) -> dict:
    return asdict(cfg)


TOY_MODELS = ("toy-imagellm", "toy-videollm")  # shipped in models/, loaded by flowutils.models.load


def architecture(fm) -> dict:
    """What a toy model is: sizes of its LM and vision tower, tokens per frame, parameter count."""
    config = fm.model.config
    text, vision = config.text_config, config.vision_config
    return {"class": type(fm.model).__name__, "LM layers": text.num_hidden_layers, "LM width": text.hidden_size,
            "LM heads": text.num_attention_heads, "LM KV heads": text.num_key_value_heads,
            "LM MLP width": text.intermediate_size, "vision layers": vision.num_hidden_layers,
            "vision width": vision.hidden_size, "frame size": vision.image_size, "patch": vision.patch_size,
            "tokens per frame": fm.adapter.tokens_per_frame(config, vision.image_size, vision.image_size), "vocabulary": text.vocab_size,
            "parameters": sum(p.numel() for p in fm.model.parameters())}
