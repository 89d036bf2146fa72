"""The promotion gate and the champion record.

:func:`judge` turns an evaluation's validation scores into a :class:`Verdict`: one
:class:`Rule` per limit and fold (value, limit, signed margin, passed) plus whether the preset
may be promoted at all (``eligible_for_promotion``). The gate decides on validation only; the
test split is scored and recorded, never judged. The verdict travels inside the typed
evaluation summary; the Dagster check ``promotion_gate`` only reports it, and
``champion/<market>`` acts on it.

Rules judged (every fold must pass every rule):

* ``net_return``: the agent's validation return after all costs > ``min_net_return``;
* ``sharpe_vs_buy_and_hold``: the agent's annualized per-bar Sharpe minus buy-and-hold's >
  ``sharpe_margin_vs_buy_and_hold`` (a point estimate: the bootstrap interval on daily returns
  replaces it when daily metrics exist);
* ``kill_switch_hits``: at most ``max_kill_switch_hits``;
* ``beats_champion`` (``require_beats_champion``): when the current champion could be scored
  on the same window, the agent's Sharpe must be above the champion's.

Settings whose metric the evaluation does not compute yet (``random_percentile``,
``max_guardrail_breaches``) are listed in :attr:`Verdict.not_judged`, never silently passed.

:func:`promote` is the action: it points the MLflow ``champion`` alias at the newest fold's
model version and returns the :class:`ChampionRecord`, the value of ``champion/<market>``. The
alias mirrors the asset; the record is what ``signals`` (and warm starts) read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, model_validator

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.evaluation.metrics import PolicyMetrics
from tradecore_lib.months import iso_utc, utc_now_ms
from tradecore_lib.train.checkpoints import CONFIG, RunStore
from tradecore_lib.train.config import PromotionGate, parse_train_config
from tradecore_lib.train.record import FoldRun, MlflowRef, RecordModel, RunRecord

if TYPE_CHECKING:
    from tradecore_lib.lake import Lake
    from tradecore_lib.tracking import Champion, Tracker

# The split whose backtest the rules judge.
DECIDING_SPLIT = "validation"
# The baselines / rivals the rules compare with (policy names in a split's results).
BUY_AND_HOLD = "buy_and_hold"
CHAMPION_POLICY = "champion"
# PromotionGate settings no rule judges yet, with the metric each needs.
NOT_JUDGED = {
    "random_percentile": "matched random baselines",
    "max_guardrail_breaches": "guardrail breach counts",
}


class PromotionError(TradeCoreError):
    """A promotion was asked for something that cannot be promoted."""


class Rule(RecordModel):
    """One rule's outcome on one fold. ``margin`` is the signed distance from the limit,
    positive on the good side (-0.3: short by 0.3); "above" rules need margin > 0, "at most"
    rules margin >= 0."""

    name: str
    fold: int = Field(ge=0)
    split: str
    value: float
    limit: float
    margin: float
    passed: bool
    explanation: str


class Verdict(RecordModel):
    """The gate's decision: passed = eligible and every rule of every fold passed."""

    eligible: bool
    eligibility: str = Field(default="", description="Why not eligible, when not.")
    rules: tuple[Rule, ...] = ()
    not_judged: tuple[str, ...] = Field(
        default=(), description="Gate settings no rule judges yet (and what they need)."
    )
    passed: bool

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.passed != (self.eligible and all(rule.passed for rule in self.rules)):
            raise ValueError("passed must equal eligible and all rules passed")
        return self

    def explanation(self) -> str:
        """One sentence: why it passed or what it missed."""
        if not self.eligible:
            return f"not eligible ({self.eligibility})"
        if self.passed:
            met = "; ".join(rule.explanation for rule in self.rules)
            return f"passed: {met}" if met else "passed: no rules"
        return "refused: " + "; ".join(r.explanation for r in self.rules if not r.passed)


def judge(folds: list[dict[str, PolicyMetrics]], gate: PromotionGate, *, eligible: bool,
          eligibility: str = "") -> Verdict:
    """The gate's rules (see the module docstring) on each fold's validation scores.

    ``folds[i]`` maps policy name (``agent``, ``buy_and_hold``, ``champion`` when it was
    scored...) to fold i's metrics on :data:`DECIDING_SPLIT`.
    """
    rules = [rule for index, policies in enumerate(folds)
             for rule in _fold_rules(index, len(folds), policies, gate)]
    passed = eligible and all(rule.passed for rule in rules)
    not_judged = tuple(f"{name} (needs {what})" for name, what in NOT_JUDGED.items())
    return Verdict(eligible=eligible, eligibility=eligibility, rules=tuple(rules),
                   not_judged=not_judged, passed=passed)


def _rule(name: str, fold: int, value: float, limit: float, *, at_most: bool, what: str
          ) -> Rule:
    """``value`` strictly above ``limit``, or (``at_most``) not above it."""
    margin = limit - value if at_most else value - limit
    passed = margin >= 0 if at_most else margin > 0
    relation = "<=" if at_most else ">"
    outcome = "passes" if passed else (f"fails (over by {-margin:.4g})" if at_most
                                       else f"fails (short by {-margin:.4g})")
    return Rule(name=name, fold=fold, split=DECIDING_SPLIT, value=value, limit=limit,
                margin=margin, passed=passed,
                explanation=f"{what} {value:.4g} {relation} {limit:.4g}: {outcome}")


