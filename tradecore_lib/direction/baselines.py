"""The baselines a direction model is judged against, fitted on the training split only.

Each baseline gives a probability of up (``p_up``) for exactly the samples the model was
scored on (same ``ts``, ``label``, ``forward_return`` and ``split``), so every metric of
:mod:`tradecore_lib.direction.metrics` and every economic walk compares like with like.

* ``majority``: the training labels' share of up, ``u``, for every sample (the climatological
  forecast). Its predicted class is the training majority; its balanced accuracy is 0.5.
* ``persistence``: the sign of the last ``horizon`` minutes' log return,
  ``ln(close[t] / close[t - H])`` (:func:`tradecore_lib.direction.labels.persistence`: the
  bar exactly H minutes earlier must exist). Up gives ``p_up = q``, down ``1 - q``, where ``q``
  is the rule's hit rate on the training samples, held to [0.5 + 1e-6, 1 - 1e-6] so the
  predicted class is always the rule's (a hit rate under 0.5 does not turn it into its
  opposite) and the log-loss stays finite. No sign (an unchanged price, or no bar H minutes
  earlier) gives ``u``.
* ``logistic``: scikit-learn's ``LogisticRegression`` (L2, C = 1, lbfgs) on the model's own
  inputs at bar ``t`` (:func:`tradecore_lib.direction.data.input_table`: the feature preset's
  columns and the candle inputs), standardized with the training rows' mean and standard
  deviation (``StandardScaler``), fitted on the labelled training rows. It sees one bar, not
  the model's L-bar sequence: what a linear read of the current features already knows.
  Training rows beyond ``max_samples`` are thinned to every k-th (evenly spaced in time;
  neighbouring minutes' overlapping labels carry little extra information). A sample whose
  inputs are not finite (or a warm-up row) gets ``u``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from tradecore_lib.direction.labels import label_frame, persistence, ts_millis
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.train.record import RecordModel

MODEL = "model"  # the direction model's own forecasts, beside the baselines
MAJORITY = "majority"
PERSISTENCE = "persistence"
LOGISTIC = "logistic"
BASELINES = (MAJORITY, PERSISTENCE, LOGISTIC)
DEFAULT_MAX_TRAIN_SAMPLES = 250_000
# Keeps persistence's probabilities on its own side of 0.5 and away from 0 and 1.
_EDGE = 1e-6
LOGISTIC_C = 1.0
LOGISTIC_MAX_ITER = 1000


class BaselineError(TradeCoreError, ValueError):
    """The baselines cannot be fitted or applied (the message says on what and why)."""


class BaselineFit(RecordModel):
    """What the baselines learnt from the training split (recorded in the evaluation)."""

    train_samples: int = Field(description="labelled training rows with finite inputs")
    logistic_samples: int = Field(description="of those, the rows the logistic regression "
                                  "was fitted on (thinned beyond max_samples)")
    up_rate: float = Field(description="share of up labels in training: majority's p_up")
    persistence_samples: int = Field(description="labelled training rows with a persistence "
                                     "sign")
    persistence_hit_rate: float | None = Field(
        description="share of them whose sign was the label (None without any)")
    persistence_confidence: float = Field(description="q: persistence's p_up when the sign "
                                          "is up (1 - q when down)")
    inputs: tuple[str, ...] = Field(description="the logistic regression's input columns")
    logistic_iterations: int = Field(description="lbfgs iterations to convergence")


@dataclass(frozen=True)
class Baselines:
    """The fitted baselines (:func:`fit_baselines`); :meth:`predict` applies them."""

    fit: BaselineFit
    feature_columns: tuple[str, ...]
    candle_inputs: tuple[str, ...]
    horizon_minutes: int
    logistic: Any  # sklearn Pipeline(StandardScaler, LogisticRegression)

    def predict(self, frame: pd.DataFrame, samples: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Each baseline's forecasts for ``samples``.

        Args:
            frame: candles + features (``ts``, OHLC, the feature columns) holding a row for
                every sample's ``ts`` and, for persistence, the ``horizon`` minutes before it
                (e.g. the split's frame with its warm-up month).
            samples: the model's predictions (``DirectionPredictions``: ``ts``, ``market``,
                ``p_up``, ``label``, ``forward_return``, ``split``).

        Returns:
            name -> a copy of ``samples`` (same rows, same order) with the baseline's
            ``p_up``, for each of :data:`BASELINES`.

        Raises:
            BaselineError: a sample's ``ts`` has no row in ``frame``.
        """
        ts = ts_millis(frame["ts"])
        wanted = ts_millis(samples["ts"])
        rows = np.searchsorted(ts, wanted)
        found = (rows < len(ts)) & (ts[np.minimum(rows, len(ts) - 1)] == wanted)
        if not found.all():
            first = pd.Timestamp(int(wanted[np.argmax(~found)]), unit="ms", tz="UTC")
            raise BaselineError(f"{int((~found).sum())} sample(s) have no row in the frame "
                                f"the baselines read (first: {first}); give the frame of the "
                                "samples' months")
        u = self.fit.up_rate
        q = self.fit.persistence_confidence
        sign = persistence(ts, frame["close"].to_numpy(dtype=np.float64),
                           self.horizon_minutes)[rows]
        values, bad = _inputs(frame, self.feature_columns, self.candle_inputs)
        logistic = np.full(len(rows), u)
        usable = ~bad[rows]
        if usable.any():
            logistic[usable] = self.logistic.predict_proba(values[rows[usable]])[:, 1]
        forecasts = {
            MAJORITY: np.full(len(rows), u),
            PERSISTENCE: np.where(sign == 1.0, q, np.where(sign == 0.0, 1.0 - q, u)),
            LOGISTIC: logistic,
        }
        return {name: samples.assign(p_up=p.astype(np.float64)) for name, p in forecasts.items()}


