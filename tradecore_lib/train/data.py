"""Frames the agent trades on: feature partitions joined with their candles, month by month.

Every partition read is hashed from its stored bytes (the same sha256 the manifest records for
candles), so a checkpoint's lineage names exactly the data it saw.

An evaluation or signal frame is read with ``warmup=True``: the month before the first one
comes first, so the env's causal normalization (``norm_window`` bars) and observation window
are warm when the split begins, as training sees them, and the first decision is at the
split's first bar (:attr:`MarketFrame.decision_start`, the row the backtest starts at).

A market charging its venue's funding (``holding_costs.funding: venue``) gets the stored
``<market>/funding`` periods as the engine's ``funding_charge`` column, aligned to the
frame's bars (:func:`tradecore_lib.sources.funding.funding_charge_column`), and each month's
funding file in its :class:`PartitionUsed`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import pandas as pd
import pyarrow as pa

from tradecore_lib.env.observation import FUNDING_COLUMN
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.features import feature_key
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.sources.funding import funding_charge_column


class MissingDataError(TradeCoreError, FileNotFoundError):
    """A candle or feature partition a run needs is not in the lake."""


@dataclass(frozen=True)
class PartitionUsed:
    """One month read: lake keys, sha256 of the stored bytes, and rows in the joined frame;
    the funding file too when the market charges its venue's funding."""

    month: str
    candles_key: str
    candles_sha256: str
    features_key: str
    features_sha256: str
    rows: int
    funding_key: str | None = None
    funding_sha256: str | None = None

    def to_dict(self) -> dict[str, object]:
        # without funding, the entry keeps the fields it always had
        return {k: v for k, v in asdict(self).items()
                if self.funding_key is not None or not k.startswith("funding_")}


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
        return _with_funding(lake, market, data)
    warm = _read(lake, market, [before], feature_preset)
    frame = pd.concat([warm.frame, data.frame], ignore_index=True)
    return _with_funding(lake, market, MarketFrame(frame, data.partitions, feature_preset,
                                                   len(warm.frame), warm.partitions[0]))


def _with_funding(lake: Lake, market: Market, data: MarketFrame) -> MarketFrame:
    """``data`` with the venue's funding column when the market charges it (aligned on the
    whole frame, so a period in a gap across a month boundary lands on the bar before it)."""
    if not market.funding_from_venue:
        return data
    ts_ms = data.frame["ts"].dt.tz_convert(None).to_numpy(dtype="datetime64[ms]").view("int64")
    column, files = funding_charge_column(lake, market, ts_ms)
    data.frame[FUNDING_COLUMN] = column

    def with_file(used: PartitionUsed) -> PartitionUsed:
        stored = files[Month.parse(used.month)]
        return replace(used, funding_key=stored.key, funding_sha256=stored.sha256)

    warm = data.warmup_partition
    return replace(data, partitions=[with_file(p) for p in data.partitions],
                   warmup_partition=with_file(warm) if warm is not None else None)


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
            f"the lake: {'; '.join(missing)}. Materialize {market.name}/candles and "
            f"{market.name}/features (preset {feature_preset!r}) for those months first."
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
            f"({candles.num_rows} rows) row for row; re-materialize {market.name}/features for "
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

