"""The parquet lake: one code path for a local folder and ``s3://`` roots (pyarrow file systems).

Partition layout (hive style, readable by pyarrow.dataset, DuckDB, Polars, Spark)::

    <lake_root>/<venue>/<BASE-QUOTE>/1m/year=YYYY/month=MM/part-0.parquet

Every write is atomic: the bytes go to a hidden temporary object in the same folder and are
then moved over the final name (``rename`` locally, a server-side copy on S3), so a reader
sees the old partition or the new one, never a half-written file, and a crash mid-write
leaves the old partition intact. Hidden names (leading ``.``) are skipped by pyarrow.dataset.
A process killed between the write and the move leaves its temporary object behind; the next
write into the same folder removes temporaries older than :data:`STALE_TEMP_SECONDS` (younger
ones may belong to a writer still at work). :func:`write_atomically` is the one atomic write of
the project: the lake, the manifests and the landing folder's records all use it.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tradecore_lib.markets import Market
from tradecore_lib.months import Month

# Dictionary encoding is off: minute prices and volumes are high-cardinality, so per-month
# dictionaries cost time and made files ~40% larger in bench/bench_lake.py.
PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": False}
# A temporary of the atomic write is this old (seconds) before a later write may remove it:
# far longer than writing one file takes, so a concurrent writer's temporary is never touched.
STALE_TEMP_SECONDS = 3600.0
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


def write_atomically(
    fs: pafs.FileSystem,
    path: str,
    data: bytes,
    *,
    stale_after_s: float = STALE_TEMP_SECONDS,
    now: float | None = None,
) -> None:
    """Replace the file at ``path`` on ``fs`` with ``data``, atomically for readers.

    The bytes go to ``.<name>.<uuid>.tmp`` beside ``path`` and are then moved over it; a
    failure removes the temporary and leaves ``path`` as it was. Afterwards, temporaries in
    the same folder older than ``stale_after_s`` seconds (at ``now``, UTC epoch seconds) are
    removed: they were left by a writer killed between write and move.
    """
    folder, name = posixpath.split(path)
    temporary = posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(folder, recursive=True)
    try:
        with fs.open_output_stream(temporary) as out:
            out.write(data)
        fs.move(temporary, path)
    except BaseException:
        _discard(fs, temporary)
        raise
    remove_stale_temporaries(fs, folder, older_than_s=stale_after_s, now=now)


def remove_stale_temporaries(
    fs: pafs.FileSystem, folder: str, *, older_than_s: float, now: float | None = None
) -> list[str]:
    """Delete the atomic-write temporaries in ``folder`` older than ``older_than_s`` seconds;
    returns their paths. Other files, and younger temporaries, are left alone."""
    cutoff_ns = int(((time.time() if now is None else now) - older_than_s) * 1e9)
    removed = []
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if is_stale_temporary(info, cutoff_ns):
            _discard(fs, info.path)
            removed.append(info.path)
    return removed


def is_stale_temporary(info: pafs.FileInfo, cutoff_ns: int) -> bool:
    """Whether ``info`` is an atomic-write temporary last modified before ``cutoff_ns``
    (epoch ns): the one rule of what a crash leaves behind and may be removed."""
    return (info.type == pafs.FileType.File and _TEMP_NAME.match(info.base_name) is not None
            and info.mtime_ns is not None and info.mtime_ns < cutoff_ns)


def _discard(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass


@dataclass(frozen=True)
class S3Options:
    """Connection settings for ``s3://`` roots; credentials fall back to the AWS chain."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None


@dataclass(frozen=True)
class StoredFile:
    """What was written: the lake-relative key, its size in bytes and sha256."""

    key: str
    uri: str
    size_bytes: int
    sha256: str
    rows: int | None = None


def candle_key(market: Market, month: Month) -> str:
    """The lake-relative key of a market's candle partition."""
    return (
        f"{market.venue}/{market.pair_dir}/1m/"
        f"year={month.year:04d}/month={month.month:02d}/part-0.parquet"
    )


def parquet_bytes(table: pa.Table) -> bytes:
    """Serialize a table to parquet bytes, deterministically for equal tables."""
    sink = io.BytesIO()
    pq.write_table(table, sink, **PARQUET_OPTIONS)
    return sink.getvalue()


class Lake:
    """A lake rooted at a local folder or an ``s3://bucket/prefix`` URI."""

    def __init__(self, root: str, s3: S3Options | None = None) -> None:
        self.root = root.rstrip("/")
        if self.root.startswith("s3://"):
            opts = s3 or S3Options()
            endpoint = opts.endpoint_url
            scheme = None
            if endpoint and "://" in endpoint:
                scheme, endpoint = endpoint.split("://", 1)
            self.fs: pafs.FileSystem = pafs.S3FileSystem(
                endpoint_override=endpoint,
                scheme=scheme or "https",
                region=opts.region,
                access_key=opts.access_key,
                secret_key=opts.secret_key,
                session_token=opts.session_token,
            )
            self._base = self.root[len("s3://") :]
            self.is_local = False
        else:
            self.fs = pafs.LocalFileSystem()
            self._base = str(Path(self.root).resolve())
            self.is_local = True

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    def _path(self, key: str) -> str:
        return posixpath.join(self._base, key)

    def uri(self, key: str) -> str:
        """A URI a user can paste: an absolute local path or ``s3://bucket/...``."""
        return self._path(key) if self.is_local else f"s3://{self._path(key)}"

    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self._path(key)).type == pafs.FileType.File

    def write_bytes(self, key: str, data: bytes) -> StoredFile:
        """Atomically replace ``key`` with ``data`` (see :func:`write_atomically`)."""
        write_atomically(self.fs, self._path(key), data)
        return StoredFile(key, self.uri(key), len(data), hashlib.sha256(data).hexdigest())

    def read_bytes(self, key: str) -> bytes:
        try:
            with self.fs.open_input_stream(self._path(key)) as stream:
                return stream.read()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"lake object not found: {self.uri(key)}") from exc

    def write_table(self, key: str, table: pa.Table) -> StoredFile:
        """Atomically write ``table`` as one parquet file at ``key``."""
        stored = self.write_bytes(key, parquet_bytes(table))
        return StoredFile(stored.key, stored.uri, stored.size_bytes, stored.sha256, table.num_rows)

    def read_table(self, key: str) -> pa.Table:
        """Read one parquet file; a corrupt file raises ``ValueError`` naming it."""
        return self.parse_table(key, self.read_bytes(key))

    def read_stored(self, key: str) -> tuple[pa.Table, StoredFile]:
        """Read one parquet file and describe its bytes (size, sha256) in one pass."""
        data = self.read_bytes(key)
        table = self.parse_table(key, data)
        digest = hashlib.sha256(data).hexdigest()
        return table, StoredFile(key, self.uri(key), len(data), digest, table.num_rows)

    def sha256(self, key: str) -> str:
        """Hex sha256 of the object stored at ``key`` now (read from the store)."""
        return hashlib.sha256(self.read_bytes(key)).hexdigest()

    def parse_table(self, key: str, data: bytes) -> pa.Table:
        """Parse the bytes read from ``key``; not parquet raises ``ValueError`` naming it."""
        try:
            return pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{self.uri(key)} is not a readable parquet file: {exc}") from exc
