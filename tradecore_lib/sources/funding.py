"""Funding rates of perpetual futures: Kraken Futures' history, its monthly lake partitions,
and the per-bar charges the trading engine applies.

**What a rate is.** Kraken Futures publishes, per perpetual contract, one rate per funding
period since the contract's first trade (``GET /derivatives/api/v4/historicalfundingrates
?symbol=PF_XBTUSD`` -> ``{"rates": [{"timestamp", "fundingRate", "relativeFundingRate"}]}``,
the whole history in one response, ascending). ``fundingRate`` is the absolute rate (quote
currency per contract); ``relativeFundingRate`` is the fraction of the position's notional
paid for the period, and it is what ccxt's ``krakenfutures.fetch_funding_rate_history``
returns as ``fundingRate``. TradeCore stores that relative rate: ``rate`` is the fraction of
its notional a **long pays** for the period stamped ``ts`` (a short receives it; a negative
rate reverses both). Periods were 4 hours in Kraken's early history and are 1 hour now, so a
rate is per period, never rescaled to a fixed interval.

**Lake layout.** One small parquet file per month, the periods whose ``ts`` falls in it::

    <lake_root>/<venue>/<BASE-QUOTE>/funding/year=YYYY/month=MM/part-0.parquet

with :data:`FUNDING_SCHEMA`: ``ts`` timestamp[ms, UTC] (sorted, unique) and ``rate`` float64.

**Per-bar charges.** :func:`funding_per_bar` puts each period's rate on the bar its ``ts``
falls in (bar ``t`` covers ``[ts_t, ts_t + bar_ms)``; a ``ts`` in a gap between bars goes to
the last bar before it, whose position was held over the gap), so a position of notional
``N`` held through bar ``t`` pays ``N * charge[t]``: over a month of bars the charges of a
constant long of notional 1 add up to the month's rates. :func:`funding_charge_column` gives
them for a frame's bars, as the frame column ``funding_charge`` the engine charges
(``qty * close * funding_charge`` per bar).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.lake import Lake, StoredFile
from tradecore_lib.markets import Market
from tradecore_lib.months import MINUTE_MS, Month, iso_utc, months_between

# Venues whose perpetual futures publish a funding history (a market's ``funding: venue``).
FUNDING_VENUES = frozenset({"kraken_futures"})
FUNDING_SCHEMA = pa.schema([
    pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("rate", pa.float64(), nullable=False),
])
# A relative rate beyond this per period is not a funding rate but a unit mistake (a percent
# served as a fraction); ccxt clamps Kraken's current rates to the same bound.
MAX_ABS_RATE = 0.25


class FundingDataError(TradeCoreError, ValueError):
    """A funding table is malformed (the message names the market, month and row)."""


class MissingFundingError(TradeCoreError, FileNotFoundError):
    """A funding partition a frame needs is not in the lake."""


def funding_key(market: Market, month: Month) -> str:
    """The lake-relative key of a market's funding partition of ``month``."""
    return (f"{market.venue}/{market.pair_dir}/funding/"
            f"year={month.year:04d}/month={month.month:02d}/part-0.parquet")


def funding_table(ts_ms: np.ndarray, rate: np.ndarray) -> pa.Table:
    """A table in :data:`FUNDING_SCHEMA` from (P,) int64 epoch-ms times and (P,) rates."""
    return pa.table({
        "ts": pa.array(np.asarray(ts_ms, dtype=np.int64), pa.int64()).cast(FUNDING_SCHEMA[0].type),
        "rate": pa.array(np.asarray(rate, dtype=np.float64), pa.float64()),
    }, schema=FUNDING_SCHEMA)


