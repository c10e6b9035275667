"""The stage cache: a changed input recomputes exactly the stages that read it.

Most tests start from a copy of one finished run's store, change one thing, run the flow
again and check which stages really executed: the compute functions in ``qaccelx.stages`` are
wrapped to count their calls, and the run's own ``stages`` record must agree with the count.
"""

import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from conftest import IMAGENET_SAMPLE, tiny_run_args
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL
from stage_counting import count_stage_calls

import qaccelx.stages
from flows.accelerate import accelerate
from qaccelx.cache import main as cache_main
from qaccelx.config import STAGE_ORDER, stages_to_recompute
from qaccelx.data import index_dataset, split_calibration
from qaccelx.models import create_model, resolve_model_spec

REPO = Path(__file__).resolve().parents[1]

# Reads of the task runs' states, half a second apart, before their asserts run anyway.
_STATE_READS = 60


class Base:
    """One cold run everything else starts from: its dataset, store and results."""

    def __init__(self, dataset: Path, store: Path, results: dict[str, Any]) -> None:
        self.dataset = dataset
        self.store = store
        self.results = results
        self.rows = list(results["variants"])  # e.g. fp32, bf16, fp16, int8
        self.calibration, _ = split_calibration(index_dataset(str(dataset)), 20, 0)


@pytest.fixture(scope="module")
def base(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Base:
    """A cold run of the tiny model; its store is copied, never changed, by the tests."""
    root = tmp_path_factory.mktemp("cache-base")
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = _count_computations(monkeypatch)
        results = accelerate(**tiny_run_args(small_dataset, root / "store", root))
    _check_record(results, calls)
    return Base(small_dataset, root / "store", results)


def test_cold_run_computes_every_stage_once(base):
    statuses = {stage["status"] for stage in base.results["stages"]}
    assert statuses == {"computed"}
    assert _all_stages(base.rows) == _names(base.results)


def test_unchanged_rerun_computes_nothing_and_prefect_shows_cached(base, tmp_path, monkeypatch):
    store = _copy_store(base, tmp_path)
    calls = _count_computations(monkeypatch)
    state = accelerate(**tiny_run_args(base.dataset, store, tmp_path), return_state=True)
    results = state.result()

    assert _check_record(results, calls) == set()
    assert (
        results["variants"]["int8"]["latency_ms"] == base.results["variants"]["int8"]["latency_ms"]
    )
    task_states = _task_run_states(state.state_details.flow_run_id, len(base.results["stages"]))
    assert len(task_states) == len(base.results["stages"])
    assert set(task_states.values()) == {"Cached"}
    assert task_states["benchmark-latency[test_resnet/int8]"] == "Cached"


def test_computed_stage_shows_completed_in_prefect(base, tmp_path, monkeypatch):
    store = _copy_store(base, tmp_path)
    shutil.rmtree(_entry_dir(store, "benchmark-throughput", variant="int8"))
    state = accelerate(**tiny_run_args(base.dataset, store, tmp_path), return_state=True)

    task_states = _task_run_states(state.state_details.flow_run_id, len(base.results["stages"]))
    assert task_states.pop("benchmark-throughput[test_resnet/int8]") == "Completed"
    assert set(task_states.values()) == {"Cached"}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"debug": True}, lambda rows: set(), id="debug"),
        pytest.param(
            {"batch_size": 4},
            lambda rows: {f"benchmark-throughput[{row}]" for row in rows},
            id="batch_size",
        ),
        pytest.param({"baseline_precision": "fp16"}, lambda rows: set(), id="baseline_precision"),
        # test_resnet has no attention: False is what detection chose in the first run.
        pytest.param({"transformer_model": False}, lambda rows: set(), id="transformer_false"),
        # Only accuracy control reads the allowed drop.
        pytest.param({"max_accuracy_drop": 0.05}, lambda rows: set(), id="max_accuracy_drop"),
        pytest.param(
            {"accuracy_control": True},
            lambda rows: {"quantize", *_row_stages("int8")},
            id="accuracy_control",
        ),
        pytest.param(
            {"transformer_model": True},
            lambda rows: {"quantize", *_row_stages("int8")},
            id="transformer_true",
        ),
        pytest.param(
            {"weight_only": True},
            lambda rows: {"quantize", *_row_stages("int8_weights")},
            id="weight_only",
        ),
        pytest.param(
            {"calibration_size": 10},
            lambda rows: {"calibration", "quantize", *_evaluations(rows), *_row_stages("int8")},
            id="calibration_size",
        ),
    ],
)
def test_changed_flag_recomputes_only_what_reads_it(base, tmp_path, monkeypatch, changes, expected):
    store = _copy_store(base, tmp_path)
    calls = _count_computations(monkeypatch)
    results = accelerate(**tiny_run_args(base.dataset, store, tmp_path, **changes))

    assert _check_record(results, calls) == expected(base.rows)


