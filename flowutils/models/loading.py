"""Loading a video LLM as a :class:`FlowModel`: the one loader every notebook and command calls.

``name_or_path`` is one of:

* a short name of a model manifest, ``flowutils/manifests/models/<name>.yaml`` (the paper's
  checkpoints and example current ones): the checkpoint is looked for in the manifest's
  ``local_dir`` (relative to the flowutils home, :func:`flowutils.data.paths.home`; default
  ``models/<name>``), in ``$FLOWUTILS_MODEL_DIR/<name>``, then in the
  Hugging Face cache under the manifest's ``source`` and ``revision``; its config is checked
  against the manifest's ``expected`` values and every mismatch is named;
* a shipped toy model of ``flowutils/manifests/toy_models.yaml``, in ``models/`` of the flowutils
  home (``$FLOWUTILS_HOME``, else the checkout; every file sha256-checked);
* a local checkpoint directory (with a ``config.json``);
* a hub id (``owner/name``) resolved from the local Hugging Face cache only.

Loading never reaches the network (``local_files_only``), reads safetensors only and runs
no remote code unless asked (``trust_remote_code``). The family (adapter, :mod:`.families`)
comes from the manifest, from ``family=...`` or from the checkpoint's config; a checkpoint in
an older key layout is loaded with the adapter's ``key_mapping`` through
``from_pretrained(key_mapping=...)``. A checkpoint whose ``model_type`` transformers does not
know is read by its adapter: PLLaVA's as LLaVA, one written for remote code (InternVL-Chat,
``model_type: internvl_chat``) with a translated config, a processor built from its
tokenizer files and weight converters active while it loads
(:mod:`.families.internvl`). ``device_map="auto"`` spreads a large model over the
visible GPUs through accelerate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import torch
import yaml

from ..data.manifests import MANIFEST_DIR, load_manifest, verify_sha256, yaml_files
from ..data.paths import HOME_ENV, HomeNotFoundError, home, home_path
from .adapter import FamilyAdapter
from .families import ADAPTERS, adapter_for, family_adapter
from .flow_model import FlowModel

TOY_MANIFEST = "toy_models"


def known_models() -> dict:
    """Shipped toy models resolved by :func:`load`: ``{name: manifest entry}``."""
    return load_manifest(TOY_MANIFEST)["models"]


def model_manifests() -> dict:
    """Model manifests of ``flowutils/manifests/models/``: ``{name: manifest}`` (``manifest["file"]``: its path)."""
    out = {}
    for path in yaml_files(MANIFEST_DIR / "models"):
        spec = yaml.safe_load(path.read_text())
        spec["file"] = str(path)
        out[spec["name"]] = spec
    return out


def _hub_cache(repo_id: str, revision: str | None) -> Path | None:
    """The local snapshot of a hub repository, or None (never the network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return None


def _manifest_dir(spec: dict, revision: str | None) -> Path:
    tried, candidates = [], []
    local = Path(spec.get("local_dir") or f"models/{spec['name']}")
    try:
        candidates.append(local if local.is_absolute() else home() / local)
    except HomeNotFoundError:  # an installed flowutils without a home: the other places may still have it
        tried.append(f"{local} ({HOME_ENV} unset, not a checkout)")
    if os.environ.get("FLOWUTILS_MODEL_DIR"):
        candidates.append(Path(os.environ["FLOWUTILS_MODEL_DIR"]) / spec["name"])
    for path in candidates:
        if (path / "config.json").is_file():
            return path
        tried.append(str(path))
    hub_id = spec.get("hub_id")
    if hub_id:
        snapshot = _hub_cache(hub_id, revision or spec.get("revision"))
        if snapshot is not None:
            return snapshot
        tried.append(f"Hugging Face cache: {hub_id}@{revision or spec.get('revision') or 'main'}")
    raise FileNotFoundError(f"model {spec['name']!r}: no checkpoint found (looked in {tried}); "
                            f"{spec['file']} says where to get it: {spec.get('source')}")


def resolve(name_or_path: str | Path, revision: str | None = None) -> tuple[Path, dict | None]:
    """``(local checkpoint directory, its model manifest or None)`` of a name, directory or hub id."""
    name = str(name_or_path)
    toys = known_models()
    if name in toys:
        spec = toys[name]
        path = home_path(spec["path"])
        for file, digest in spec["sha256"].items():
            if not (path / file).is_file():
                raise FileNotFoundError(f"{name}: {path / file} is missing "
                                        f"(see {MANIFEST_DIR / (TOY_MANIFEST + '.yaml')})")
            verify_sha256(path / file, digest)
        return path, None
    manifests = model_manifests()
    if name in manifests:
        return _manifest_dir(manifests[name], revision), manifests[name]
    path = Path(name_or_path)
    if (path / "config.json").is_file():
        return path, None
    if not path.exists() and name.count("/") == 1 and not name.startswith((".", "/")):
        snapshot = _hub_cache(name, revision)
        if snapshot is not None:
            return snapshot, None
    raise FileNotFoundError(f"model {name!r}: no checkpoint directory with a config.json at {path.resolve()}, "
                            f"and not a hub id in the local Hugging Face cache; known names: "
                            f"{sorted(toys) + sorted(manifests)} (manifests in {MANIFEST_DIR / 'models'})")


def _foreign_family(path: Path) -> str | None:
    """The family whose adapter reads this checkpoint's ``model_type`` itself (``pllava``, ``internvl_chat``),
    or None."""
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    return next((a.family for a in ADAPTERS.values() if a.read_config and model_type in a.model_types), None)


def _config(path: Path, adapter_hint: str | None, trust_remote_code: bool):
    """The checkpoint's config: by its adapter's ``read_config`` where it has one (a ``model_type`` transformers
    does not know), else by transformers."""
    from transformers import AutoConfig

    if adapter_hint is not None and family_adapter(adapter_hint).read_config:
        return family_adapter(adapter_hint).read_config(path)
    return AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)


