"""The lake: designed layout, atomic replace, crash safety; local folder and S3 on loopback."""

import hashlib
import os
import posixpath
import time

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tradecore_lib.lake import (
    STALE_TEMP_SECONDS,
    Lake,
    candle_key,
    parquet_bytes,
    write_atomically,
)
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month

DAY = generate_month(SyntheticOptions(), "synthetic_btc_usd", Month(2024, 2)).slice(0, 1440)


@pytest.fixture(params=["local", "s3"])
def lake(request, local_lake, s3_endpoint) -> Lake:
    return local_lake if request.param == "local" else request.getfixturevalue("s3_lake")


def test_candle_key_is_the_designed_hive_path():
    market = get_market("kraken_futures_btc_usd")
    assert candle_key(market, Month(2024, 2)) == (
        "kraken_futures/BTC-USD/1m/year=2024/month=02/part-0.parquet"
    )


def test_write_read_roundtrip_and_checksum(lake):
    key = "synthetic/BTC-USD/1m/year=2024/month=02/part-0.parquet"
    stored = lake.write_table(key, DAY)
    assert stored.rows == DAY.num_rows
    assert stored.sha256 == hashlib.sha256(parquet_bytes(DAY)).hexdigest()
    table, described = lake.read_stored(key)
    assert table.equals(DAY)
    assert described.sha256 == stored.sha256 and described.size_bytes == stored.size_bytes
    assert lake.exists(key)


def test_rewrite_replaces_whole_and_leaves_one_file(lake):
    key = "synthetic/BTC-USD/1m/year=2024/month=02/part-0.parquet"
    lake.write_table(key, DAY)
    lake.write_table(key, DAY.slice(0, 10))
    assert lake.read_table(key).num_rows == 10
    assert _files_beside(lake, key) == ["part-0.parquet"]


def _files_beside(lake: Lake, key: str) -> list[str]:
    folder = lake.uri(key).rsplit("/", 1)[0].removeprefix("s3://")
    return sorted(info.base_name for info in lake.fs.get_file_info(pafs.FileSelector(folder)))


class _Boom(RuntimeError):
    pass


def test_crash_mid_write_leaves_old_partition_intact(lake, monkeypatch):
    key = "synthetic/BTC-USD/1m/year=2024/month=02/part-0.parquet"
    lake.write_table(key, DAY)
    before = lake.read_bytes(key)

    real_open = lake.fs.open_output_stream

    class HalfWriter:
        def __init__(self, stream):
            self._stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._stream.close()

        def write(self, data):
            self._stream.write(data[: len(data) // 2])
            raise _Boom("disk vanished mid-write")

    class CrashingFs:
        def __getattr__(self, name):
            return getattr(lake_fs, name)

        def open_output_stream(self, path):
            return HalfWriter(real_open(path))

    lake_fs = lake.fs
    monkeypatch.setattr(lake, "fs", CrashingFs())
    with pytest.raises(_Boom):
        lake.write_table(key, DAY.slice(0, 5))
    monkeypatch.setattr(lake, "fs", lake_fs)
    assert lake.read_bytes(key) == before
    assert _files_beside(lake, key) == ["part-0.parquet"], "the temporary file must be removed"


def test_hive_layout_is_readable_as_a_dataset(local_lake):
    market = get_market("synthetic_btc_usd")
    for month in (Month(2024, 1), Month(2024, 2)):
        local_lake.write_table(
            candle_key(market, month),
            generate_month(SyntheticOptions(), market.name, month).slice(0, 100),
        )
    dataset = pq.ParquetDataset(local_lake.uri("synthetic/BTC-USD/1m"))
    table = dataset.read()
    assert table.num_rows == 200
    assert sorted(set(table.column("month").to_pylist())) == [1, 2]


def test_corrupt_file_is_named(local_lake):
    key = "x/part-0.parquet"
    local_lake.write_bytes(key, b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match="x/part-0.parquet is not a readable parquet file"):
        local_lake.read_table(key)
    with pytest.raises(FileNotFoundError, match="lake object not found"):
        local_lake.read_table("missing.parquet")


KEY = "synthetic/BTC-USD/1m/year=2024/month=02/part-0.parquet"


def _leftover(lake: Lake, name: str) -> str:
    """A temporary as a writer killed between write and rename leaves it."""
    folder = lake.uri(KEY).rsplit("/", 1)[0].removeprefix("s3://")
    path = f"{folder}/{name}"
    with lake.fs.open_output_stream(path) as out:
        out.write(b"half a parquet file")
    return path


def test_a_write_removes_stale_temporaries_of_its_folder(local_lake):
    lake = local_lake
    lake.write_table(KEY, DAY)
    stale = _leftover(lake, f".part-0.parquet.{'a' * 32}.tmp")
    hour_ago = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (hour_ago, hour_ago))
    fresh = _leftover(lake, f".part-0.parquet.{'b' * 32}.tmp")  # another writer, mid-write
    lake.write_table(KEY, DAY.slice(0, 10))
    assert _files_beside(lake, KEY) == [posixpath.basename(fresh), "part-0.parquet"]
    assert lake.read_table(KEY).num_rows == 10


def test_stale_temporaries_on_s3_go_too(s3_lake):
    s3_lake.write_table(KEY, DAY)
    _leftover(s3_lake, f".part-0.parquet.{'c' * 32}.tmp")
    not_ours = _leftover(s3_lake, "notes.tmp")
    later = time.time() + 2 * STALE_TEMP_SECONDS  # S3 has no utime: judge from the future
    write_atomically(s3_lake.fs, not_ours.rsplit("/", 1)[0] + "/part-0.parquet",
                     parquet_bytes(DAY), now=later)
    assert _files_beside(s3_lake, KEY) == ["notes.tmp", "part-0.parquet"]
