"""Layer 3, ``models``: the model loaders.

One declarative adapter per transformers model family (:mod:`.adapters`), :class:`FlowModel`
(a Hugging Face video LLM, unchanged, plus its token layout and the knockout attention;
:mod:`.flow_model`) and :func:`load` (:mod:`.loading`). May import ``knockout`` and ``data``.
"""

from .adapters import ADAPTERS, FamilyAdapter, adapter_for, get_adapter
from .catalog import supported_models
from .flow_model import FlowModel, PreparedInput
from .loading import load, model_manifests

__all__ = ["ADAPTERS", "FamilyAdapter", "FlowModel", "PreparedInput", "adapter_for", "get_adapter", "load", "model_manifests",
           "supported_models"]
