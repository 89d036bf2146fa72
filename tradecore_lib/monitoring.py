"""The champion judged again, and when new data is worth a retraining.

**The champion monitor.** Each completed month, the champion's dry run is scored on it with
the one engine and the costs of its evaluation (:func:`~tradecore_lib.evaluation.evaluate.
score_split` on the month, warmed on the month before, with the env settings its training
stored): the month's :class:`~tradecore_lib.evaluation.summary.SplitResult`, with the
baselines, the matched random policies and, on control markets, the oracle. Its **rolling
performance** is the last ``window_months`` months' walks chained oldest first (equity
carried from month to month, as the folds of an evaluation are chained:
:func:`~tradecore_lib.evaluation.scoring.compute_metrics`), compared with the same metrics of
the champion on its validation window (the newest fold's ``validation`` split of the
evaluation that promoted it):

* ``monthly_net_return``: the window's net return per month, ``(1 + R) ** (1 / months) - 1``
  (so windows of different lengths compare), must not fall more than ``return_margin`` below
  the validation window's;
* ``daily_sharpe``: the window's annualized daily Sharpe must not fall more than
  ``sharpe_margin`` below the validation window's (an undefined Sharpe counts as 0).

A window is judged only when every one of its months comes after the champion's validation
window (the months it was neither trained nor selected on) and each is in the lake; otherwise
the verdict says why it is not judged yet. A month the champion trained on is never scored.

**Retraining.** :func:`decide_retraining` is the retraining sensor's rule, on what the sensor
read from Dagster's records: the first training as soon as the preset's windows are complete;
afterwards a retraining when ``new_months`` complete months (or ``new_bars`` bars of them)
have landed after the newest month a training used, or when the monitor warned and at least
one new month landed, and ``cooldown_hours`` have passed since the last request. Windows that
do not roll (fixed month lists, a fixed anchor) are trained once.

This module imports no engine at import time (the Dagster code location loads it for the
sensors); the scoring functions import the evaluation engine when called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from tradecore_lib.config import ConfigModel
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.evaluation.metrics import PolicyMetrics, comparable_sharpe
from tradecore_lib.evaluation.promotion import AGENT, ChampionRecord
from tradecore_lib.evaluation.summary import EvaluationSummary, SplitResult
from tradecore_lib.months import Month, iso_utc, utc_now_ms
from tradecore_lib.train.config import Fold, PromotionGate, TrainConfig, TrainConfigError
from tradecore_lib.train.record import RecordModel

if TYPE_CHECKING:
    from tradecore_lib.evaluation.backtest import PolicySpec
    from tradecore_lib.evaluation.evaluate import ScoredSplit
    from tradecore_lib.lake import Lake
    from tradecore_lib.markets import Market

HOUR_MS = 3_600_000
MONTHLY_RETURN = "monthly_net_return"
DAILY_SHARPE = "daily_sharpe"


class MonitorError(TradeCoreError):
    """The champion cannot be scored on a month (in-sample month, unreadable model)."""


# ------------------------------------------------------------------------------ policies
class MonitorPolicy(ConfigModel):
    """How the champion's rolling performance is judged against its validation window."""

    window_months: int = Field(
        default=3, ge=1, le=24,
        description="Completed months in the rolling window (the month scored and the ones "
        "before it).")
    sharpe_margin: float = Field(
        default=1.0, ge=0,
        description="Warn when the window's annualized daily Sharpe is more than this below "
        "the validation window's.")
    return_margin: float = Field(
        default=0.02, ge=0, le=1,
        description="Warn when the window's net return per month (fraction) is more than "
        "this below the validation window's.")


