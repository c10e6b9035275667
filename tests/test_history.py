"""The nightly history database and its regression check, on hand-written nights."""

import sqlite3

import pytest

from qaccelx.history import (
    RegressionPolicy,
    find_regressions,
    format_history_markdown,
    format_regressions_markdown,
    machine_identity,
    read_records,
    records_from_results,
    save_records,
)

MACHINE = {
    "cpu": "Test CPU",
    "cores": 2,
    "isa": ["avx2"],
    "openvino_capabilities": ["FP32"],
    "versions": {"openvino": "2026.4"},
}


def _results(latency_ms: float, top1: float | None) -> dict:
    row = {
        "latency_ms": {"median": latency_ms, "p90": latency_ms * 1.1},
        "throughput_fps": 1000 / latency_ms,
        "top1": top1,
        "top5": None if top1 is None else top1 + 5,
        "precision_label": "i8+f32",
    }
    return {
        "model": "resnet50",
        "weights": {"kind": "hub"},
        "variants": {"int8": row},
        "environment": MACHINE,
    }


def _night(db, night: str, latency_ms: float, top1: float | None = 80.0):
    records = records_from_results(_results(latency_ms, top1), night)
    regressions = find_regressions(db, records)
    save_records(db, records)
    return regressions


def test_records_round_trip_and_replace_the_same_night(tmp_path):
    db = tmp_path / "history.sqlite"
    _night(db, "2026-01-01", 5.0)
    _night(db, "2026-01-01", 6.0)  # a re-run of the night replaces its record

    (record,) = read_records(db)
    assert record.latency_median_ms == 6.0
    assert record.machine_id == machine_identity(MACHINE)
    assert record.versions == {"openvino": "2026.4"}
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM nights").fetchone() == (1,)


def test_slower_night_against_trailing_median_is_a_regression(tmp_path):
    db = tmp_path / "history.sqlite"
    assert _night(db, "2026-01-01", 5.0) == []  # a first night has nothing to compare with
    assert _night(db, "2026-01-02", 5.2) == []  # +4 %
    assert _night(db, "2026-01-03", 4.0) == []  # faster is never a regression
    assert _night(db, "2026-01-04", 5.4) == []  # trailing median 5.0: +8 %, within 10 %

    (regression,) = _night(db, "2026-01-05", 5.7)  # trailing median 5.1: +11.8 %
    assert (regression.kind, regression.variant) == ("latency", "int8")
    assert regression.reference == pytest.approx(5.1)
    assert regression.change == pytest.approx(5.7 / 5.1 - 1)
    assert regression.nights == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    assert "+11.8%" in regression.describe()
    table = format_regressions_markdown("2026-01-05", [regression])
    assert "| resnet50 | hub | int8 | latency | 5.700 ms | 5.100 ms | +11.8% |" in table


def test_trailing_window_spans_the_latest_nights_only(tmp_path):
    db = tmp_path / "history.sqlite"
    for day, latency in ((1, 1.0), (2, 1.0), (3, 5.0), (4, 5.0)):
        _night(db, f"2026-01-0{day}", latency)
    tonight = records_from_results(_results(5.2, 80.0), "2026-01-05")

    assert find_regressions(db, tonight, RegressionPolicy(trailing_nights=2)) == []
    (regression,) = find_regressions(db, tonight, RegressionPolicy(trailing_nights=4))
    assert regression.reference == 3.0


def test_changed_accuracy_is_a_regression_and_random_weights_are_not(tmp_path):
    db = tmp_path / "history.sqlite"
    _night(db, "2026-01-01", 5.0, top1=80.0)
    (regression,) = _night(db, "2026-01-02", 5.0, top1=79.5)
    assert (regression.kind, regression.reference, regression.tonight) == ("accuracy", 80.0, 79.5)
    assert regression.change == -0.5

    other = tmp_path / "random.sqlite"
    _night(other, "2026-01-01", 5.0, top1=None)
    assert _night(other, "2026-01-02", 5.0, top1=None) == []


def test_other_machines_do_not_count(tmp_path):
    db = tmp_path / "history.sqlite"
    slow_machine = {**MACHINE, "cpu": "Slower CPU"}
    results = {**_results(1.0, 80.0), "environment": slow_machine}
    save_records(db, records_from_results(results, "2026-01-01"))

    assert _night(db, "2026-01-02", 9.0) == []  # first night on this machine
    chart = format_history_markdown("resnet50", read_records(db))
    assert chart.count("## int8 on") == 2
    assert "2026-01-02  ########################################     9.000 ms" in chart
