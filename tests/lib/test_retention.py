"""The Broom Closet's rules on a lake holding several training runs (folders written with the
files checkpoints.py names), staging folders, temporaries and alert records: a plan removes
nothing, applying it removes exactly the safe set, protected runs survive whole, and the bytes
freed are the sizes of what went. Local and S3 (moto on loopback) lakes."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from tests.conftest import kraken_market
from tradecore_lib.alerts import Alert, AlertSettings, raise_alert
from tradecore_lib.evaluation.promotion import ChampionRecord, Verdict
from tradecore_lib.evaluation.summary import ChampionScored, EvaluationSummary
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month, iso_utc, utc_now_ms
from tradecore_lib.retention import (
    ABANDONED_RUN,
    ALERT,
    CHECKPOINTS,
    RUN,
    STAGING,
    TEMPORARY,
    RetentionPolicy,
    apply_plan,
    lake_tree,
    plan_retention,
    referenced_runs,
)
from tradecore_lib.train.checkpoints import CONFIG, LINEAGE, METRICS, MODEL, VECNORMALIZE, RunStore
from tradecore_lib.train.config import load_train_config
from tradecore_lib.train.record import FoldRun, RunRecord

DAY_S = 86_400
SYNTH = get_market("synthetic_btc_usd")
SPOT = kraken_market("kraken_spot")


def write_run(lake: Lake, market: str, run_id: str, *, finished: bool = True,
              checkpoints: int = 2) -> RunStore:
    """A run folder as training leaves it: config, lineage, metrics, periodic checkpoints and,
    once finished, the final model (written last)."""
    store = RunStore(lake, market, run_id)
    store.write_json(CONFIG, {"name": run_id.split("-")[0], "seed": 1})
    store.write_json(LINEAGE, {"market": market, "run_id": run_id})
    store.write_metrics([{"step": 1000 * (i + 1), "fps": 100.0} for i in range(3)])
    for i in range(checkpoints):
        store.save_checkpoint(1000 * (i + 1), b"m" * (3000 + i), b"v" * 500)
    if finished:
        store.write_bytes(VECNORMALIZE, b"v" * 700)
        store.write_bytes(MODEL, b"M" * 4000)
    return store


def age_folder(folder: Path, days: float) -> None:
    """Set every file below ``folder`` to ``days`` ago (local lakes only)."""
    moment = time.time() - days * DAY_S
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (moment, moment))


def tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def temporary_name(name: str) -> str:
    return f".{name}.{uuid.uuid4().hex}.tmp"


@pytest.fixture
def data_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("TRADECORE_DATA_DIR", str(folder))
    for name in ("TRADECORE_ALERT_WEBHOOK", "TRADECORE_TELEGRAM_BOT_TOKEN",
                 "TRADECORE_TELEGRAM_CHAT_ID"):
        monkeypatch.delenv(name, raising=False)
    return folder


def build_local_lake(lake: Lake, data_folder: Path) -> dict[str, Path]:
    """Runs of synthetic_btc_usd (oldest first), staging of the spot market, temporaries and
    alerts; returns the interesting paths by name."""
    root = Path(lake.root)
    runs = {}
    # name, finished, age in days (the folder's files, model.zip included)
    plan = [("champ", True, 200), ("evalref", True, 150), ("r1", True, 100), ("r2", True, 90),
            ("r3", True, 80), ("r4", True, 20), ("r5", True, 10), ("training", False, 2),
            ("abandoned", False, 60)]
    for name, finished, days in plan:
        run_id = f"cpu-control-{name}"
        write_run(lake, SYNTH.name, run_id, finished=finished)
        folder = root / "models" / SYNTH.name / run_id
        age_folder(folder, days)
        runs[name] = folder

    now = Month.of_ms(utc_now_ms())
    staging = root / "staging" / "kraken_spot" / SPOT.pair_dir
    for month in ("2024-01", "2024-02", str(now)):
        lake.write_bytes(f"staging/kraken_spot/{SPOT.pair_dir}/{month}/state.json", b"{}" * 50)
        lake.write_bytes(f"staging/kraken_spot/{SPOT.pair_dir}/{month}/trades-00000.parquet",
                         b"t" * 2500)
    lake.write_bytes(candle_key(SPOT, Month(2024, 1)), b"candles")  # 2024-02 not published
    lake.write_bytes(candle_key(SPOT, now), b"candles")

    features = root / "synthetic" / "BTC-USD" / "1m" / "year=2024" / "month=01"
    features.mkdir(parents=True)
    stale = features / temporary_name("part-0.parquet")
    stale.write_bytes(b"x" * 1234)
    fresh = features / temporary_name("part-0.parquet")
    fresh.write_bytes(b"y" * 99)
    manifests = data_folder / "manifests"
    manifests.mkdir(parents=True)
    stale_manifest = manifests / temporary_name("synthetic_btc_usd.json")
    stale_manifest.write_bytes(b"z" * 321)
    look_alike = manifests / ".notes.tmp"  # not the atomic write's name: never touched
    look_alike.write_bytes(b"n")
    for path in (stale, stale_manifest, look_alike):
        moment = time.time() - 3 * 3600
        os.utime(path, (moment, moment))

    settings = AlertSettings.from_env()
    old = raise_alert(Alert(kind="run_failure", summary="old",
                            time=iso_utc(utc_now_ms() - 100 * DAY_S * 1000)), settings=settings)
    recent = raise_alert(Alert(kind="run_failure", summary="recent"), settings=settings)
    return {**{f"run:{k}": v for k, v in runs.items()},
            "staging:old": staging / "2024-01", "staging:unpublished": staging / "2024-02",
            "staging:current": staging / str(now), "temp:stale": stale, "temp:fresh": fresh,
            "temp:manifest": stale_manifest, "temp:lookalike": look_alike,
            "alert:old": settings.folder / f"{old.alert_id}.json",
            "alert:recent": settings.folder / f"{recent.alert_id}.json"}


PROTECTED = {"cpu-control-champ": "the champion", "cpu-control-evalref": "latest evaluation"}


def test_a_dry_run_lists_the_safe_set_and_applying_removes_exactly_it(
        local_lake, data_folder) -> None:
    paths = build_local_lake(local_lake, data_folder)
    asked: list[str] = []

    def protected(market: str) -> dict[str, str]:
        asked.append(market)
        return PROTECTED

    policy = RetentionPolicy(keep_runs=2)
    plan = plan_retention(local_lake, [SYNTH, SPOT], policy, protected=protected)
    assert asked == [SYNTH.name]  # only a market with runs needs its references read

    runs = f"{paths['run:r1'].parent}/"
    by_kind = {(r.kind, r.where.replace(runs, "")) for r in plan.removals}
    assert by_kind == {
        (RUN, "cpu-control-r1"), (RUN, "cpu-control-r2"), (RUN, "cpu-control-r3"),
        (CHECKPOINTS, "cpu-control-r4/checkpoints"), (CHECKPOINTS, "cpu-control-r5/checkpoints"),
        (ABANDONED_RUN, "cpu-control-abandoned"),
        (STAGING, str(paths["staging:old"])),
        (TEMPORARY, str(paths["temp:stale"])), (TEMPORARY, str(paths["temp:manifest"])),
        (ALERT, str(paths["alert:old"])),
    }
    kept = {k.where.replace(runs, ""): k.reason for k in plan.kept}
    assert kept["cpu-control-champ"] == "protected: the champion"
    assert kept["cpu-control-evalref"] == "protected: latest evaluation"
    assert kept["cpu-control-training"] == "unfinished: training, or resumable"
    assert kept[str(paths["staging:unpublished"])] == "candles of the month not published"
    assert kept[str(paths["staging:current"])] == "month not over"

    expected_bytes = (
        sum(tree_size(paths[f"run:{n}"]) for n in ("r1", "r2", "r3", "abandoned"))
        + sum(tree_size(paths[f"run:{n}"] / "checkpoints") for n in ("r4", "r5"))
        + tree_size(paths["staging:old"])
        + sum(paths[n].stat().st_size for n in ("temp:stale", "temp:manifest", "alert:old")))
    assert plan.size_bytes == expected_bytes
    before = {p: tree_size(p) if p.is_dir() else p.stat().st_size for p in paths.values()}
    summary = {row["kind"]: row for row in plan.summary_rows()}
    assert summary[RUN]["items"] == 3 and summary[CHECKPOINTS]["items"] == 2
    assert summary[RUN]["files"] == 3 * 10  # 5 files + 2 checkpoints x 2 files + latest.json
    assert summary[TEMPORARY]["mib"] == round((1234 + 321) / 2**20, 2)

    # The dry run (planning) touched nothing.
    assert {p: tree_size(p) if p.is_dir() else p.stat().st_size
            for p in paths.values()} == before

    result = apply_plan(plan)
    assert result.failed == () and result.freed_bytes == expected_bytes
    assert len(result.removed) == len(plan.removals)
    for name in ("run:r1", "run:r2", "run:r3", "run:abandoned", "staging:old", "temp:stale",
                 "temp:manifest", "alert:old"):
        assert not paths[name].exists(), name
    for name in ("run:r4", "run:r5"):
        assert (paths[name] / MODEL).exists() and not (paths[name] / "checkpoints").exists()
        assert (paths[name] / METRICS).exists()
    for name in ("run:champ", "run:evalref", "run:training", "staging:unpublished",
                 "staging:current", "temp:fresh", "temp:lookalike", "alert:recent"):
        path = paths[name]
        assert (tree_size(path) if path.is_dir() else path.stat().st_size) == before[path], name
    assert (paths["run:champ"] / "checkpoints" / "latest.json").exists()

    # Nothing left to do: a second plan is empty.
    again = plan_retention(local_lake, [SYNTH, SPOT], policy, protected=protected)
    assert again.removals == ()


def test_limits_change_what_goes(local_lake, data_folder) -> None:
    paths = build_local_lake(local_lake, data_folder)
    policy = RetentionPolicy(keep_runs=10, prune_checkpoints=False, staging_days=100_000,
                             abandoned_run_days=365, alert_days=1000, temp_hours=4)
    plan = plan_retention(local_lake, [SYNTH, SPOT], policy, protected=lambda m: PROTECTED)
    assert plan.removals == ()
    loose = RetentionPolicy(keep_runs=1, staging_days=0)
    kinds = [r.kind for r in plan_retention(local_lake, [SYNTH, SPOT], loose,
                                            protected=lambda m: {}).removals]
    # Unprotected: champ and evalref go too; r5 alone is kept (its checkpoints go).
    assert kinds.count(RUN) == 6 and kinds.count(CHECKPOINTS) == 1
    assert paths["run:champ"].exists()  # planning only
    with pytest.raises(ValueError, match="keep_runs"):
        RetentionPolicy(keep_runs=0)
    with pytest.raises(ValueError, match="temp_hours"):
        RetentionPolicy(temp_hours=0.1)


def test_on_s3_the_same_rules_remove_the_same_things(s3_lake, data_folder) -> None:
    write_run(s3_lake, SYNTH.name, "cpu-control-champ")
    write_run(s3_lake, SYNTH.name, "cpu-control-old")
    time.sleep(1.1)  # S3 times have one-second resolution: "newest" must be unambiguous
    write_run(s3_lake, SYNTH.name, "cpu-control-new")
    s3_lake.write_bytes(f"staging/kraken_spot/{SPOT.pair_dir}/2024-01/state.json", b"{}")
    s3_lake.write_bytes(candle_key(SPOT, Month(2024, 1)), b"candles")
    tree = lake_tree(s3_lake)
    s3_lake.fs.open_output_stream(tree.path(f"candles/{temporary_name('x')}")).close()
    # S3 has no utime: judge the temporary (written now) from three hours on.
    now = utc_now_ms() + 3 * 3600 * 1000
    plan = plan_retention(s3_lake, [SYNTH, SPOT], RetentionPolicy(keep_runs=1),
                          protected=lambda m: {"cpu-control-champ": "the champion"}, now_ms=now)
    got = sorted((r.kind, "/".join(r.where.split("/")[-2 if r.kind == CHECKPOINTS else -1:]))
                 for r in plan.removals)
    assert got[:3] == [(CHECKPOINTS, "cpu-control-new/checkpoints"), (RUN, "cpu-control-old"),
                       (STAGING, "2024-01")]
    assert len(got) == 4 and got[3][0] == TEMPORARY and got[3][1].endswith(".tmp")
    assert all(r.where.startswith("s3://") for r in plan.removals)
    listed = {i.path: i.size for i in tree.files()}
    old_prefix = tree.path(f"models/{SYNTH.name}/cpu-control-old/")
    assert plan.size_bytes == (sum(s for p, s in listed.items() if p.startswith(old_prefix))
                               + sum(s for p, s in listed.items() if "/staging/" in p)
                               + sum(s for p, s in listed.items() if "/checkpoints/" in p
                                     and "cpu-control-new" in p))

    result = apply_plan(plan)
    assert result.failed == () and result.freed_bytes == plan.size_bytes
    left = {tree.key(i.path) for i in tree.files()}
    assert not any("cpu-control-old" in k or k.startswith("staging/") or k.endswith(".tmp")
                   for k in left)
    champ = {k for k in left if "cpu-control-champ" in k}
    assert champ == {tree.key(p) for p in listed if "cpu-control-champ" in p}
    assert f"models/{SYNTH.name}/cpu-control-champ/checkpoints/latest.json" in champ
    assert f"models/{SYNTH.name}/cpu-control-new/{MODEL}" in left
    assert not any("cpu-control-new/checkpoints" in k for k in left)
    selector = pafs.FileSelector(old_prefix.rstrip("/"), recursive=True, allow_not_found=True)
    assert s3_lake.fs.get_file_info(selector) == []


def test_references_name_every_fold_and_the_scored_champion() -> None:
    cfg = load_train_config("cpu-control")
    folds = [FoldRun(fold=i, run_id=f"cpu-control-f{i}", checkpoint_uri=f"/lake/{i}",
                     config_digest="c" * 64, lineage_digest="l" * 64, train_months=("2024-01",),
                     validation_months=("2024-02",), test_months=("2024-03",))
             for i in range(2)]
    run = RunRecord.of(SYNTH.name, cfg, "dagster-run", folds)
    summary = EvaluationSummary(
        market=SYNTH.name, run=run, dagster_run_id="eval", feature_preset="default", env={},
        promotion=cfg.promotion, folds=(), verdict=Verdict(eligible=True, passed=True),
        champion=ChampionScored(model_name="m", model_version="1", run_id="cpu-control-champ",
                                scored=True),
        generated_at="2024-04-01T00:00:00.000Z")
    assert referenced_runs(summary, "latest evaluation") == {
        "cpu-control-f0": "latest evaluation", "cpu-control-f1": "latest evaluation",
        "cpu-control-champ": "latest evaluation (the champion it scored)"}
    champion = ChampionRecord(market=SYNTH.name, run=run, model_name="m", model_version="2",
                              promoted_at="2024-04-01T00:00:00.000Z", reason="passed")
    assert set(referenced_runs(champion, "champion")) == {"cpu-control-f0", "cpu-control-f1"}
