"""Layer 4, ``models``: the model loaders.

One module per transformers model family and their registry (:mod:`.families`), the
adapter each family declares (:mod:`.adapter`), :class:`FlowModel` (a Hugging Face video
LLM, unchanged, plus its token layout and the knockout attention; :mod:`.flow_model`) and
:func:`load` (:mod:`.loading`). May import ``knockout``, ``inputs`` and ``data``.
"""

from .adapter import FamilyAdapter
from .catalog import supported_models
from .families import ADAPTERS, TEMPLATES, adapter_for, family_adapter, prompt_template
from .flow_model import FlowModel, PreparedInput
from .loading import load, model_manifests

__all__ = ["ADAPTERS", "FamilyAdapter", "FlowModel", "PreparedInput", "TEMPLATES", "adapter_for", "family_adapter",
           "prompt_template", "load", "model_manifests", "supported_models"]
