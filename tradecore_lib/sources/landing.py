"""The landing folder (``data/landing/``): archives dropped by users, imported once each.

Layout::

    data/landing/XBTUSD_OHLCVT.zip          a dropped file, waiting or imported
    data/landing/.imported/<file>.json      import record: sha256, size, mtime, markets, months
    data/landing/rejected/<file>            a file that could not be imported ...
    data/landing/rejected/<file>.reason.txt ... and why

Only **regular files directly inside** the folder are considered, as :func:`os.lstat` sees
them: a symbolic link (to a file or a folder), a sub-folder other than the two bookkeeping
folders, a pipe or a device is never opened, moved or recorded, and :func:`scan` reports it
with the reason, for a warning naming it. Everything TradeCore writes or moves stays inside
the landing folder: a rejected file is renamed into ``rejected/`` (a rename moves the entry
itself, never what a link points to), records go to ``.imported/``, and a bookkeeping folder
that is itself a link is refused.

A file is *new* while it has no import record matching its size and modification time, so
replacing a file with a new version imports it again. Files still being copied (modified in
the last ``settle_seconds``), hidden files and partial downloads are left for a later look. A
file is read through one open descriptor (no link followed): its digest and its candles come
from the same bytes, and a file replaced or rewritten while it was read is left for the next
look (:class:`LandingFileChanged`). Which market a file belongs to follows Kraken's archive
naming (see :func:`~tradecore_lib.sources.kraken_archive.archive_names`). Nothing here
imports Dagster.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow.fs as pafs

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.lake import write_atomically
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, months_between
from tradecore_lib.sources.kraken_archive import (
    ArchiveFormatError,
    archive_member,
    archive_names,
    parse_archive,
    sha256_stream,
)

SUFFIXES = (".csv", ".zip")
REJECTED = "rejected"
IMPORTED = ".imported"
BOOKKEEPING = (REJECTED, IMPORTED)
_PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".tmp", ".download")


class LandingFileError(TradeCoreError, ValueError):
    """A landed file cannot be imported; the message becomes its ``.reason.txt``."""


class LandingFileChanged(TradeCoreError):
    """A landed file was replaced or rewritten while it was read; look again later."""

    retryable = True


class LandingFolderError(TradeCoreError):
    """A bookkeeping folder of the landing folder is not a real folder inside it."""


@dataclass(frozen=True)
class Ignored:
    """An entry of the landing folder that is not imported, and why (for a warning)."""

    name: str
    reason: str


@dataclass(frozen=True)
class LandingScan:
    """What one look at the landing folder found.

    Attributes:
        files: new regular files to plan, oldest first, as ``<landing>/<name>`` (links are
            never resolved).
        ignored: entries that are never imported (links, folders, other file types, other
            suffixes), by name.
    """

    files: list[Path]
    ignored: list[Ignored]


@dataclass(frozen=True)
class ImportPlan:
    """One market's import of one landed file.

    Attributes:
        path: the landed file, ``<landing>/<name>`` (absolute, not resolved).
        sha256: hex digest of the bytes that were parsed.
        size_bytes, mtime_ns: the file as it was read (what the import record matches).
        market: the market it feeds.
        member: the ZIP member holding the market's candles (``""`` for a CSV).
        months: the market's partitions it covers, oldest first (continuous range).
    """

    path: Path
    sha256: str
    size_bytes: int
    mtime_ns: int
    market: Market
    member: str
    months: tuple[Month, ...]

    @property
    def run_key(self) -> str:
        """Unique per file content and market, so one file is imported once per market."""
        return f"landing:{self.path.name}:{self.sha256}:{self.market.name}"


def scan(landing: Path, *, settle_seconds: float = 10.0, now: float | None = None) -> LandingScan:
    """The new landed ``.csv``/``.zip`` files without a matching import record, oldest first,
    and the entries that are ignored (see the module docstring)."""
    if not landing.is_dir():
        return LandingScan([], [])
    landing = landing.absolute()
    now = time.time() if now is None else now
    found: list[tuple[int, str]] = []
    ignored: list[Ignored] = []
    with os.scandir(landing) as entries:
        for entry in entries:
            name = entry.name
            info = entry.stat(follow_symlinks=False)
            if name in BOOKKEEPING:
                if not stat.S_ISDIR(info.st_mode):
                    ignored.append(Ignored(name, _bookkeeping_problem(landing / name)))
                continue
            if name.startswith(".") or name.lower().endswith(_PARTIAL_SUFFIXES):
                continue  # hidden, or still being downloaded
            reason = _not_importable(landing / name, info)
            if reason:
                ignored.append(Ignored(name, reason))
            elif now - info.st_mtime >= settle_seconds and not _recorded(landing, name, info):
                found.append((info.st_mtime_ns, name))
    return LandingScan([landing / name for _, name in sorted(found)], ignored)


def _not_importable(path: Path, info: os.stat_result) -> str:
    """Why the entry is never imported, or ``""`` for a regular file of a known suffix."""
    if stat.S_ISLNK(info.st_mode):
        return (f"a symbolic link (to {os.readlink(path)}), not a file: only regular files "
                "directly in the landing folder are imported; copy the file itself here")
    if stat.S_ISDIR(info.st_mode):
        return "a folder: only regular files directly in the landing folder are imported"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a pipe, socket or device)"
    if path.suffix.lower() not in SUFFIXES:
        return f"not a Kraken OHLCVT archive: expected one of {', '.join(SUFFIXES)}"
    return ""


def _bookkeeping_problem(path: Path) -> str:
    kind = "a symbolic link" if path.is_symlink() else "not a folder"
    return (f"the landing folder's own {path.name}/ is {kind}; nothing is written there "
            "until it is a real folder")


def _bookkeeping_dir(landing: Path, name: str) -> Path:
    """``<landing>/<name>``, created if missing; refused unless it is a real folder."""
    folder = landing / name
    try:
        folder.mkdir(exist_ok=True)
    except FileExistsError:
        pass  # a file or a dangling link of that name: refused right below
    if folder.is_symlink() or not folder.is_dir():
        raise LandingFolderError(_bookkeeping_problem(folder))
    return folder


def _record_path(landing: Path, name: str) -> Path:
    return landing / IMPORTED / f"{name}.json"


def _recorded(landing: Path, name: str, info: os.stat_result) -> bool:
    record = _record_path(landing, name)
    if record.is_symlink() or not record.is_file():
        return False
    try:
        raw = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return raw.get("size") == info.st_size and raw.get("mtime_ns") == info.st_mtime_ns


@contextmanager
def _open_landed(path: Path) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """``path`` opened for reading without following a link, and its ``fstat``.

    On leaving, raises :class:`LandingFileChanged` when the name no longer refers to the file
    that was read, or the file's size or modification time changed while it was read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:  # swapped for a link (ELOOP) or removed since the scan
        raise LandingFileChanged(f"{path.name}: cannot be opened as a file any more "
                                 f"({exc.strerror}); looked at again later") from None
    with os.fdopen(fd, "rb") as stream:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise LandingFileChanged(f"{path.name}: no longer a regular file; looked at again "
                                     "later")
        yield stream, before
        after = os.fstat(fd)
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            now = None
    same_file = now is not None and (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino)
    unchanged = (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if not (same_file and unchanged):
        raise LandingFileChanged(
            f"{path.name}: replaced or rewritten while it was read; it is looked at again once "
            "it has settled"
        )


def plan_imports(path: Path, markets: list[Market], *, current: Month) -> list[ImportPlan]:
    """The imports ``path`` asks for: one per market it holds, clipped to its partitions.

    Parses each market's candles fully, so a malformed file is caught here, before any run.
    Raises :class:`LandingFileError` when the file holds no known market, is malformed, or
    covers none of the market's partitions (``first_month`` .. ``current``), and
    :class:`LandingFileChanged` when it changed while being read.
    """
    plans = []
    with _open_landed(path) as (stream, info):
        try:
            digest = sha256_stream(stream)
            held = [(m, member) for m in markets
                    if (member := archive_member(path, m, stream)) is not None]
            if not held:
                known = {m.name: list(archive_names(m)) for m in markets if archive_names(m)}
                raise LandingFileError(
                    f"{path.name}: holds no 1-minute Kraken archive of an enabled market; "
                    f"expected a .csv or a .zip member named one of {known}"
                )
            for market, member in held:
                parsed = parse_archive(path, market, stream=stream, sha256=digest)
                covered = [m for m in parsed.months if market.first_month <= m <= current]
                if not covered:
                    first, last = min(parsed.months), max(parsed.months)
                    raise LandingFileError(
                        f"{parsed.where}: covers {first}..{last}, none of {market.name}'s "
                        f"partitions ({market.first_month}..{current}); change first_month in "
                        "configs/markets.yaml to import it"
                    )
                months = tuple(months_between(min(covered), max(covered)))
                plans.append(ImportPlan(path, digest, info.st_size, info.st_mtime_ns, market,
                                        member, months))
        except ArchiveFormatError as exc:
            raise LandingFileError(str(exc)) from None
    return plans


def reject(landing: Path, path: Path, reason: str) -> Path:
    """Move the landed entry ``path`` into ``rejected/`` next to a ``<file>.reason.txt``.

    A rename within the landing folder: the entry itself moves (a link would move as a link,
    its target untouched), and an existing rejected file is never overwritten.
    """
    if path.parent.absolute() != landing.absolute():
        raise LandingFolderError(f"{path} is not directly in the landing folder {landing}")
    folder = _bookkeeping_dir(landing, REJECTED)
    target = folder / path.name
    if os.path.lexists(target):
        target = folder / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}{path.suffix}"
    # The reason first: a file in rejected/ always has its explanation next to it.
    write_atomically(pafs.LocalFileSystem(), str(folder.absolute() / f"{target.name}.reason.txt"),
                     (reason.rstrip() + "\n").encode())
    os.rename(path, target)
    return target


def mark_imported(landing: Path, plans: list[ImportPlan]) -> Path:
    """Record that the landed file of ``plans`` (one file, as it was read) has been handed to
    those imports, so it is not planned again until it changes."""
    first = plans[0]
    _bookkeeping_dir(landing, IMPORTED)
    record = _record_path(landing, first.path.name)
    body = {
        "file": str(first.path),
        "size": first.size_bytes,
        "mtime_ns": first.mtime_ns,
        "sha256": first.sha256,
        "imports": [
            {"market": p.market.name, "member": p.member, "run_key": p.run_key,
             "months": [str(m) for m in p.months]}
            for p in plans
        ],
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_atomically(pafs.LocalFileSystem(), str(record.absolute()),
                     json.dumps(body, indent=2).encode())
    return record