def test_baseline_fp16_reuses_the_measured_rows(base, tmp_path, monkeypatch):
    store = _copy_store(base, tmp_path)
    results = accelerate(**tiny_run_args(base.dataset, store, tmp_path, baseline_precision="fp16"))

    assert list(results["variants"]) == ["fp16", "int8"]
    assert results["variants"]["fp16"] == base.results["variants"]["fp16"]


def test_added_image_recomputes_calibration_and_evaluation(base, tmp_path, monkeypatch):
    dataset = _copy_dataset(base, tmp_path)
    class_dir = _class_without_calibration_images(base, dataset)
    new_image = _spare_image()
    shutil.copy(new_image, class_dir / new_image.name)
    store = _copy_store(base, tmp_path)
    calls = _count_computations(monkeypatch)
    results = accelerate(**tiny_run_args(dataset, store, tmp_path))

    # The calibration set is rebuilt (the dataset changed) but holds the same images, so its
    # digest, and the quantized model built from it, stay.
    assert _check_record(results, calls) == {"calibration", *_evaluations(base.rows)}
    assert results["evaluation_images"] == base.results["evaluation_images"] + 1


@pytest.mark.parametrize("which", ["evaluation", "calibration"])
def test_changed_image_recomputes_what_used_it(base, tmp_path, monkeypatch, which):
    dataset = _copy_dataset(base, tmp_path)
    calibration_paths = {record.path for record in base.calibration}
    paths = sorted(str(p.relative_to(dataset)) for p in dataset.rglob("*.JPEG"))
    changed = next(p for p in paths if (p in calibration_paths) == (which == "calibration"))
    shutil.copy(_spare_image(), dataset / changed)
    store = _copy_store(base, tmp_path)
    calls = _count_computations(monkeypatch)
    results = accelerate(**tiny_run_args(dataset, store, tmp_path))

    # Evaluation keys on the evaluation images only, so a calibration image leaves the
    # unquantized rows' accuracy alone; calibration keys on the whole dataset's manifest.
    if which == "calibration":
        expected = {"calibration", "quantize", *_row_stages("int8")}
    else:
        expected = {"calibration", *_evaluations(base.rows)}
    assert _check_record(results, calls) == expected


def test_weights_are_keyed_by_content(base, tmp_path, monkeypatch):
    same_weights = tmp_path / "same.pth"
    random_spec = resolve_model_spec("test_resnet", random_weights=True)
    torch.save(create_model(random_spec).state_dict(), same_weights)
    torch.manual_seed(1)
    other_weights = tmp_path / "other.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), other_weights)
    store = _copy_store(base, tmp_path)
    calls = _count_computations(monkeypatch)

    def run(checkpoint: Path) -> set[str]:
        calls.clear()
        args = tiny_run_args(base.dataset, store, tmp_path, random_weights=False)
        return _check_record(accelerate(**args, checkpoint=str(checkpoint)), calls)

    # The random weights saved to a file: a new export key, the same IR bytes, all else reused.
    assert run(same_weights) == {"export"}
    assert run(other_weights) == _all_stages(base.rows) - {"calibration"}
    shutil.copy(same_weights, tmp_path / "renamed.pth")
    assert run(tmp_path / "renamed.pth") == set()


