"""Find a timm model and its weights, and build it.

Weights are resolved before the model is built, so that the export stage's key can name them
(a file digest) and a cached export never needs the model at all.
"""

import dataclasses
import difflib
import hashlib
import logging
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from qaccelx.errors import InputError
from qaccelx.store import digest_file

__all__ = [
    "ModelSpec",
    "check_checkpoint_fits",
    "create_model",
    "detect_transformer",
    "resolve_data_config",
    "resolve_model_spec",
]

logger = logging.getLogger(__name__)

# timm looks for these weight files in a hub repo or local-dir folder, safetensors first.
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Seed for random weights, so that two speed-only runs export the same model.
_RANDOM_WEIGHTS_SEED = 0

_WEIGHTS_HELP = (
    "make them reachable (HF_HUB_CACHE pointing at a cache that holds them, or network "
    "access), pass --checkpoint FILE, or run speed-only with --random_weights True"
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model name resolved to an architecture and one concrete set of weights."""

    name: str  # as the user gave it
    slug: str  # file-system-safe short name for output paths and artifact keys
    weights: str  # hub, url, local-dir, checkpoint or random
    weights_location: str  # hub repo, URL, folder or file it came from
    weights_file: str | None  # local file holding the weights, None for random weights
    weights_digest: str  # SHA-256 of the weights file, or "random-seed<N>"

    @property
    def pretrained(self) -> bool:
        """Whether accuracy figures mean anything for this model."""
        return self.weights != "random"


def resolve_model_spec(
    model_name: str,
    checkpoint: str | None = None,
    random_weights: bool = False,
) -> ModelSpec:
    """Resolve a model name and its weights without building the model.

    Args:
        model_name: A timm name (``resnet50``, ``resnet50.a1_in1k``), ``hf-hub:<repo>`` or
            ``local-dir:<folder>``.
        checkpoint: A local weights file to use instead of the pretrained ones.
        random_weights: Use seeded random weights (speed-only runs).

    Returns:
        The spec, with the weights located on disk and digested.

    Raises:
        InputError: unknown model, or weights that cannot be found.
    """
    source, _, model_id = model_name.partition(":") if ":" in model_name else ("", "", model_name)
    slug = _slugify(model_id)
    if source == "local-dir":
        return _resolve_local_dir(model_name, model_id, slug, random_weights)
    if source not in ("", "hf-hub"):
        raise InputError(
            f"--model_name {model_name!r} has an unknown prefix {source!r}: use a timm name, "
            "hf-hub:<repo> or local-dir:<folder>"
        )
    if not source:
        _check_known_model(model_id)

    if random_weights:
        return ModelSpec(model_name, slug, "random", "", None, f"random-seed{_RANDOM_WEIGHTS_SEED}")
    if checkpoint:
        path = Path(checkpoint).expanduser().resolve()
        if not path.is_file():
            raise InputError(f"--checkpoint {checkpoint!r} does not exist: give a weights file")
        return ModelSpec(model_name, slug, "checkpoint", str(path), str(path), digest_file(path))
    if source == "hf-hub":
        return _resolve_hub_weights(model_name, model_id, slug)
    return _resolve_registry_weights(model_name, slug)


def create_model(spec: ModelSpec) -> nn.Module:
    """Build the torch model of a spec with its weights, in eval mode.

    Raises:
        InputError: the weights do not fit the architecture.
    """
    kwargs: dict[str, Any] = {}
    if spec.weights == "random":
        torch.manual_seed(_RANDOM_WEIGHTS_SEED)
    elif spec.weights == "checkpoint":
        kwargs["checkpoint_path"] = spec.weights_file
    elif spec.weights in ("hub", "url") and not spec.name.startswith("hf-hub:"):
        # Load the very file whose digest keys the export.
        kwargs["pretrained_cfg_overlay"] = {"file": spec.weights_file}
    pretrained = spec.weights in ("hub", "url", "local-dir")

    try:
        model = timm.create_model(spec.name, pretrained=pretrained, **kwargs)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0][:200]
        raise InputError(
            f"the weights {spec.weights_location!r} do not fit {spec.name!r} ({first_line}): "
            "give weights saved from this architecture"
        ) from error
    return model.eval()


def check_checkpoint_fits(spec: ModelSpec) -> None:
    """Check a ``--checkpoint`` file against the architecture, without building the model.

    The model is laid out on the meta device (no memory, no initialization) and the file is
    read as timm reads it, so a checkpoint of another architecture or class count fails in a
    second, before any heavy work, instead of in the export stage.

    Args:
        spec: The resolved model; specs without a checkpoint pass unchecked.

    Raises:
        InputError: the file is no checkpoint, or its parameter names or shapes differ.
    """
    if spec.weights != "checkpoint":
        return
    try:
        state_dict = timm.models.load_state_dict(spec.weights_file)
    except Exception as error:  # torch.load and safetensors raise many types on a bad file
        raise InputError(
            f"--checkpoint {spec.weights_location!r} is not a PyTorch or safetensors checkpoint "
            f"({type(error).__name__}: {error}): give a file saved with torch.save or "
            "safetensors"
        ) from error

    with torch.device("meta"):
        model = timm.create_model(spec.name)
    try:
        # assign=True swaps the meta tensors for the loaded ones instead of copying into them.
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as error:
        raise InputError(
            f"--checkpoint {spec.weights_location!r} does not fit {spec.name!r} "
            f"({_summarize_load_error(error)}): give weights saved from this architecture, "
            f"e.g. torch.save(timm.create_model({spec.name!r}).state_dict(), path)"
        ) from error


def resolve_data_config(model: nn.Module) -> dict[str, Any]:
    """The model's own preprocessing (input size, crop, interpolation, mean/std), JSON-able."""
    data_cfg = timm.data.resolve_data_config(model=model)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data_cfg.items()}


