"""Everything checked before the heavy work: flags, model, weights, dataset, writable folders.

A run that would fail on bad input fails here, in a second, with one clear message, instead
of after minutes of export and quantization.
"""

import dataclasses
import logging
import tempfile
from pathlib import Path

from qaccelx.config import RunConfig, resolve_cache_dir, validate_run_config
from qaccelx.data import DatasetIndex, ImageRecord, index_dataset, split_calibration
from qaccelx.errors import InputError
from qaccelx.models import ModelSpec, check_checkpoint_fits, resolve_model_spec

__all__ = ["RunPlan", "plan_run"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """A validated run: resolved model and weights, the image split, the folders to write."""

    cfg: RunConfig  # the validated settings
    spec: ModelSpec  # model and weights
    index: DatasetIndex  # all images found
    calibration: list[ImageRecord]  # images NNCF calibrates on
    evaluation: list[ImageRecord]  # images accuracy is measured on, disjoint from calibration
    cache_dir: Path  # the artifact store
    output_dir: Path  # where the optimized model and results go, per model


def plan_run(cfg: RunConfig) -> RunPlan:
    """Validate a run and resolve its inputs.

    Cheap checks come first: flags, writable folders and the dataset take a second, while
    resolving weights may download them.

    Args:
        cfg: The settings as given.

    Returns:
        The validated plan.

    Raises:
        InputError: any input is unusable; the message says how to fix it.
    """
    cfg = validate_run_config(cfg)
    cache_dir = resolve_cache_dir(cfg.cache_dir)
    _check_writable(cache_dir, "--cache_dir (or QACCELX_CACHE_DIR)")
    _check_writable(Path(cfg.output_dir).expanduser().resolve(), "--output_dir")
    if cfg.results_json:
        _check_results_json(Path(cfg.results_json).expanduser().resolve())

    index = index_dataset(cfg.dataset_path)
    calibration, evaluation = split_calibration(index, cfg.calibration_size, cfg.seed)

    spec = resolve_model_spec(cfg.model_name, cfg.checkpoint, cfg.random_weights)
    check_checkpoint_fits(spec)
    output_dir = Path(cfg.output_dir).expanduser().resolve() / spec.slug
    _check_writable(output_dir, "--output_dir")
    logger.info(
        "Model %s (%s weights); %d calibration and %d evaluation images from %s",
        cfg.model_name,
        spec.weights,
        len(calibration),
        len(evaluation),
        index.root,
    )
    return RunPlan(cfg, spec, index, calibration, evaluation, cache_dir, output_dir)


def _check_results_json(path: Path) -> None:
    # Written last, after every expensive stage: a bad path must fail now, not then.
    if path.is_dir():
        raise InputError(
            f"--results_json {str(path)!r} is a folder: give a file path such as "
            f"{str(path / 'results.json')!r}"
        )
    _check_writable(path.parent, "--results_json's folder")


def _check_writable(folder: Path, flag: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(
            f"{flag} {str(folder)!r} is not writable ({error.strerror}): choose a folder you "
            "can write to"
        ) from error
