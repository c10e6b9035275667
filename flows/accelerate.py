"""The acceleration flow: one model, exported, quantized, evaluated and benchmarked."""

import dataclasses
import re
import shutil
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Failed, State

from qaccelx.benchmark import combine_measurements, describe_machine
from qaccelx.config import RunConfig, stages_to_recompute
from qaccelx.errors import InputError, describe_user_error, quiet_user_error_tracebacks
from qaccelx.evaluate import PREDICTIONS_FILE
from qaccelx.plan import RunPlan, plan_run
from qaccelx.quantize import (
    QuantizeSettings,
    describe_accuracy_target,
    judge_accuracy_target,
    optimized_variant,
)
from qaccelx.recipes import resolve_recipe
from qaccelx.report import build_results, results_table_rows, write_results_json
from qaccelx.report_markdown import format_markdown_report
from qaccelx.runtime import float_rows
from qaccelx.stages import variant_xml
from qaccelx.stats import Predictions, load_predictions
from qaccelx.store import Entry
from tasks import (
    calibration_task,
    evaluate_task,
    export_task,
    latency_task,
    quantize_task,
    throughput_task,
)
from tasks._entry import run_stage
from tasks.parity import parity_task

__all__ = ["accelerate", "run_plan"]

_DEFAULTS = RunConfig()


@flow(name="accelerate", flow_run_name="accelerate[{model_name}]")
def accelerate(
    model_name: str = _DEFAULTS.model_name,
    accuracy_control: bool = _DEFAULTS.accuracy_control,
    transformer_model: bool | None = _DEFAULTS.transformer_model,
    weight_only: bool = _DEFAULTS.weight_only,
    dataset_path: str = _DEFAULTS.dataset_path,
    batch_size: int = _DEFAULTS.batch_size,
    baseline_precision: str = _DEFAULTS.baseline_precision,
    debug: bool = _DEFAULTS.debug,
    output_dir: str = _DEFAULTS.output_dir,
    results_json: str | None = _DEFAULTS.results_json,
    max_accuracy_drop: float = _DEFAULTS.max_accuracy_drop,
    strict_accuracy: bool = _DEFAULTS.strict_accuracy,
    calibration_size: int = _DEFAULTS.calibration_size,
    checkpoint: str | None = _DEFAULTS.checkpoint,
    random_weights: bool = _DEFAULTS.random_weights,
    cache_dir: str | None = _DEFAULTS.cache_dir,
    benchmark_seconds: float = _DEFAULTS.benchmark_seconds,
    seed: int = _DEFAULTS.seed,
    recompute: str = _DEFAULTS.recompute,
    quantization_recipe: str = _DEFAULTS.quantization_recipe,
) -> dict[str, Any] | State:
    """Accelerate one timm model and measure what it gained and what it cost.

    The parameters are the command line's options (see ``cpu_model_acceleration.py --help``).

    Returns:
        The results document (also written to ``<output_dir>/<model>/results.json``), or a
        Failed state: with a message that says how to fix the input or make room on the disk,
        or, with ``strict_accuracy``, holding the results of a run that missed its target.
    """
    parameters = dict(locals())
    cfg = RunConfig(**{f.name: parameters[f.name] for f in dataclasses.fields(RunConfig)})

    # A user error, found up front or inside a stage, ends the run as one line, no traceback.
    quiet_user_error_tracebacks("prefect.task_runs", "prefect.flow_runs")
    try:
        results = run_plan(plan_run(cfg))
    except (InputError, OSError, RuntimeError) as error:
        message = describe_user_error(error)
        if message is None:
            raise
        return Failed(message=message)
    return _judge_accuracy(cfg, results)


