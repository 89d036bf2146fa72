"""Dry-run signals: what a model would do on the newest data. No orders, anywhere.

The model (a finished training run, named by its run id: the champion record's) walks the
newest month that has candles and features with the one engine, exactly as its evaluation
does (warmed on the month before, first decision at the month's first bar), so its account
state (position, stops, kill switch) evolves as it would have; the last ``signal_bars``
decisions are written as a parquet table::

    <lake_root>/signals/<market>/year=YYYY/month=MM/part-0.parquet

Columns: ``ts`` (open time of the bar after whose close the decision was made, UTC),
``execute_at`` (open time of the bar the order fills on), ``target_position`` (signed
fraction in [-1, 1] of the RiskGuard's full size), ``action_probs`` (probabilities of the
env's target positions, empty for continuous actions), ``confidence`` (the largest of them,
null for continuous actions), ``model`` (the label the caller gives, e.g. the registered
model and version), ``run_id``, ``generated_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from tradecore_lib.env import MarketData
from tradecore_lib.evaluation.agent import Agent
from tradecore_lib.evaluation.backtest import plan_walk, run_policies, walk_config
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake, StoredFile
from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.data import latest_feature_month, load_frame

SIGNAL_SCHEMA = pa.schema([
    ("ts", pa.timestamp("ms", tz="UTC")),
    ("execute_at", pa.timestamp("ms", tz="UTC")),
    ("target_position", pa.float64()),
    ("action_probs", pa.list_(pa.float64())),
    ("confidence", pa.float64()),
    ("model", pa.string()),
    ("run_id", pa.string()),
    ("generated_at", pa.timestamp("ms", tz="UTC")),
])


def signals_key(market: Market, month: Month) -> str:
    return f"signals/{market.name}/year={month.year:04d}/month={month.month:02d}/part-0.parquet"


@dataclass(frozen=True)
class PublishedSignals:
    """The written signal table and what produced it."""

    stored: StoredFile
    table: pa.Table
    month: Month
    model: str
    run_id: str


def publish_signals(lake: Lake, market: Market, run_id: str, model_label: str,
                    last_month: Month) -> PublishedSignals:
    """Walk run ``run_id``'s model over the newest month up to ``last_month`` and write its
    signals, labelled ``model_label`` (e.g. ``tradecore-ppo-<market> v3``).

    Raises:
        UnfinishedRunError: the run has no final model.
        MissingDataError: no month has both candles and the run's features.
    """
    agent = Agent.load(RunStore(lake, market.name, run_id))
    preset = agent.lineage["feature_preset"]
    month = latest_feature_month(lake, market, preset, last_month)
    frame = load_frame(lake, market, [month], preset, warmup=True)
    settings = agent.config.env_settings(WARMUP_COLUMN)
    data = MarketData.from_frame(frame.frame, walk_config(settings))
    walk = plan_walk(data, settings, frame.decision_start)
    run = run_policies(data, settings, {"agent": agent.policy}, frame.decision_start)["agent"]
    # the decisions the walk executes: every row but a segment's last (the data's last bar
    # included), each filled at the next bar's open
    executed = np.flatnonzero(~walk.seg_end)[-agent.config.evaluation.signal_bars:]
    n = len(executed)
    probs = run.probs[executed] if run.probs is not None else None
    now = datetime.now(UTC)
    table = pa.table({
        "ts": pa.array(run.ts_ms[executed], pa.timestamp("ms", tz="UTC")),
        "execute_at": pa.array(data.ts_ms[walk.rows[executed] + 1], pa.timestamp("ms", tz="UTC")),
        "target_position": run.target[executed],
        "action_probs": [list(p) for p in probs] if probs is not None else [[]] * n,
        "confidence": probs.max(axis=1) if probs is not None else pa.nulls(n, pa.float64()),
        "model": [model_label] * n,
        "run_id": [run_id] * n,
        "generated_at": pa.array([now] * n, pa.timestamp("ms", tz="UTC")),
    }, schema=SIGNAL_SCHEMA)
    stored = lake.write_table(signals_key(market, month), table)
    return PublishedSignals(stored, table, month, model_label, run_id)
