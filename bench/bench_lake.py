"""Synthetic generation and lake write/read of 1,051,200 candles (24 monthly partitions).

Peers, measured in the same run: pyarrow's own ``pq.write_table`` / ``pq.read_table`` of the
same rows as ONE file, with the lake's parquet options (zstd, no dictionary) and with
pyarrow's defaults. The lake does more (24 files, atomic temporary-then-rename, sha256 of
every file), so the ratio to the same-options peer shows what that costs.
Target: lake within 1.5x of raw pyarrow. Times are best of N rounds (the machine is shared).

    .venv/bin/python bench/bench_lake.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from timing import best_of

from tradecore_lib.lake import PARQUET_OPTIONS, Lake, candle_key
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month, months_between
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, _skeleton, generate_month

MONTHS = months_between(Month(2025, 1), Month(2026, 12))  # 730 days = 1,051,200 minutes
PARAMS = SyntheticOptions(missing_minute_rate=0.0, outages_per_day=0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    market = get_market("synthetic_btc_usd")

    start = time.perf_counter()
    _skeleton(PARAMS, market.name)
    skeleton_s = time.perf_counter() - start
    generate = lambda: [generate_month(PARAMS, market.name, m) for m in MONTHS]  # noqa: E731
    gen_s = best_of(args.rounds, generate)[0]
    tables = generate()
    full = pa.concat_tables(tables)
    rows = full.num_rows
    assert rows == 1_051_200, rows

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        raw_file = Path(tmp) / "raw.parquet"

        def lake_write() -> None:
            for month, table in zip(MONTHS, tables, strict=True):
                lake.write_table(candle_key(market, month), table)

        def raw_write() -> None:
            pq.write_table(full, raw_file, **PARQUET_OPTIONS)

        def raw_write_defaults() -> None:
            pq.write_table(full, raw_file)

        def lake_read() -> pa.Table:
            return pa.concat_tables([lake.read_table(candle_key(market, m)) for m in MONTHS])

        def raw_read() -> pa.Table:
            return pq.read_table(raw_file)

        results = {}
        for name, fn in [
            ("raw write (defaults)", raw_write_defaults),
            ("raw write", raw_write),
            ("lake write", lake_write),
            ("raw read", raw_read),
            ("lake read", lake_read),
        ]:
            results[name] = best_of(args.rounds, fn)[0]
        assert lake_read().equals(raw_read())

    print(f"rows: {rows:,} in {len(MONTHS)} monthly partitions, best of {args.rounds} rounds")
    print(f"synthetic skeleton (once per seed+market): {skeleton_s * 1000:.0f} ms")
    print(f"{'step':<30}{'seconds':>9}{'rows/s':>14}{'ratio vs raw':>14}")
    print(f"{'synthetic generation':<30}{gen_s:>9.3f}{rows / gen_s:>14,.0f}{'-':>14}")
    defaults = results["raw write (defaults)"]
    print(
        f"{'pyarrow raw write, defaults':<30}{defaults:>9.3f}{rows / defaults:>14,.0f}"
        f"{defaults / results['raw write']:>14.2f}"
    )
    for op in ("write", "read"):
        raw, ours = results[f"raw {op}"], results[f"lake {op}"]
        for label, seconds in ((f"pyarrow raw {op}", raw), (f"lake {op} (24 files)", ours)):
            print(f"{label:<30}{seconds:>9.3f}{rows / seconds:>14,.0f}{seconds / raw:>14.2f}")
    worst = max(
        results["lake write"] / results["raw write"], results["lake read"] / results["raw read"]
    )
    verdict = "met" if worst <= 1.5 else "NOT met"
    print(f"target lake <= 1.5x raw pyarrow: {verdict} (worst {worst:.2f}x)")


if __name__ == "__main__":
    main()
