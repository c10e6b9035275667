"""Shared fixtures: the shared real data, an isolated store per test, a real Prefect engine."""

import os
import shutil
import sys
from pathlib import Path

import pytest

# The repository root, where the command line lives.
REPO = Path(__file__).resolve().parents[1]

# The shared data lives beside the repository; CI lays it out the same way.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGENET_SAMPLE = SHARED_DATA / "imagenet-sample"
HF_HUB_CACHE = SHARED_DATA / "hf-hub"
MOBILENET_DIR = SHARED_DATA / "models" / "mobilenetv2_100.coral_in1k"

# huggingface_hub reads these when first imported, so they are set before any test imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_CACHE", str(HF_HUB_CACHE))
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "qaccelx,nncf")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# Tests talk to nothing but loopback: OpenVINO's converter and NNCF send usage telemetry to the
# internet unless they see a CI run; these are their documented switches.
os.environ.setdefault("CI", "true")
os.environ.setdefault("NNCF_CI", "1")


@pytest.fixture(scope="session", autouse=True)
def prefect_engine():
    """A real Prefect engine with a throw-away database for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    """An empty artifact store for one test."""
    return tmp_path / "store"


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of 60 shared images in 60 classes: enough to calibrate on 20 and evaluate 40."""
    root = tmp_path_factory.mktemp("small") / "imagenet"
    source = IMAGENET_SAMPLE / "val"
    for class_dir in sorted(source.iterdir())[:60]:
        shutil.copytree(class_dir, root / "val" / class_dir.name)
    return root


def tiny_run_args(dataset: Path, cache_dir: Path, tmp_path: Path, **overrides) -> dict:
    """Flow parameters for a fast run of a tiny timm model with random weights."""
    args = {
        "model_name": "test_resnet",
        "random_weights": True,
        "dataset_path": str(dataset),
        "batch_size": 8,
        "calibration_size": 20,
        "benchmark_seconds": 0.2,
        "cache_dir": str(cache_dir),
        "output_dir": str(tmp_path / "out"),
    }
    args.update(overrides)
    return args


def cli_command(args: dict) -> list[str]:
    """The command line for these flow parameters, as a user would type it."""
    argv = [f"--{name}={value}" for name, value in args.items()]
    return [sys.executable, str(REPO / "cpu_model_acceleration.py"), *argv]


def cli_env(**overrides: str) -> dict[str, str]:
    """The environment for a command line in a child process.

    The child reports to this session's Prefect server instead of starting its own, which
    saves seconds per run.
    """
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **overrides}