def _fold_rules(fold: int, count: int, policies: dict[str, PolicyMetrics],
                gate: PromotionGate) -> list[Rule]:
    agent, hold = policies["agent"], policies[BUY_AND_HOLD]
    where = DECIDING_SPLIT if count == 1 else f"fold {fold + 1}/{count} {DECIDING_SPLIT}"
    rules = [
        _rule("net_return", fold, agent.total_return, gate.min_net_return, at_most=False,
              what=f"{where} net return"),
        _rule("sharpe_vs_buy_and_hold", fold, agent.sharpe - hold.sharpe,
              gate.sharpe_margin_vs_buy_and_hold, at_most=False,
              what=f"{where} Sharpe {agent.sharpe:.3f} minus buy-and-hold's {hold.sharpe:.3f} ="),
        _rule("kill_switch_hits", fold, agent.kill_switch_hits, gate.max_kill_switch_hits,
              at_most=True, what=f"{where} kill-switch hits"),
    ]
    champion = policies.get(CHAMPION_POLICY)
    if gate.require_beats_champion and champion is not None:
        rules.append(_rule("beats_champion", fold, agent.sharpe, champion.sharpe,
                           at_most=False, what=f"{where} Sharpe vs the champion's"))
    return rules


class ChampionRecord(RecordModel):
    """The value of ``champion/<market>``: the promoted run and its MLflow model version."""

    schema_version: Literal[1] = 1
    market: str
    run: RunRecord = Field(description="The promoted run; its newest fold is the model.")
    model_name: str
    model_version: str
    promoted_at: str = Field(description="UTC, ISO 8601 (months.iso_utc).")
    reason: str = Field(description="The verdict's explanation, or how it was adopted.")
    dagster_run_id: str | None = Field(
        default=None, description="The Dagster run that materialized champion (None: adopted)."
    )
    evaluation_dagster_run_id: str | None = Field(
        default=None, description="The Dagster run whose evaluation promoted it."
    )
    adopted: bool = Field(
        default=False, description="Adopted once from an MLflow alias set before the "
        "champion asset existed, not promoted by a gate."
    )

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def label(self) -> str:
        """``tradecore-ppo-<market> v3`` (what signals record as their model)."""
        return f"{self.model_name} v{self.model_version}"


def promote(tracker: Tracker, run: RunRecord, verdict: Verdict, *, dagster_run_id: str,
            evaluation_dagster_run_id: str | None) -> ChampionRecord:
    """Point MLflow's ``champion`` alias at ``run``'s newest model version (tagged with who,
    when and why) and return the champion record.

    Raises:
        PromotionError: the verdict did not pass, or the run has no registered version.
    """
    if not verdict.passed:
        raise PromotionError(f"{run.market}: run {run.run_id} cannot be promoted: "
                             f"{verdict.explanation()}")
    ref = run.newest.mlflow
    if ref is None or ref.version is None or ref.model_name is None:
        raise PromotionError(f"{run.market}: run {run.run_id} has no registered MLflow model "
                             "version; re-materialize its ppo_agent")
    at = iso_utc(utc_now_ms())
    reason = verdict.explanation()
    tracker.promote(run.market, ref.version, {
        "dagster_run_id": dagster_run_id, "at": at, "rules": reason[:5000],
    })
    return ChampionRecord(
        market=run.market, run=run, model_name=ref.model_name, model_version=ref.version,
        promoted_at=at, reason=reason, dagster_run_id=dagster_run_id,
        evaluation_dagster_run_id=evaluation_dagster_run_id,
    )


def adopted_champion(lake: Lake, market: str, legacy: Champion) -> ChampionRecord:
    """The record of a champion the MLflow alias named before ``champion/<market>`` existed
    (read from its checkpoint folder; adopted as it is, whatever its preset)."""
    store = RunStore(lake, market, legacy.run_id)
    if not legacy.run_id or not store.is_complete():
        raise PromotionError(
            f"{market}: the MLflow champion {legacy.model_name} v{legacy.version} names run "
            f"{legacy.run_id or '(none)'}, which has no finished checkpoint under "
            f"{store.uri()}; cannot adopt it. Promote a new champion through evaluation.")
    config = parse_train_config(store.read_json(CONFIG), where=store.uri(CONFIG))
    ref = MlflowRef(run_id=legacy.mlflow_run_id, model_name=legacy.model_name,
                    version=legacy.version)
    run = RunRecord.of(market, config, None,
                       [FoldRun.from_store(store, 0).model_copy(update={"mlflow": ref})])
    return ChampionRecord(
        market=market, run=run, model_name=legacy.model_name, model_version=legacy.version,
        promoted_at=iso_utc(utc_now_ms()),
        reason="adopted: the MLflow alias champion pointed at this version before the "
        "champion asset existed", adopted=True,
    )

