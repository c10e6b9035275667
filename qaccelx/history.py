"""Nightly benchmark history: one record per night, machine, model, weights and row, in SQLite.

The database is a single file in the artifact store (``<store>/history.sqlite``), so it moves
and is shared with the store, and any SQLite client can query it::

    sqlite3 ~/.cache/qaccelx/history.sqlite \\
        "SELECT night, variant, latency_median_ms FROM nights WHERE model = 'resnet50'"

A night is compared with the nights before it on the same machine: a row whose median latency
is worse than a threshold against the trailing median of recent nights, or whose top-1 changed
since the last night that measured it, is a regression.
"""

import dataclasses
import hashlib
import json
import platform
import sqlite3
import statistics
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "HISTORY_FILE",
    "HistoryRecord",
    "Regression",
    "RegressionPolicy",
    "find_regressions",
    "format_history_markdown",
    "format_regressions_markdown",
    "history_path",
    "history_table_rows",
    "machine_identity",
    "read_records",
    "records_from_results",
    "save_records",
]

# The database's file name inside the store.
HISTORY_FILE = "history.sqlite"

# Seconds a writer waits for another writer's transaction before giving up.
_LOCK_TIMEOUT_SECONDS = 60

# The machine fields that change a timing; the same ones the benchmark stage keys on.
_MACHINE_IDENTITY_FIELDS = ("cpu", "cores", "isa", "openvino_capabilities")

# Width in characters of the longest bar in a Markdown chart.
_CHART_WIDTH = 40

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nights (
    night TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    model TEXT NOT NULL,
    weights TEXT NOT NULL,
    variant TEXT NOT NULL,
    latency_median_ms REAL NOT NULL,
    latency_p90_ms REAL NOT NULL,
    throughput_fps REAL NOT NULL,
    top1 REAL,
    top5 REAL,
    executed TEXT NOT NULL,
    noisy INTEGER NOT NULL,
    versions TEXT NOT NULL,
    machine TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    flow_run_id TEXT,
    PRIMARY KEY (night, machine_id, model, weights, variant)
)
"""

@dataclasses.dataclass(frozen=True)
class HistoryRecord:
    """One row of one model measured on one night on one machine."""

    night: str  # the night the measurement belongs to, YYYY-MM-DD
    machine_id: str  # short hash of CPU model, cores, ISA flags and OpenVINO capabilities
    model: str  # the model name as given to the flow
    weights: str  # weights kind: hub, local-dir, checkpoint, url or random
    variant: str  # row: fp32, fp16, int8 or int8_weights
    latency_median_ms: float  # batch-1 median latency, milliseconds
    latency_p90_ms: float  # batch-1 90th percentile latency, milliseconds
    throughput_fps: float  # batched throughput, images per second
    top1: float | None  # top-1 in percent; None with random weights
    top5: float | None  # top-5 in percent; None with random weights
    executed: str  # what OpenVINO really ran, such as f32 or i8+bf16
    noisy: bool  # the timings spread too wide for precise figures (a busy machine)
    versions: dict[str, str | None]  # library versions of the run (openvino, nncf, ...)
    machine: dict[str, Any]  # CPU, cores, ISA flags, host name
    recorded_at: str  # when the record was written, ISO 8601 with time zone
    flow_run_id: str | None  # the Prefect flow run that measured it, if any


@dataclasses.dataclass(frozen=True)
class RegressionPolicy:
    """When a night counts as a regression."""

    latency_threshold: float = 0.10  # fraction the median latency may exceed the trailing median
    trailing_nights: int = 7  # earlier nights the trailing median spans
    accuracy_tolerance: float = 0.0  # top-1 points a night may differ from the last one


@dataclasses.dataclass(frozen=True)
class Regression:
    """One row that got worse, with the numbers that show it."""

    model: str  # the model name as given
    weights: str  # weights kind
    variant: str  # the row
    kind: str  # "latency" or "accuracy"
    tonight: float  # tonight's median latency (ms) or top-1 (%)
    reference: float  # the trailing median latency (ms) or the last night's top-1 (%)
    nights: list[str]  # the earlier nights the reference comes from
    noisy: bool = False  # tonight's latency was noisy: the machine may have been busy

    @property
    def change(self) -> float:
        """Relative latency change (0.25 = 25 % slower) or top-1 change in points."""
        if self.kind == "latency":
            return self.tonight / self.reference - 1
        return self.tonight - self.reference

    def describe(self) -> str:
        """One line with the numbers, for logs and the flow run's state message."""
        name = f"{self.model}/{self.variant}"
        if self.kind == "latency":
            noisy = " (a noisy measurement: the machine may have been busy)" if self.noisy else ""
            return (
                f"{name}: median latency {self.tonight:.3f} ms is {self.change:+.1%} against the "
                f"trailing median {self.reference:.3f} ms of {len(self.nights)} nights{noisy}"
            )
        return (
            f"{name}: top-1 {self.tonight:.2f} % changed by {self.change:+.2f} points since "
            f"{self.nights[0]} ({self.reference:.2f} %)"
        )


