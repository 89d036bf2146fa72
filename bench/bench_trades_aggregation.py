"""Trades -> 1-minute OHLCV + trade count: TradeCore's reduceat pass vs pandas (freqtrade's way).

freqtrade's ``trades_to_ohlcv`` indexes a trades DataFrame by time and runs
``price.resample("1min").ohlc()`` + ``amount.resample("1min").sum()`` + ``dropna()``; a
``groupby`` on the floored minute is the other common pandas spelling. All three are timed on
the same 5,000,000 sorted trades (about a month of Kraken BTC/USD) and checked to agree.

Run: ``.venv/bin/python bench/bench_trades_aggregation.py [--trades N] [--repeat R]``
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pyarrow as pa
from timing import best_of

from tradecore_lib.months import Month
from tradecore_lib.sources.kraken_spot import aggregate_trades

MONTH = Month(2024, 3)


def make_trades(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` sorted trades over MONTH: times in UTC microseconds, prices, amounts."""
    rng = np.random.default_rng(seed)
    span_us = (MONTH.end_ms - MONTH.start_ms) * 1000
    time_us = np.sort(rng.integers(0, span_us, n)) + MONTH.start_ms * 1000
    price = np.round(60_000 + np.cumsum(rng.normal(0, 2.0, n)), 1)
    amount = np.round(rng.exponential(0.05, n), 8)
    return time_us, price, amount


def tradecore(time_us: np.ndarray, price: np.ndarray, amount: np.ndarray) -> pa.Table:
    return aggregate_trades(time_us, price, amount, start_ms=MONTH.start_ms, end_ms=MONTH.end_ms)


def pandas_resample(time_us: np.ndarray, price: np.ndarray, amount: np.ndarray) -> pd.DataFrame:
    """freqtrade's trades_to_ohlcv, plus the trade count."""
    df = pd.DataFrame(
        {"price": price, "amount": amount},
        index=pd.to_datetime(time_us, unit="us", utc=True),
    )
    ohlc = df["price"].resample("1min").ohlc()
    ohlc["volume"] = df["amount"].resample("1min").sum()
    ohlc["trades"] = df["price"].resample("1min").count()
    return ohlc.dropna()


def pandas_groupby(time_us: np.ndarray, price: np.ndarray, amount: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"minute": time_us // 60_000_000, "price": price, "amount": amount})
    grouped = df.groupby("minute", sort=True)
    return grouped.agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"),
        close=("price", "last"), volume=("amount", "sum"), trades=("price", "size"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    trades = make_trades(args.trades)

    ours_s, ours = best_of(args.repeat, lambda: tradecore(*trades))
    rows = [("tradecore (numpy reduceat)", ours_s)]
    for name, fn in (("pandas resample (freqtrade)", pandas_resample),
                     ("pandas groupby", pandas_groupby)):
        seconds, frame = best_of(args.repeat, lambda fn=fn: fn(*trades))
        # Same minutes, same values: the comparison is only fair if the answers agree.
        assert len(frame) == ours.num_rows, name
        for column in ("open", "high", "low", "close", "trades"):
            np.testing.assert_array_equal(frame[column].to_numpy(), ours.column(column).to_numpy())
        np.testing.assert_allclose(frame["volume"].to_numpy(), ours.column("volume").to_numpy(),
                                   rtol=1e-12)
        rows.append((name, seconds))

    print(f"trades -> 1m candles: {args.trades:,} trades, {ours.num_rows:,} minutes, "
          f"best of {args.repeat}")
    print(f"{'implementation':<30}{'seconds':>10}{'Mtrades/s':>12}{'vs tradecore':>14}")
    for name, seconds in rows:
        print(f"{name:<30}{seconds:>10.3f}{args.trades / seconds / 1e6:>12.1f}"
              f"{seconds / ours_s:>13.1f}x")


if __name__ == "__main__":
    main()
