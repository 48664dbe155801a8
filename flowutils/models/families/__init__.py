"""The model families flowutils supports, one module each, and their registry.

A family's module holds everything flowutils knows about that architecture: its
:class:`~flowutils.models.adapter.FamilyAdapter` (``ADAPTER``), its own chat template where
it has one (``TEMPLATE``), and any loading quirk (a config reader, a key mapping of an
older on-disk layout, weight converters, a video encoding transformers does not compute).
A variant of a family is a ``dataclasses.replace`` of its adapter (Qwen3-VL of Qwen2.5-VL,
InternVL-Chat with Phi-3 of InternVL). Each family's tiny random-weight checkpoint, which
its tests build, is in ``tests/tiny_families.py``.

The registry: :data:`ADAPTERS` by family name (:func:`family_adapter`), :data:`MODEL_TYPES` by
the ``config.model_type`` a checkpoint says (:func:`adapter_for`), and :data:`TEMPLATES`, the
prompt templates by the names adapters and model manifests give (:func:`prompt_template`): the
paper's prompt and ChatML from :mod:`flowutils.inputs.prompt`, the others from their families.
"""

from __future__ import annotations

from ...inputs.prompt import CHATML, EVAL_MVBENCH, PromptTemplate
from ..adapter import FamilyAdapter
from . import internvl, llava_next_video, llava_onevision, pllava, qwen2_5_vl, qwen3_vl, smolvlm, video_llama_3

ADAPTERS = {a.family: a for a in (
    llava_next_video.ADAPTER, llava_onevision.ADAPTER, qwen2_5_vl.ADAPTER, qwen3_vl.ADAPTER, video_llama_3.ADAPTER,
    internvl.ADAPTER, internvl.CHAT_PHI3, smolvlm.ADAPTER, pllava.ADAPTER)}


def _by_model_type(adapters) -> dict[str, FamilyAdapter]:
    """``{config.model_type: adapter}``; a model type names one family, or :func:`adapter_for` would have to guess."""
    out = {}
    for adapter in adapters:
        for model_type in adapter.model_types or (adapter.family,):
            if model_type in out:
                raise ValueError(f"model type {model_type!r} is claimed by both {out[model_type].family} "
                                 f"and {adapter.family}")
            out[model_type] = adapter
    return out


MODEL_TYPES = _by_model_type(ADAPTERS.values())

TEMPLATES = {t.name: t for t in (EVAL_MVBENCH, CHATML, video_llama_3.TEMPLATE, smolvlm.TEMPLATE, internvl.PHI3)}


def family_adapter(family: str) -> FamilyAdapter:
    """The adapter of ``family`` (a key of :data:`ADAPTERS`)."""
    if family not in ADAPTERS:
        raise ValueError(f"model family {family!r} is not supported; supported: {sorted(ADAPTERS)}")
    return ADAPTERS[family]


def adapter_for(config, family: str | None = None) -> FamilyAdapter:
    """The adapter of a checkpoint: ``family`` if given, else PLLaVA when the config has a
    ``pooling_shape``, else the family that serves ``config.model_type``."""
    if family is not None:
        return family_adapter(family)
    if getattr(config, "pooling_shape", None) is not None:
        return pllava.ADAPTER
    if config.model_type in MODEL_TYPES:
        return MODEL_TYPES[config.model_type]
    raise ValueError(f"model type {config.model_type!r} is not supported; supported families: {sorted(ADAPTERS)} "
                     "(pass family=... to load a checkpoint of a supported family under another model type)")


def prompt_template(name: str) -> PromptTemplate:
    """The prompt template called ``name`` (a key of :data:`TEMPLATES`)."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r}; valid: {sorted(TEMPLATES)}")
    return TEMPLATES[name]
