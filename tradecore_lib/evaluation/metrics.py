"""Performance metrics of one policy's backtest walk (vectorized over its bars), as a record."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from tradecore_lib.train.record import RecordModel

if TYPE_CHECKING:  # the engine is not needed to read stored metrics
    from tradecore_lib.evaluation.backtest import PolicyRun

MINUTES_PER_YEAR = 365.25 * 24 * 60


class PolicyMetrics(RecordModel):
    """How one policy did on one split. Ratios are None where undefined."""

    total_return: float = Field(description="final equity / initial equity - 1")
    sharpe: float = Field(description="annualized Sharpe of per-bar returns (risk-free 0)")
    sortino: float | None = Field(
        description="annualized Sortino of per-bar returns (downside deviation, target 0); "
        "undefined without a losing bar"
    )
    max_drawdown: float = Field(description="largest fall of equity from its running peak, "
                                "fraction")
    turnover: float = Field(description="traded notional / mean equity")
    fees: float = Field(description="fees paid, quote currency")
    trades: int = Field(description="round trips (flat -> position -> flat or flip)")
    win_rate: float | None = Field(description="share of round trips with positive net PnL")
    exposure: float = Field(description="share of bars ending with an open position")
    bars: int = Field(description="bars played")
    kill_switch_hits: int = Field(description="times the RiskGuard's kill switch closed the "
                                  "account")
    guardrail_breaches: int = Field(default=0, description="daily / total loss limit breaches")


def periods_per_year(ts_ms: np.ndarray) -> float:
    """Bars per year from the median spacing of ``ts_ms`` (525,960 for one-minute bars)."""
    if len(ts_ms) < 2:
        return MINUTES_PER_YEAR
    minutes = float(np.median(np.diff(ts_ms))) / 60_000.0
    return MINUTES_PER_YEAR / max(minutes, 1e-9)


def compute_metrics(run: PolicyRun) -> PolicyMetrics:
    """The :class:`PolicyMetrics` of one walk (per-bar returns of its marked equity)."""
    equity = np.concatenate([[run.initial_equity], run.equity])
    returns = equity[1:] / equity[:-1] - 1.0
    annual = math.sqrt(periods_per_year(run.ts_ms))
    mean = float(returns.mean()) if len(returns) else 0.0
    std = float(returns.std()) if len(returns) else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if len(returns) else 0.0
    peak = np.maximum.accumulate(equity)
    pnls = np.asarray(run.trade_pnls)
    return PolicyMetrics(
        total_return=float(equity[-1] / equity[0] - 1.0),
        sharpe=mean / std * annual if std > 0 else 0.0,
        sortino=mean / downside * annual if downside > 0 else (0.0 if mean == 0 else None),
        max_drawdown=float(np.max(1.0 - equity / peak)),
        turnover=float(run.traded_notional / equity.mean()),
        fees=float(run.fees),
        trades=len(pnls),
        win_rate=float((pnls > 0).mean()) if len(pnls) else None,
        exposure=float((run.position != 0).mean()) if len(run.position) else 0.0,
        bars=len(run.equity),
        kill_switch_hits=run.kill_switch_hits,
        guardrail_breaches=run.guardrail_breaches,
    )
