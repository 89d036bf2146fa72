"""Scores of probabilistic direction forecasts: pure numpy, no model, no engine.

A forecast is ``p_up`` (n,) float64 in [0, 1], the probability that the label is 1 (the next
horizon's log return above the dead zone), scored against ``label`` (n,) float64 in {1.0, 0.0}
or NaN (inside the dead zone, or no bar ``horizon`` minutes later: see
:mod:`tradecore_lib.direction.labels`). Labelled samples are scored by
:func:`classification_scores`; NaN-labelled ones apart by :func:`unlabelled_scores` (their
count and how confident the forecast was there), so a model is never credited or blamed for
moves too small to have a direction.

Definitions (``y`` the labels, ``p`` the forecasts, ``n`` labelled samples):

* **predicted class**: 1 when ``p > 0.5``, else 0 (a tie predicts 0, as scikit-learn's
  ``predict`` does), :func:`predicted_class`;
* **accuracy**: share of samples whose predicted class equals the label;
* **balanced accuracy**: the mean over the classes present in ``y`` of the recall of that
  class (with both present: (TPR + TNR) / 2, so a constant forecast scores exactly 0.5);
* **log-loss**: ``-mean(y ln p + (1 - y) ln(1 - p))`` with ``p`` clipped to
  [:data:`LOG_LOSS_EPS`, 1 - :data:`LOG_LOSS_EPS`] (a certain wrong forecast costs
  ``-ln(1e-15)`` ~ 34.5 nats, not infinity); 0 for a certain right forecast, ``ln 2`` for
  ``p = 0.5`` everywhere;
* **Brier score**: ``mean((p - y)^2)``, in [0, 1]; a constant ``p`` on labels with mean ``m``
  scores ``m (1 - p)^2 + (1 - m) p^2``;
* **expected calibration error (ECE)**: :data:`DEFAULT_ECE_BINS` (10) equal-width bins of
  ``p`` over [0, 1] (bin ``b`` holds ``b / B <= p < (b + 1) / B``, the last bin includes 1),
  ``ECE = sum_b (n_b / n) |mean p in b - share of y = 1 in b|`` (count-weighted; empty bins
  weigh 0). A forecast whose every bin's mean equals its bin's observed frequency scores 0;
* **reliability diagram**: per bin its edges, mean ``p``, observed frequency and count
  (:class:`ReliabilityBin`);
* **confusion table**: counts of (predicted class, label) (:class:`Confusion`).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.train.record import RecordModel

DEFAULT_ECE_BINS = 10
LOG_LOSS_EPS = 1e-15


class DirectionMetricsError(TradeCoreError, ValueError):
    """Forecasts or labels that cannot be scored (the message says which and why)."""


class ReliabilityBin(RecordModel):
    """One equal-width bin of the reliability diagram."""

    low: float = Field(description="lower edge of the bin (inclusive)")
    high: float = Field(description="upper edge (exclusive; the last bin includes 1)")
    count: int = Field(description="labelled samples whose p_up falls in the bin")
    mean_p: float | None = Field(description="mean p_up of those samples; None when empty")
    observed: float | None = Field(description="share of them labelled 1 (up); None when "
                                   "empty")


class Confusion(RecordModel):
    """Counts of (predicted class, label); the predicted class is 1 when p_up > 0.5."""

    true_up: int = Field(description="predicted up, label up")
    false_up: int = Field(description="predicted up, label down")
    true_down: int = Field(description="predicted down, label down")
    false_down: int = Field(description="predicted down, label up")

    def rows(self) -> list[dict[str, int | str]]:
        """The table as two rows (label down, label up) of predicted-class columns."""
        return [{"label": "down", "predicted_down": self.true_down,
                 "predicted_up": self.false_up},
                {"label": "up", "predicted_down": self.false_down,
                 "predicted_up": self.true_up}]


class ClassificationScores(RecordModel):
    """The scores of one forecast on the labelled samples of one split (see the module
    docstring for each definition)."""

    samples: int = Field(description="labelled samples scored")
    up_rate: float = Field(description="share of the samples labelled 1 (up)")
    predicted_up_rate: float = Field(description="share predicted up (p_up > 0.5)")
    mean_p_up: float = Field(description="mean forecast probability of up")
    accuracy: float
    balanced_accuracy: float = Field(description="mean recall over the classes present")
    log_loss: float = Field(description="nats per sample, p clipped to [1e-15, 1 - 1e-15]")
    brier: float = Field(description="mean squared error of p_up against the label")
    ece: float = Field(description="expected calibration error over ece_bins equal-width "
                       "bins, count-weighted")
    ece_bins: int
    reliability: tuple[ReliabilityBin, ...]
    confusion: Confusion


class UnlabelledScores(RecordModel):
    """What a forecast did where there is no label to score it on."""

    dead_zone: int = Field(description="samples whose forward return was inside the dead zone")
    dead_zone_mean_confidence: float | None = Field(
        description="mean |p_up - 0.5| over the dead-zone samples (0: undecided, 0.5: "
        "certain); None without any")
    no_horizon: int = Field(description="samples with no bar exactly horizon minutes later "
                            "(no forward return)")


def _arrays(p_up: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_up, dtype=np.float64)
    y = np.asarray(label, dtype=np.float64)
    if p.ndim != 1 or p.shape != y.shape:
        raise DirectionMetricsError(f"p_up {p.shape} and label {y.shape} must be equal 1-d "
                                    "shapes")
    if not np.isfinite(p).all() or (p < 0.0).any() or (p > 1.0).any():
        raise DirectionMetricsError("p_up must be finite probabilities in [0, 1]; first bad "
                                    f"sample: {int(np.argmax(~((p >= 0) & (p <= 1))))}")
    return p, y


def _labelled(p_up: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labelled samples, checked: labels 0 or 1, at least one."""
    p, y = _arrays(p_up, label)
    keep = ~np.isnan(y)
    p, y = p[keep], y[keep]
    if not np.isin(y, (0.0, 1.0)).all():
        raise DirectionMetricsError("labels must be 1.0, 0.0 or NaN")
    if len(y) == 0:
        raise DirectionMetricsError("no labelled sample to score (every label is NaN)")
    return p, y