class RetrainPolicy(ConfigModel):
    """When the retraining sensor asks for a new ``ppo_agent -> evaluation -> champion``."""

    new_months: int | None = Field(
        default=3, ge=1, le=120,
        description="Retrain once this many complete months with features landed after the "
        "newest month the last training used; null: months do not count.")
    new_bars: int | None = Field(
        default=None, ge=1,
        description="Retrain once this many bars (rows) of such complete months landed; "
        "null: bars do not count. Either threshold is enough.")
    cooldown_hours: float = Field(
        default=24.0, ge=0, le=24 * 365,
        description="Hours between two retraining requests of a market (a first training "
        "waits for nothing).")
    max_retries: int = Field(
        default=2, ge=0, le=10,
        description="Retries of a failed retraining on the same data, then an alert and no "
        "more tries until new data lands.")
    retry_delay_minutes: float = Field(
        default=15.0, ge=0, le=24 * 60,
        description="Minutes after a failed retraining ended before it is retried.")
    on_monitor_warning: bool = Field(
        default=True,
        description="A champion_monitor warning on the current champion triggers a "
        "retraining as soon as one new complete month landed (cooldown still applies).")

    @model_validator(mode="after")
    def _a_threshold(self) -> RetrainPolicy:
        if self.new_months is None and self.new_bars is None:
            raise ValueError("set new_months or new_bars (or both): with neither, new data "
                             "would never trigger a retraining")
        return self


# ------------------------------------------------------------------------------ retraining
@dataclass(frozen=True)
class TrainingData:
    """What a training of ``preset`` would train on now: its folds resolved against the
    complete months with features, and whether its windows roll forward with the data."""

    preset: str
    folds: tuple[Fold, ...]
    rolling: bool

    @property
    def first(self) -> Month:
        return min(m for fold in self.folds for m in fold.months)

    @property
    def last(self) -> Month:
        """The newest month the training uses (the newest fold's last test month)."""
        return max(m for fold in self.folds for m in fold.months)

    @property
    def key(self) -> str:
        """Names the data: ``<preset>:<first>..<last>`` (one training per key, ever)."""
        return f"{self.preset}:{self.first}..{self.last}"


def plan_training(cfg: TrainConfig, available: Sequence[Month]) -> TrainingData:
    """The data a training of ``cfg`` would use given the complete months with features.

    Raises:
        TrainConfigError: a month the windows need is missing (the message says which).
    """
    folds = cfg.folds(list(available))
    rolling = cfg.windows is not None and cfg.windows.anchor == "latest"
    return TrainingData(cfg.name, tuple(folds), rolling)


def newest_month(months: Sequence[str] | Sequence[Month]) -> Month | None:
    """The newest of ``months`` (``YYYY-MM`` texts or months), None when empty."""
    parsed = [m if isinstance(m, Month) else Month.parse(m) for m in months]
    return max(parsed) if parsed else None


@dataclass(frozen=True)
class RetrainDecision:
    """The retraining rule's answer: ``due`` with the ``data`` to train, and why (or why not).

    Attributes:
        due: whether a retraining should be requested now.
        reason: one sentence (a skip reason, or what triggered it).
        data: the training's data when its windows are complete, else None.
        new_months: the complete months after the last training's newest month.
        trigger: ``first_training``, ``new_months``, ``new_bars`` or ``monitor_warning``
            when due, else ``""``.
    """

    due: bool
    reason: str
    data: TrainingData | None = None
    new_months: tuple[Month, ...] = ()
    trigger: str = ""


