"""The Broom Closet: what is safe to prune from the lake and the data folder, and pruning it.

:func:`plan_retention` lists what may go, each item with its reason and size; nothing is
touched until :func:`apply_plan` runs the plan (a dry run stops after planning). One listing
of the lake (local folder or ``s3://``, through the lake's own pyarrow file system) and one of
the data folder serve every rule. What may go, each rule's limit in :class:`RetentionPolicy`:

- **staging**: ``staging/<venue>/<BASE-QUOTE>/<YYYY-MM>/`` of a configured market (the Kraken
  spot source's resumable download of a month's trades) once the month ended more than
  ``staging_days`` ago *and* its candle partition is in the lake. The published candles are
  what everything reads; the staging folder only saves a re-download when the month is
  materialized again. A month not over, or whose candles are not published, keeps it.
- **temporary**: the atomic write's leftover temporaries (``.<name>.<uuid>.tmp``, written by a
  process killed between write and rename) older than ``temp_hours``, anywhere in the lake or
  the data folder: the rule of :func:`tradecore_lib.lake.remove_stale_temporaries`, which
  also does the deleting.
- **run** / **checkpoints**: under ``models/<market>/<run_id>/``, the newest ``keep_runs``
  finished runs (``model.zip`` present, ordered by its time) stay; older finished runs go
  whole, and the kept ones lose their periodic ``checkpoints/`` (``step-*`` and
  ``latest.json``: a finished run is never resumed, every reader loads ``model.zip``) when
  ``prune_checkpoints`` is on. A run named in ``protected`` (the champion's, and every run a
  current ``ppo_agent``, ``evaluation``, ``champion`` or ``signals`` materialization
  references: the caller says which) is never touched at all, whatever its age.
- **abandoned_run**: an unfinished run (no ``model.zip``) none of whose files changed in
  ``abandoned_run_days``; a younger unfinished run may be training or waiting to resume.
- **alert**: alert records (``<data_dir>/alerts/``) older than ``alert_days``.

Nothing else is ever removed: candles, features, funding, manifests, records, signals and
MLflow's own store are kept whatever their age. Nothing here imports Dagster.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from pydantic import Field

from tradecore_lib.alerts import alert_files, alert_time
from tradecore_lib.config import ConfigModel
from tradecore_lib.evaluation.promotion import ChampionRecord
from tradecore_lib.evaluation.summary import EvaluationSummary
from tradecore_lib.lake import (
    STALE_TEMP_SECONDS,
    Lake,
    candle_key,
    is_stale_temporary,
    remove_stale_temporaries,
)
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, iso_utc, utc_now_ms
from tradecore_lib.paths import data_dir
from tradecore_lib.train.checkpoints import MODEL
from tradecore_lib.train.record import RecordModel, RunRecord

STAGING = "staging"
TEMPORARY = "temporary"
CHECKPOINTS = "checkpoints"
RUN = "run"
ABANDONED_RUN = "abandoned_run"
ALERT = "alert"
KINDS = (STAGING, TEMPORARY, CHECKPOINTS, RUN, ABANDONED_RUN, ALERT)
DAY_MS = 86_400_000
MIB = 1024 * 1024


class RetentionPolicy(ConfigModel):
    """Every limit of the Broom Closet (see the module docstring for each rule)."""

    staging_days: float = Field(
        default=30.0, ge=0.0, description="Staging folders of months that ended more than "
        "this many days ago (and whose candles are published) are removed.")
    temp_hours: float = Field(
        default=STALE_TEMP_SECONDS / 3600, ge=STALE_TEMP_SECONDS / 3600,
        description="Atomic-write temporaries older than this many hours are removed (never "
        "less than the atomic write's own limit, so a writer at work keeps its temporary).")
    keep_runs: int = Field(
        default=3, ge=1, description="Finished training runs kept per market, newest first "
        "(protected runs are kept besides).")
    prune_checkpoints: bool = Field(
        default=True, description="Remove the periodic checkpoints/ of the finished runs "
        "kept (not of protected runs).")
    abandoned_run_days: float = Field(
        default=30.0, ge=1.0, description="Unfinished runs none of whose files changed for "
        "this many days are removed.")
    alert_days: float = Field(
        default=90.0, ge=0.0, description="Alert records older than this many days are "
        "removed.")


@dataclass(frozen=True)
class _Tree:
    """A folder on a pyarrow file system: the lake's (local or S3) or the local data folder."""

    fs: pafs.FileSystem
    base: str  # file-system path of the folder, no trailing "/"
    uri_prefix: str  # "" locally, "s3://" on S3

    def path(self, key: str) -> str:
        return posixpath.join(self.base, key) if key else self.base

    def key(self, path: str) -> str:
        return path[len(self.base) + 1:]

    def uri(self, key: str) -> str:
        return self.uri_prefix + self.path(key)

    def files(self) -> list[pafs.FileInfo]:
        """Every file below the folder (recursive; none when it does not exist)."""
        selector = pafs.FileSelector(self.base, recursive=True, allow_not_found=True)
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]


