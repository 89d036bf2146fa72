"""Judge a finished direction run, market by market, and promote it: the library side of
``<model_key>/direction_evaluation`` and ``<model_key>/direction_champion``.

:func:`judge_direction_run` takes the :class:`~tradecore_lib.direction.record.DirectionRecord`
of the run to judge and, for **each market the model predicts**:

1. the model's ``DirectionPredictions`` on the run's validation and test months
   (:class:`~tradecore_lib.direction.predict.DirectionModel`, the rows of that market; a
   transformer predicts all its markets in one pass per split);
2. the baselines fitted on the run's *training* months of that market only
   (:func:`~tradecore_lib.direction.baselines.fit_baselines` with the run's feature columns,
   candle inputs, horizon and dead zone, cut at the purge) and applied to the same samples;
3. the economic split inputs of :func:`tradecore_lib.evaluation.evaluate.load_split` (the
   market's feature preset as the run used it, the month before each split as warm-up), the
   planted-edge control's options when the market is one (adds the oracle);
4. the current champion scored on the same samples, unless it is this run ("the champion is
   the run evaluated") or trained on one of the window's months (its score would be
   in-sample) or does not predict the market;

then :func:`~tradecore_lib.direction.evaluate.evaluate_direction` (scores, accuracy interval,
economic check through the one engine, the gate on validation only: the test split is scored
and recorded, never decides).

**One model, one decision.** The judgement's :class:`Verdict` holds every market's rules, each
named ``<market>: <rule>``, and passes only when every market's verdict passes: a transformer
that helps BTC but fails SOL is not promoted (no picking among markets)
(:func:`combine_verdicts`). A smoke preset is never eligible: its verdict reads
``not eligible (smoke preset: ...)``.

The summary and charts are written beside the run's checkpoint::

    direction_models/<model_key>/<run_id>/evaluation/
        judgement.json              the DirectionJudgement
        <market>/reliability.png    reliability diagram (validation and test)
        <market>/equity.png         the model's positions vs buy-and-hold and flat

:func:`promote_direction` moves the MLflow alias ``champion`` of
``tradecore-direction-<model_key>`` to the run's model version when the verdict passed.

Imports torch (through the predictions): called inside asset bodies only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from tradecore_lib.direction.baselines import Baselines, fit_baselines
from tradecore_lib.direction.evaluate import (
    ChampionNote,
    DirectionChampion,
    DirectionEvaluation,
    evaluate_direction,
)
from tradecore_lib.direction.predict import DirectionModel
from tradecore_lib.direction.record import (
    DirectionChampionRecord,
    DirectionJudgement,
    DirectionRecord,
)
from tradecore_lib.direction.store import DirectionStore
from tradecore_lib.evaluation.evaluate import SplitInputs, control_options, load_split
from tradecore_lib.evaluation.metrics import Trials
from tradecore_lib.evaluation.promotion import PromotionError, Verdict
from tradecore_lib.evaluation.summary import SPLITS
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month, iso_utc, utc_now_ms
from tradecore_lib.train.data import load_frame

if TYPE_CHECKING:
    from tradecore_lib.tracking import Tracker

EVALUATION_FOLDER = "evaluation"
JUDGEMENT = "judgement.json"
RELIABILITY_PNG = "reliability.png"
EQUITY_PNG = "equity.png"
THE_RUN_EVALUATED = "the champion is the run evaluated"


def combine_verdicts(verdicts: Mapping[str, Verdict], *, eligible: bool,
                     eligibility: str = "") -> Verdict:
    """One model's verdict from its markets' verdicts: every market's rules, renamed
    ``<market>: <rule>`` (explanations likewise), passed = ``eligible`` and every rule of every
    market passed. ``eligible`` / ``eligibility`` are the record's (a market's verdict carries
    the same)."""
    rules = tuple(
        rule.model_copy(update={"name": f"{market}: {rule.name}",
                                "explanation": f"{market}: {rule.explanation}"})
        for market, verdict in verdicts.items() for rule in verdict.rules)
    # A market's verdict passes exactly when the record is eligible and its rules pass, so
    # "every market passes" is "eligible and every market's rule passes" (the invariant
    # Verdict checks).
    return Verdict(eligible=eligible, eligibility=eligibility, rules=rules,
                   passed=eligible and all(rule.passed for rule in rules))


def judge_direction_run(lake: Lake, record: DirectionRecord, *,
                        champion: DirectionChampionRecord | None,
                        dagster_run_id: str | None,
                        trials: Trials | None = None,
                        device: str = "cpu") -> tuple[DirectionJudgement,
                                                      dict[str, DirectionEvaluation]]:
    """Evaluate ``record``'s run on each of its markets (see the module docstring) and write
    the judgement and charts beside its checkpoint.

    Args:
        lake: the lake holding the run folder, candles and features.
        record: the run to judge (its limits, position rule and eligibility are used).
        champion: the current champion of ``record.model_key``, or None.
        dagster_run_id: the Dagster run judging it (recorded).
        trials: the deflated Sharpe's trials (:meth:`Tracker.direction_trials`); None: this
            run alone.
        device: torch device of the predictions.

    Returns:
        the judgement and, per market, its :class:`DirectionEvaluation` (summary, PNG bytes).

    Raises:
        DirectionModelError: the run (or the champion's) has no final model.
        MissingDataError: a validation, test or training month is not in the lake.
        LeakageError: the run's lineage trained on a month the record lists as validation
            or test.
    """
    store = DirectionStore(lake, record.model_key, record.run_id)
    model = DirectionModel.load(store, device)
    _check_model(model, record)
    months = {split: [Month.parse(m) for m in getattr(record, f"{split}_months")]
              for split in SPLITS}
    predictions = {split: model.predict(model.load_frames(lake, months[split]), split)
                   for split in SPLITS}
    champion_predictions, note = _champion_predictions(lake, champion, record, months, device)
    cfg = model.config
    evaluations: dict[str, DirectionEvaluation] = {}
    for market_name in model.markets:
        market = get_market(market_name)
        preset = model.feature_presets[market_name]
        splits: dict[str, SplitInputs] = {
            split: load_split(lake, market, preset, months[split]) for split in SPLITS}
        baselines = _fit_baselines(lake, model, market_name, record)
        mine = pd.concat([_market_rows(predictions[split], market_name) for split in SPLITS],
                         ignore_index=True)
        theirs: dict[str, list[pd.DataFrame]] = {}
        for split in SPLITS:
            rows = _market_rows(predictions[split], market_name)
            for name, frame in baselines.predict(splits[split].frame, rows).items():
                theirs.setdefault(name, []).append(frame)
        rival = None
        if champion is not None:
            rival = _market_champion(champion, champion_predictions, note, market_name)
        evaluations[market_name] = evaluate_direction(
            mine, {name: pd.concat(parts, ignore_index=True) for name, parts in theirs.items()},
            market=market_name, splits=splits, economic=record.economic,
            promotion=record.promotion, horizon_minutes=model.horizon_minutes, seed=cfg.seed,
            eligible=record.eligible, eligibility=record.eligibility,
            model_key=record.model_key, run_id=record.run_id, dagster_run_id=dagster_run_id,
            baseline_fit=baselines.fit, champion=rival, trials=trials,
            control=control_options(market), market_costs=market.env_overrides())
    summaries = {market: e.summary for market, e in evaluations.items()}
    verdict = combine_verdicts({m: s.verdict for m, s in summaries.items()},
                               eligible=record.eligible, eligibility=record.eligibility)
    champion_note = None
    if champion is not None:
        scored = champion_predictions is not None
        champion_note = ChampionNote(
            model_name=champion.model_name, model_version=champion.model_version,
            run_id=champion.run_id, scored=scored,
            note=note or "scored on the same samples and walk as 'champion'")
    judgement = DirectionJudgement(
        record=record, model_key=record.model_key, run_id=record.run_id, summaries=summaries,
        verdict=verdict, dagster_run_id=dagster_run_id, champion=champion_note,
        generated_at=iso_utc(utc_now_ms()))
    for name, data in evaluation_files(judgement, evaluations).items():
        store.write_bytes(f"{EVALUATION_FOLDER}/{name}", data)
    return judgement, evaluations


def evaluation_files(judgement: DirectionJudgement,
                     evaluations: Mapping[str, DirectionEvaluation]) -> dict[str, bytes]:
    """The judgement's files by relative name: ``judgement.json`` and per market
    ``<market>/reliability.png``, ``<market>/equity.png`` (what is written beside the
    checkpoint, and what the asset logs to the trackers)."""
    files = {JUDGEMENT: judgement.to_json().encode()}
    for market, evaluation in evaluations.items():
        files[f"{market}/{RELIABILITY_PNG}"] = evaluation.reliability_png
        files[f"{market}/{EQUITY_PNG}"] = evaluation.equity_png
    return files


def evaluation_uri(lake: Lake, record: DirectionRecord, name: str = JUDGEMENT) -> str:
    """Lake URI of one of the judgement's files (:func:`evaluation_files` names)."""
    return DirectionStore(lake, record.model_key, record.run_id).uri(
        f"{EVALUATION_FOLDER}/{name}")


def _check_model(model: DirectionModel, record: DirectionRecord) -> None:
    """The run folder is the record's, and it never trained on a month it is judged on."""
    from tradecore_lib.evaluation.evaluate import LeakageError

    if tuple(model.markets) != record.markets or model.kind != record.kind:
        raise LeakageError(f"{record.model_key}: run {record.run_id}'s final.pt is a "
                           f"{model.kind} over {model.markets}, its record says {record.kind} "
                           f"over {list(record.markets)}")
    trained = set(model.config.data.train_months)
    for split in SPLITS:
        overlap = sorted(m for m in getattr(record, f"{split}_months") if m in trained)
        if overlap:
            raise LeakageError(f"direction run {record.run_id} trained on {overlap}, which its "
                               f"record also lists as {split} months; refusing to score "
                               "in-sample data")


def _market_rows(predictions: pd.DataFrame, market: str) -> pd.DataFrame:
    rows = predictions[predictions["market"] == market]
    return rows.sort_values("ts", kind="stable").reset_index(drop=True)


def _fit_baselines(lake: Lake, model: DirectionModel, market: str,
                   record: DirectionRecord) -> Baselines:
    """The baselines of ``market`` fitted on the run's training months only (read with the
    month before as look-back for persistence; the labels stop at the purge)."""
    train = sorted(Month.parse(m) for m in record.train_months)
    frame = load_frame(lake, get_market(market), train, model.feature_presets[market],
                       warmup=True)
    return fit_baselines(frame.frame, feature_columns=model.feature_columns(market),
                         candle_inputs=model.candle_inputs,
                         horizon_minutes=model.horizon_minutes, dead_zone=model.dead_zone,
                         train_start_ms=train[0].start_ms,
                         train_end_ms=model.config.data.train_end_ms)


def _champion_predictions(lake: Lake, champion: DirectionChampionRecord | None,
                          record: DirectionRecord, months: Mapping[str, list[Month]],
                          device: str) -> tuple[dict[str, pd.DataFrame] | None, str]:
    """The champion's predictions per split on the record's months (every market it
    predicts), or None with the reason it is not scored."""
    if champion is None:
        return None, ""
    if champion.run_id == record.run_id:
        return None, THE_RUN_EVALUATED
    window = {m for split in SPLITS for m in getattr(record, f"{split}_months")}
    overlap = sorted(window & set(champion.record.train_months))
    if overlap:
        return None, f"not scored: the champion trained on {overlap} of this window"
    shared = [m for m in record.markets if m in champion.record.markets]
    if not shared:
        return None, (f"not scored: the champion predicts {list(champion.record.markets)}, "
                      f"none of {list(record.markets)}")
    rival = DirectionModel.load(DirectionStore(lake, champion.model_key, champion.run_id),
                                device)
    return {split: rival.predict(rival.load_frames(lake, months[split]), split)
            for split in SPLITS}, ""


def _market_champion(champion: DirectionChampionRecord,
                     predictions: dict[str, pd.DataFrame] | None, note: str,
                     market: str) -> DirectionChampion:
    if predictions is not None and market not in champion.record.markets:
        predictions, note = None, f"not scored: the champion does not predict {market}"
    rows = None if predictions is None else pd.concat(
        [_market_rows(predictions[split], market) for split in SPLITS], ignore_index=True)
    return DirectionChampion(model_name=champion.model_name,
                             model_version=champion.model_version, run_id=champion.run_id,
                             predictions=rows, note=note)


def promote_direction(tracker: Tracker, judgement: DirectionJudgement,
                      record: DirectionRecord, *, dagster_run_id: str | None,
                      evaluation_dagster_run_id: str | None) -> DirectionChampionRecord:
    """Point the ``champion`` alias of ``tradecore-direction-<model_key>`` at ``record``'s
    model version (tagged ``promotion.*``: who, when, why) and return the champion record.

    Args:
        tracker: the MLflow tracker (mirrors receive the promotion too).
        judgement: the evaluation whose verdict allows it.
        record: the judged run's record with its MLflow reference (the direction_model
            value; ``judgement.record`` when it was logged before judging).

    Raises:
        PromotionError: the verdict did not pass, the judgement is of another run, or the
            run has no registered model version.
    """
    if judgement.run_id != record.run_id or judgement.model_key != record.model_key:
        raise PromotionError(f"{record.model_key}: the judgement is of run "
                             f"{judgement.model_key}/{judgement.run_id}, not of "
                             f"{record.model_key}/{record.run_id}")
    verdict = judgement.verdict
    if not verdict.passed:
        raise PromotionError(f"{record.model_key}: direction run {record.run_id} cannot be "
                             f"promoted: {verdict.explanation()}")
    ref = record.mlflow or judgement.record.mlflow
    if ref is None or ref.version is None or ref.model_name is None:
        raise PromotionError(f"{record.model_key}: direction run {record.run_id} has no "
                             "registered MLflow model version; re-materialize its "
                             "direction_model")
    from tradecore_lib.tracking import DIRECTION

    at = iso_utc(utc_now_ms())
    reason = verdict.explanation()
    tracker.promote(record.model_key, ref.version, {
        "dagster_run_id": dagster_run_id or "", "at": at, "rules": reason[:5000],
    }, family=DIRECTION)
    return DirectionChampionRecord(
        model_key=record.model_key, run_id=record.run_id, model_name=ref.model_name,
        model_version=ref.version, record=record.with_mlflow(ref), reason=reason,
        promoted_at=at, dagster_run_id=dagster_run_id,
        evaluation_dagster_run_id=evaluation_dagster_run_id)


__all__ = ["EVALUATION_FOLDER", "JUDGEMENT", "THE_RUN_EVALUATED", "DirectionJudgement",
           "combine_verdicts", "evaluation_files", "evaluation_uri",
           "judge_direction_run", "promote_direction"]
