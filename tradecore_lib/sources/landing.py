"""The landing folder (``data/landing/``): archives dropped by users, imported once each.

Layout::

    data/landing/XBTUSD_OHLCVT.zip          a dropped file, waiting or imported
    data/landing/.imported/<file>.json      import record: sha256, size, mtime, markets, months
    data/landing/rejected/<file>            a file that could not be imported ...
    data/landing/rejected/<file>.reason.txt ... and why

A file is *new* while it has no import record matching its size and modification time, so
replacing a file with a new version imports it again. Files still being copied (modified in
the last ``settle_seconds``), hidden files and partial downloads are left for a later look.
Which market a file belongs to follows Kraken's archive naming (see
:func:`~tradecore_lib.sources.kraken_archive.archive_names`). Nothing here imports Dagster.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tradecore_lib.markets import Market
from tradecore_lib.months import Month, months_between
from tradecore_lib.sources.kraken_archive import (
    ArchiveFormatError,
    archive_member,
    archive_names,
    parse_archive,
    sha256_file,
)

SUFFIXES = (".csv", ".zip")
REJECTED = "rejected"
IMPORTED = ".imported"
_PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".tmp", ".download")


class LandingFileError(ValueError):
    """A landed file cannot be imported; the message becomes its ``.reason.txt``."""


@dataclass(frozen=True)
class ImportPlan:
    """One market's import of one landed file.

    Attributes:
        path: absolute path of the landed file.
        sha256: hex digest of the file's bytes.
        market: the market it feeds.
        member: the ZIP member holding the market's candles (``""`` for a CSV).
        months: the market's partitions it covers, oldest first (continuous range).
    """

    path: Path
    sha256: str
    market: Market
    member: str
    months: tuple[Month, ...]

    @property
    def run_key(self) -> str:
        """Unique per file content and market, so one file is imported once per market."""
        return f"landing:{self.path.name}:{self.sha256}:{self.market.name}"


def new_files(
    landing: Path, *, settle_seconds: float = 10.0, now: float | None = None
) -> list[Path]:
    """Landed ``.csv``/``.zip`` files without a matching import record, oldest first."""
    if not landing.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for path in landing.iterdir():
        name = path.name
        if (not path.is_file() or name.startswith(".") or name.lower().endswith(_PARTIAL_SUFFIXES)
                or path.suffix.lower() not in SUFFIXES):
            continue
        stat = path.stat()
        if now - stat.st_mtime < settle_seconds or _recorded(landing, path, stat):
            continue
        found.append(path.resolve())
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _record_path(landing: Path, path: Path) -> Path:
    return landing / IMPORTED / f"{path.name}.json"


def _recorded(landing: Path, path: Path, stat: os.stat_result) -> bool:
    record = _record_path(landing, path)
    if not record.is_file():
        return False
    try:
        raw = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return raw.get("size") == stat.st_size and raw.get("mtime_ns") == stat.st_mtime_ns


def plan_imports(path: Path, markets: list[Market], *, current: Month) -> list[ImportPlan]:
    """The imports ``path`` asks for: one per market it holds, clipped to its partitions.

    Parses each market's candles fully, so a malformed file is caught here, before any run.
    Raises :class:`LandingFileError` when the file holds no known market, is malformed, or
    covers none of the market's partitions (``first_month`` .. ``current``).
    """
    digest = sha256_file(path)
    plans = []
    try:
        held = [(m, member) for m in markets if (member := archive_member(path, m)) is not None]
        if not held:
            known = {m.name: list(archive_names(m)) for m in markets if archive_names(m)}
            raise LandingFileError(
                f"{path.name}: holds no 1-minute Kraken archive of an enabled market; "
                f"expected a .csv or a .zip member named one of {known}"
            )
        for market, member in held:
            parsed = parse_archive(path, market)
            covered = [m for m in parsed.months if market.first_month <= m <= current]
            if not covered:
                first, last = min(parsed.months), max(parsed.months)
                raise LandingFileError(
                    f"{parsed.where}: covers {first}..{last}, none of {market.name}'s partitions "
                    f"({market.first_month}..{current}); change first_month in "
                    "configs/markets.yaml to import it"
                )
            months = tuple(months_between(min(covered), max(covered)))
            plans.append(ImportPlan(path, digest, market, member, months))
    except ArchiveFormatError as exc:
        raise LandingFileError(str(exc)) from exc
    return plans


def reject(landing: Path, path: Path, reason: str) -> Path:
    """Move ``path`` to ``rejected/`` next to a ``<file>.reason.txt``; never overwrite one."""
    folder = landing / REJECTED
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}{path.suffix}"
    # The reason first: a file in rejected/ always has its explanation next to it.
    (folder / f"{target.name}.reason.txt").write_text(reason.rstrip() + "\n")
    shutil.move(str(path), target)
    return target


def mark_imported(landing: Path, path: Path, plans: list[ImportPlan]) -> Path:
    """Record that ``path`` (as it is now) has been handed to the imports in ``plans``."""
    stat = path.stat()
    record = _record_path(landing, path)
    record.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "file": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": plans[0].sha256 if plans else sha256_file(path),
        "imports": [
            {"market": p.market.name, "member": p.member, "run_key": p.run_key,
             "months": [str(m) for m in p.months]}
            for p in plans
        ],
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    temporary = record.with_name(f".{record.name}.tmp")
    temporary.write_text(json.dumps(body, indent=2))
    temporary.replace(record)
    return record
