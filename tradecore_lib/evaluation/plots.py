"""Charts of an evaluation as PNG bytes (matplotlib, Agg backend: no display needed).

* :func:`equity_png`: per split, equity of the agent and its baselines with a drawdown panel
  (the evaluation's metadata and the tearsheet);
* :func:`daily_png`: per split, daily returns and the rolling Sharpe ratio (the tearsheet).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from tradecore_lib.evaluation.backtest import PolicyRun
from tradecore_lib.evaluation.stats import DAYS_PER_YEAR

_MAX_POINTS = 1500  # per curve; keeps the PNG small enough for Dagster metadata
_COLORS = {"agent": "#d62728", "buy_and_hold": "#1f77b4", "flat": "#7f7f7f",
           "always_long_stops": "#2ca02c", "champion": "#9467bd", "oracle": "#ff7f0e"}
ROLLING_DAYS = 7


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any, dpi: int = 70) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    return buffer.getvalue()


def _style(name: str) -> dict[str, Any]:
    return {"color": _COLORS.get(name), "linewidth": 1.6 if name == "agent" else 0.9}


def _label_column(top: Any, bottom: Any, split: str, top_label: str, bottom_label: str) -> None:
    """Title, axis labels and grid of one split's column of two panels."""
    top.set_title(f"{split}", fontsize=10)
    top.set_ylabel(top_label)
    top.grid(alpha=0.3)
    bottom.set_ylabel(bottom_label)
    bottom.grid(alpha=0.3)
    bottom.tick_params(axis="x", labelsize=7, rotation=30)


def _finish(fig: Any, axes: Any, title: str) -> bytes:
    """Legend, title and layout of a figure of split columns, as PNG bytes."""
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return png(fig)


def equity_png(splits: dict[str, dict[str, PolicyRun]], title: str) -> bytes:
    """PNG bytes: one column per split; top row equity / initial equity, bottom drawdown from
    the running peak (%).

    ``splits`` maps split name -> policy name -> its walk.
    """
    plt = pyplot()
    fig, axes = plt.subplots(2, len(splits), figsize=(5.5 * len(splits), 5), sharex="col",
                             squeeze=False, gridspec_kw={"height_ratios": [3, 1]})
    for col, (split, policies) in enumerate(splits.items()):
        top, bottom = axes[0][col], axes[1][col]
        for name, run in policies.items():
            step = max(1, len(run.equity) // _MAX_POINTS)
            when = run.ts_ms[::step].astype("datetime64[ms]")
            curve = run.equity / run.initial_equity
            drawdown = 1.0 - curve / np.maximum.accumulate(np.maximum(curve, 1.0))
            top.plot(when, curve[::step], label=name, **_style(name))
            bottom.plot(when, -100.0 * drawdown[::step], **_style(name))
        _label_column(top, bottom, split, "equity / initial", "drawdown %")
    return _finish(fig, axes, title)


def rolling_sharpe(daily: pd.Series, days: int = ROLLING_DAYS) -> pd.Series:
    """Annualized (sqrt 365) Sharpe ratio of the last ``days`` daily returns, per day (NaN
    until ``days`` returns exist or where they do not vary)."""
    window = daily.rolling(days, min_periods=days)
    std = window.std(ddof=1)
    return (window.mean() / std.where(std > 0)) * np.sqrt(DAYS_PER_YEAR)


def daily_png(splits: dict[str, dict[str, pd.Series]], title: str) -> bytes:
    """PNG bytes: one column per split; top row each policy's daily returns (%), bottom its
    :func:`rolling_sharpe`.

    ``splits`` maps split name -> policy name -> its daily returns.
    """
    plt = pyplot()
    fig, axes = plt.subplots(2, len(splits), figsize=(5.5 * len(splits), 5), sharex="col",
                             squeeze=False)
    for col, (split, policies) in enumerate(splits.items()):
        top, bottom = axes[0][col], axes[1][col]
        width = 0.8 / max(len(policies), 1)
        for k, (name, daily) in enumerate(policies.items()):
            when = daily.index.tz_convert(None) + pd.to_timedelta(k * width, unit="D")
            top.bar(when, 100.0 * daily.to_numpy(), width=width, label=name, align="edge",
                    color=_COLORS.get(name))
            bottom.plot(daily.index.tz_convert(None), rolling_sharpe(daily).to_numpy(),
                        **_style(name))
        top.axhline(0.0, color="black", linewidth=0.5)
        _label_column(top, bottom, split, "daily return %", f"{ROLLING_DAYS}-day Sharpe")
    return _finish(fig, axes, title)
