"""Run settings: one frozen dataclass, resolved once from the command line or flow parameters."""

import dataclasses
import math
import os
from pathlib import Path

from qaccelx.errors import InputError
from qaccelx.recipes import resolve_recipe

__all__ = [
    "BASELINE_PRECISIONS",
    "RECOMPUTE_CHOICES",
    "STAGE_ORDER",
    "RunConfig",
    "parse_bool",
    "resolve_cache_dir",
    "stages_to_recompute",
    "validate_run_config",
]

# The baselines a user may measure against; fp32 also shows the fp16 row.
BASELINE_PRECISIONS = ("fp32", "fp16")

# The stages in pipeline order: --recompute <stage> recomputes that stage and every later one.
STAGE_ORDER = ("export", "calibration", "quantize", "evaluate", "benchmark")

# What --recompute accepts: nothing, everything, or a stage to start from.
RECOMPUTE_CHOICES = ("none", "all", *STAGE_ORDER)

# Spellings of booleans accepted on the command line (the seed used True/False).
_TRUE_WORDS = ("true", "1", "yes", "y", "on")
_FALSE_WORDS = ("false", "0", "no", "n", "off")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one acceleration run depends on."""

    model_name: str = "tnt_s_patch16_224"  # timm name, hf-hub:<repo> or local-dir:<folder>
    accuracy_control: bool = False  # NNCF quantize_with_accuracy_control
    transformer_model: bool | None = None  # None: detect from the architecture
    weight_only: bool = False  # nncf.compress_weights: INT8 weights, float activations
    dataset_path: str = "/data/imagenet"  # ImageNet root with val/ (train/) or class folders
    batch_size: int = 128  # evaluation batch and throughput batch; never changes a result
    baseline_precision: str = "fp32"  # fp32 or fp16
    debug: bool = False  # DEBUG logs, stage timings and an export parity check
    output_dir: str = "qaccelx_output"  # where the optimized model and results.json go
    results_json: str | None = None  # an extra copy of the results JSON
    max_accuracy_drop: float = 0.01  # absolute top-1 drop (0.01 = 1 point) for accuracy control
    strict_accuracy: bool = False  # a run whose accuracy loss exceeds max_accuracy_drop fails
    calibration_size: int = 300  # calibration images, seeded and spread over classes
    checkpoint: str | None = None  # local weights file for the architecture
    random_weights: bool = False  # speed-only run: accuracy is meaningless
    cache_dir: str | None = None  # artifact store; None: QACCELX_CACHE_DIR or the user cache
    benchmark_seconds: float = 10.0  # minimum measuring time of each latency and throughput run
    seed: int = 0  # calibration sampling and random weights
    recompute: str = "none"  # none, all, or the stage (STAGE_ORDER) to recompute from on
    quantization_recipe: str = "auto"  # auto, nncf-defaults or a family (qaccelx.recipes)


def parse_bool(value: str | bool) -> bool:
    """Parse a command-line boolean such as ``True``, ``false``, ``1`` or ``no``.

    Raises:
        InputError: the word is not a known spelling of a boolean.
    """
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise InputError(f"{value!r} is not a boolean: use True or False")


def resolve_cache_dir(cache_dir: str | None) -> Path:
    """Pick the artifact store: the flag, then ``QACCELX_CACHE_DIR``, then the user cache."""
    if cache_dir:
        return Path(cache_dir).expanduser().resolve()
    if os.environ.get("QACCELX_CACHE_DIR"):
        return Path(os.environ["QACCELX_CACHE_DIR"]).expanduser().resolve()

    # XDG_CACHE_HOME is how Linux users move caches off a small home disk.
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(xdg_cache) / "qaccelx").resolve()


def stages_to_recompute(recompute: str) -> frozenset[str]:
    """The stages a ``--recompute`` value forces, however sound their stored entries are.

    Raises:
        InputError: the value is not one of ``RECOMPUTE_CHOICES``.
    """
    if recompute not in RECOMPUTE_CHOICES:
        raise InputError(
            f"--recompute {recompute!r} is not supported: use one of {', '.join(RECOMPUTE_CHOICES)}"
        )
    if recompute == "none":
        return frozenset()
    start = 0 if recompute == "all" else STAGE_ORDER.index(recompute)
    return frozenset(STAGE_ORDER[start:])


def validate_run_config(cfg: RunConfig) -> RunConfig:
    """Check every value before any work starts.

    Returns:
        The same settings, normalized (the precision lower-cased).

    Raises:
        InputError: a value is out of range; the message names the valid values.
    """
    precision = str(cfg.baseline_precision).lower()
    if precision not in BASELINE_PRECISIONS:
        raise InputError(
            f"--baseline_precision {cfg.baseline_precision!r} is not supported: "
            f"use one of {', '.join(BASELINE_PRECISIONS)}"
        )
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise InputError(f"--batch_size {cfg.batch_size!r} must be a whole number of 1 or more")
    if not isinstance(cfg.calibration_size, int) or cfg.calibration_size < 1:
        raise InputError(
            f"--calibration_size {cfg.calibration_size!r} must be a whole number of 1 or more"
        )
    if not (isinstance(cfg.max_accuracy_drop, float | int) and 0 < cfg.max_accuracy_drop < 1):
        raise InputError(
            f"--max_accuracy_drop {cfg.max_accuracy_drop!r} must lie between 0 and 1 "
            "(an absolute top-1 fraction: 0.01 is one point)"
        )
    if not (math.isfinite(cfg.benchmark_seconds) and cfg.benchmark_seconds > 0):
        raise InputError(f"--benchmark_seconds {cfg.benchmark_seconds!r} must be above 0")
    if cfg.checkpoint and cfg.random_weights:
        raise InputError("--checkpoint and --random_weights True exclude each other: pick one")
    if cfg.strict_accuracy and cfg.random_weights:
        raise InputError(
            "--strict_accuracy True needs real weights, and --random_weights True measures no "
            "accuracy: drop one of them"
        )
    stages_to_recompute(cfg.recompute)  # raises on an unknown value
    resolve_recipe(cfg.quantization_recipe, cfg.model_name)  # raises on an unknown recipe
    if cfg.weight_only and cfg.accuracy_control:
        raise InputError(
            "--weight_only True and --accuracy_control True exclude each other: accuracy "
            "control applies to full INT8 quantization"
        )
    return dataclasses.replace(cfg, baseline_precision=precision)
