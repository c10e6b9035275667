"""The nightly re-benchmark: every configured model measured afresh, kept in a history, compared.

Export, calibration, quantization and evaluation come from the store (they only change when
their inputs do); the benchmarks are measured again every night, because what they depend on
beyond their inputs (the machine's state, a driver, a kernel) can change without notice. Each
night's rows go into the store's history database and are compared with the trailing nights.
"""

import dataclasses
import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Failed, State

from flows.accelerate import _artifact_key, run_plan
from qaccelx.config import RunConfig
from qaccelx.errors import InputError
from qaccelx.history import (
    HistoryRecord,
    Regression,
    RegressionPolicy,
    find_regressions,
    format_history_markdown,
    format_regressions_markdown,
    history_path,
    history_table_rows,
    read_records,
    records_from_results,
    save_records,
)
from qaccelx.models import resolve_model_spec
from qaccelx.plan import plan_run

__all__ = ["DEFAULT_NIGHTLY_MODELS", "nightly_rebenchmark", "rebenchmark_model"]

_DEFAULTS = RunConfig()
_POLICY = RegressionPolicy()

# The five seed models with random weights (speed only), then the real-weight models this
# workspace ships (skipped where their weights are missing: "if_available"). Each entry holds
# accelerate's parameters for that model; the local-dir path is relative to the checkout.
DEFAULT_NIGHTLY_MODELS = (
    {"model_name": "resnet50", "random_weights": True},
    {"model_name": "mobilenetv2_100", "random_weights": True},
    {"model_name": "swin_tiny_patch4_window7_224", "random_weights": True},
    {"model_name": "tnt_s_patch16_224", "random_weights": True},
    {"model_name": "deit_base_patch16_224", "random_weights": True},
    {"model_name": "tf_efficientnet_lite0", "if_available": True},
    {"model_name": "tf_efficientnet_lite2", "if_available": True},
    {
        "model_name": "local-dir:../shared/data/models/mobilenetv2_100.coral_in1k",
        "if_available": True,
    },
)

# Nights a history artifact shows.
_HISTORY_NIGHTS_SHOWN = 30


def _nightly_run_name() -> str:
    night = runtime.flow_run.parameters.get("night") or _scheduled_night()
    return f"nightly-rebenchmark[{night}]"


@flow(name="nightly-rebenchmark", flow_run_name=_nightly_run_name)
def nightly_rebenchmark(
    models: list[dict[str, Any]] | None = None,
    dataset_path: str = _DEFAULTS.dataset_path,
    batch_size: int = _DEFAULTS.batch_size,
    calibration_size: int = _DEFAULTS.calibration_size,
    benchmark_seconds: float = _DEFAULTS.benchmark_seconds,
    cache_dir: str | None = _DEFAULTS.cache_dir,
    output_dir: str = "qaccelx_output/nightly",
    latency_threshold: float = _POLICY.latency_threshold,
    trailing_nights: int = _POLICY.trailing_nights,
    night: str | None = None,
) -> dict[str, Any] | State:
    """Re-benchmark every configured model, record the night and flag regressions.

    Args:
        models: One entry per model: accelerate's parameters for it (``model_name`` and any
            of ``random_weights``, ``checkpoint``, ``weight_only``, ...), plus
            ``if_available: true`` to skip a model whose weights this machine lacks. None:
            ``DEFAULT_NIGHTLY_MODELS``.
        dataset_path: ImageNet root every model is calibrated and evaluated on.
        batch_size: Evaluation and throughput batch.
        calibration_size: Calibration images.
        benchmark_seconds: Minimum time of each latency and throughput measurement.
        cache_dir: The artifact store, which also holds the history database.
        output_dir: Where each model's optimized IR and results.json go.
        latency_threshold: A median latency this fraction above the trailing median is a
            regression (0.10 = 10 %).
        trailing_nights: Earlier nights the trailing median spans.
        night: The night recorded, YYYY-MM-DD; default the scheduled date of the run (UTC).

    Returns:
        A summary (night, models, history records), or a Failed state naming each regression
        and failed model with its numbers.
    """
    logger = get_run_logger()
    shared = {
        "dataset_path": dataset_path,
        "batch_size": batch_size,
        "calibration_size": calibration_size,
        "benchmark_seconds": benchmark_seconds,
        "cache_dir": cache_dir,
        "output_dir": output_dir,
    }
    try:
        tonight = _validate_night(night)
        policy = _validate_policy(latency_threshold, trailing_nights)
    except InputError as error:
        return Failed(message=str(error))

    entries = list(DEFAULT_NIGHTLY_MODELS if models is None else models)
    logger.info("Night %s: re-benchmarking %d models", tonight, len(entries))
    outcomes = [_run_model(entry, shared, tonight, policy) for entry in entries]

    regressions = [r for outcome in outcomes for r in outcome.get("regressions", [])]
    create_markdown_artifact(
        markdown=format_regressions_markdown(tonight, regressions),
        key="qaccelx-nightly-regressions",
        description=f"Regressions of the night {tonight}",
    )
    create_markdown_artifact(
        markdown=_summary_markdown(tonight, outcomes),
        key="qaccelx-nightly-summary",
        description=f"Nightly re-benchmark {tonight}",
    )
    return _final_state(tonight, outcomes, regressions)


