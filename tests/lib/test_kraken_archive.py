"""Kraken OHLCVT archives: parsing, month split, errors by file and line, the archive source."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import kraken_market
from tests.fakes.kraken_server import generate_trades, python_candles
from tradecore_lib.candles import ts_millis
from tradecore_lib.ingest import ingest_month
from tradecore_lib.lake import candle_key
from tradecore_lib.months import Month
from tradecore_lib.sources import source_for
from tradecore_lib.sources.kraken_archive import (
    ArchiveFormatError,
    KrakenArchiveSource,
    parse_ohlcvt,
)

FEB, MAR = Month(2024, 2), Month(2024, 3)


def archive_lines(first: Month = FEB, last: Month = MAR, seed: int = 3) -> list[str]:
    """Kraken OHLCVT rows (no header) of a seeded trade history over ``first``..``last``."""
    trades = generate_trades(seed, first.start_ms, last.end_ms, mean_gap_s=600.0)
    rows = python_candles(trades, first.start_ms, last.end_ms)
    lines = [
        f"{r['ts'] // 1000},{r['o'] / 10},{r['h'] / 10},{r['l'] / 10},{r['c'] / 10},"
        f"{r['v'] / 1e8:.8f},{r['n']}"
        for r in rows
    ]
    # A flat zero-trade fill in the first empty minute, which TradeCore leaves out.
    after = next(i for i in range(len(rows) - 1) if rows[i + 1]["ts"] - rows[i]["ts"] > 60_000)
    close = rows[after]["c"] / 10
    lines.insert(after + 1, f"{rows[after]['ts'] // 1000 + 60},{close},{close},{close},{close},"
                            "0.00000000,0")
    return lines


def write_zip(path: Path, lines: list[str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("XBTUSD_1.csv", "\n".join(lines) + "\n")
        archive.writestr("XBTUSD_5.csv", "not,the,one\n")
        archive.writestr("ETHUSD_1.csv", "\n".join(lines[:5]) + "\n")
    return path


def test_zip_months_served_and_published(tmp_path, local_lake):
    lines = archive_lines()
    path = write_zip(tmp_path / "XBTUSD_OHLCVT.zip", lines)
    market = kraken_market("kraken_spot")
    source = source_for(market, lake=local_lake, archive_file=str(path))
    assert isinstance(source, KrakenArchiveSource)
    now_ms = MAR.end_ms + 86_400_000
    published = [ingest_month(local_lake, source, market, m, now_ms=now_ms, log=lambda _: None)
                 for m in (FEB, MAR)]
    assert sum(p.stored.rows for p in published) == len(lines) - 1  # the filler is gone
    march = local_lake.read_table(candle_key(market, MAR))
    expected = [line.split(",") for line in lines if int(line.split(",")[0]) * 1000 >= MAR.start_ms]
    np.testing.assert_array_equal(ts_millis(march), [int(r[0]) * 1000 for r in expected])
    np.testing.assert_array_equal(march.column("close").to_numpy(), [float(r[4]) for r in expected])
    np.testing.assert_array_equal(march.column("trades").to_numpy(), [int(r[6]) for r in expected])
    meta = published[1].source_metadata
    assert meta["endpoint_kind"] == "archive" and meta["archive_member"] == "XBTUSD_1.csv"
    assert meta["archive_file"] == str(path.resolve()) and len(meta["archive_sha256"]) == 64


def test_current_month_cut_at_the_last_closed_minute(tmp_path):
    lines = archive_lines()
    path = tmp_path / "XBTUSD_1.csv"
    path.write_text("\n".join(lines))
    cut = int(lines[-5].split(",")[0]) * 1000
    market = kraken_market("kraken_spot")
    table = KrakenArchiveSource(path).fetch_month(market, MAR, now_ms=cut + 30_000,
                                                  log=lambda _: None).table
    assert ts_millis(table)[-1] == int(lines[-6].split(",")[0]) * 1000


@pytest.mark.parametrize(
    "line, expected",
    [
        ("1709251200,1,2,0.5,1.5,3", "line 3: 6 columns, expected 7"),
        ("1709251200,1,2,abc,1.5,3,4", "line 3: column 'low' is 'abc', not a number"),
        ("1709251230,1,2,0.5,1.5,3,4", "line 3: time is not a whole minute"),
        ("1709251080,1,2,0.5,1.5,3,4", "line 3: time is not after the previous row"),
        ("1709251200,1,0.9,0.5,1.5,3,4", "line 3: high below max(open, close)"),
        ("1709251200,1,2,0.5,1.5,3,2.5", "line 3: trades is not a whole number"),
    ],
)
def test_malformed_rows_named_by_file_and_line(line, expected):
    rows = ["1709251080,1,2,0.5,1.5,3,4", "1709251140,1,2,0.5,1.5,3,4", line]
    with pytest.raises(ArchiveFormatError) as failure:
        parse_ohlcvt(("\n".join(rows) + "\n").encode(), where="XBTUSD_1.csv")
    assert str(failure.value).startswith("XBTUSD_1.csv: ") and expected in str(failure.value)


def test_header_row_is_explained():
    data = b"time,open,high,low,close,volume,trades\n1709251080,1,2,0.5,1.5,3,4\n"
    with pytest.raises(ArchiveFormatError, match="line 1: .*no header row"):
        parse_ohlcvt(data, where="x.csv")


def test_file_without_the_market_is_rejected(tmp_path):
    path = tmp_path / "ETHUSD_1.csv"
    path.write_text("\n".join(archive_lines()))
    source = KrakenArchiveSource(path)
    with pytest.raises(ArchiveFormatError, match="no 1-minute archive of kraken_spot_btc_usd"):
        source.fetch_month(kraken_market("kraken_spot"), MAR, now_ms=MAR.end_ms, log=print)
