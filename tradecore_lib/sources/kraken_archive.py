"""Kraken's downloadable OHLCVT archives: parse, split by month, serve as a candle source.

Kraken publishes one CSV per pair and interval, zipped (the full ``Kraken_OHLCVT.zip`` or one
pair's ZIP), named ``<PAIR>_<interval minutes>.csv`` with Kraken's pair altnames
(``XBTUSD_1.csv``: Kraken says XBT for bitcoin). Rows have no header and seven columns:
unix time in seconds, open, high, low, close, volume (base currency), trades.

Only the 1-minute file is imported. A file may also be named after the market
(``kraken_spot_btc_usd.csv``). Rows with no trades (a flat fill) are dropped: a minute without
trades is a missing row in TradeCore. Malformed input raises :class:`ArchiveFormatError`
naming the file, the ZIP member and the 1-based line.
"""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tradecore_lib.candles import candle_table, inspect_ohlc, ts_millis
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.markets import Market
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources import FetchResult, ccxt_version

INTERVAL_MINUTES = 1
COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades")
# Kraken's altnames where they differ from the ccxt/ISO code.
_KRAKEN_ASSET_NAMES = {"BTC": "XBT", "DOGE": "XDG"}


class ArchiveFormatError(TradeCoreError, ValueError):
    """An archive file is not a Kraken OHLCVT file; the message names file, member and line."""


class ArchiveMissingError(TradeCoreError, FileNotFoundError):
    """The archive file to import does not exist (any more)."""


def archive_names(market: Market) -> tuple[str, ...]:
    """File names (or ZIP member base names) that hold ``market``'s 1-minute archive."""
    if market.venue != "kraken_spot":
        return ()
    base = _KRAKEN_ASSET_NAMES.get(market.base, market.base)
    quote = _KRAKEN_ASSET_NAMES.get(market.quote, market.quote)
    return (f"{base}{quote}_{INTERVAL_MINUTES}.csv", f"{market.name}.csv")


def archive_member(path: Path, market: Market, stream: BinaryIO) -> str | None:
    """The CSV holding ``market`` in the open file ``stream`` named ``path``: ``""`` for a plain
    CSV of that name, a ZIP member's name, or None when the file holds no such archive."""
    names = {n.lower() for n in archive_names(market)}
    if path.suffix.lower() == ".csv":
        return "" if path.name.lower() in names else None
    try:
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            members = [m for m in archive.namelist()
                       if PurePosixPath(m).name.lower() in names and not m.startswith("__MACOSX")]
    except zipfile.BadZipFile as exc:
        raise ArchiveFormatError(f"{path}: not a readable ZIP file ({exc})") from None
    if len(members) > 1:
        raise ArchiveFormatError(f"{path}: several members hold {market.name}: {members}")
    return members[0] if members else None


def sha256_stream(stream: BinaryIO) -> str:
    """Hex sha256 of an open file from its start, read in 1 MiB blocks."""
    stream.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def read_member(stream: BinaryIO, member: str) -> bytes:
    """The bytes of an open plain CSV (``member == ""``) or of one of its ZIP members."""
    stream.seek(0)
    if not member:
        return stream.read()
    with zipfile.ZipFile(stream) as archive:
        return archive.read(member)


def parse_ohlcvt(data: bytes, *, where: str) -> pa.Table:
    """Parse OHLCVT CSV bytes into the candle schema, sorted, zero-trade rows dropped.

    ``where`` names the file (and member) in errors. Raises :class:`ArchiveFormatError` for a
    wrong column count, a non-numeric value, a time off the minute grid, times not strictly
    increasing, or OHLC values that break the candle rules, naming the first bad line.
    """

    invalid: list[pacsv.InvalidRow] = []

    def wrong_width(row: pacsv.InvalidRow) -> str:
        # pyarrow swallows exceptions raised here; note the row and raise after the read.
        invalid.append(row)
        return "skip"

    try:
        raw = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=list(COLUMNS)),
            parse_options=pacsv.ParseOptions(invalid_row_handler=wrong_width),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in COLUMNS}
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ArchiveFormatError(f"{where}: not a CSV file: {exc}") from exc
    if invalid:
        row = invalid[0]
        # pyarrow does not number the row; find its line in the bytes (error path only).
        line = next(i for i, text in enumerate(data.splitlines(), start=1)
                    if text.decode(errors="replace") == row.text)
        raise ArchiveFormatError(
            f"{where}: line {line}: {row.actual_columns} columns, expected 7 "
            f"(time, open, high, low, close, volume, trades): {row.text[:120]!r}"
        )
    if raw.num_rows == 0:
        raise ArchiveFormatError(f"{where}: no rows")
    numbers = {name: _numeric(raw.column(name), name, where) for name in COLUMNS}
    time_s, count = numbers["time"], numbers["trades"]
    problems = [
        ("time is not a whole minute (unix seconds, 1-minute file expected)",
         np.flatnonzero((time_s % 60 != 0) | (time_s != np.floor(time_s)))),
        ("time is not after the previous row (rows must be sorted and unique)",
         np.flatnonzero(np.diff(time_s) <= 0) + 1),
        ("trades is not a whole number >= 0",
         np.flatnonzero((count < 0) | (count != np.floor(count)))),
    ]
    for rule, rows in problems:
        if rows.size:
            raise ArchiveFormatError(f"{where}: line {int(rows[0]) + 1}: {rule}: "
                                     f"{_line(raw, int(rows[0]))}")
    trades = count.astype(np.int64)
    traded = trades > 0
    table = candle_table(
        (time_s[traded] * 1000).astype(np.int64),
        *(numbers[c][traded] for c in ("open", "high", "low", "close", "volume")),
        trades[traded],
    )
    sanity = inspect_ohlc(table)
    if not sanity.passed:
        row = int(np.flatnonzero(traded)[sanity.metadata["first_offending_rows"][0]["row"]])
        rule = sanity.description.split(" with ")[-1]
        raise ArchiveFormatError(f"{where}: line {row + 1}: {rule}: {_line(raw, row)}")
    return table


