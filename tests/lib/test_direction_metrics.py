"""Direction forecast scores: exact identities (hypothesis), agreement with scikit-learn's
own metrics, the dead zone scored apart, and errors that name the problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from tradecore_lib.direction.metrics import (
    DEFAULT_ECE_BINS,
    LOG_LOSS_EPS,
    DirectionMetricsError,
    accuracy,
    balanced_accuracy,
    brier,
    classification_scores,
    confusion,
    correct,
    expected_calibration_error,
    log_loss,
    predicted_class,
    reliability,
    unlabelled_scores,
)

probability = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
FAST = settings(max_examples=60, deadline=None)


@st.composite
def labels(draw, min_size: int = 1) -> np.ndarray:
    """0/1 labels with both classes when the size allows."""
    size = draw(st.integers(min_value=max(min_size, 2), max_value=200))
    ones = draw(st.integers(min_value=1, max_value=size - 1))
    return np.r_[np.ones(ones), np.zeros(size - ones)]


@st.composite
def forecasts(draw) -> tuple[np.ndarray, np.ndarray]:
    y = draw(labels())
    p = np.array(draw(st.lists(probability, min_size=len(y), max_size=len(y))))
    return p, y


@FAST
@given(y=labels(), p=probability)
def test_brier_of_a_constant_forecast(y: np.ndarray, p: float) -> None:
    m = y.mean()
    assert brier(np.full(len(y), p), y) == pytest.approx(m * (1 - p) ** 2 + (1 - m) * p ** 2,
                                                         abs=1e-12)


@FAST
@given(y=labels(), p=st.floats(min_value=1e-6, max_value=1 - 1e-6))
def test_log_loss_of_a_constant_forecast_is_least_at_the_base_rate(y: np.ndarray,
                                                                  p: float) -> None:
    m = y.mean()
    constant = log_loss(np.full(len(y), p), y)
    assert constant == pytest.approx(-(m * math.log(p) + (1 - m) * math.log(1 - p)), rel=1e-9)
    # Gibbs' inequality: no constant beats the base rate, whose loss is the labels' entropy.
    entropy = -(m * math.log(m) + (1 - m) * math.log(1 - m))
    assert constant >= entropy - 1e-12
    assert log_loss(np.full(len(y), m), y) == pytest.approx(entropy, rel=1e-9)


@FAST
@given(data=forecasts())
def test_log_loss_bounds(data: tuple[np.ndarray, np.ndarray]) -> None:
    p, y = data
    loss = log_loss(p, y)
    # the worst a sample can cost: a certain wrong forecast, clipped (1 - eps rounds in float)
    worst = -math.log1p(-(1.0 - LOG_LOSS_EPS))
    assert worst == pytest.approx(-math.log(LOG_LOSS_EPS), rel=1e-4)
    assert 0.0 <= loss <= worst + 1e-9
    assert log_loss(y, y) == pytest.approx(0.0, abs=1e-12)  # certain and right
    assert log_loss(np.full(len(y), 0.5), y) == pytest.approx(math.log(2.0), rel=1e-12)
    assert log_loss(1.0 - y, y) == pytest.approx(worst, rel=1e-3)


@FAST
@given(y=labels(), p=probability)
def test_balanced_accuracy_of_any_constant_forecast_is_one_half(y: np.ndarray,
                                                                p: float) -> None:
    # the majority predictor is a constant: right on one class, wrong on the other
    assert balanced_accuracy(np.full(len(y), p), y) == 0.5
    majority = np.full(len(y), 0.75 if y.mean() > 0.5 else 0.25)
    assert accuracy(majority, y) == pytest.approx(max(y.mean(), 1 - y.mean()))


@FAST
@given(counts=st.lists(st.tuples(st.integers(1, 30), st.integers(0, 30)), min_size=1,
                       max_size=DEFAULT_ECE_BINS), seed=st.integers(0, 2**16))
def test_ece_of_a_perfectly_calibrated_binned_forecast_is_zero(counts, seed: int) -> None:
    """Each group predicts its own observed frequency k / n: every bin's mean p equals its
    frequency, whichever bins the groups fall in (two groups in one bin average out)."""
    p, y = [], []
    for n, k in counts:
        k = min(k, n)
        p += [k / n] * n
        y += [1.0] * k + [0.0] * (n - k)
    order = np.random.default_rng(seed).permutation(len(y))
    assert expected_calibration_error(np.array(p)[order], np.array(y)[order]) == \
        pytest.approx(0.0, abs=1e-12)


@FAST
@given(data=forecasts(), bins=st.integers(1, 20))
def test_reliability_bins_partition_the_samples(data, bins: int) -> None:
    p, y = data
    diagram = reliability(p, y, bins)
    assert len(diagram) == bins
    assert sum(b.count for b in diagram) == len(y)
    for b in diagram:
        assert b.high - b.low == pytest.approx(1.0 / bins)
        if b.count:
            assert b.low - 1e-12 <= b.mean_p <= b.high + 1e-12
            assert 0.0 <= b.observed <= 1.0
        else:
            assert b.mean_p is None and b.observed is None
    ece = expected_calibration_error(p, y, bins)
    assert ece == pytest.approx(sum(b.count * abs(b.mean_p - b.observed)
                                    for b in diagram if b.count) / len(y))
    assert 0.0 <= ece <= 1.0
    # one bin: the gap between the mean forecast and the base rate
    assert expected_calibration_error(p, y, 1) == pytest.approx(abs(p.mean() - y.mean()))


@FAST
@given(data=forecasts())
def test_scores_agree_with_scikit_learn(data) -> None:
    p, y = data
    assert accuracy(p, y) == pytest.approx(skm.accuracy_score(y, predicted_class(p)))
    assert balanced_accuracy(p, y) == pytest.approx(
        skm.balanced_accuracy_score(y, predicted_class(p)))
    assert brier(p, y) == pytest.approx(skm.brier_score_loss(y, p))
    clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    assert log_loss(p, y) == pytest.approx(skm.log_loss(y, clipped, labels=[0, 1]), rel=1e-9)
    table = confusion(p, y)
    (tn, fp), (fn, tp) = skm.confusion_matrix(y, predicted_class(p), labels=[0, 1])
    assert (table.true_down, table.false_up, table.false_down, table.true_up) == (tn, fp, fn, tp)
    assert sum(r["predicted_down"] + r["predicted_up"] for r in table.rows()) == len(y)


def test_ties_predict_down_and_bins_are_half_open() -> None:
    assert predicted_class(np.array([0.5, 0.5000001, 0.4999])).tolist() == [0.0, 1.0, 0.0]
    diagram = reliability(np.array([0.0, 0.1, 0.2, 1.0]), np.array([0.0, 0.0, 1.0, 1.0]))
    assert [b.count for b in diagram] == [1, 1, 1, 0, 0, 0, 0, 0, 0, 1]


def test_nan_labels_are_left_out_and_scored_apart() -> None:
    p = np.array([0.9, 0.2, 0.7, 0.5, 0.95, 0.6])
    y = np.array([1.0, 0.0, np.nan, np.nan, np.nan, 0.0])
    forward = np.array([0.01, -0.01, 0.0001, -0.0002, np.nan, -0.003])
    scores = classification_scores(p, y)
    assert scores.samples == 3
    assert scores.accuracy == pytest.approx(2 / 3)
    assert scores.brier == pytest.approx((0.01 + 0.04 + 0.36) / 3)
    apart = unlabelled_scores(p, y, forward)
    assert (apart.dead_zone, apart.no_horizon) == (2, 1)
    assert apart.dead_zone_mean_confidence == pytest.approx((0.2 + 0.0) / 2)
    assert np.isnan(correct(p, y)[2]) and correct(p, y)[[0, 1, 5]].tolist() == [1, 1, 0]
    assert unlabelled_scores(p[:2], y[:2], forward[:2]).dead_zone_mean_confidence is None


def test_unscorable_inputs_are_named() -> None:
    with pytest.raises(DirectionMetricsError, match="no labelled sample"):
        accuracy(np.array([0.4]), np.array([np.nan]))
    with pytest.raises(DirectionMetricsError, match=r"probabilities in \[0, 1\]"):
        brier(np.array([0.4, 1.2]), np.array([1.0, 0.0]))
    with pytest.raises(DirectionMetricsError, match="equal 1-d shapes"):
        log_loss(np.array([0.4, 0.3]), np.array([1.0]))
    with pytest.raises(DirectionMetricsError, match="1.0, 0.0 or NaN"):
        accuracy(np.array([0.4]), np.array([2.0]))
    with pytest.raises(DirectionMetricsError, match="at least one bin"):
        reliability(np.array([0.4]), np.array([1.0]), bins=0)
