"""Performance metrics of a backtest trajectory (vectorized over its bars)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tradecore_lib.evaluation.backtest import Trajectory

MINUTES_PER_YEAR = 365.25 * 24 * 60

METRIC_DESCRIPTIONS = {
    "total_return": "final equity / initial equity - 1",
    "sharpe": "annualized Sharpe of per-bar returns (risk-free 0)",
    "sortino": "annualized Sortino of per-bar returns (downside deviation, target 0)",
    "max_drawdown": "largest fall of equity from its running peak, fraction",
    "turnover": "traded notional / mean equity",
    "fees": "fees paid, quote currency",
    "trades": "round trips (flat -> position -> flat or flip)",
    "win_rate": "share of round trips with positive net PnL",
    "exposure": "share of bars ending with an open position",
}


def periods_per_year(ts_ms: np.ndarray) -> float:
    """Bars per year from the median spacing of ``ts_ms`` (525,960 for one-minute bars)."""
    if len(ts_ms) < 2:
        return MINUTES_PER_YEAR
    minutes = float(np.median(np.diff(ts_ms))) / 60_000.0
    return MINUTES_PER_YEAR / max(minutes, 1e-9)


def compute_metrics(traj: Trajectory) -> dict[str, Any]:
    """The metrics of :data:`METRIC_DESCRIPTIONS` plus bars and kill-switch hits.

    Ratios are None where undefined (a Sortino without a losing bar).
    """
    equity = np.concatenate([[traj.initial_equity], traj.equity])
    returns = equity[1:] / equity[:-1] - 1.0
    annual = math.sqrt(periods_per_year(traj.ts_ms))
    mean = float(returns.mean()) if len(returns) else 0.0
    std = float(returns.std()) if len(returns) else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) else 0.0
    peak = np.maximum.accumulate(equity)
    pnls = np.asarray(traj.trade_pnls)
    return {
        "total_return": float(equity[-1] / equity[0] - 1.0),
        "sharpe": mean / std * annual if std > 0 else 0.0,
        "sortino": mean / downside * annual if downside > 0 else (0.0 if mean == 0 else None),
        "max_drawdown": float(np.max(1.0 - equity / peak)),
        "turnover": float(traj.traded_notional / equity.mean()),
        "fees": float(traj.fees.sum()),
        "trades": len(pnls),
        "win_rate": float((pnls > 0).mean()) if len(pnls) else None,
        "exposure": float((traj.position_qty != 0).mean()) if len(traj.position_qty) else 0.0,
        "bars": len(traj.equity),
        "kill_switch_hits": traj.kill_switch_hits,
    }
