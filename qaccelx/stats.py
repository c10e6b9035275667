"""Accuracy statistics: top-1 with its confidence interval, and how two rows' predictions agree.

On a few hundred images one image moves top-1 by a few tenths of a point, so a bare top-1
difference cannot tell a real quantization loss from noise. The Wilson interval says how far
each top-1 may be from the model's accuracy on all of ImageNet; the paired comparison counts
the images whose top-1 actually changed, in each direction, and McNemar's exact test says
whether the net change is more than chance.
"""

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "CONFIDENCE",
    "Predictions",
    "compare_predictions",
    "load_predictions",
    "top1_statistics",
    "wilson_interval",
]

# Confidence level of every interval the tool reports.
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Per-image predictions of one row on the evaluation images, in evaluation order."""

    top1: np.ndarray  # predicted class index per image
    labels: np.ndarray  # true class index per image


def load_predictions(path: Path) -> Predictions:
    """Read the per-image predictions an evaluate entry stores (``top5`` and ``labels``).

    Args:
        path: The entry's ``predictions.npz``.

    Returns:
        The top-1 predictions and labels.
    """
    with np.load(path) as data:
        return Predictions(top1=data["top5"][:, 0].copy(), labels=data["labels"].copy())


def wilson_interval(
    successes: int,
    trials: int,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """The Wilson score interval of a proportion (scipy's implementation).

    Wilson rather than the textbook normal interval because top-1 sits near 1, where the
    normal interval runs past 100 % and is too narrow on small sets.

    Args:
        successes: Correct images.
        trials: Images evaluated; at least 1.
        confidence: Confidence level, 0.95 for a 95 % interval.

    Returns:
        The lower and upper bound, as fractions.

    Raises:
        ValueError: no trials, or more successes than trials.
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes of {trials} trials is not a proportion")
    interval = stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def top1_statistics(predictions: Predictions) -> dict[str, Any]:
    """Top-1 of one row with its 95 % Wilson interval.

    Returns:
        ``correct`` and ``images`` (counts), ``top1`` and ``top1_ci95`` ([low, high]), in
        percent.
    """
    correct = int(np.sum(predictions.top1 == predictions.labels))
    images = int(len(predictions.labels))
    low, high = wilson_interval(correct, images)
    return {
        "correct": correct,
        "images": images,
        "top1": 100 * correct / images,
        "top1_ci95": [100 * low, 100 * high],
    }


def compare_predictions(baseline: Predictions, optimized: Predictions) -> dict[str, Any]:
    """Image-by-image agreement of two rows' top-1 predictions on the same images.

    Args:
        baseline: The row speed-ups and losses are measured against.
        optimized: The row compared with it.

    Returns:
        ``images``; ``same_top1`` and ``changed_top1`` (images whose predicted class is the
        same or differs); ``agreement`` (percent of images with the same top-1);
        ``right_to_wrong`` (baseline right, optimized wrong) and ``wrong_to_right`` (the
        reverse), whose difference is the loss in images; ``mcnemar_p``, the exact McNemar
        p-value that the two rows are equally accurate (small: the loss is real).

    Raises:
        RuntimeError: the two rows were evaluated on different images.
    """
    if not np.array_equal(baseline.labels, optimized.labels):
        raise RuntimeError(
            f"cannot compare predictions over different images ({len(baseline.labels)} and "
            f"{len(optimized.labels)} labels): evaluate both rows on the same evaluation set"
        )
    base_right = baseline.top1 == baseline.labels
    opt_right = optimized.top1 == optimized.labels
    changed = int(np.sum(baseline.top1 != optimized.top1))
    right_to_wrong = int(np.sum(base_right & ~opt_right))
    wrong_to_right = int(np.sum(~base_right & opt_right))

    # McNemar's exact test looks only at the discordant images: under "equally accurate" each
    # is as likely to have gone one way as the other.
    discordant = right_to_wrong + wrong_to_right
    p_value = stats.binomtest(right_to_wrong, discordant).pvalue if discordant else 1.0

    images = int(len(baseline.labels))
    return {
        "images": images,
        "same_top1": images - changed,
        "changed_top1": changed,
        "agreement": 100 * (images - changed) / images if images else None,
        "right_to_wrong": right_to_wrong,
        "wrong_to_right": wrong_to_right,
        "mcnemar_p": float(p_value),
    }