def validate_funding(table: pa.Table, market_name: str, month: Month) -> pa.Table:
    """``table`` checked against the funding rules, cast to :data:`FUNDING_SCHEMA`.

    Raises:
        FundingDataError: wrong columns, a null, a time outside ``month``, times not strictly
            increasing, or a rate that is not finite or beyond ``±MAX_ABS_RATE``; the message
            names the market, the month and the first offending row.
    """
    where = f"{market_name} funding {month}"
    if table.column_names != FUNDING_SCHEMA.names:
        raise FundingDataError(f"{where}: columns {table.column_names}, expected "
                               f"{FUNDING_SCHEMA.names}")
    if any(table[name].null_count for name in FUNDING_SCHEMA.names):
        raise FundingDataError(f"{where}: null values in ts or rate")
    try:
        table = table.cast(FUNDING_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise FundingDataError(f"{where}: cannot be read as {FUNDING_SCHEMA}: {exc}") from None
    ts = table["ts"].cast(pa.int64()).to_numpy()
    rate = table["rate"].to_numpy()
    checks = (
        ((ts < month.start_ms) | (ts >= month.end_ms), "has a time outside the month"),
        (np.concatenate([[False], np.diff(ts) <= 0]), "is not after the row before it"),
        (~np.isfinite(rate) | (np.abs(rate) > MAX_ABS_RATE),
         f"has a rate that is not finite or beyond ±{MAX_ABS_RATE} per period"),
    )
    for bad, what in checks:
        if bad.any():
            row = int(np.argmax(bad))
            raise FundingDataError(f"{where}: row {row} (ts {iso_utc(int(ts[row]))}, rate "
                                   f"{rate[row]!r}) {what}")
    return table


@dataclass(frozen=True)
class FundingHistory:
    """A contract's funding periods as the venue served them, and how they were fetched.

    Attributes:
        ts_ms: (P,) int64 period times, epoch milliseconds, strictly increasing.
        rate: (P,) float64 relative rates per period (fraction of notional a long pays).
        metadata: provenance for partition metadata (requests, retries, endpoint...).
    """

    ts_ms: np.ndarray
    rate: np.ndarray
    metadata: dict[str, Any]

    def month_table(self, month: Month) -> pa.Table:
        """The periods of ``month`` as a :data:`FUNDING_SCHEMA` table."""
        inside = (self.ts_ms >= month.start_ms) & (self.ts_ms < month.end_ms)
        return funding_table(self.ts_ms[inside], self.rate[inside])


def fetch_funding_history(market: Market, *, now_ms: int, log: Callable[[str], None]
                          ) -> FundingHistory:
    """Every funding period of ``market`` before ``now_ms`` (UTC ms), from its venue.

    Kraken Futures serves the whole history in one response (ccxt filters ``since`` and
    ``limit`` on the client), so a run fetches it once for all the months it writes.

    Raises:
        FundingDataError: the venue has no funding history (not a perpetual futures market).
        KrakenPermanentError / KrakenUnavailableError: as every Kraken call (see
            :mod:`tradecore_lib.sources.kraken_client`), a malformed period included.
    """
    if market.venue not in FUNDING_VENUES:
        raise FundingDataError(f"market {market.name}: venue {market.venue!r} publishes no "
                               f"funding history (venues that do: {sorted(FUNDING_VENUES)})")
    # ccxt loads only when a funding history is fetched, never when markets.yaml is validated.
    from tradecore_lib.sources import ccxt_version, source_options
    from tradecore_lib.sources.ccxt_client import resolve_symbol
    from tradecore_lib.sources.kraken_client import KrakenPermanentError, connect

    started = time.monotonic()
    what = f"{market.name} funding"
    client = connect(market.venue, source_options(market), what=what)
    resolve_symbol(client, market.symbol, what=what)
    call = f"{what}: historical funding rates"
    rows = client.call(call, client.exchange.fetch_funding_rate_history, market.symbol)
    # ccxt reads a body it cannot parse as JSON (or one without "rates") as an empty history;
    # an empty history must be one Kraken served, not a payload nobody could read.
    body = client.exchange.last_json_response
    if not isinstance(body, dict) or not isinstance(body.get("rates"), list):
        served = str(client.exchange.last_http_response or "")[:120]
        raise KrakenPermanentError(f"{call}: malformed payload, not Kraken's JSON "
                                   f"{{\"rates\": [...]}} (body begins {served!r})",
                                   malformed=True)
    ts_ms = np.empty(len(rows), dtype=np.int64)
    rate = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        stamp, value = row.get("timestamp"), row.get("fundingRate")
        if not isinstance(stamp, int) or not isinstance(value, (int, float)) or not (
                abs(value) <= MAX_ABS_RATE):
            raise KrakenPermanentError(
                f"{call}: malformed payload, period {i} of {len(rows)} is {row.get('info')} "
                f"(needs an ISO-8601 timestamp and a relative funding rate within "
                f"±{MAX_ABS_RATE})", malformed=True)
        ts_ms[i], rate[i] = stamp, value
    order = np.argsort(ts_ms, kind="stable")
    ts_ms, rate = ts_ms[order], rate[order]
    repeated = np.flatnonzero(np.diff(ts_ms) == 0)
    if repeated.size:
        raise KrakenPermanentError(f"{call}: malformed payload, the period at "
                                   f"{iso_utc(int(ts_ms[repeated[0]]))} is served twice",
                                   malformed=True)
    before_now = ts_ms < now_ms
    ts_ms, rate = ts_ms[before_now], rate[before_now]
    log(f"{what}: {ts_ms.size} periods"
        + (f" from {iso_utc(int(ts_ms[0]))} to {iso_utc(int(ts_ms[-1]))}" if ts_ms.size else ""))
    metadata = {
        "source": market.venue,
        "endpoint_kind": "historical funding rates",
        "api_url": client.api_url,
        "requests": client.stats.requests,
        "retries": client.stats.retries,
        "history_periods": int(ts_ms.size),
        "ccxt_version": ccxt_version(),
        "fetch_seconds": round(time.monotonic() - started, 3),
    }
    return FundingHistory(ts_ms, rate, metadata)


@dataclass(frozen=True)
class PublishedFunding:
    """One stored funding month and its summary (for partition metadata)."""

    month: Month
    stored: StoredFile
    periods: int
    rate_sum: float
    first_ts_ms: int | None
    last_ts_ms: int | None
    longest_spacing_hours: float | None
    preview: pa.Table


def publish_funding_month(lake: Lake, market: Market, month: Month, history: FundingHistory
                          ) -> PublishedFunding:
    """Validate and atomically write the periods of ``month`` of ``history``.

    A month with no periods (before the contract's first funding, or the first minutes of the
    current month) is written empty: the lake then says "no funding", not "not fetched".
    """
    table = validate_funding(history.month_table(month), market.name, month)
    stored = lake.write_table(funding_key(market, month), table)
    ts = table["ts"].cast(pa.int64()).to_numpy()
    return PublishedFunding(
        month=month, stored=stored, periods=table.num_rows,
        rate_sum=float(table["rate"].to_numpy().sum()),
        first_ts_ms=int(ts[0]) if ts.size else None,
        last_ts_ms=int(ts[-1]) if ts.size else None,
        longest_spacing_hours=float(np.diff(ts).max()) / 3_600_000 if ts.size > 1 else None,
        preview=table.slice(0, 5),
    )


def read_funding(lake: Lake, market: Market, months: list[Month]
                 ) -> tuple[np.ndarray, np.ndarray, list[StoredFile]]:
    """The stored periods of ``months``: (P,) int64 ts in ms, (P,) rates, and the files read
    (for lineage), in month order.

    Raises:
        MissingFundingError: naming every absent month and the asset to materialize.
        FundingDataError: a stored file breaks the funding rules.
    """
    months = sorted(months)
    missing = [str(m) for m in months if not lake.exists(funding_key(market, m))]
    if missing:
        raise MissingFundingError(
            f"{market.name}: funding partitions of {missing} are not in the lake "
            f"({lake.uri(funding_key(market, Month.parse(missing[0])))}...); materialize "
            f"{market.name}/funding for those months, or set holding_costs.funding to 'none' "
            "or a constant in configs/markets.yaml")
    stamps, rates, files = [], [], []
    for month in months:
        table, stored = lake.read_stored(funding_key(market, month))
        table = validate_funding(table, market.name, month)
        stamps.append(table["ts"].cast(pa.int64()).to_numpy())
        rates.append(table["rate"].to_numpy())
        files.append(stored)
    return (np.concatenate(stamps) if stamps else np.empty(0, np.int64),
            np.concatenate(rates) if rates else np.empty(0), files)


def funding_per_bar(bar_ts_ms: np.ndarray, bar_ms: int, funding_ts_ms: np.ndarray,
                    rates: np.ndarray) -> np.ndarray:
    """(T,) float64: the funding charged at each bar, a fraction of the position's notional
    (positive: a long pays, a short receives).

    Args:
        bar_ts_ms: (T,) int64 bar open times, epoch ms, strictly increasing.
        bar_ms: the length of one bar in ms (60_000 for the lake's candles).
        funding_ts_ms: (P,) int64 funding period times, epoch ms.
        rates: (P,) float64 relative funding rates per period.

    Each period's rate goes to the bar its time falls in: the last bar with ``ts <=`` the
    period's time (inside a gap, the bar before it), provided the time is before the end of
    the frame's last bar; periods before the first bar or after the last are not charged.
    Two periods in one bar add up.
    """
    bar_ts_ms = np.asarray(bar_ts_ms, dtype=np.int64)
    funding_ts_ms = np.asarray(funding_ts_ms, dtype=np.int64)
    charges = np.zeros(bar_ts_ms.size)
    if not bar_ts_ms.size or not funding_ts_ms.size:
        return charges
    bar = np.searchsorted(bar_ts_ms, funding_ts_ms, side="right") - 1
    inside = (bar >= 0) & (funding_ts_ms < bar_ts_ms[-1] + bar_ms)
    charges += np.bincount(bar[inside], weights=np.asarray(rates, np.float64)[inside],
                           minlength=bar_ts_ms.size)
    return charges


def funding_charge_column(lake: Lake, market: Market, bar_ts_ms: np.ndarray
                          ) -> tuple[np.ndarray, dict[Month, StoredFile]]:
    """The engine's ``funding_charge`` frame column charging ``market``'s stored funding.

    Args:
        bar_ts_ms: (T,) int64 open times of a frame of the lake's one-minute candles, epoch
            ms, strictly increasing (any months, contiguous or not).

    Returns:
        (T,) float64 column and the funding file read for each month the bars touch. Each bar
        holds the summed rates of the periods falling in it (:func:`funding_per_bar`, bars of
        the lake's one-minute grid); bars without a period hold 0.

    Raises:
        MissingFundingError: a month the bars touch has no funding partition.
    """
    bar_ts_ms = np.asarray(bar_ts_ms, dtype=np.int64)
    if not bar_ts_ms.size:
        return np.zeros(0), {}
    months = months_between(Month.of_ms(int(bar_ts_ms[0])), Month.of_ms(int(bar_ts_ms[-1])))
    ts, rates, files = read_funding(lake, market, months)
    charges = funding_per_bar(bar_ts_ms, MINUTE_MS, ts, rates)
    return charges, dict(zip(months, files, strict=True))