def history_path(store_root: Path) -> Path:
    """The history database of the store under ``store_root``."""
    return Path(store_root) / HISTORY_FILE


def machine_identity(machine: dict[str, Any]) -> str:
    """A short, stable identity of the machine a benchmark ran on.

    Two hosts with the same CPU model, core count, ISA flags and OpenVINO capabilities share
    an identity, like they share benchmark cache entries: their timings are comparable.

    Args:
        machine: The machine description (``qaccelx.benchmark.describe_machine``).

    Returns:
        12 hexadecimal characters.
    """
    identity = {name: machine.get(name) for name in _MACHINE_IDENTITY_FIELDS}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def records_from_results(
    results: dict[str, Any],
    night: str,
    flow_run_id: str | None = None,
) -> list[HistoryRecord]:
    """One record per row of a run's results document.

    Args:
        results: The results document of one model (``qaccelx.report.build_results``).
        night: The night it belongs to, YYYY-MM-DD.
        flow_run_id: The flow run that measured it.

    Returns:
        The records, in the rows' order.
    """
    environment = results["environment"]
    machine = {**environment, "hostname": platform.node()}
    recorded_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return [
        HistoryRecord(
            night=night,
            machine_id=machine_identity(environment),
            model=results["model"],
            weights=results["weights"]["kind"],
            variant=variant,
            latency_median_ms=row["latency_ms"]["median"],
            latency_p90_ms=row["latency_ms"]["p90"],
            throughput_fps=row["throughput_fps"],
            top1=row["top1"],
            top5=row["top5"],
            executed=row["precision_label"],
            noisy=bool(row.get("noisy", False)),
            versions=environment["versions"],
            machine=machine,
            recorded_at=recorded_at,
            flow_run_id=flow_run_id,
        )
        for variant, row in results["variants"].items()
    ]