def lake_tree(lake: Lake) -> _Tree:
    """The lake's root as a :class:`_Tree` (built from its public URI and file system)."""
    root = posixpath.dirname(lake.uri("_"))
    if lake.is_local:
        return _Tree(lake.fs, root, "")
    return _Tree(lake.fs, root.removeprefix("s3://"), "s3://")


@dataclass(frozen=True)
class Removal:
    """One thing the plan removes: a folder's files, or one file."""

    kind: str
    where: str  # URI of the folder or file (a lake URI or a local path)
    reason: str
    size_bytes: int
    files: int
    market: str | None
    tree: _Tree = field(repr=False, compare=False)
    paths: tuple[str, ...] = field(repr=False, compare=False)  # file-system paths
    folder: str | None = field(default=None, repr=False, compare=False)  # removed if emptied


@dataclass(frozen=True)
class Kept:
    """Something a rule looked at and kept, and why (shown so a user sees why it stays)."""

    kind: str
    where: str
    reason: str
    market: str | None


@dataclass(frozen=True)
class RetentionPlan:
    """What may go (``removals``) and what was judged and kept (``kept``), at ``now_ms``."""

    policy: RetentionPolicy
    now_ms: int
    removals: tuple[Removal, ...]
    kept: tuple[Kept, ...]

    @property
    def size_bytes(self) -> int:
        return sum(r.size_bytes for r in self.removals)

    def summary_rows(self, removed: Iterable[Removal] | None = None) -> list[dict[str, Any]]:
        """One rounded row per kind: items, files, MiB (of ``removed``, default the plan)."""
        chosen = list(self.removals if removed is None else removed)
        return [{"kind": kind, "items": len(items), "files": sum(r.files for r in items),
                 "mib": round(sum(r.size_bytes for r in items) / MIB, 2)}
                for kind in KINDS
                for items in [[r for r in chosen if r.kind == kind]]]


@dataclass(frozen=True)
class RetentionResult:
    """What :func:`apply_plan` removed, what it could not, and the bytes freed."""

    removed: tuple[Removal, ...]
    failed: tuple[tuple[Removal, str], ...]
    freed_bytes: int


def referenced_runs(record: RecordModel, why: str) -> dict[str, str]:
    """Run id -> ``why`` for every training run ``record`` names: each fold of a run record,
    of an evaluation's run (and the champion it scored), of a champion's run."""
    runs: dict[str, str] = {}
    if isinstance(record, RunRecord):
        runs.update({fold.run_id: why for fold in record.folds})
    elif isinstance(record, EvaluationSummary):
        runs.update(referenced_runs(record.run, why))
        runs.update({fold.run_id: why for fold in record.folds})
        if record.champion is not None:
            runs[record.champion.run_id] = f"{why} (the champion it scored)"
    elif isinstance(record, ChampionRecord):
        runs.update(referenced_runs(record.run, why))
    return runs


