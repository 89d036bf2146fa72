"""The "X-Ray": a PNG chart and per-column statistics of a feature table, for run metadata."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa

from tradecore_lib.features.registry import REGISTRY, CandleArrays

CHART_BOLLINGER = {"window": 20, "nbdev": 2.0}
CHART_RSI = {"window": 14}
_STATS = (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max))


def column_stats(table: pa.Table, columns: list[str]) -> list[dict[str, Any]]:
    """Mean, std, min, max and NaN count of each float column (None when all are NaN).

    Returns one dict per column: ``{"column", "mean", "std", "min", "max", "nan_count"}``.
    """
    out = []
    for name in columns:
        values = table.column(name).to_numpy().astype(np.float64)
        finite = values[np.isfinite(values)]
        stats: dict[str, Any] = {"column": name}
        for stat, function in _STATS:
            stats[stat] = float(function(finite)) if finite.size else None
        stats["nan_count"] = int(values.size - finite.size)
        out.append(stats)
    return out


def xray_png(series: CandleArrays, start: int, title: str, zoom_rows: int = 1_440) -> bytes:
    """A PNG X-Ray of rows ``start:`` of ``series`` (one month, about 720x540 px).

    Panels: the whole month's close (the zoomed stretch shaded), then its last ``zoom_rows``
    bars (a day) at minute resolution: close with Bollinger bands (20, 2), RSI (14) with
    30/70 guides, and volume; a month of minute bands or RSI is an unreadable smear.
    Indicators are computed on the whole series, so the chart is warmed up like the features.
    """
    bands = REGISTRY["bbands"].compute(series, CHART_BOLLINGER)
    rsi = next(iter(REGISTRY["rsi"].compute(series, CHART_RSI).values()))
    when = series.ts_ms.astype("datetime64[ms]")
    zoom = slice(max(start, len(series) - zoom_rows), len(series))
    # Imported here: matplotlib costs ~0.35 s, too much for loading the code location.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7.5), dpi=72, layout="constrained")
    month, price, oscillator, volume = figure.subplots(
        4, 1, gridspec_kw={"height_ratios": [2, 2.5, 1.2, 1.2]}
    )
    month.plot(when[start:], series.close[start:], color="black", linewidth=0.6)
    if len(series) > start:
        month.axvspan(when[zoom.start], when[-1], color="tab:orange", alpha=0.2, label="zoom")
    month.set_title(title)
    month.set_ylabel("close")
    price.plot(when[zoom], series.close[zoom], color="black", linewidth=0.7, label="close")
    price.fill_between(
        when[zoom],
        series.close[zoom] * (1.0 + bands["bb_20_lower_dist"][zoom]),
        series.close[zoom] * (1.0 + bands["bb_20_upper_dist"][zoom]),
        color="tab:blue",
        alpha=0.25,
        label="Bollinger 20, 2 sd",
    )
    price.set_ylabel("close (zoom)")
    price.legend(loc="upper left", fontsize=8)
    oscillator.plot(when[zoom], rsi[zoom], color="tab:purple", linewidth=0.7)
    for level in (30, 70):
        oscillator.axhline(level, color="grey", linewidth=0.6, linestyle="--")
    oscillator.set_ylim(0, 100)
    oscillator.set_ylabel("RSI 14")
    volume.fill_between(when[zoom], series.volume[zoom], step="post", color="tab:green")
    volume.set_ylabel("volume")
    for axis in (oscillator, volume):
        axis.sharex(price)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