def save_records(db_path: Path, records: Iterable[HistoryRecord]) -> None:
    """Store records; a record of the same night, machine, model and row is replaced.

    Args:
        db_path: The database file; created with its table when missing.
        records: The records to store, in one transaction.
    """
    rows = [_to_row(record) for record in records]
    columns = list(_record_fields())
    sql = (
        f"INSERT OR REPLACE INTO nights ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    with _connect(db_path) as connection, connection:
        connection.executemany(sql, rows)


def read_records(
    db_path: Path,
    model: str | None = None,
    weights: str | None = None,
    variant: str | None = None,
    machine_id: str | None = None,
    before: str | None = None,
    last_nights: int | None = None,
) -> list[HistoryRecord]:
    """Read records, oldest night first.

    Args:
        db_path: The database file; a missing one holds no records.
        model: Only this model.
        weights: Only this weights kind.
        variant: Only this row.
        machine_id: Only this machine.
        before: Only nights before this one (YYYY-MM-DD).
        last_nights: Only the latest this many nights that match.

    Returns:
        The matching records, ordered by night, then machine, model and row.
    """
    if not Path(db_path).is_file():
        return []
    filters = {"model": model, "weights": weights, "variant": variant, "machine_id": machine_id}
    clauses = [f"{name} = ?" for name, value in filters.items() if value is not None]
    values: list[Any] = [value for value in filters.values() if value is not None]
    if before is not None:
        clauses.append("night < ?")
        values.append(before)
    if last_nights is not None:
        # The latest N distinct nights among the matching records.
        where = " AND ".join(clauses) or "1"
        clauses.append(
            f"night IN (SELECT DISTINCT night FROM nights WHERE {where} "
            "ORDER BY night DESC LIMIT ?)"
        )
        # The subquery repeats the filters, so their values come twice.
        values = [*values, *values, last_nights]

    where = " AND ".join(clauses) or "1"
    sql = f"SELECT * FROM nights WHERE {where} ORDER BY night, machine_id, model, weights, variant"
    with _connect(db_path) as connection:
        connection.row_factory = sqlite3.Row
        return [_from_row(row) for row in connection.execute(sql, values)]


def find_regressions(
    db_path: Path,
    tonight: Iterable[HistoryRecord],
    policy: RegressionPolicy = RegressionPolicy(),
) -> list[Regression]:
    """Compare tonight's records with the trailing nights of the same machine, model and row.

    Args:
        db_path: The history database.
        tonight: The records of one night.
        policy: The latency threshold, trailing window and accuracy tolerance.

    Returns:
        Every regression found; none on a first night.
    """
    regressions = []
    for record in tonight:
        earlier = read_records(
            db_path,
            model=record.model,
            weights=record.weights,
            variant=record.variant,
            machine_id=record.machine_id,
            before=record.night,
            last_nights=policy.trailing_nights,
        )
        regressions += _latency_regressions(record, earlier, policy)
        regressions += _accuracy_regressions(record, earlier, policy)
    return regressions


def history_table_rows(records: Iterable[HistoryRecord]) -> list[dict[str, Any]]:
    """One flat row per record, for a Prefect table artifact."""
    return [
        {
            "night": r.night,
            "machine": r.machine_id,
            "variant": r.variant,
            "executed": r.executed,
            "latency_median_ms": f"{r.latency_median_ms:.3f}",
            "noisy": "yes" if r.noisy else "no",
            "latency_p90_ms": f"{r.latency_p90_ms:.3f}",
            "throughput_fps": f"{r.throughput_fps:.1f}",
            "top1_%": "n/a" if r.top1 is None else f"{r.top1:.2f}",
            "openvino": r.versions.get("openvino") or "n/a",
        }
        for r in records
    ]


def format_history_markdown(model: str, records: list[HistoryRecord]) -> str:
    """A Markdown chart of median latency per night, one block per machine and row.

    Args:
        model: The model name, for the title.
        records: The model's records, oldest night first.

    Returns:
        Markdown: a title and, per machine and row, a text bar chart in a code block.
    """
    lines = [f"# Median latency per night: {model}", ""]
    if not records:
        return "\n".join([*lines, "No nights recorded yet."])
    longest = max(r.latency_median_ms for r in records)
    for (machine_id, variant), group in _group(records):
        cpu = group[-1].machine.get("cpu", "unknown CPU")
        lines += [f"## {variant} on {machine_id} ({cpu})", "", "```"]
        for r in group:
            bar = "#" * max(1, round(_CHART_WIDTH * r.latency_median_ms / longest))
            noisy = "  (noisy)" if r.noisy else ""
            lines.append(
                f"{r.night}  {bar.ljust(_CHART_WIDTH)}  {r.latency_median_ms:8.3f} ms{noisy}"
            )
        lines += ["```", ""]
    return "\n".join(lines)


def format_regressions_markdown(night: str, regressions: list[Regression]) -> str:
    """A Markdown table of a night's regressions, or a line saying there were none."""
    if not regressions:
        return f"# Regressions on {night}\n\nNone: every row is within the thresholds."
    lines = [
        f"# Regressions on {night}",
        "",
        "| model | weights | row | kind | tonight | reference | change | earlier nights |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in regressions:
        latency = r.kind == "latency"
        unit, change = ("ms", f"{r.change:+.1%}") if latency else ("%", f"{r.change:+.2f} pt")
        lines.append(
            f"| {r.model} | {r.weights} | {r.variant} | {r.kind} | {r.tonight:.3f} {unit} | "
            f"{r.reference:.3f} {unit} | {change} | {', '.join(r.nights)} |"
        )
    return "\n".join(lines)


def _latency_regressions(
    record: HistoryRecord, earlier: list[HistoryRecord], policy: RegressionPolicy
) -> list[Regression]:
    if not earlier:
        return []
    reference = statistics.median(r.latency_median_ms for r in earlier)
    if record.latency_median_ms <= reference * (1 + policy.latency_threshold):
        return []
    nights = [r.night for r in earlier]
    return [
        Regression(record.model, record.weights, record.variant, "latency",
                   record.latency_median_ms, reference, nights, record.noisy)
    ]


def _accuracy_regressions(
    record: HistoryRecord, earlier: list[HistoryRecord], policy: RegressionPolicy
) -> list[Regression]:
    # Evaluation is cached by content, so the same IR and images give the same top-1 every
    # night: any change means a library or an input changed what the model computes.
    measured = [r for r in earlier if r.top1 is not None]
    if record.top1 is None or not measured:
        return []
    last = measured[-1]
    if abs(record.top1 - last.top1) <= policy.accuracy_tolerance:
        return []
    return [
        Regression(record.model, record.weights, record.variant, "accuracy",
                   record.top1, last.top1, [last.night])
    ]


def _group(records: list[HistoryRecord]) -> list[tuple[tuple[str, str], list[HistoryRecord]]]:
    groups: dict[tuple[str, str], list[HistoryRecord]] = {}
    for record in records:
        groups.setdefault((record.machine_id, record.variant), []).append(record)
    return list(groups.items())


def _record_fields() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(HistoryRecord))


def _to_row(record: HistoryRecord) -> tuple[Any, ...]:
    values = dataclasses.asdict(record)
    values["versions"] = json.dumps(record.versions, sort_keys=True)
    values["machine"] = json.dumps(record.machine, sort_keys=True, default=str)
    return tuple(values[name] for name in _record_fields())


def _from_row(row: sqlite3.Row) -> HistoryRecord:
    values = {name: row[name] for name in _record_fields()}
    values["versions"] = json.loads(values["versions"])
    values["machine"] = json.loads(values["machine"])
    values["noisy"] = bool(values["noisy"])
    return HistoryRecord(**values)


@contextmanager
def _connect(db_path: Path) -> Iterator[sqlite3.Connection]:
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(db_path, timeout=_LOCK_TIMEOUT_SECONDS)) as connection:
        connection.execute(_SCHEMA)
        yield connection