def plan_retention(
    lake: Lake,
    markets: Sequence[Market],
    policy: RetentionPolicy,
    *,
    protected: Callable[[str], Mapping[str, str]],
    data_folder: Path | None = None,
    alerts_folder: Path | None = None,
    now_ms: int | None = None,
) -> RetentionPlan:
    """What the Broom Closet may remove now; removes nothing.

    Args:
        lake: the lake (local or ``s3://``).
        markets: the markets whose staging folders and runs are looked at.
        policy: the limits.
        protected: market -> {run id: why} of the runs never to touch; called only for a
            market that has run folders (it may read the Dagster instance or MLflow).
        data_folder: the local data folder searched for temporaries (default ``data_dir()``).
        alerts_folder: the alert records (default ``<data_dir>/alerts``).
        now_ms: the current time, UTC epoch ms (tests).
    """
    now = utc_now_ms() if now_ms is None else now_ms
    data_folder = (data_dir() if data_folder is None else data_folder).absolute()
    alerts_folder = data_folder / "alerts" if alerts_folder is None else alerts_folder
    tree = lake_tree(lake)
    files = tree.files()
    removals: list[Removal] = []
    kept: list[Kept] = []
    for market in markets:
        market_files = [f for f in files if tree.key(f.path).startswith(f"models/{market.name}/")]
        if market_files:
            runs_removed, runs_kept = _plan_runs(tree, market, market_files, policy,
                                                 dict(protected(market.name)), now)
            removals += runs_removed
            kept += runs_kept
        staging_removed, staging_kept = _plan_staging(lake, tree, market, files, policy, now)
        removals += staging_removed
        kept += staging_kept
    removals += _plan_temporaries(tree, files, lake, data_folder, policy, now)
    removals += _plan_alerts(alerts_folder, policy, now)
    return RetentionPlan(policy, now, tuple(removals), tuple(kept))


# ------------------------------------------------------------------------------- the rules
@dataclass
class _Run:
    run_id: str
    files: list[pafs.FileInfo] = field(default_factory=list)
    model: pafs.FileInfo | None = None

    @property
    def newest_ns(self) -> int:
        return max((f.mtime_ns or 0) for f in self.files)


def _plan_runs(tree: _Tree, market: Market, files: list[pafs.FileInfo],
               policy: RetentionPolicy, protected: dict[str, str], now_ms: int
               ) -> tuple[list[Removal], list[Kept]]:
    prefix = f"models/{market.name}/"
    runs: dict[str, _Run] = {}
    for info in files:
        rest = tree.key(info.path)[len(prefix):]
        if "/" not in rest:
            continue  # a file directly in models/<market>/ is no run's
        run_id, inside = rest.split("/", 1)
        run = runs.setdefault(run_id, _Run(run_id))
        run.files.append(info)
        if inside == MODEL:
            run.model = info
    removals: list[Removal] = []
    kept: list[Kept] = []
    finished = sorted((r for r in runs.values() if r.model is not None),
                      key=lambda r: (r.model.mtime_ns or 0, r.run_id), reverse=True)  # type: ignore[union-attr]
    newest = {r.run_id for r in finished[: policy.keep_runs]}
    for run in sorted(runs.values(), key=lambda r: r.run_id):
        folder = prefix + run.run_id
        where = tree.uri(folder)
        if run.run_id in protected:
            kept.append(Kept(RUN, where, f"protected: {protected[run.run_id]}", market.name))
            continue
        if run.model is None:
            idle_days = (now_ms - run.newest_ns / 1e6) / DAY_MS
            if idle_days > policy.abandoned_run_days:
                removals.append(_folder_removal(
                    ABANDONED_RUN, tree, folder, run.files, market.name,
                    f"unfinished run untouched for {idle_days:.0f} days (limit "
                    f"{policy.abandoned_run_days:g})"))
            else:
                kept.append(Kept(RUN, where, "unfinished: training, or resumable", market.name))
            continue
        finished_at = iso_utc(round((run.model.mtime_ns or 0) / 1e6))
        if run.run_id not in newest:
            removals.append(_folder_removal(
                RUN, tree, folder, run.files, market.name,
                f"finished {finished_at}, older than the newest {policy.keep_runs} finished "
                f"run(s) of {market.name}"))
            continue
        kept.append(Kept(RUN, where, f"one of the newest {policy.keep_runs} finished run(s)",
                         market.name))
        checkpoints = [f for f in run.files
                       if tree.key(f.path).startswith(f"{folder}/checkpoints/")]
        if policy.prune_checkpoints and checkpoints:
            removals.append(_folder_removal(
                CHECKPOINTS, tree, f"{folder}/checkpoints", checkpoints, market.name,
                f"periodic checkpoints of a run finished {finished_at} (its model.zip "
                "is what every reader loads)"))
    return removals, kept


