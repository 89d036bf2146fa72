"""The equity-curve chart: agent vs baselines per split, with a drawdown panel."""

from __future__ import annotations

import io

import numpy as np

from tradecore_lib.evaluation.backtest import PolicyRun

_MAX_POINTS = 1500  # per curve; keeps the PNG small enough for Dagster metadata
_COLORS = {"agent": "#d62728", "buy_and_hold": "#1f77b4", "flat": "#7f7f7f",
           "always_long_stops": "#2ca02c", "champion": "#9467bd"}


def equity_png(splits: dict[str, dict[str, PolicyRun]], title: str) -> bytes:
    """PNG bytes: one column per split; top row equity / initial equity, bottom drawdown.

    ``splits`` maps split name -> policy name -> its walk.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(splits), figsize=(5.5 * len(splits), 5), sharex="col",
                             squeeze=False, gridspec_kw={"height_ratios": [3, 1]})
    for col, (split, policies) in enumerate(splits.items()):
        top, bottom = axes[0][col], axes[1][col]
        for name, run in policies.items():
            step = max(1, len(run.equity) // _MAX_POINTS)
            when = run.ts_ms[::step].astype("datetime64[ms]")
            curve = run.equity / run.initial_equity
            drawdown = 1.0 - curve / np.maximum.accumulate(np.maximum(curve, 1.0))
            style = {"color": _COLORS.get(name), "linewidth": 1.6 if name == "agent" else 0.9}
            top.plot(when, curve[::step], label=name, **style)
            bottom.plot(when, -100.0 * drawdown[::step], **style)
        top.set_title(f"{split}", fontsize=10)
        top.set_ylabel("equity / initial")
        top.grid(alpha=0.3)
        bottom.set_ylabel("drawdown %")
        bottom.grid(alpha=0.3)
        bottom.tick_params(axis="x", labelsize=7, rotation=30)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=70)
    plt.close(fig)
    return buffer.getvalue()
