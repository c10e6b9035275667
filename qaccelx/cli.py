"""The seed-compatible command line: parse and check flags before any heavy import or work."""

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

from qaccelx.config import (
    BASELINE_PRECISIONS,
    RECOMPUTE_CHOICES,
    RunConfig,
    parse_bool,
    validate_run_config,
)
from qaccelx.errors import InputError

__all__ = ["build_parser", "configure_prefect_env", "parse_run_config"]

_DEFAULTS = RunConfig()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; names, types and defaults of the seed's flags are kept."""
    parser = argparse.ArgumentParser(
        prog="cpu_model_acceleration.py",
        description=(
            "Export a timm image classifier to OpenVINO, quantize it with NNCF, and measure "
            "speed and ImageNet top-1 of the baseline and the optimized model on this CPU."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model_name", default=_DEFAULTS.model_name,
        help="timm model name (resnet50, deit_base_patch16_224, ...), hf-hub:<repo> or "
        "local-dir:<folder with config.json and model.safetensors>")
    add("--accuracy_control", type=_bool, default=False,
        help="quantize with NNCF accuracy control, keeping the top-1 drop within "
        "--max_accuracy_drop on the calibration images")
    add("--transformer_model", type=_bool, default=None,
        help="True: NNCF transformer mode (SmoothQuant); False: default mode; "
        "not given: detected from the architecture (attention blocks)")
    add("--weight_only", type=_bool, default=False,
        help="compress weights to INT8 only (nncf.compress_weights); activations stay float")
    add("--dataset_path", default=_DEFAULTS.dataset_path,
        help="ImageNet root with val/ (optionally train/) in the ImageFolder layout, or a "
        "folder of <wnid> class folders")
    add("--batch_size", type=_positive_int, default=_DEFAULTS.batch_size,
        help="batch size for evaluation and the throughput benchmark")
    add("--baseline_precision", default=_DEFAULTS.baseline_precision, choices=BASELINE_PRECISIONS,
        type=str.lower, help="baseline the speed-up is measured against; fp32 also shows fp16")
    add("--debug", type=_bool, default=False,
        help="DEBUG logging and an export parity check (OpenVINO FP32 against torch)")
    add("--output_dir", default=_DEFAULTS.output_dir,
        help="folder for the optimized model and results.json (in a subfolder per model)")
    add("--results_json", default=None, help="also write the results JSON to this path")
    add("--max_accuracy_drop", type=float, default=_DEFAULTS.max_accuracy_drop,
        help="accuracy control's allowed absolute top-1 drop (0.01 = one point)")
    add("--calibration_size", type=_positive_int, default=_DEFAULTS.calibration_size,
        help="calibration images; taken from train/ if present, else from val/ and then "
        "left out of evaluation")
    add("--checkpoint", default=None, help="local weights file for --model_name's architecture")
    add("--random_weights", type=_bool, default=False,
        help="speed-only run with seeded random weights: accuracy figures are meaningless")
    add("--cache_dir", default=None,
        help="artifact store (default: $QACCELX_CACHE_DIR, else $XDG_CACHE_HOME/qaccelx)")
    add("--benchmark_seconds", type=float, default=_DEFAULTS.benchmark_seconds,
        help="minimum measuring time of each latency and throughput measurement")
    add("--seed", type=int, default=_DEFAULTS.seed, help="seed of the calibration sample")
    add("--recompute", default=_DEFAULTS.recompute, choices=RECOMPUTE_CHOICES, type=str.lower,
        help="recompute stored results: all, or from this stage on (export, calibration, "
        "quantize, evaluate, benchmark) even when the store holds sound ones")
    add("--quantization_recipe", default=_DEFAULTS.quantization_recipe,
        help="NNCF settings: auto (by model family), nncf-defaults, or a family (depthwise-cnn, "
        "swin, deit, vit), optionally with overrides such as auto,fast_bias_correction=true")
    return parser


def parse_run_config(argv: Sequence[str] | None = None) -> RunConfig:
    """Parse and validate the command line; argparse exits with status 2 on a bad flag."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return validate_run_config(RunConfig(**vars(args)))
    except InputError as error:
        parser.error(str(error))


def configure_prefect_env(cfg: RunConfig) -> None:
    """Route the library's and NNCF's logs through Prefect's handlers; must precede its import."""
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "qaccelx,nncf")

    # The temporary server's usage heartbeat has nowhere to go offline and logs a failure.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if cfg.debug:
        os.environ["PREFECT_LOGGING_LEVEL"] = "DEBUG"


def _argument_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (InputError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parse.__name__ = convert.__name__
    return parse


def _parse_positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r} must be a whole number of 1 or more")
    return value


_bool = _argument_type(parse_bool)
_positive_int = _argument_type(_parse_positive_int)