def decide_retraining(
    policy: RetrainPolicy,
    cfg: TrainConfig,
    available: Sequence[Month],
    *,
    trained_through: Month | None,
    bars: Mapping[Month, int],
    last_request_ms: int | None,
    now_ms: int,
    warning: str | None = None,
) -> RetrainDecision:
    """Whether to retrain now (see the module docstring).

    Args:
        policy: the thresholds.
        cfg: the market's training preset, resolved.
        available: the complete months with features (and checked candles), any order.
        trained_through: the newest month any finished training of the market used (the
            champion's or a later challenger's), None when nothing was ever trained.
        bars: rows of each complete month (only the new months are read).
        last_request_ms: when the last retraining was requested or trained (UTC epoch ms).
        now_ms: the current time, UTC epoch ms.
        warning: the champion monitor's warning on the current champion, None without one.
    """
    try:
        data = plan_training(cfg, sorted(set(available)))
    except TrainConfigError as exc:
        first = "the first windows are not complete" if trained_through is None else \
            "the windows are not complete"
        return RetrainDecision(False, f"{first}: {exc}")
    if trained_through is None:
        return RetrainDecision(True, f"first training: nothing trained yet and the windows "
                               f"{data.first}..{data.last} are complete", data,
                               trigger="first_training")
    new = tuple(m for m in sorted(set(available)) if m > trained_through)
    if not data.rolling:
        return RetrainDecision(False, f"preset {cfg.name!r} has fixed months or a fixed "
                               "anchor: its windows do not roll forward with new data, so it "
                               f"is trained once (trained through {trained_through})", data,
                               new)
    if not new:
        return RetrainDecision(False, f"no complete month with features after {trained_through}"
                               ", the newest month the last training used", data)
    count = sum(bars.get(m, 0) for m in new)
    span = f"{new[0]}..{new[-1]}" if len(new) > 1 else str(new[0])
    trigger = ""
    if policy.new_months is not None and len(new) >= policy.new_months:
        trigger, why = "new_months", f"{len(new)} new complete month(s) ({span}) since " \
            f"{trained_through} (threshold {policy.new_months})"
    elif policy.new_bars is not None and count >= policy.new_bars:
        trigger, why = "new_bars", f"{count} new bars in {span} since {trained_through} " \
            f"(threshold {policy.new_bars})"
    elif policy.on_monitor_warning and warning:
        trigger, why = "monitor_warning", f"champion monitor warning ({warning}); " \
            f"{len(new)} new complete month(s) ({span})"
    if not trigger:
        needs = [f"{policy.new_months} months" if policy.new_months is not None else "",
                 f"{policy.new_bars} bars" if policy.new_bars is not None else ""]
        return RetrainDecision(False, f"{len(new)} new complete month(s) ({span}, {count} bars) "
                               f"since {trained_through}; retraining needs "
                               f"{' or '.join(n for n in needs if n)}", data, new)
    cooldown_ms = int(policy.cooldown_hours * HOUR_MS)
    if last_request_ms is not None and now_ms - last_request_ms < cooldown_ms:
        return RetrainDecision(False, f"{why}, but the cooldown of {policy.cooldown_hours:g} "
                               f"h since the last retraining ({iso_utc(last_request_ms)}) runs "
                               f"until {iso_utc(last_request_ms + cooldown_ms)}", data, new)
    return RetrainDecision(True, why, data, new, trigger)


# ------------------------------------------------------------------------------ the monitor
def first_live_month(champion: ChampionRecord) -> Month:
    """The first month the champion was neither trained nor selected on: the month after its
    newest fold's validation window."""
    last = newest_month(champion.run.newest.validation_months)
    assert last is not None  # a fold has at least one validation month
    return last.next()


class ValidationReference(RecordModel):
    """The champion's metrics on its validation window: what its rolling performance is
    compared with."""

    run_id: str = Field(description="The run the evaluation scored (the champion's).")
    months: tuple[str, ...] = Field(description="The validation months.")
    total_return: float = Field(description="Net return over the window, fraction.")
    daily_sharpe: float | None = Field(description="Annualized daily Sharpe (None: undefined).")

    @property
    def monthly_return(self) -> float:
        """Net return per month over the window, fraction."""
        return monthly_rate(self.total_return, len(self.months))

    @classmethod
    def of(cls, summary: EvaluationSummary) -> ValidationReference:
        """The agent's validation metrics on the newest fold of ``summary``."""
        validation = summary.newest.splits["validation"]
        agent = validation.policies[AGENT]
        return cls(run_id=summary.newest.run_id, months=validation.months,
                   total_return=agent.total_return, daily_sharpe=agent.daily_sharpe)


def monthly_rate(total_return: float, months: int) -> float:
    """The constant return per month compounding to ``total_return`` over ``months``."""
    if months < 1:
        raise ValueError(f"months must be >= 1, got {months}")
    return (1.0 + total_return) ** (1.0 / months) - 1.0


class MonitorRule(RecordModel):
    """One comparison of the window with the validation window; ``margin`` is the signed
    distance from the limit, negative when the rule fails."""

    name: str
    value: float
    reference: float
    limit: float
    margin: float
    passed: bool
    explanation: str


