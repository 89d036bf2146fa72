"""Frames the agent trades on: feature partitions joined with their candles, month by month.

Every partition read is hashed from its stored bytes (the same sha256 the manifest records for
candles), so a checkpoint's lineage names exactly the data it saw.

An evaluation or signal frame is read with ``warmup=True``: the month before the first one
comes first, so the env's causal normalization (``norm_window`` bars) and observation window
are warm when the split begins, as training sees them, and the first decision is at the
split's first bar (:attr:`MarketFrame.decision_start`, the row the backtest starts at).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
import pyarrow as pa

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.features import feature_key
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import Market
from tradecore_lib.months import Month


class MissingDataError(TradeCoreError, FileNotFoundError):
    """A candle or feature partition a run needs is not in the lake."""


@dataclass(frozen=True)
class PartitionUsed:
    """One month read: lake keys, sha256 of the stored bytes, and rows in the joined frame."""

    month: str
    candles_key: str
    candles_sha256: str
    features_key: str
    features_sha256: str
    rows: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class MarketFrame:
    """Candles + features of some months, ready for ``make_env`` / ``make_vec_env`` and the
    backtest.

    ``frame`` has ``ts`` (datetime64[ms, UTC]), OHLCV float64, ``trades``, the preset's float32
    feature columns and the boolean warm-up marker :data:`WARMUP_COLUMN`; one row per candle,
    sorted by ``ts``. With a warm-up month, its rows come first: ``decision_start`` is the
    first row of the months asked for (0 without), ``partitions`` lists those months only and
    ``warmup_partition`` the month read before them (None when it is not in the lake, e.g.
    before the market's first month: the split then starts cold).
    """

    frame: pd.DataFrame
    partitions: list[PartitionUsed]
    feature_preset: str
    decision_start: int = 0
    warmup_partition: PartitionUsed | None = None

    @property
    def scored(self) -> pd.DataFrame:
        """The rows of the months asked for (the warm-up month's left out)."""
        return self.frame.iloc[self.decision_start:]

    @property
    def first_ts(self) -> pd.Timestamp:
        return self.frame["ts"].iloc[self.decision_start]

    @property
    def last_ts(self) -> pd.Timestamp:
        return self.frame["ts"].iloc[-1]


def load_frame(lake: Lake, market: Market, months: list[Month], feature_preset: str,
               warmup: bool = False) -> MarketFrame:
    """Read and join ``months`` of candles and ``feature_preset`` features; with ``warmup``,
    the month before them first when the lake has it (see the module docstring).

    Raises:
        MissingDataError: naming every absent partition of ``months`` and what to materialize.
    """
    months = sorted(months)
    data = _read(lake, market, months, feature_preset)
    before = months[0].previous()
    if not warmup or before < market.first_month or not (
            lake.exists(candle_key(market, before))
            and lake.exists(feature_key(feature_preset, market, before))):
        return data
    warm = _read(lake, market, [before], feature_preset)
    frame = pd.concat([warm.frame, data.frame], ignore_index=True)
    return MarketFrame(frame, data.partitions, feature_preset, len(warm.frame),
                       warm.partitions[0])


def _read(lake: Lake, market: Market, months: list[Month], feature_preset: str) -> MarketFrame:
    wanted = [(m, candle_key(market, m), feature_key(feature_preset, market, m)) for m in months]
    missing = [
        f"{asset}/{market.name} {month} ({lake.uri(key)})"
        for month, c_key, f_key in wanted
        for asset, key in (("candles", c_key), ("features", f_key))
        if not lake.exists(key)
    ]
    if missing:
        raise MissingDataError(
            f"{market.name}: partitions needed for months {[str(m) for m in months]} are not in "
            f"the lake: {'; '.join(missing)}. Materialize candles/{market.name} and "
            f"features/{market.name} (preset {feature_preset!r}) for those months first."
        )
    frames: list[pd.DataFrame] = []
    used: list[PartitionUsed] = []
    for month, c_key, f_key in wanted:
        candles, c_stored = lake.read_stored(c_key)
        features, f_stored = lake.read_stored(f_key)
        joined = _join(candles, features, market, month)
        frames.append(joined)
        used.append(PartitionUsed(str(month), c_key, c_stored.sha256, f_key, f_stored.sha256,
                                  len(joined)))
    frame = pd.concat(frames, ignore_index=True)
    return MarketFrame(frame, used, feature_preset)


def _join(candles: pa.Table, features: pa.Table, market: Market, month: Month) -> pd.DataFrame:
    # Feature tables hold one row per candle of their month; a mismatch means one of the two
    # partitions was rewritten without the other.
    if candles.num_rows != features.num_rows or not candles["ts"].equals(features["ts"]):
        raise ValueError(
            f"{market.name} {month}: features ({features.num_rows} rows) do not match candles "
            f"({candles.num_rows} rows) row for row; re-materialize features/{market.name} for "
            f"{month}"
        )
    frame = candles.to_pandas()
    for name in features.column_names:
        if name != "ts":
            frame[name] = features[name].to_numpy(zero_copy_only=False)
    return frame


def latest_feature_month(lake: Lake, market: Market, feature_preset: str, last: Month) -> Month:
    """The newest month up to ``last`` with both candles and ``feature_preset`` features.

    Raises:
        MissingDataError: when no month from the market's first month on has both.
    """
    month = last
    while month >= market.first_month:
        if lake.exists(feature_key(feature_preset, market, month)) and lake.exists(
            candle_key(market, month)
        ):
            return month
        month = month.previous()
    raise MissingDataError(
        f"{market.name}: no month between {market.first_month} and {last} has both candles and "
        f"features (preset {feature_preset!r}) in {lake.uri('')}; materialize them first"
    )

