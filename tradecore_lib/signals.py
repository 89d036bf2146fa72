"""Dry-run signals: what the champion would do on the newest data. No orders, anywhere.

The champion (the MLflow ``champion`` alias of the market's registered model) plays the newest
month that has candles and features, through the same env and engine as its evaluation, so
its account state (position, stops) evolves as it would have; the last ``signal_bars``
decisions are written as a parquet table::

    <lake_root>/signals/<market>/year=YYYY/month=MM/part-0.parquet

Columns: ``ts`` (open time of the bar after whose close the decision was made, UTC),
``execute_at`` (open time of the bar the order would fill on), ``target_position`` (signed
fraction in [-1, 1] of the RiskGuard's full size), ``action_probs`` (probabilities of the
env's target positions, empty for continuous actions), ``confidence`` (the largest of them,
null for continuous actions), ``model_name``, ``model_version``, ``run_id``, ``generated_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from tradecore_lib.evaluation.agent import Agent
from tradecore_lib.evaluation.backtest import backtest
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake, StoredFile
from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.tracking import CHAMPION, Tracker, model_name
from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.data import latest_feature_month, load_frame

SIGNAL_SCHEMA = pa.schema([
    ("ts", pa.timestamp("ms", tz="UTC")),
    ("execute_at", pa.timestamp("ms", tz="UTC")),
    ("target_position", pa.float64()),
    ("action_probs", pa.list_(pa.float64())),
    ("confidence", pa.float64()),
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("run_id", pa.string()),
    ("generated_at", pa.timestamp("ms", tz="UTC")),
])


class NoChampionError(LookupError):
    """The market has no champion model to produce signals with."""


def signals_key(market: Market, month: Month) -> str:
    return f"signals/{market.name}/year={month.year:04d}/month={month.month:02d}/part-0.parquet"


@dataclass(frozen=True)
class PublishedSignals:
    """The written signal table and what produced it."""

    stored: StoredFile
    table: pa.Table
    month: Month
    model_name: str
    model_version: str
    run_id: str


def publish_signals(lake: Lake, market: Market, tracker: Tracker, last_month: Month
                    ) -> PublishedSignals:
    """Run the champion on the newest month up to ``last_month`` and write its signals.

    Raises:
        NoChampionError: no model version holds the ``champion`` alias.
    """
    champion = tracker.champion(market.name)
    if champion is None:
        raise NoChampionError(
            f"signals/{market.name}: no champion: registered model {model_name(market.name)!r} "
            f"has no {CHAMPION!r} alias in MLflow ({tracker.where}). Materialize "
            f"ppo_agent/{market.name} and evaluation/{market.name}; the promotion gate sets the "
            "alias when the evaluation passes it."
        )
    agent = Agent.load(RunStore(lake, market.name, champion.run_id))
    preset = agent.lineage["feature_preset"]
    month = latest_feature_month(lake, market, preset, last_month)
    data = load_frame(lake, market, [month], preset)
    traj = backtest(data.frame, agent.config.env_settings(WARMUP_COLUMN), agent)
    keep = slice(-agent.config.evaluation.signal_bars, None)
    n = len(traj.target[keep])
    probs = traj.probs[keep] if traj.probs is not None else None
    now = datetime.now(UTC)
    table = pa.table({
        "ts": pa.array(traj.decision_ts_ms[keep], pa.timestamp("ms", tz="UTC")),
        "execute_at": pa.array(traj.ts_ms[keep], pa.timestamp("ms", tz="UTC")),
        "target_position": traj.target[keep].astype(np.float64),
        "action_probs": [list(p) for p in probs] if probs is not None else [[]] * n,
        "confidence": probs.max(axis=1) if probs is not None else pa.nulls(n, pa.float64()),
        "model_name": [champion.model_name] * n,
        "model_version": [champion.version] * n,
        "run_id": [champion.run_id] * n,
        "generated_at": pa.array([now] * n, pa.timestamp("ms", tz="UTC")),
    }, schema=SIGNAL_SCHEMA)
    stored = lake.write_table(signals_key(market, month), table)
    return PublishedSignals(stored, table, month, champion.model_name, champion.version,
                            champion.run_id)
