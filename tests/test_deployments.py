"""The deployments on a real Prefect server: prefect.yaml deployed, a process worker, real runs.

A `prefect server start` on loopback with its own home, the pool prefect.yaml names, `prefect
deploy --all` from the checkout and `prefect worker start`: the same commands as the README.
The runs are real (timm's tiny test_resnet, OpenVINO, NNCF), and everything is read back
through a Prefect client pointed at that server.
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import ArtifactSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from conftest import tiny_run_args
from qaccelx.history import HistoryRecord, history_path, read_records, save_records
from qaccelx.report import results_table_rows

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[1]

# The work pool prefect.yaml deploys to, and the deployments' full names.
POOL = "qaccelx"
ACCELERATE, NIGHTLY = "accelerate/accelerate", "nightly-rebenchmark/nightly-rebenchmark"

# Seconds the server may take to answer its health check on a busy 2-core machine.
SERVER_STARTUP_SECONDS = 180

# Seconds a flow run may take, waiting for the machine-wide benchmark lock included.
RUN_TIMEOUT_SECONDS = 600

# Nights of the nightly test; 03-02 and 03-03 are injected, faster than the real 03-01.
FIRST_NIGHT, SECOND_NIGHT = "2026-03-01", "2026-03-04"
INJECTED_NIGHTS = ("2026-03-02", "2026-03-03")

# The injected nights' latency, as a fraction of the first night's: far below any noise.
INJECTED_SPEED = 0.25


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server on a free loopback port; yields the environment that points at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = _prefect_env(home, f"http://127.0.0.1:{port}/api")
    log = home / "server.log"
    command = ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = _start(command, env, home, log)
    try:
        _wait_healthy(env["PREFECT_API_URL"], process, log)
        yield env
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def deployed(server: dict[str, str]) -> dict[str, str]:
    """The process pool created and prefect.yaml deployed from the checkout."""
    _prefect(["work-pool", "create", POOL, "--type", "process"], server, REPO)
    _prefect(["--no-prompt", "deploy", "--all"], server, REPO)
    return server


@pytest.fixture(scope="module")
def worker(deployed: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A process worker on the pool; yields its log file."""
    folder = tmp_path_factory.mktemp("worker")
    log = folder / "worker.log"
    process = _start(["worker", "start", "--pool", POOL], deployed, folder, log)
    try:
        yield log
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def client(server: dict[str, str]) -> Iterator[SyncPrefectClient]:
    """A client of the test's own server, not of the session's test harness."""
    with temporary_settings({PREFECT_API_URL: server["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as prefect_client:
            yield prefect_client


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact store for the module's runs, as a deployment's runs would share one."""
    return tmp_path_factory.mktemp("deployed") / "store"


def test_accelerate_deployment_runs_and_publishes(
    client, worker, small_dataset, store, tmp_path
):
    params = tiny_run_args(small_dataset, store, tmp_path)
    run = _run_deployment(client, ACCELERATE, params, worker)

    assert run.state.type == StateType.COMPLETED, run.state.message
    assert run.name == "accelerate[test_resnet]"
    task_names = {t.name for t in client.read_task_runs(flow_run_filter=_by_id(run.id))}
    assert {"export[test_resnet]", "calibration-set[test_resnet]"} <= task_names
    assert any(name.endswith("[test_resnet/int8]") for name in task_names)

    # The artifacts say what the results.json of the run says.
    results = json.loads((tmp_path / "out" / "test_resnet" / "results.json").read_text())
    artifacts = {a.key: a for a in client.read_artifacts(flow_run_filter=_by_id(run.id))}
    assert set(artifacts) == {"qaccelx-results-test-resnet", "qaccelx-report-test-resnet"}
    table = artifacts["qaccelx-results-test-resnet"]
    assert table.type == "table"
    assert json.loads(table.data) == results_table_rows(results)
    report = artifacts["qaccelx-report-test-resnet"]
    assert report.type == "markdown"
    for text in ("## Settings", "## Machine", "## Versions", "| benchmark_seconds | 0.2 |"):
        assert text in report.data
    assert results["optimized_model"] in report.data
    assert f"| openvino | {results['environment']['versions']['openvino']} |" in report.data


def test_nightly_deployment_records_history_and_reports_regression(
    client, worker, small_dataset, store, tmp_path
):
    deployment = client.read_deployment_by_name(NIGHTLY)
    assert deployment.schedules[0].schedule.cron == "30 2 * * *"
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"

    # Night one: nothing earlier to compare with.
    params = _nightly_params(small_dataset, store, tmp_path)
    first = _run_deployment(client, NIGHTLY, {**params, "night": FIRST_NIGHT}, worker)
    assert first.state.type == StateType.COMPLETED, first.state.message
    db = history_path(store)
    first_records = [r for r in read_records(db) if r.night == FIRST_NIGHT]
    assert {r.variant for r in first_records} >= {"fp32", "fp16", "int8"}
    assert all(r.flow_run_id and r.model == "test_resnet" for r in first_records)

    # Two earlier nights that were four times faster make tonight a regression.
    _inject_faster_nights(db, first_records)

    # Two runs of night two at once: the deployment's limit cancels one, the other measures.
    second_params = {**params, "night": SECOND_NIGHT}
    runs = _run_deployment_twice(client, NIGHTLY, second_params, worker)
    states = sorted(run.state.type.value for run in runs)
    assert states == ["CANCELLED", "FAILED"], [run.state.message for run in runs]
    second = next(run for run in runs if run.state.type == StateType.FAILED)
    assert "trailing median" in second.state.message
    assert "test_resnet/int8" in second.state.message

    _check_regression_artifact(client, second, first_records)
    _check_reuse(client, second)
    _check_history(client, db, second)


def _nightly_params(dataset: Path, store: Path, tmp_path: Path) -> dict[str, Any]:
    args = tiny_run_args(dataset, store, tmp_path)
    return {
        "models": [{"model_name": args["model_name"], "random_weights": True}],
        **{name: args[name] for name in ("dataset_path", "batch_size", "calibration_size")},
        **{name: args[name] for name in ("benchmark_seconds", "cache_dir", "output_dir")},
    }


def _inject_faster_nights(db: Path, first_records: list[HistoryRecord]) -> None:
    faster = [
        dataclasses.replace(
            record,
            night=night,
            latency_median_ms=record.latency_median_ms * INJECTED_SPEED,
            flow_run_id=None,
        )
        for night in INJECTED_NIGHTS
        for record in first_records
    ]
    save_records(db, faster)


def _check_regression_artifact(client, run: FlowRun, first_records: list[HistoryRecord]) -> None:
    # The trailing median of one real and two injected nights is the injected latency.
    int8 = next(r for r in first_records if r.variant == "int8")
    reference = int8.latency_median_ms * INJECTED_SPEED
    markdown = _latest_artifact(client, "qaccelx-nightly-regressions", run).data
    row = next(line for line in markdown.splitlines() if "| int8 | latency |" in line)
    assert row.startswith("| test_resnet | random | int8 | latency |")
    assert f"| {reference:.3f} ms |" in row
    assert f"{FIRST_NIGHT}, {', '.join(INJECTED_NIGHTS)}" in row


def _check_reuse(client, run: FlowRun) -> None:
    # Night two reused every stage but the benchmarks, which it measured afresh.
    summary = _latest_artifact(client, "qaccelx-nightly-summary", run).data
    row = next(line for line in summary.splitlines() if line.startswith("| test_resnet |"))
    _, _, status, reused, measured, _ = row.split("|")
    assert status.strip() == "regressed"
    for stage in ("export", "calibration", "quantize", "evaluate[int8]"):
        assert stage in reused
    assert measured.strip() != "-"
    assert not any(name in measured for name in ("export", "quantize", "evaluate"))


def _check_history(client, db: Path, run: FlowRun) -> None:
    records = read_records(db, model="test_resnet", variant="int8")
    assert [r.night for r in records] == [FIRST_NIGHT, *INJECTED_NIGHTS, SECOND_NIGHT]
    assert records[-1].flow_run_id is not None
    assert records[-1].versions["openvino"]
    table = _latest_artifact(client, "qaccelx-history-test-resnet-random", run)
    nights = {row["night"] for row in json.loads(table.data)}
    assert nights == {FIRST_NIGHT, *INJECTED_NIGHTS, SECOND_NIGHT}
    chart = _latest_artifact(client, "qaccelx-history-chart-test-resnet-random", run).data
    assert f"{SECOND_NIGHT}  #" in chart


def _latest_artifact(client, key: str, run: FlowRun) -> Any:
    # The nightly flow and its per-model subflows both publish: look in the whole run tree.
    parent = FlowRunFilterParentFlowRunId(any_=[run.id])
    children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))
    run_ids = [run.id, *(child.id for child in children)]
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)),
        sort=ArtifactSort.CREATED_DESC,
    )
    assert artifacts, f"no artifact {key} in flow run {run.name}"
    return artifacts[0]


def _run_deployment(client, name: str, params: dict[str, Any], worker_log: Path) -> FlowRun:
    deployment = client.read_deployment_by_name(name)
    run = client.create_flow_run_from_deployment(deployment.id, parameters=params)
    return _wait_final(client, run.id, worker_log)


def _run_deployment_twice(client, name, params, worker_log: Path) -> list[FlowRun]:
    deployment = client.read_deployment_by_name(name)
    ids = [
        client.create_flow_run_from_deployment(deployment.id, parameters=params).id
        for _ in range(2)
    ]
    return [_wait_final(client, run_id, worker_log) for run_id in ids]


def _wait_final(client, run_id: UUID, worker_log: Path) -> FlowRun:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            return run
        time.sleep(2)
    pytest.fail(f"flow run {run_id} did not finish; worker log:\n{_tail(worker_log)}")


def _by_id(run_id: UUID) -> FlowRunFilter:
    return FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))


def _prefect_env(home: Path, api_url: str) -> dict[str, str]:
    # The session's own Prefect settings (the test harness) must not leak into the server,
    # the CLI or the worker: they get a clean Prefect environment of their own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # Scheduled nightly runs must not start in the middle of a test.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_LOGGING_EXTRA_LOGGERS="qaccelx",
        PYTHONUNBUFFERED="1",
    )
    return env


def _prefect(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    # A session of its own, so that stopping it reaches every process it started.
    with open(log, "w") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", *args],
            env=env,
            cwd=cwd,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen) -> None:
    # Flow runs start in sessions of their own: collect them before their parent goes.
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for child in descendants:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(descendants, timeout=20)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def _wait_healthy(api_url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"prefect server did not answer in {SERVER_STARTUP_SECONDS} s:\n{_tail(log)}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
