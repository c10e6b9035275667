"""Take a screenshot of the Prefect UI showing one real run's results artifact.

Run it against a local Prefect server that has run the ``accelerate`` flow at least once::

    PREFECT_API_URL=http://127.0.0.1:4200/api python scripts/screenshot_ui.py

It finds the newest ``qaccelx-results-*`` table artifact (or the one of ``--flow-run``), opens
its page in headless Chromium (Debian's ``chromium`` package) and writes a small PNG, by default
``docs/ui-results.png``. The browser may reach the loopback server only: every other host name
resolves to nothing, and Chromium's own background traffic is switched off.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter
from prefect.client.schemas.filters import FlowRunFilterId
from prefect.client.schemas.sorting import ArtifactSort
from prefect.settings import PREFECT_API_URL, temporary_settings

# Hosts the browser and the client may talk to.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

# Colours kept in the PNG: the UI is flat, so a palette keeps it legible and small.
_PNG_COLOURS = 64

# Milliseconds of page time Chromium lets the UI's scripts run before the screenshot.
_RENDER_BUDGET_MS = 20000

_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # Nothing but the loopback server resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, find the artifact, take and shrink the screenshot."""
    args = _parse_args(argv)
    api_url = args.api_url or os.environ.get("PREFECT_API_URL", "")
    _check_loopback(api_url)

    artifact_id = _find_results_artifact(api_url, args.flow_run)
    ui_root = api_url.rstrip("/").removesuffix("/api")
    page = f"{ui_root}/artifacts/artifact/{artifact_id}"
    print(f"Screenshot of {page}")

    _take_screenshot(page, args.output, args.width, args.height)
    _shrink_png(args.output)
    print(f"Wrote {args.output} ({args.output.stat().st_size // 1024} KiB)")
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", help="the server's API URL (default: $PREFECT_API_URL)")
    parser.add_argument("--flow-run", type=UUID, help="the accelerate run (default: newest)")
    parser.add_argument("--output", type=Path, default=Path("docs/ui-results.png"))
    parser.add_argument("--width", type=int, default=2000, help="window width in pixels")
    parser.add_argument("--height", type=int, default=480, help="window height in pixels")
    return parser.parse_args(argv)


def _check_loopback(api_url: str) -> None:
    host = urlsplit(api_url).hostname
    if host not in _LOOPBACK:
        raise SystemExit(
            f"API URL {api_url!r} is not a loopback server: start `prefect server start` here "
            "and pass --api-url http://127.0.0.1:<port>/api"
        )


def _find_results_artifact(api_url: str, flow_run: UUID | None) -> UUID:
    key_filter = ArtifactFilter(key=ArtifactFilterKey(like_="qaccelx-results-%"))
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run])) if flow_run else None
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=key_filter,
            flow_run_filter=run_filter,
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    if not artifacts:
        raise SystemExit(f"no qaccelx-results-* artifact on {api_url}: run the accelerate flow")
    return artifacts[0].id


def _take_screenshot(page: str, output: Path, width: int, height: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    output.parent.mkdir(parents=True, exist_ok=True)

    # A fresh profile: no state from earlier runs, and nothing left behind.
    with tempfile.TemporaryDirectory(prefix="qaccelx-chromium-") as profile:
        command = [
            chromium,
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={_RENDER_BUDGET_MS}",
            f"--screenshot={output.resolve()}",
            page,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    if done.returncode != 0 or not output.is_file():
        raise SystemExit(f"chromium failed ({done.returncode}):\n{done.stderr[-2000:]}")


def _shrink_png(path: Path) -> None:
    image = Image.open(path).convert("RGB")
    image.quantize(colors=_PNG_COLOURS).save(path, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