@flow(name="rebenchmark-model", flow_run_name="rebenchmark[{params[model_name]}]")
def rebenchmark_model(
    params: dict[str, Any],
    night: str,
    latency_threshold: float,
    trailing_nights: int,
) -> dict[str, Any]:
    """Re-benchmark one model (cached export, quantization and evaluation), record the night.

    Args:
        params: accelerate's parameters for this model.
        night: The night recorded, YYYY-MM-DD.
        latency_threshold: See ``nightly_rebenchmark``.
        trailing_nights: See ``nightly_rebenchmark``.

    Returns:
        ``model``, ``stages`` (name and status), ``records`` and ``regressions`` (as dicts).

    Raises:
        InputError: a setting or an input of this model is unusable.
    """
    logger = get_run_logger()
    plan = plan_run(_run_config(params))
    results = run_plan(plan, force_benchmark=True)

    db_path = history_path(plan.cache_dir)
    records = records_from_results(results, night, str(runtime.flow_run.id))
    policy = RegressionPolicy(latency_threshold=latency_threshold, trailing_nights=trailing_nights)
    regressions = find_regressions(db_path, records, policy)
    save_records(db_path, records)
    for regression in regressions:
        logger.warning("Regression: %s", regression.describe())

    _publish_history(db_path, records[0])
    return {
        "model": results["model"],
        "stages": results["stages"],
        "records": [dataclasses.asdict(r) for r in records],
        "regressions": regressions,
    }


def _run_model(
    entry: dict[str, Any], shared: dict[str, Any], night: str, policy: RegressionPolicy
) -> dict[str, Any]:
    logger = get_run_logger()
    params = {**shared, **{k: v for k, v in entry.items() if k != "if_available"}}
    name = params.get("model_name", "?")
    if entry.get("if_available") and not _has_weights(params):
        logger.warning("Skipping %s: this machine has no weights for it", name)
        return {"model": name, "status": "skipped: no weights"}

    # One model's failure must not cost the other models their night.
    state = rebenchmark_model(
        params, night, policy.latency_threshold, policy.trailing_nights, return_state=True
    )
    if not state.is_completed():
        logger.error("%s failed: %s", name, state.message)
        return {"model": name, "status": f"failed: {state.message}"}
    outcome = state.result()
    return {**outcome, "status": "regressed" if outcome["regressions"] else "ok"}


def _has_weights(params: dict[str, Any]) -> bool:
    try:
        resolve_model_spec(
            params["model_name"], params.get("checkpoint"), params.get("random_weights", False)
        )
    except InputError as error:
        get_run_logger().info("Weights of %s not found: %s", params["model_name"], error)
        return False
    return True


def _run_config(params: dict[str, Any]) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise InputError(
            f"nightly model entry {params.get('model_name')!r} has unknown settings {unknown}: "
            f"use accelerate's parameters ({', '.join(sorted(names))}) or if_available"
        )
    return RunConfig(**params)


def _publish_history(db_path: Path, record: HistoryRecord) -> None:
    # One artifact pair per model and weights, across machines and nights; the key is stable
    # so the UI lists every night as a version of the same artifact.
    records = read_records(
        db_path, model=record.model, weights=record.weights, last_nights=_HISTORY_NIGHTS_SHOWN
    )
    slug = _artifact_key(f"{record.model}-{record.weights}")
    create_table_artifact(
        table=history_table_rows(records),
        key=f"qaccelx-history-{slug}",
        description=f"Nightly history of {record.model} ({record.weights} weights)",
    )
    create_markdown_artifact(
        markdown=format_history_markdown(record.model, records),
        key=f"qaccelx-history-chart-{slug}",
        description=f"Median latency per night of {record.model} ({record.weights} weights)",
    )


def _summary_markdown(night: str, outcomes: list[dict[str, Any]]) -> str:
    lines = [
        f"# Nightly re-benchmark {night}",
        "",
        "| model | status | reused from the store | measured tonight |",
        "|---|---|---|---|",
    ]
    for outcome in outcomes:
        stages = outcome.get("stages", [])
        reused = [s["name"] for s in stages if s["status"] == "cached"]
        measured = [s["name"] for s in stages if s["status"] != "cached"]
        status = outcome["status"].replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {outcome['model']} | {status} | {', '.join(reused) or '-'} | "
            f"{', '.join(measured) or '-'} |"
        )
    return "\n".join(lines)


def _final_state(
    night: str, outcomes: list[dict[str, Any]], regressions: list[Regression]
) -> dict[str, Any] | State:
    failed = [f"{o['model']}: {o['status']}" for o in outcomes if o["status"].startswith("failed")]
    summary = {
        "night": night,
        "models": {o["model"]: o["status"] for o in outcomes},
        "regressions": [r.describe() for r in regressions],
    }
    if regressions or failed:
        problems = [r.describe() for r in regressions] + failed
        return Failed(message=f"Night {night}: " + "; ".join(problems))
    return summary


def _validate_night(night: str | None) -> str:
    if night is None:
        return _scheduled_night()
    try:
        return datetime.date.fromisoformat(night).isoformat()
    except ValueError as error:
        raise InputError(f"night {night!r} is not a date: give it as YYYY-MM-DD") from error


def _validate_policy(latency_threshold: float, trailing_nights: int) -> RegressionPolicy:
    if not latency_threshold > 0:
        raise InputError(
            f"latency_threshold {latency_threshold!r} must be above 0 (0.10 flags 10 % slower)"
        )
    if not (isinstance(trailing_nights, int) and trailing_nights >= 1):
        raise InputError(f"trailing_nights {trailing_nights!r} must be a whole number of 1 or more")
    return RegressionPolicy(latency_threshold=latency_threshold, trailing_nights=trailing_nights)


def _scheduled_night() -> str:
    # A run that starts late still belongs to the night it was scheduled for.
    scheduled = runtime.flow_run.scheduled_start_time
    return scheduled.astimezone(datetime.timezone.utc).date().isoformat()