def config_mismatches(config, adapter: FamilyAdapter, expected: dict) -> list[str]:
    """Every difference between a checkpoint's config and a manifest's ``expected`` values."""
    text = getattr(config, "text_config", config)
    actual = {
        "family": adapter.family,
        "layers": text.num_hidden_layers,
        "hidden_size": text.hidden_size,
        "video_token_id": adapter.video_token_id(config),
        "tokens_per_frame": adapter.default_tokens_per_frame(config),
    }
    problems = []
    for key, want in expected.items():
        if key not in actual:
            problems.append(f"{key}: not a checkable value (valid: {sorted(actual)})")
        elif actual[key] is not None and actual[key] != want:
            problems.append(f"{key}: checkpoint has {actual[key]!r}, manifest expects {want!r}")
    return problems


def load(name_or_path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device | None = "cpu",
         template: str | None = None, name: str | None = None, device_map: str | dict | None = None,
         revision: str | None = None, family: str | None = None, trust_remote_code: bool = False,
         check_manifest: bool = True, config_overrides: dict | None = None) -> FlowModel:
    """The model ``name_or_path`` (manifest name, toy name, local directory or cached hub id) as a :class:`FlowModel`.

    ``device_map`` (e.g. ``"auto"``) hands placement to accelerate and ``device`` is then ignored (a GPU
    ``device`` is loaded onto directly, as ``device_map={"": device}``);
    ``family`` overrides the adapter chosen from the manifest or the config; ``config_overrides``
    (after the manifest's own, e.g. PLLaVA's ``pooling_shape``) set config attributes; ``check_manifest``
    compares a manifest checkpoint's config with the manifest's expected values (a
    ``ValueError`` lists every mismatch).
    """
    from transformers import AutoProcessor

    path, spec = resolve(name_or_path, revision)
    family = family or (spec or {}).get("family") or _foreign_family(path)
    config = _config(path, family, trust_remote_code)
    for key, value in {**(spec or {}).get("config_overrides", {}), **(config_overrides or {})}.items():
        setattr(config, key, value)
    adapter = adapter_for(config, family)
    if (spec or {}).get("processor_kwargs"):  # the manifest's processor settings, e.g. the paper's frame size
        adapter = dataclasses.replace(adapter, processor_kwargs={**adapter.processor_kwargs, **spec["processor_kwargs"]})
    if spec is not None and check_manifest:
        problems = config_mismatches(config, adapter, spec.get("expected", {}))
        if problems:
            raise ValueError(f"{path}: config does not match {spec['file']}: " + "; ".join(problems))
    kwargs = dict(config=config, dtype=dtype, local_files_only=True, use_safetensors=True,
                  trust_remote_code=trust_remote_code, key_mapping=adapter.key_mapping)
    if device_map is None and device is not None and torch.device(device).type != "cpu":
        device_map = {"": device}  # the weights go straight to the GPU, with no full copy in host memory first
    if device_map is not None:
        kwargs["device_map"] = device_map
    with adapter.load_context() if adapter.load_context else contextlib.nullcontext():
        model = adapter.model_cls().from_pretrained(path, **kwargs)
    if device_map is None and device is not None:
        model = model.to(device)
    if adapter.read_processor:
        processor = adapter.read_processor(path, config)
    else:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    template = template or (spec or {}).get("template")
    return FlowModel(model, processor, adapter, template, name=name or str(name_or_path),
                     protocol=(spec or {}).get("protocol"), random_share=(spec or {}).get("random_blocking_share"))