def _plan_staging(lake: Lake, tree: _Tree, market: Market, files: list[pafs.FileInfo],
                  policy: RetentionPolicy, now_ms: int) -> tuple[list[Removal], list[Kept]]:
    prefix = f"staging/{market.venue}/{market.pair_dir}/"
    months: dict[str, list[pafs.FileInfo]] = defaultdict(list)
    for info in files:
        key = tree.key(info.path)
        if key.startswith(prefix) and "/" in key[len(prefix):]:
            months[key[len(prefix):].split("/", 1)[0]].append(info)
    removals: list[Removal] = []
    kept: list[Kept] = []
    for name, month_files in sorted(months.items()):
        folder = prefix + name
        try:
            month = Month.parse(name)
        except ValueError:
            continue  # not a month's folder: not ours to judge
        ended_days = (now_ms - month.end_ms) / DAY_MS
        if ended_days <= policy.staging_days:
            why = "month not over" if ended_days < 0 else (
                f"month ended {ended_days:.0f} days ago (limit {policy.staging_days:g})")
            kept.append(Kept(STAGING, tree.uri(folder), why, market.name))
        elif not lake.exists(candle_key(market, month)):
            kept.append(Kept(STAGING, tree.uri(folder), "candles of the month not published",
                             market.name))
        else:
            removals.append(_folder_removal(
                STAGING, tree, folder, month_files, market.name,
                f"download checkpoint of {month}, which ended {ended_days:.0f} days ago and "
                "whose candles are published"))
    return removals, kept


def _plan_temporaries(tree: _Tree, files: list[pafs.FileInfo], lake: Lake, data_folder: Path,
                      policy: RetentionPolicy, now_ms: int) -> list[Removal]:
    local = _Tree(pafs.LocalFileSystem(), str(data_folder), "")
    candidates = [(tree, info) for info in files]
    seen = {info.path for info in files} if lake.is_local else set()
    candidates += [(local, info) for info in local.files() if info.path not in seen]
    cutoff_ns = int((now_ms / 1000 - policy.temp_hours * 3600) * 1e9)
    removals = []
    for owner, info in candidates:
        # The lake's own rule; apply_plan deletes through remove_stale_temporaries itself.
        if is_stale_temporary(info, cutoff_ns):
            age_h = (now_ms / 1000 - info.mtime_ns / 1e9) / 3600
            removals.append(Removal(
                TEMPORARY, owner.uri(owner.key(info.path)),
                f"atomic-write temporary left {age_h:.1f} h ago (limit {policy.temp_hours:g} h)",
                info.size or 0, 1, None, owner, (info.path,)))
    return removals