class WindowVerdict(RecordModel):
    """The rolling window ending at a month, judged against the validation window.

    ``passed`` is False only for a judged window that missed a rule; a window not judged
    (``judged`` False, ``explanation`` says why) passes.
    """

    months: tuple[str, ...]
    judged: bool
    passed: bool
    explanation: str
    metrics: PolicyMetrics | None = Field(default=None, description="The champion over the "
                                          "window, months chained.")
    monthly_return: float | None = None
    reference: ValidationReference | None = None
    rules: tuple[MonitorRule, ...] = ()


class MonitorRecord(RecordModel):
    """One ``champion_monitor/<market>`` partition: the champion on one completed month and
    its rolling window ending there."""

    schema_version: Literal[1] = 1
    market: str
    month: str
    champion_run_id: str
    champion_label: str
    policy: MonitorPolicy
    split: SplitResult = Field(description="The month scored as evaluation scores a split.")
    window: WindowVerdict
    generated_at: str


def judge_window(metrics: PolicyMetrics, months: Sequence[str], reference: ValidationReference,
                 policy: MonitorPolicy) -> WindowVerdict:
    """The rules of the module docstring on the window's chained ``metrics``."""
    rate = monthly_rate(metrics.total_return, len(months))
    sharpe = comparable_sharpe(metrics.daily_sharpe)
    ref_sharpe = comparable_sharpe(reference.daily_sharpe)
    span = f"{months[0]}..{months[-1]}" if len(months) > 1 else months[0]
    rules = (
        _rule(MONTHLY_RETURN, rate, reference.monthly_return, policy.return_margin,
              f"net return per month over {span}", percent=True),
        _rule(DAILY_SHARPE, sharpe, ref_sharpe, policy.sharpe_margin,
              f"daily Sharpe over {span}", percent=False),
    )
    passed = all(rule.passed for rule in rules)
    if passed:
        explanation = "holding up: " + "; ".join(r.explanation for r in rules)
    else:
        explanation = "fell behind its validation window: " + "; ".join(
            r.explanation for r in rules if not r.passed)
    return WindowVerdict(months=tuple(months), judged=True, passed=passed,
                         explanation=explanation, metrics=metrics, monthly_return=rate,
                         reference=reference, rules=rules)


def _rule(name: str, value: float, reference: float, margin: float, what: str, *,
          percent: bool) -> MonitorRule:
    limit = reference - margin
    passed = value >= limit

    def show(x: float) -> str:
        return f"{100 * x:+.2f} %" if percent else f"{x:.3g}"

    outcome = "ok" if passed else f"short by {show(limit - value).lstrip('+')}"
    return MonitorRule(
        name=name, value=value, reference=reference, limit=limit, margin=value - limit,
        passed=passed,
        explanation=f"{what} {show(value)} vs {show(reference)} on validation (limit "
        f"{show(limit)}): {outcome}")


def not_judged(months: Sequence[str], why: str, reference: ValidationReference | None
               ) -> WindowVerdict:
    """A window that cannot be judged yet, and why."""
    return WindowVerdict(months=tuple(months), judged=False, passed=True,
                         explanation=f"not judged: {why}", reference=reference)


@dataclass(frozen=True)
class MonitoredModel:
    """The champion as the monitor plays it.

    Attributes:
        run_id: its training run (the newest fold's).
        label: the model's name and version, e.g. ``tradecore-ppo-<market> v3``.
        policy: what the backtest plays (its network, frozen normalization).
        settings: its env settings (fees, slippage, holding costs: its training's).
        feature_preset: the features it observes.
        gate: the bootstrap samples and matched random policies of its evaluation.
        seed: the seed of the matched random policies and the bootstrap.
        train_months: the months it trained on (never scored).
        first_live: the first month after its validation window.
    """

    run_id: str
    label: str
    policy: PolicySpec
    settings: Mapping[str, Any]
    feature_preset: str
    gate: PromotionGate
    seed: int
    train_months: frozenset[str]
    first_live: Month

    @classmethod
    def load(cls, lake: Lake, champion: ChampionRecord) -> MonitoredModel:
        """Load the champion's checkpoint (torch and stable-baselines3 are imported here).

        Raises:
            UnfinishedRunError: the run has no final model.
        """
        from tradecore_lib.evaluation.agent import Agent
        from tradecore_lib.features import WARMUP_COLUMN
        from tradecore_lib.train.checkpoints import RunStore

        agent = Agent.load(RunStore(lake, champion.market, champion.run_id))
        return cls(run_id=champion.run_id, label=champion.label, policy=agent.policy,
                   settings=agent.config.env_settings(WARMUP_COLUMN),
                   feature_preset=agent.lineage["feature_preset"],
                   gate=champion.run.promotion, seed=agent.config.evaluation.random_baseline_seed,
                   train_months=frozenset(agent.lineage["train_months"]),
                   first_live=first_live_month(champion))