def test_damaged_artifacts_are_recomputed(base, tmp_path, monkeypatch):
    store = _copy_store(base, tmp_path)
    fp32_bin = _entry_dir(store, "export") / "fp32.bin"
    with open(fp32_bin, "r+b") as stream:
        stream.truncate(fp32_bin.stat().st_size // 2)
    (_entry_dir(store, "calibration") / "calibration.npz").unlink()
    shutil.rmtree(_entry_dir(store, "evaluate", variant="int8"))
    calls = _count_computations(monkeypatch)
    results = accelerate(**tiny_run_args(base.dataset, store, tmp_path))

    # Recomputed to the same bytes, the export and calibration set leave later stages reused.
    assert _check_record(results, calls) == {"export", "calibration", "evaluate[int8]"}
    assert results["variants"]["int8"]["top5"] == base.results["variants"]["int8"]["top5"]


def test_recompute_from_a_stage_on(base, tmp_path, monkeypatch):
    store = _copy_store(base, tmp_path)
    calls = _count_computations(monkeypatch)
    results = accelerate(**tiny_run_args(base.dataset, store, tmp_path, recompute="quantize"))

    assert _check_record(results, calls) == _all_stages(base.rows) - {"export", "calibration"}
    assert stages_to_recompute("all") == set(STAGE_ORDER)
    assert stages_to_recompute("none") == set()


def test_concurrent_runs_compute_each_stage_once(small_dataset, tmp_path):
    store = tmp_path / "store"
    runs = [_start_counting_run(small_dataset, store, tmp_path / f"run{i}") for i in range(2)]
    for process, run_dir in runs:
        assert process.wait(timeout=900) == 0, (run_dir / "stderr.log").read_text()[-3000:]

    executed: collections.Counter = collections.Counter()
    statuses = []
    for _, run_dir in runs:
        executed.update((run_dir / "computed.log").read_text().split())
        results = json.loads((run_dir / "results.json").read_text())
        statuses.append({s["name"]: s["status"] for s in results["stages"]})
    assert set(executed.values()) == {1}
    assert set(executed) == _all_stages(list(results["variants"]))
    for name in executed:
        assert sorted(run[name] for run in statuses) == ["cached", "computed"]


def test_cache_list_and_clear(base, tmp_path, capsys):
    store = _copy_store(base, tmp_path)
    listing = _list_stages(store, capsys)
    assert len(listing) == len(base.results["stages"])
    assert collections.Counter(listing)["benchmark-latency"] == len(base.rows)

    assert cache_main(["clear", "--cache_dir", str(store), "--stage", "benchmark-latency"]) == 0
    assert "benchmark-latency" not in _list_stages(store, capsys)
    assert cache_main(["clear", "--cache_dir", str(store)]) == 0
    assert _list_stages(store, capsys) == []


def _count_computations(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    calls: collections.Counter = collections.Counter()

    def record(stage: str) -> None:
        calls[stage] += 1

    count_stage_calls(lambda name, fn: monkeypatch.setattr(qaccelx.stages, name, fn), record)
    return calls


def _check_record(results: dict[str, Any], calls: collections.Counter) -> set[str]:
    # The run's record must say exactly what really executed, each stage at most once.
    computed = {s["name"] for s in results["stages"] if s["status"] == "computed"}
    assert calls == collections.Counter(computed)
    return computed


def _names(results: dict[str, Any]) -> set[str]:
    return {stage["name"] for stage in results["stages"]}


def _row_stages(row: str) -> set[str]:
    return {f"evaluate[{row}]", f"benchmark-latency[{row}]", f"benchmark-throughput[{row}]"}


def _evaluations(rows: list[str]) -> set[str]:
    return {f"evaluate[{row}]" for row in rows}


def _all_stages(rows: list[str]) -> set[str]:
    return {"export", "calibration", "quantize"}.union(*(_row_stages(row) for row in rows))


def _list_stages(store: Path, capsys: pytest.CaptureFixture) -> list[str]:
    # The stage column of `python -m qaccelx.cache list`, one item per entry.
    capsys.readouterr()
    assert cache_main(["list", "--cache_dir", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith(f"{len(lines) - 3} entries, ")
    return [line.split()[0] for line in lines[2:-1]]


def _copy_store(base: Base, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(base.store, store)
    return store


def _copy_dataset(base: Base, tmp_path: Path) -> Path:
    # copytree keeps modification times, so the copy's manifest equals the original's.
    dataset = tmp_path / "dataset"
    shutil.copytree(base.dataset, dataset)
    return dataset


def _spare_image() -> Path:
    # An image of a class the small dataset does not hold (it has the first 60 classes).
    class_dir = sorted((IMAGENET_SAMPLE / "val").iterdir())[100]
    return next(class_dir.iterdir())


def _class_without_calibration_images(base: Base, dataset: Path) -> Path:
    calibration_dirs = {Path(record.path).parent for record in base.calibration}
    class_dirs = sorted(p.relative_to(dataset) for p in (dataset / "val").iterdir())
    return dataset / next(d for d in class_dirs if d not in calibration_dirs)


def _entry_dir(store: Path, stage: str, variant: str | None = None) -> Path:
    for manifest_path in sorted((store / stage).glob("*/manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        if variant is None or manifest["inputs"]["variant"] == variant:
            return manifest_path.parent
    raise LookupError(f"no {stage} entry for {variant} in {store}")


def _task_run_states(flow_run_id: Any, expected_runs: int) -> dict[str, str]:
    # Read back from Prefect's API what its logs and UI show for each task run. The server
    # records task run states from events, so the last ones may land a moment after the flow
    # returns: read until every stage's run is there in a final state (or give up and let the
    # caller's asserts show what was there).
    with get_client(sync_client=True) as client:
        for _ in range(_STATE_READS):
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            stage_runs = [run for run in task_runs if not run.name.startswith("export-parity")]
            if len(stage_runs) >= expected_runs and all(run.state.is_final() for run in stage_runs):
                break
            time.sleep(0.5)
    return {run.name: run.state.name for run in stage_runs}


def _start_counting_run(dataset: Path, store: Path, run_dir: Path) -> tuple[subprocess.Popen, Path]:
    run_dir.mkdir()
    args = tiny_run_args(dataset, store, run_dir, results_json=str(run_dir / "results.json"))
    argv = [f"--{name}={value}" for name, value in args.items()]
    command = [
        sys.executable,
        str(REPO / "tests" / "stage_counting.py"),
        str(run_dir / "computed.log"),
    ]

    # Both runs report to this session's Prefect server rather than each starting its own.
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    with open(run_dir / "stderr.log", "w") as stderr:
        process = subprocess.Popen(
            [*command, *argv], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    return process, run_dir
