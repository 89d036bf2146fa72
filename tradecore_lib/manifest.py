"""Dataset manifests: per-month coverage, row counts, gaps and checksums of a market's candles."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.fs as pafs

from tradecore_lib.candles import gap_report, month_complete, ts_millis
from tradecore_lib.lake import Lake, candle_key, write_atomically
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, iso_utc, months_between

# 2: uncovered head/tail minutes and month_complete per month.
MANIFEST_VERSION = 2


@dataclass(frozen=True)
class MonthEntry:
    """One stored month. Timestamps are inclusive ISO-8601 UTC; sizes in bytes.

    ``uncovered_tail_minutes`` are the minutes between the last candle and the month's end (or
    now, for the month in progress); ``month_complete`` is False for a finished month whose
    tail exceeds the market's ``max_uncovered_tail_minutes``, and for the month in progress.
    """

    month: str
    first_ts: str | None
    last_ts: str | None
    rows: int
    missing_minutes: int
    longest_gap_minutes: int
    uncovered_head_minutes: int
    uncovered_tail_minutes: int
    month_complete: bool
    sha256: str
    size_bytes: int
    path: str


def build_manifest(lake: Lake, market: Market, last_month: Month, now_ms: int) -> dict:
    """Describe every stored candle month of ``market`` from its first month to ``last_month``.

    Checksums are computed from the stored bytes, not remembered from the write, so the
    manifest is the truth about what is in the lake now.
    """
    entries: list[MonthEntry] = []
    missing_months: list[str] = []
    for month in months_between(market.first_month, last_month):
        key = candle_key(market, month)
        if not lake.exists(key):
            missing_months.append(str(month))
            continue
        table, stored = lake.read_stored(key)
        ts = ts_millis(table)
        gaps = gap_report(ts, month, now_ms)
        entries.append(
            MonthEntry(
                month=str(month),
                first_ts=iso_utc(int(ts[0])) if ts.size else None,
                last_ts=iso_utc(int(ts[-1])) if ts.size else None,
                rows=int(ts.size),
                missing_minutes=gaps.missing_minutes,
                longest_gap_minutes=gaps.longest_gap_minutes,
                uncovered_head_minutes=gaps.uncovered_head_minutes,
                uncovered_tail_minutes=gaps.uncovered_tail_minutes,
                month_complete=month_complete(gaps, month, market.gap_tolerance, now_ms),
                sha256=stored.sha256,
                size_bytes=stored.size_bytes,
                path=stored.uri,
            )
        )
    return {
        "manifest_version": MANIFEST_VERSION,
        "market": market.name,
        "venue": market.venue,
        "symbol": market.symbol,
        "lake_root": lake.root,
        "generated_at": iso_utc(now_ms),
        "months": [asdict(e) for e in entries],
        "missing_months": missing_months,
        "incomplete_months": [e.month for e in entries if not e.month_complete],
        "totals": {
            "months": len(entries),
            "rows": sum(e.rows for e in entries),
            "missing_minutes": sum(e.missing_minutes for e in entries),
            "size_bytes": sum(e.size_bytes for e in entries),
            "first_ts": entries[0].first_ts if entries else None,
            "last_ts": entries[-1].last_ts if entries else None,
        },
    }


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write ``<folder>/<market>.json`` atomically (see :func:`.lake.write_atomically`)."""
    target = folder / f"{manifest['market']}.json"
    body = (json.dumps(manifest, indent=2) + "\n").encode()
    write_atomically(pafs.LocalFileSystem(), str(target.resolve()), body)
    return target