def detect_transformer(model: nn.Module) -> bool:
    """Whether the model has attention blocks, the case NNCF's transformer mode is made for.

    Attention in timm is a module named ``*Attention`` that projects with Linear layers; the
    squeeze-excite and CBAM "attention" of CNNs uses convolutions and does not count.
    """
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            return True
        is_attention = "Attention" in type(module).__name__
        if is_attention and any(isinstance(child, nn.Linear) for child in module.children()):
            return True
    return False


def _summarize_load_error(error: RuntimeError) -> str:
    # torch lists every missing and unexpected key; the first of each kind says enough.
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    return "; ".join(line[:160] + ("..." if len(line) > 160 else "") for line in lines[:2])


def _check_known_model(model_id: str) -> None:
    architecture = model_id.split(".")[0]
    if timm.is_model(architecture):
        return
    close = difflib.get_close_matches(architecture, timm.list_models(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for names"
    raise InputError(f"--model_name {model_id!r} is not a timm model: {hint}")


def _resolve_registry_weights(model_name: str, slug: str) -> ModelSpec:
    pretrained_cfg = timm.models.get_pretrained_cfg(model_name)
    if pretrained_cfg is None:
        raise InputError(f"{model_name!r} has no pretrained weights in timm: {_WEIGHTS_HELP}")
    if pretrained_cfg.hf_hub_id:
        files = (pretrained_cfg.hf_hub_filename,) if pretrained_cfg.hf_hub_filename else None
        path = _download_hub_file(model_name, pretrained_cfg.hf_hub_id, files)
        return ModelSpec(
            model_name, slug, "hub", pretrained_cfg.hf_hub_id, str(path), digest_file(path)
        )
    if pretrained_cfg.url:
        path = _download_url(model_name, pretrained_cfg.url)
        return ModelSpec(model_name, slug, "url", pretrained_cfg.url, str(path), digest_file(path))
    raise InputError(f"{model_name!r} has no downloadable weights in timm: {_WEIGHTS_HELP}")


def _resolve_hub_weights(model_name: str, repo_id: str, slug: str) -> ModelSpec:
    # The config decides the architecture; fetching it first also proves the repo is reachable.
    _download_hub_file(model_name, repo_id, ("config.json",))
    path = _download_hub_file(model_name, repo_id, None)
    return ModelSpec(model_name, slug, "hub", repo_id, str(path), digest_file(path))


def _resolve_local_dir(model_name: str, folder: str, slug: str, random_weights: bool) -> ModelSpec:
    path = Path(folder).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise InputError(
            f"local-dir {folder!r} has no config.json: point it at a timm model folder "
            "(config.json plus model.safetensors), as timm's push_to_hf_hub/save writes it"
        )
    if random_weights:
        return ModelSpec(
            model_name, slug, "random", str(path), None, f"random-seed{_RANDOM_WEIGHTS_SEED}"
        )
    weights = [path / name for name in _WEIGHT_FILES if (path / name).is_file()]
    if not weights:
        raise InputError(
            f"local-dir {folder!r} holds no {' or '.join(_WEIGHT_FILES)}: {_WEIGHTS_HELP}"
        )
    digest = hashlib.sha256((digest_file(path / "config.json") + digest_file(weights[0])).encode())
    return ModelSpec(model_name, slug, "local-dir", str(path), str(weights[0]), digest.hexdigest())


def _download_hub_file(model_name: str, repo_id: str, filenames: tuple[str, ...] | None) -> Path:
    # Imported here: huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE when first imported.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
    )

    repo, _, revision = repo_id.partition("@")
    last_error: Exception | None = None
    unreachable = False
    for filename in filenames or _WEIGHT_FILES:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision or None))
        except RemoteEntryNotFoundError as error:
            last_error = error  # the repo lacks this file; timm's next choice may exist
        except LocalEntryNotFoundError as error:
            # Offline or no network, and not cached; the next file may be in the cache.
            last_error, unreachable = error, True
        except (HfHubHTTPError, OSError) as error:
            last_error, unreachable = error, True
            break
    if unreachable:
        raise InputError(
            f"pretrained weights for {model_name!r} (hub repo {repo}) are not reachable: "
            f"{_WEIGHTS_HELP}"
        ) from last_error
    raise InputError(
        f"hub repo {repo} has none of {filenames or _WEIGHT_FILES} for {model_name!r}: "
        f"{_WEIGHTS_HELP}"
    ) from last_error


def _download_url(model_name: str, url: str) -> Path:
    from timm.models._hub import download_cached_file

    try:
        return Path(download_cached_file(url))
    except OSError as error:
        raise InputError(
            f"pretrained weights for {model_name!r} ({url}) are not reachable: {_WEIGHTS_HELP}"
        ) from error


def _slugify(model_id: str) -> str:
    name = Path(model_id.rstrip("/")).name or model_id
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
