"""Accuracy statistics against figures computed by hand."""

import math

import numpy as np
import pytest

from qaccelx.stats import Predictions, compare_predictions, top1_statistics, wilson_interval


def _wilson_by_hand(successes: int, trials: int, z: float = 1.959963984540054) -> tuple:
    # The textbook formula, written out independently of scipy.
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2))
    return centre - half, centre + half


def test_wilson_interval_of_87_in_100_matches_the_hand_computed_figure():
    low, high = wilson_interval(87, 100)

    # Worked out on paper: centre 0.85631, half-width 0.06612.
    assert low == pytest.approx(0.79020, abs=1e-4)
    assert high == pytest.approx(0.92243, abs=1e-4)
    assert (low, high) == pytest.approx(_wilson_by_hand(87, 100), abs=1e-12)


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (10, 10), (700, 700), (1, 1000)])
def test_wilson_interval_stays_inside_zero_and_one_at_the_edges(successes, trials):
    low, high = wilson_interval(successes, trials)

    assert 0.0 <= low <= successes / trials <= high <= 1.0
    assert (low, high) == pytest.approx(_wilson_by_hand(successes, trials), abs=1e-12)
    assert high - low > 0  # even 10 of 10 leaves room below 100 %


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match="11 successes of 10"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="of 0 trials"):
        wilson_interval(0, 0)


def test_top1_statistics_counts_and_brackets_the_top1():
    labels = np.arange(100)
    top1 = labels.copy()
    top1[:13] += 1  # 13 wrong, 87 right

    result = top1_statistics(Predictions(top1=top1, labels=labels))

    assert result["correct"] == 87
    assert result["images"] == 100
    assert result["top1"] == pytest.approx(87.0)
    assert result["top1_ci95"] == pytest.approx([79.020, 92.243], abs=1e-2)


def test_compare_predictions_counts_each_direction():
    labels = np.arange(20)
    baseline = labels.copy()
    baseline[[0, 1]] = 99  # baseline wrong on images 0 and 1
    optimized = labels.copy()
    optimized[[2, 3, 4]] = 99  # optimized right on 0 and 1, wrong on 2, 3 and 4
    optimized[5] = 98  # ... and wrong on 5
    baseline[6], optimized[6] = 97, 96  # both wrong on 6, with different classes

    result = compare_predictions(
        Predictions(top1=baseline, labels=labels),
        Predictions(top1=optimized, labels=labels),
    )

    assert result["images"] == 20
    assert result["right_to_wrong"] == 4  # images 2, 3, 4, 5
    assert result["wrong_to_right"] == 2  # images 0, 1
    assert result["changed_top1"] == 7  # those six and image 6
    assert result["same_top1"] == 13
    assert result["agreement"] == pytest.approx(65.0)

    # Exact McNemar: 4 of 6 discordant images one way; two-sided p = 2 * (15 + 6 + 1) / 64.
    assert result["mcnemar_p"] == pytest.approx(44 / 64)


def test_compare_predictions_of_identical_rows_is_full_agreement():
    labels = np.arange(10)
    rows = Predictions(top1=labels[::-1].copy(), labels=labels)

    result = compare_predictions(rows, rows)

    assert (result["changed_top1"], result["right_to_wrong"], result["wrong_to_right"]) == (0, 0, 0)
    assert result["mcnemar_p"] == 1.0
    assert result["agreement"] == 100.0


def test_compare_predictions_refuses_rows_evaluated_on_different_images():
    baseline = Predictions(top1=np.arange(5), labels=np.arange(5))
    optimized = Predictions(top1=np.arange(4), labels=np.arange(4))

    with pytest.raises(RuntimeError, match="different images"):
        compare_predictions(baseline, optimized)
