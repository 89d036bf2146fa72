"""Dry-run direction signals: the champion's probabilities on the newest data. No orders,
anywhere.

The model (a finished direction run, named by its run id: the champion record's) predicts
every decidable minute of the newest month that has candles and features for *every* market
it reads (at most the month asked for, else the newest before it), its inputs warmed on the
month before, exactly as its evaluation predicts. One row per (minute, market)::

    <lake_root>/signals/direction/<model_key>/year=YYYY/month=MM/part-0.parquet

written whole and atomically (:meth:`Lake.write_table`); re-publishing a month replaces it.

Columns (:data:`DIRECTION_SIGNAL_SCHEMA`): ``ts`` (open time of the bar after whose close the
probability is known, UTC), ``market``, ``p_up`` (probability that the next
``horizon_minutes``' log return is above the dead zone), ``direction`` (``up`` when
``p_up > 0.5``, else ``down``), ``confidence`` (``max(p_up, 1 - p_up)``), ``tier``
(:func:`~tradecore_lib.direction.predict.confidence_tiers` of the run's ``signals.tiers``:
the highest tier whose threshold the confidence reaches, ``none`` below all),
``horizon_minutes``, ``execute_at`` (open time of the next bar, where an order would fill:
the market's next minute in the data, else ``ts`` + 1 minute for the newest bar), ``model``
(the label the caller gives, e.g. ``tradecore-direction-<key> v3``), ``run_id``,
``generated_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from tradecore_lib.direction.labels import ts_millis
from tradecore_lib.direction.predict import DirectionModel, confidence_tiers
from tradecore_lib.direction.store import DirectionStore
from tradecore_lib.lake import Lake, StoredFile
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month
from tradecore_lib.train.data import latest_feature_month

MINUTE_MS = 60_000
SIGNALS_SPLIT = "signals"  # the split name the predictions carry (no label is used)
DIRECTION_SIGNAL_SCHEMA = pa.schema([
    ("ts", pa.timestamp("ms", tz="UTC")),
    ("market", pa.string()),
    ("p_up", pa.float64()),
    ("direction", pa.string()),
    ("confidence", pa.float64()),
    ("tier", pa.string()),
    ("horizon_minutes", pa.int64()),
    ("execute_at", pa.timestamp("ms", tz="UTC")),
    ("model", pa.string()),
    ("run_id", pa.string()),
    ("generated_at", pa.timestamp("ms", tz="UTC")),
])


def direction_signals_key(model_key: str, month: Month) -> str:
    """Lake-relative key of ``model_key``'s signals of ``month``."""
    return (f"signals/direction/{model_key}/year={month.year:04d}/month={month.month:02d}/"
            "part-0.parquet")


@dataclass(frozen=True)
class PublishedDirectionSignals:
    """The written signal table and what produced it."""

    table: pa.Table
    month: Month
    stored: StoredFile
    model: str = ""
    run_id: str = ""


def common_feature_month(lake: Lake, model: DirectionModel, last: Month) -> Month:
    """The newest month up to ``last`` with candles and the model's features for every one
    of its markets.

    Raises:
        MissingDataError: a market has no such month (from its first month on).
    """
    month = last
    while True:
        newest = min(latest_feature_month(lake, get_market(name), model.feature_presets[name],
                                          month) for name in model.markets)
        if newest == month:
            return month
        month = newest  # some market lacks `month`: try the newest month they all may have


def publish_direction_signals(lake: Lake, model_key: str, run_id: str, model_label: str,
                              month: Month, *, tiers: Mapping[str, float] | None = None,
                              device: str = "cpu") -> PublishedDirectionSignals:
    """Predict with run ``run_id`` of ``model_key`` on the newest month up to ``month`` and
    write its signals (see the module docstring), labelled ``model_label``.

    Args:
        tiers: tier name -> the smallest confidence of that tier; None: the run's config
            (``signals.tiers``). The Dagster layer passes the champion record's.

    Raises:
        DirectionModelError: the run has no final model.
        MissingDataError: no month has candles and features for every market of the model.
    """
    model = DirectionModel.load(DirectionStore(lake, model_key, run_id), device)
    chosen = common_feature_month(lake, model, month)
    frames = model.load_frames(lake, [chosen])
    predictions = model.predict(frames, SIGNALS_SPLIT)
    ts = ts_millis(predictions["ts"])
    markets = predictions["market"].to_numpy(dtype=object)
    execute_at = np.empty(len(ts), dtype=np.int64)
    for name in model.markets:
        rows = markets == name
        bars = ts_millis(frames[name].frame["ts"])
        at = np.searchsorted(bars, ts[rows], side="right")  # the first bar after ts
        after = np.append(bars, 0)[at]
        execute_at[rows] = np.where(at < len(bars), after, ts[rows] + MINUTE_MS)
    p_up = predictions["p_up"].to_numpy(dtype=np.float64)
    n = len(p_up)
    now = datetime.now(UTC)
    table = pa.table({
        "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
        "market": pa.array(markets.tolist(), pa.string()),
        "p_up": p_up,
        "direction": np.where(p_up > 0.5, "up", "down").tolist(),
        "confidence": np.maximum(p_up, 1.0 - p_up),
        "tier": confidence_tiers(p_up, tiers if tiers is not None
                                 else model.config.signals.tiers).tolist(),
        "horizon_minutes": pa.array(np.full(n, model.horizon_minutes, dtype=np.int64)),
        "execute_at": pa.array(execute_at, pa.timestamp("ms", tz="UTC")),
        "model": [model_label] * n,
        "run_id": [run_id] * n,
        "generated_at": pa.array([now] * n, pa.timestamp("ms", tz="UTC")),
    }, schema=DIRECTION_SIGNAL_SCHEMA)
    stored = lake.write_table(direction_signals_key(model_key, chosen), table)
    return PublishedDirectionSignals(table=table, month=chosen, stored=stored,
                                     model=model_label, run_id=run_id)