def _numeric(column: pa.ChunkedArray, name: str, where: str) -> np.ndarray:
    """A string column as float64; the first non-number is reported by line."""
    try:
        return pc.cast(column, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        # The fast cast does not say where; find the first offending row the slow way.
        values = pd.to_numeric(pd.Series(column.to_pylist(), dtype=object), errors="coerce")
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        hint = " (Kraken OHLCVT files have no header row)" if row == 0 else ""
        raise ArchiveFormatError(
            f"{where}: line {row + 1}: column {name!r} is {column[row].as_py()!r}, "
            f"not a number{hint}"
        ) from None


def _line(raw: pa.Table, row: int) -> str:
    return ",".join(str(raw.column(c)[row].as_py()) for c in COLUMNS)


def split_by_month(table: pa.Table) -> dict[Month, pa.Table]:
    """Zero-copy slices of a sorted candle table, one per month it touches."""
    ts = ts_millis(table)
    if ts.size == 0:
        return {}
    months: dict[Month, pa.Table] = {}
    month = Month.of_ms(int(ts[0]))
    while month.start_ms <= ts[-1]:
        lo, hi = np.searchsorted(ts, [month.start_ms, month.end_ms])
        if hi > lo:
            months[month] = table.slice(int(lo), int(hi - lo))
        month = month.next()
    return months


@dataclass(frozen=True)
class ParsedArchive:
    """One market's candles from one archive file, split by month."""

    path: Path
    member: str
    sha256: str
    months: dict[Month, pa.Table]

    @property
    def where(self) -> str:
        return f"{self.path}" + (f" (member {self.member})" if self.member else "")


def parse_archive(
    path: Path, market: Market, *, stream: BinaryIO | None = None, sha256: str | None = None
) -> ParsedArchive:
    """Read and parse ``market``'s 1-minute candles from a CSV or ZIP archive.

    Digest and candles come from one open file (``stream`` when given, else ``path`` opened
    once), so they describe the same bytes even if the file at ``path`` is replaced meanwhile.
    ``sha256`` is that file's digest when the caller has already computed it.
    """
    if stream is None:
        if not path.is_file():
            raise ArchiveMissingError(f"archive file not found: {path}")
        with path.open("rb") as opened:
            return parse_archive(path, market, stream=opened, sha256=sha256)
    member = archive_member(path, market, stream)
    if member is None:
        raise ArchiveFormatError(
            f"{path}: holds no 1-minute archive of {market.name}; expected a file or ZIP member "
            f"named one of {list(archive_names(market))}"
        )
    digest = sha256 or sha256_stream(stream)
    where = f"{path}" + (f" (member {member})" if member else "")
    data = read_member(stream, member)
    return ParsedArchive(path, member, digest, split_by_month(parse_ohlcvt(data, where=where)))


class KrakenArchiveSource:
    """:class:`~tradecore_lib.sources.CandleSource` serving the months of one archive file.

    The file is parsed once per market, on the first month asked for, and every later month
    of the run is a slice of that parse.
    """

    def __init__(self, archive_file: str | Path) -> None:
        self.path = Path(archive_file).expanduser().resolve()
        self._parsed: dict[str, ParsedArchive] = {}

    def fetch_month(
        self, market: Market, month: Month, *, now_ms: int, log: Callable[[str], None]
    ) -> FetchResult:
        """The archive's candles of ``month`` closed before ``now_ms`` (UTC ms)."""
        started = time.monotonic()
        if market.name not in self._parsed:
            log(f"{market.name}: parsing archive {self.path}")
            self._parsed[market.name] = parse_archive(self.path, market)
        parsed = self._parsed[market.name]
        table = parsed.months.get(month)
        if table is None:
            log(f"{market.name} {month}: the archive {parsed.where} has no candles in this month")
            table = candle_table(*(np.empty(0),) * 6, np.empty(0, dtype=np.int64))
        closed = now_ms - now_ms % MINUTE_MS
        ts = ts_millis(table)
        table = table.slice(0, int(np.searchsorted(ts, closed - MINUTE_MS, side="right")))
        metadata: dict[str, Any] = {
            "source": "kraken_archive",
            "endpoint_kind": "archive",
            "archive_file": str(parsed.path),
            "archive_member": parsed.member or "-",
            "archive_sha256": parsed.sha256,
            "requests": 0,
            "retries": 0,
            "trades_read": int(pc.sum(table.column("trades")).as_py() or 0),
            "ccxt_version": ccxt_version(),
            "fetch_seconds": round(time.monotonic() - started, 3),
        }
        return FetchResult(table, metadata)