def run_plan(plan: RunPlan, force_benchmark: bool = False) -> dict[str, Any]:
    """Run the stages of a validated plan, publish and return the results.

    Args:
        plan: The validated run.
        force_benchmark: Measure the benchmarks afresh even when the store holds them (the
            nightly re-benchmark); every other stage is still reused from the store.
    """
    cfg, spec, cache, slug = plan.cfg, plan.spec, plan.cache_dir, plan.spec.slug
    logger = get_run_logger()
    start = time.perf_counter()
    force = stages_to_recompute(cfg.recompute)

    logger.info("1/6 export: %s to OpenVINO IR", cfg.model_name)
    export = run_stage(export_task, spec, cache, force="export" in force)
    data_cfg = export.meta["data_config"]
    parity = parity_task(spec, export, plan.index, plan.evaluation) if cfg.debug else None

    logger.info(
        "2/6 calibration set: %d images, preprocessed as %s", len(plan.calibration), data_cfg
    )
    calibration = run_stage(
        calibration_task, plan.index, plan.calibration, data_cfg, cfg.seed, cache, slug,
        force="calibration" in force,
    )

    logger.info("3/6 quantize with NNCF")
    settings = _quantize_settings(cfg, export, logger)
    quantized = run_stage(
        quantize_task, export, calibration, settings, cache, slug, force="quantize" in force
    )

    rows = _rows(cfg, export, quantized, optimized_variant(settings))
    logger.info("4/6 evaluate %s on %d images", ", ".join(rows), len(plan.evaluation))
    evaluations = {
        name: run_stage(
            evaluate_task, ir, name, plan.index, plan.evaluation, data_cfg, cfg.batch_size,
            cache, slug, force="evaluate" in force,
        )
        for name, ir in rows.items()
    }

    # Benchmarks come last and one at a time, so nothing else competes for the cores.
    logger.info("5/6 benchmark %s", ", ".join(rows))
    benchmarks = _benchmark(plan, rows, force_benchmark or "benchmark" in force)

    logger.info("6/6 report")
    stages = [("export", export), ("calibration", calibration), ("quantize", quantized)]
    stages += [(f"evaluate[{name}]", entry) for name, entry in evaluations.items()]
    stages += [
        (f"benchmark-{kind}[{name}]", entry)
        for name, pair in benchmarks.items()
        for kind, entry in pair.items()
    ]
    results = _assemble(plan, settings, rows, evaluations, benchmarks, stages, start)
    if parity is not None:
        results["export_parity"] = parity
    _publish(plan, results, variant_xml(quantized, results["optimized"]))
    return results


def _quantize_settings(cfg: RunConfig, export: Entry, logger: Any) -> QuantizeSettings:
    transformer = cfg.transformer_model
    if transformer is None:
        transformer = bool(export.meta["transformer"])
        logger.info(
            "--transformer_model not given: %s has %s attention blocks, so NNCF runs in %s mode",
            cfg.model_name,
            "" if transformer else "no",
            "transformer (SmoothQuant)" if transformer else "default",
        )
    recipe = resolve_recipe(cfg.quantization_recipe, cfg.model_name)
    logger.info("Quantization recipe %s: %s", recipe.name, recipe)
    return QuantizeSettings(
        weight_only=cfg.weight_only,
        transformer=transformer,
        accuracy_control=cfg.accuracy_control,
        max_accuracy_drop=float(cfg.max_accuracy_drop),
        recipe=recipe,
    )


def _benchmark(plan: RunPlan, rows: dict[str, Entry], force: bool) -> dict[str, dict[str, Entry]]:
    # Latency and throughput are stored apart: a new --batch_size re-measures throughput only.
    cfg, cache, slug = plan.cfg, plan.cache_dir, plan.spec.slug
    return {
        name: {
            "latency": run_stage(
                latency_task, ir, name, cfg.benchmark_seconds, cache, slug, force=force
            ),
            "throughput": run_stage(
                throughput_task, ir, name, cfg.batch_size, cfg.benchmark_seconds, cache, slug,
                force=force,
            ),
        }
        for name, ir in rows.items()
    }


def _rows(cfg: RunConfig, export: Entry, quantized: Entry, optimized: str) -> dict[str, Entry]:
    # With an fp32 baseline the fp16 row is shown as well, as the seed did, and a bf16 row
    # where the CPU computes BF16 natively (what OpenVINO does to FP32 models by default).
    baselines = float_rows(cfg.baseline_precision)
    return {**{name: export for name in baselines}, optimized: quantized}


