"""Loading a video LLM as a :class:`FlowModel`: the one loader every notebook and command calls.

``name_or_path`` is a local checkpoint directory, or the name of a model listed in a model
manifest of ``data_manifests/`` (today the shipped toy pair of ``toy_models.yaml``, whose
every file is sha256-checked before loading). Loading never reaches the network
(``local_files_only``), reads safetensors only and runs no remote code. The family comes
from the checkpoint's ``config.model_type`` and picks the adapter (:mod:`.adapters`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.manifests import MANIFEST_DIR, load_manifest, verify_sha256
from .adapters import get_adapter
from .flow_model import FlowModel

MODEL_MANIFEST = "toy_models"


def known_models() -> dict:
    """Model names resolved by :func:`load`: ``{name: manifest entry}``."""
    return load_manifest(MODEL_MANIFEST)["models"]


def resolve(name_or_path: str | Path) -> Path:
    """The local checkpoint directory of a manifest name (files sha256-checked) or a path."""
    models = known_models()
    if str(name_or_path) in models:
        spec = models[str(name_or_path)]
        path = MANIFEST_DIR.parent / spec["path"]
        for file, digest in spec["sha256"].items():
            if not (path / file).is_file():
                raise FileNotFoundError(f"{name_or_path}: {path / file} is missing "
                                        f"(see {MANIFEST_DIR / (MODEL_MANIFEST + '.yaml')})")
            verify_sha256(path / file, digest)
        return path
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model {str(name_or_path)!r}: no checkpoint directory with a config.json at {path}; "
                                f"known names: {sorted(models)}")
    return path


def load(name_or_path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
         template: str | None = None, name: str | None = None) -> FlowModel:
    """The model ``name_or_path`` (a manifest name or a local directory) as a :class:`FlowModel`."""
    from transformers import AutoConfig, AutoProcessor

    path = resolve(name_or_path)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    adapter = get_adapter(config.model_type)
    model = adapter.model_cls().from_pretrained(path, dtype=dtype, local_files_only=True, use_safetensors=True)
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    return FlowModel(model.to(device), processor, adapter, template, name=name or str(name_or_path))