@dataclass
class MonitorScorer:
    """Scores one champion on completed months, each month once (the rolling windows of
    consecutive months share their months' walks)."""

    lake: Lake
    market: Market
    model: MonitoredModel
    reference: ValidationReference | None
    policy: MonitorPolicy
    _scored: dict[Month, ScoredSplit] = field(default_factory=dict, init=False, repr=False)

    def split(self, month: Month) -> ScoredSplit:
        """The champion (with the baselines and matched random policies) on ``month``.

        Raises:
            MonitorError: the champion trained on ``month``.
            MissingDataError: the month's candles or features are not in the lake.
        """
        from tradecore_lib.evaluation.evaluate import control_options, load_split, score_split
        from tradecore_lib.evaluation.metrics import Trials

        if str(month) in self.model.train_months:
            raise MonitorError(
                f"{self.market.name}: the champion {self.model.label} (run "
                f"{self.model.run_id}) trained on {month}; scoring it there would be "
                f"in-sample. The monitor scores months from {self.model.first_live} on (after "
                "its validation window).")
        if month not in self._scored:
            inputs = load_split(self.lake, self.market, self.model.feature_preset, [month])
            # One trial: the monitor reports the champion, it selects nothing.
            self._scored[month] = score_split(
                inputs, self.model.settings, self.model.policy, gate=self.model.gate,
                seed=self.model.seed, trials=Trials(count=1),
                control=control_options(self.market))
        return self._scored[month]

    def window(self, month: Month) -> WindowVerdict:
        """The rolling window ending at ``month``, judged (or why it is not)."""
        from tradecore_lib.evaluation.scoring import compute_metrics
        from tradecore_lib.train.data import MissingDataError

        months = [month]
        while len(months) < self.policy.window_months:
            months.insert(0, months[0].previous())
        texts = [str(m) for m in months]
        if self.reference is None:
            return not_judged(texts, "the champion has no evaluation record of its "
                              "validation window to compare with", None)
        early = [m for m in months if m < self.model.first_live]
        if early:
            live = len(months) - len(early)
            return not_judged(texts, f"{live} of the {len(months)} months of the window come "
                              f"after the champion's validation window (from "
                              f"{self.model.first_live} on)", self.reference)
        try:
            tracks = [self.split(m).tracks[AGENT] for m in months]
        except MissingDataError as exc:
            return not_judged(texts, f"a month of the window is not in the lake: {exc}",
                              self.reference)
        metrics = compute_metrics(tracks, bootstrap_samples=self.model.gate.bootstrap_samples,
                                  seed=self.model.seed)
        return judge_window(metrics, texts, self.reference, self.policy)

    def record(self, month: Month) -> MonitorRecord:
        """The :class:`MonitorRecord` of ``month``."""
        return MonitorRecord(
            market=self.market.name, month=str(month), champion_run_id=self.model.run_id,
            champion_label=self.model.label, policy=self.policy,
            split=self.split(month).result, window=self.window(month),
            generated_at=iso_utc(utc_now_ms()))


def monitor_key(market: str, month: Month) -> str:
    """Lake key of a month's monitor record:
    ``champion_monitor/<market>/year=YYYY/month=MM/monitor.json``."""
    return f"champion_monitor/{market}/year={month.year:04d}/month={month.month:02d}/monitor.json"