def _assemble(
    plan: RunPlan,
    settings: QuantizeSettings,
    rows: dict[str, Entry],
    evaluations: dict[str, Entry],
    benchmarks: dict[str, dict[str, Entry]],
    stages: list[tuple[str, Entry]],
    start: float,
) -> dict[str, Any]:
    optimized = list(rows)[-1]
    optimized_xml = plan.output_dir / f"{optimized}.xml"
    extra = {
        "optimized_model": str(optimized_xml),
        "weights": {"kind": plan.spec.weights, "location": plan.spec.weights_location},
        "settings": {
            **dataclasses.asdict(plan.cfg),
            "transformer": settings.transformer,
            "recipe": dataclasses.asdict(settings.recipe),
        },
        "calibration_images": dict(stages)["calibration"].meta["images"],
        "evaluation_images": len(plan.evaluation),
        "evaluation_classes": plan.index.num_classes,
        "skipped_images": _skipped_images(dict(stages)["calibration"], evaluations),
        "accuracy_target": _accuracy_target(plan, rows, evaluations),
        "stages": [
            {"name": name, "status": e.status, "seconds": round(e.seconds, 2)}
            for name, e in stages
        ],
        "wall_seconds": round(time.perf_counter() - start, 2),
        "environment": describe_machine(),
    }
    return build_results(
        plan.cfg.model_name,
        plan.spec.pretrained,
        plan.cfg.baseline_precision,
        optimized,
        {
            name: combine_measurements(pair["latency"].meta, pair["throughput"].meta)
            for name, pair in benchmarks.items()
        },
        {name: e.meta for name, e in evaluations.items()},
        extra,
        predictions=_load_predictions(evaluations),
    )


def _skipped_images(calibration: Entry, evaluations: dict[str, Entry]) -> dict[str, list[str]]:
    # Every row reads the same evaluation images, so any row's list names them all.
    evaluation = next(iter(evaluations.values())).meta["skipped"]
    return {"calibration": list(calibration.meta["skipped"]), "evaluation": list(evaluation)}


def _accuracy_target(
    plan: RunPlan,
    rows: dict[str, Entry],
    evaluations: dict[str, Entry],
) -> dict[str, Any] | None:
    # Judged when asked for (accuracy control, or a strict target) and measurable (real weights).
    cfg, optimized = plan.cfg, list(rows)[-1]
    if not (cfg.accuracy_control or cfg.strict_accuracy) or not plan.spec.pretrained:
        return None
    return judge_accuracy_target(
        evaluations[cfg.baseline_precision].meta["top1"],
        evaluations[optimized].meta["top1"],
        cfg.max_accuracy_drop,
        rows[optimized].meta.get("validation"),
    )


def _judge_accuracy(cfg: RunConfig, results: dict[str, Any]) -> dict[str, Any] | State:
    # A missed target is reported either way; only a strict one fails the run.
    target = results.get("accuracy_target")
    if target is None:
        return results
    logger = get_run_logger()
    if target["met"]:
        logger.info(describe_accuracy_target(target))
        return results
    logger.warning(describe_accuracy_target(target))
    if cfg.strict_accuracy:
        return Failed(message=describe_accuracy_target(target), data=results)
    return results


def _load_predictions(evaluations: dict[str, Entry]) -> dict[str, Predictions]:
    # Per-image predictions, for intervals and the image-by-image agreement between rows.
    return {name: load_predictions(e.file(PREDICTIONS_FILE)) for name, e in evaluations.items()}


def _publish(plan: RunPlan, results: dict[str, Any], optimized_xml: Path) -> None:
    _copy_ir(optimized_xml, Path(results["optimized_model"]))
    write_results_json(results, plan.output_dir / "results.json")
    if plan.cfg.results_json:
        write_results_json(results, Path(plan.cfg.results_json).expanduser())

    key = _artifact_key(f"qaccelx-results-{plan.spec.slug}")
    create_table_artifact(table=results_table_rows(results), key=key, description=results["model"])
    create_markdown_artifact(
        markdown=format_markdown_report(results),
        key=_artifact_key(f"qaccelx-report-{plan.spec.slug}"),
        description=f"QAccelX report for {results['model']}",
    )


def _copy_ir(xml_path: Path, target_xml: Path) -> None:
    # Copy under temporary names, then rename: a reader never finds half a model.
    pairs = [(xml_path, target_xml), (xml_path.with_suffix(".bin"), target_xml.with_suffix(".bin"))]
    for source, target in pairs:
        partial = target.with_name(f".{target.name}.partial")
        try:
            shutil.copyfile(source, partial)
            partial.replace(target)
        except BaseException:
            # A full disk or Ctrl-C mid-copy leaves no half file behind.
            partial.unlink(missing_ok=True)
            raise


def _artifact_key(text: str) -> str:
    # Prefect artifact keys allow lowercase letters, digits and dashes only.
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")