def _inputs(frame: pd.DataFrame, feature_columns: Sequence[str],
            candle_inputs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The model's raw inputs of ``frame`` and the rows that have none usable."""
    # data.py imports torch; the evaluation only needs it here, when it fits or predicts.
    from tradecore_lib.direction.data import input_table

    values, bad, _ = input_table(frame, list(feature_columns), list(candle_inputs))
    return values.astype(np.float64), bad


def fit_baselines(train_frame: pd.DataFrame, *, feature_columns: Sequence[str],
                  candle_inputs: Sequence[str], horizon_minutes: int, dead_zone: float,
                  train_start_ms: int | None, train_end_ms: int,
                  max_samples: int = DEFAULT_MAX_TRAIN_SAMPLES) -> Baselines:
    """Fit the baselines (see the module docstring) on the training split of ``train_frame``.

    Args:
        train_frame: candles + features of the training months (earlier rows may precede
            them as warm-up; they only give persistence its look-back).
        feature_columns, candle_inputs: the model's inputs (its preset's feature columns and
            ``candle_inputs``).
        horizon_minutes, dead_zone: the label rule's H and dead zone (the model's).
        train_start_ms, train_end_ms: the training samples are the rows with ``train_start_ms
            <= ts < train_end_ms`` (None: from the first row), labelled without reading a
            price at or after ``train_end_ms`` (the purge).
        max_samples: most rows the logistic regression is fitted on.

    Raises:
        BaselineError: no labelled training row, or labels of one class only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ts = ts_millis(train_frame["ts"])
    _, label = label_frame(train_frame, horizon_minutes, dead_zone, train_end_ms)
    values, bad = _inputs(train_frame, feature_columns, candle_inputs)
    inside = (ts < train_end_ms) & (ts >= (train_start_ms if train_start_ms is not None
                                           else ts[0] if len(ts) else 0))
    rows = np.flatnonzero(inside & ~np.isnan(label) & ~bad)
    if len(rows) == 0:
        raise BaselineError("no labelled training row with finite inputs to fit the baselines "
                            "on: is the frame the training months'?")
    y = label[rows]
    if y.min() == y.max():
        raise BaselineError(f"every one of the {len(rows)} training labels is "
                            f"{'up' if y[0] else 'down'}: the logistic baseline needs both "
                            "classes")
    up_rate = float(y.mean())
    guess = persistence(ts, train_frame["close"].to_numpy(dtype=np.float64),
                        horizon_minutes)[rows]
    signed = ~np.isnan(guess)
    hit = float(np.mean(guess[signed] == y[signed])) if signed.any() else None
    q = float(np.clip(0.5 if hit is None else hit, 0.5 + _EDGE, 1.0 - _EDGE))
    fitted = rows[np.unique(np.linspace(0, len(rows) - 1, min(len(rows), max_samples))
                            .round().astype(np.int64))]
    pipeline = make_pipeline(StandardScaler(),
                             LogisticRegression(C=LOGISTIC_C, max_iter=LOGISTIC_MAX_ITER))
    pipeline.fit(values[fitted], label[fitted])
    iterations = int(np.max(pipeline[-1].n_iter_))
    fit = BaselineFit(
        train_samples=len(rows), logistic_samples=len(fitted), up_rate=up_rate,
        persistence_samples=int(signed.sum()), persistence_hit_rate=hit,
        persistence_confidence=q, inputs=(*feature_columns, *candle_inputs),
        logistic_iterations=iterations,
    )
    return Baselines(fit=fit, feature_columns=tuple(feature_columns),
                     candle_inputs=tuple(candle_inputs), horizon_minutes=horizon_minutes,
                     logistic=pipeline)