def _plan_alerts(folder: Path, policy: RetentionPolicy, now_ms: int) -> list[Removal]:
    removals = []
    local = _Tree(pafs.LocalFileSystem(), str(folder.absolute()), "")
    for path in alert_files(folder):
        age_days = (now_ms - alert_time(path).timestamp() * 1000) / DAY_MS
        if age_days > policy.alert_days:
            removals.append(Removal(
                ALERT, str(path.absolute()),
                f"alert raised {age_days:.0f} days ago (limit {policy.alert_days:g})",
                path.stat().st_size, 1, None, local, (str(path.absolute()),)))
    return removals


def _folder_removal(kind: str, tree: _Tree, folder: str, files: list[pafs.FileInfo],
                    market: str | None, reason: str) -> Removal:
    return Removal(kind, tree.uri(folder), reason, sum(f.size or 0 for f in files), len(files),
                   market, tree, tuple(f.path for f in files), tree.path(folder))


# ------------------------------------------------------------------------------- applying
def apply_plan(plan: RetentionPlan) -> RetentionResult:
    """Remove what ``plan`` lists (exactly its files, nothing found since); a folder is
    removed once it holds no file. An error on one item is reported, the rest go on."""
    removed: list[Removal] = []
    failed: list[tuple[Removal, str]] = []
    freed = 0
    temporaries: dict[tuple[int, str], list[Removal]] = defaultdict(list)
    for removal in plan.removals:
        if removal.kind == TEMPORARY:
            folder = posixpath.dirname(removal.paths[0])
            temporaries[(id(removal.tree), folder)].append(removal)
            continue
        try:
            freed += _delete_files(removal)
            if removal.folder is not None:
                _remove_if_empty(removal.tree.fs, removal.folder)
            removed.append(removal)
        except OSError as exc:
            failed.append((removal, f"{type(exc).__name__}: {exc}"))
    for (_, folder), items in temporaries.items():
        fs = items[0].tree.fs
        try:
            # The atomic write's own cleanup, judged at the plan's time: it deletes exactly the
            # temporaries that were stale then (younger ones, or new ones, stay).
            gone = set(_remove_stale(fs, folder, plan))
        except OSError as exc:
            failed += [(item, f"{type(exc).__name__}: {exc}") for item in items]
            continue
        for item in items:
            if item.paths[0] in gone:
                removed.append(item)
                freed += item.size_bytes
    return RetentionResult(tuple(removed), tuple(failed), freed)


def _remove_stale(fs: pafs.FileSystem, folder: str, plan: RetentionPlan) -> list[str]:
    return remove_stale_temporaries(fs, folder, older_than_s=plan.policy.temp_hours * 3600,
                                    now=plan.now_ms / 1000)


def _delete_files(removal: Removal) -> int:
    fs = removal.tree.fs
    freed = 0
    sizes = {info.path: info.size or 0 for info in fs.get_file_info(list(removal.paths))
             if info.type == pafs.FileType.File}
    for path in removal.paths:
        if path not in sizes:
            continue  # gone already (removed by someone else): nothing to free
        fs.delete_file(path)
        freed += sizes[path]
    return freed


def _remove_if_empty(fs: pafs.FileSystem, folder: str) -> None:
    """Delete ``folder`` (and its empty sub-folders) when no file is left below it; a file
    that appeared since the plan keeps it."""
    selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
    if any(i.type == pafs.FileType.File for i in fs.get_file_info(selector)):
        return
    try:
        fs.delete_dir(folder)
    except FileNotFoundError:
        pass  # an S3 prefix disappears with its last object


def mib(size_bytes: int) -> float:
    """Bytes as MiB rounded to 2 decimals (what the tables show)."""
    return round(size_bytes / MIB, 2)


__all__ = [
    "ABANDONED_RUN", "ALERT", "CHECKPOINTS", "KINDS", "RUN", "STAGING", "TEMPORARY",
    "Kept", "Removal", "RetentionPlan", "RetentionPolicy", "RetentionResult", "apply_plan",
    "lake_tree", "mib", "plan_retention", "referenced_runs",
]
