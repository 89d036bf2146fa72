"""Frames for tests, benchmarks and notebooks: synthetic candles plus numpy features.

These do not use the feature pipeline (``tradecore_lib.features``); they compute a few
indicator-like float32 columns directly so the env can be exercised on its own.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month


def add_numpy_features(frame: pd.DataFrame, n_features: int = 2) -> pd.DataFrame:
    """Return ``frame`` with ``n_features`` causal float32 columns (warm-up rows are NaN).

    Columns cycle through log return over k bars, rolling range and rolling volume ratio, with
    growing lookbacks, plus a boolean ``warmup`` marker column (true while any is NaN).
    """
    out = frame.copy()
    close = out["close"].to_numpy(dtype=np.float64)
    log_close = pd.Series(np.log(close))
    rng_frac = pd.Series((out["high"] - out["low"]).to_numpy() / close)
    volume = pd.Series(out["volume"].to_numpy(dtype=np.float64))
    for j in range(n_features):
        k = 5 * (j // 3 + 1) * (1 + j % 3)
        kind = j % 3
        if kind == 0:
            col = log_close.diff(k)
        elif kind == 1:
            col = rng_frac.rolling(k).mean()
        else:
            col = volume / volume.rolling(k).mean()
        out[f"feat_{j}_{k}"] = col.to_numpy(dtype=np.float32)
    feats = [c for c in out.columns if c.startswith("feat_")]
    out["warmup"] = out[feats].isna().any(axis=1) if feats else False
    return out


def synthetic_frame(month: Month | None = None, n_features: int = 2,
                    rows: int | None = None, seed: int = 7,
                    market: str = "synthetic_btc_usd") -> pd.DataFrame:
    """A month (default 2024-01) of synthetic 1-minute candles (real gaps included) with
    numpy features."""
    table = generate_month(SyntheticOptions(seed=seed), market, month or Month(2024, 1))
    frame = table.to_pandas()
    if rows is not None:
        frame = frame.iloc[:rows].reset_index(drop=True)
    return add_numpy_features(frame, n_features)


def random_walk_frame(rng: np.random.Generator, n: int, start_price: float = 100.0,
                      vol: float = 0.002, gap_every: int = 0, minutes_per_bar: int = 1,
                      start_ms: int = 1_704_150_000_000) -> pd.DataFrame:
    """``n`` candles of ``minutes_per_bar`` minutes of a seeded random walk (no features) from
    ``start_ms`` (default 2024-01-01 23:00 UTC, so even short frames cross a UTC day),
    optionally with a gap of 10 missing bars every ``gap_every`` bars."""
    rets = rng.standard_t(4, n) * vol
    close = start_price * np.exp(np.cumsum(rets))
    open_ = np.concatenate([[start_price], close[:-1]])
    wick_up = np.abs(rng.normal(0.0, vol, n)) * close
    wick_dn = np.abs(rng.normal(0.0, vol, n)) * close
    high = np.maximum(open_, close) + wick_up
    low = np.maximum(np.minimum(open_, close) - wick_dn, 1e-6)
    bars = np.arange(n, dtype=np.int64)
    if gap_every:
        bars = bars + 10 * (bars // gap_every)
    ts = pd.to_datetime(start_ms + bars * minutes_per_bar * 60_000, unit="ms", utc=True)
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.gamma(2.0, 2.0, n), "trades": rng.poisson(10, n)})


class Fill(NamedTuple):
    """One row of an env's fill log (``env.fills()``), for comparing fills in tests."""

    bar: int
    ts_ms: int
    kind: str
    qty: float
    price: float
    fee: float


def fills_of(env) -> list[Fill]:
    """Every fill ``env`` (made with ``record_fills=True``) recorded, in order."""
    return [Fill(**row) for row in env.fills().to_pylist()]