def predicted_class(p_up: np.ndarray) -> np.ndarray:
    """(n,) float64 predicted labels: 1.0 where ``p_up > 0.5``, else 0.0."""
    return (np.asarray(p_up, dtype=np.float64) > 0.5).astype(np.float64)


def correct(p_up: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(n,) float64: 1.0 where the predicted class equals the label, 0.0 where not, NaN where
    the label is NaN (the per-sample terms of the accuracy)."""
    p, y = _arrays(p_up, label)
    return np.where(np.isnan(y), np.nan, (predicted_class(p) == y).astype(np.float64))


def accuracy(p_up: np.ndarray, label: np.ndarray) -> float:
    """Share of labelled samples predicted right."""
    p, y = _labelled(p_up, label)
    return float(np.mean(predicted_class(p) == y))


def balanced_accuracy(p_up: np.ndarray, label: np.ndarray) -> float:
    """Mean recall over the classes present in the labels."""
    p, y = _labelled(p_up, label)
    hit = predicted_class(p) == y
    return float(np.mean([hit[y == c].mean() for c in (0.0, 1.0) if (y == c).any()]))


def log_loss(p_up: np.ndarray, label: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of the labels, ``p`` clipped to
    [:data:`LOG_LOSS_EPS`, 1 - :data:`LOG_LOSS_EPS`]."""
    p, y = _labelled(p_up, label)
    p = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(-np.mean(np.where(y == 1.0, np.log(p), np.log1p(-p))))


def brier(p_up: np.ndarray, label: np.ndarray) -> float:
    """Mean squared difference between ``p_up`` and the label."""
    p, y = _labelled(p_up, label)
    return float(np.mean((p - y) ** 2))


def _bins(p: np.ndarray, bins: int) -> np.ndarray:
    if bins < 1:
        raise DirectionMetricsError(f"ECE needs at least one bin, got {bins}")
    return np.minimum((p * bins).astype(np.int64), bins - 1)


def reliability(p_up: np.ndarray, label: np.ndarray, bins: int = DEFAULT_ECE_BINS
                ) -> tuple[ReliabilityBin, ...]:
    """The reliability diagram's ``bins`` equal-width bins over [0, 1] (labelled samples)."""
    p, y = _labelled(p_up, label)
    which = _bins(p, bins)
    count = np.bincount(which, minlength=bins)
    sum_p = np.bincount(which, weights=p, minlength=bins)
    sum_y = np.bincount(which, weights=y, minlength=bins)
    return tuple(
        ReliabilityBin(low=b / bins, high=(b + 1) / bins, count=int(count[b]),
                       mean_p=float(sum_p[b] / count[b]) if count[b] else None,
                       observed=float(sum_y[b] / count[b]) if count[b] else None)
        for b in range(bins))


def expected_calibration_error(p_up: np.ndarray, label: np.ndarray,
                               bins: int = DEFAULT_ECE_BINS) -> float:
    """Count-weighted mean over equal-width bins of |mean p - observed frequency|."""
    diagram = reliability(p_up, label, bins)
    n = sum(b.count for b in diagram)
    return float(sum(b.count * abs(b.mean_p - b.observed) for b in diagram if b.count) / n)


def confusion(p_up: np.ndarray, label: np.ndarray) -> Confusion:
    """Counts of (predicted class, label) over the labelled samples."""
    p, y = _labelled(p_up, label)
    up = predicted_class(p) == 1.0
    actual = y == 1.0
    return Confusion(true_up=int((up & actual).sum()), false_up=int((up & ~actual).sum()),
                     true_down=int((~up & ~actual).sum()),
                     false_down=int((~up & actual).sum()))


def classification_scores(p_up: np.ndarray, label: np.ndarray,
                          bins: int = DEFAULT_ECE_BINS) -> ClassificationScores:
    """Every score of the labelled samples of (``p_up``, ``label``) (NaN labels left out).

    Raises:
        DirectionMetricsError: shapes differ, ``p_up`` is not in [0, 1], a label is not
            0/1/NaN, or no sample is labelled.
    """
    p, y = _labelled(p_up, label)
    return ClassificationScores(
        samples=len(y), up_rate=float(y.mean()),
        predicted_up_rate=float(predicted_class(p).mean()), mean_p_up=float(p.mean()),
        accuracy=accuracy(p, y), balanced_accuracy=balanced_accuracy(p, y),
        log_loss=log_loss(p, y), brier=brier(p, y),
        ece=expected_calibration_error(p, y, bins), ece_bins=bins,
        reliability=reliability(p, y, bins), confusion=confusion(p, y),
    )


def unlabelled_scores(p_up: np.ndarray, label: np.ndarray,
                      forward_return: np.ndarray) -> UnlabelledScores:
    """The NaN-labelled samples: inside the dead zone (a forward return exists) or without a
    horizon (no forward return), and the forecast's mean confidence in the dead zone."""
    p, y = _arrays(p_up, label)
    forward = np.asarray(forward_return, dtype=np.float64)
    if forward.shape != y.shape:
        raise DirectionMetricsError(f"forward_return {forward.shape} and label {y.shape} "
                                    "must be equal shapes")
    dead = np.isnan(y) & np.isfinite(forward)
    return UnlabelledScores(
        dead_zone=int(dead.sum()),
        dead_zone_mean_confidence=float(np.abs(p[dead] - 0.5).mean()) if dead.any() else None,
        no_horizon=int((np.isnan(y) & ~np.isfinite(forward)).sum()),
    )
