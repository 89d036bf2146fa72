"""The promotion gate and the champion record.

:func:`judge` turns an evaluation's validation scores into a :class:`Verdict`: one
:class:`Rule` per limit and fold (value, limit, signed margin, passed) plus whether the preset
may be promoted at all (``eligible_for_promotion``). The gate decides on **validation only**:
it reads nothing but each fold's ``validation`` split, so the test split, scored once and
recorded, can never change a decision. The verdict travels inside the typed evaluation
summary; the Dagster check ``promotion_gate`` only reports it, and ``<market>/champion`` acts
on it.

Rules judged (every fold must pass every rule; limits from
:class:`~tradecore_lib.train.config.PromotionGate`):

* ``net_return``: the agent's validation return after all costs > ``min_net_return``;
* ``sharpe_vs_buy_and_hold``: the lower end of the paired stationary-bootstrap 95 % interval
  of (agent daily Sharpe - true buy-and-hold daily Sharpe) > ``sharpe_margin_vs_buy_and_hold``
  (undefined, e.g. for an agent that never traded: refused);
* ``random_percentile``: the agent's daily Sharpe > the ``random_percentile``-th percentile
  of the matched random policies' (same trades, holding times and long/short mix, placed at
  random times), so timing, not turnover, must explain the result;
* ``kill_switch_hits`` <= ``max_kill_switch_hits`` and ``guardrail_breaches`` <=
  ``max_guardrail_breaches``;
* ``beats_champion`` (``require_beats_champion``, when the current champion was scored on the
  same window): the agent's daily Sharpe > the champion's.

In comparisons an undefined Sharpe (no dispersion) counts as 0
(:func:`~tradecore_lib.evaluation.metrics.comparable_sharpe`).

:func:`promote` is the action: it points the MLflow ``champion`` alias at the newest fold's
model version and returns the :class:`ChampionRecord`, the value of ``<market>/champion``. The
alias mirrors the asset; the record is what ``signals`` (and warm starts) read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Self

import numpy as np
from pydantic import Field, model_validator

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.evaluation.metrics import comparable_sharpe
from tradecore_lib.months import iso_utc, utc_now_ms
from tradecore_lib.train.checkpoints import CONFIG, RunStore
from tradecore_lib.train.config import PromotionGate, parse_train_config
from tradecore_lib.train.record import FoldRun, MlflowRef, RecordModel, RunRecord

if TYPE_CHECKING:
    from tradecore_lib.evaluation.summary import FoldEvaluation, SplitResult
    from tradecore_lib.lake import Lake
    from tradecore_lib.tracking import Champion, Tracker

# The split whose backtest the rules judge.
DECIDING_SPLIT = "validation"
# The baselines / rivals the rules compare with (policy names in a split's results).
AGENT = "agent"
BUY_AND_HOLD = "buy_and_hold"
CHAMPION_POLICY = "champion"


class PromotionError(TradeCoreError):
    """A promotion was asked for something that cannot be promoted."""


class Rule(RecordModel):
    """One rule's outcome on one fold. ``margin`` is the signed distance from the limit,
    positive on the good side (-0.3: short by 0.3); "above" rules need margin > 0, "at most"
    rules margin >= 0. ``value`` and ``margin`` are None when the value is undefined (the
    rule then fails)."""

    name: str
    fold: int = Field(ge=0)
    split: str
    value: float | None
    limit: float
    margin: float | None
    passed: bool
    explanation: str


class Verdict(RecordModel):
    """The gate's decision: passed = eligible and every rule of every fold passed."""

    eligible: bool
    eligibility: str = Field(default="", description="Why not eligible, when not.")
    rules: tuple[Rule, ...] = ()
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


def judge(folds: Sequence[FoldEvaluation], gate: PromotionGate, *, eligible: bool,
          eligibility: str = "") -> Verdict:
    """The gate's rules (see the module docstring) on each fold's :data:`DECIDING_SPLIT`;
    the other splits are not read."""
    rules = [rule for fold in folds
             for rule in _fold_rules(fold.fold, len(folds), fold.splits[DECIDING_SPLIT], gate)]
    passed = eligible and all(rule.passed for rule in rules)
    return Verdict(eligible=eligible, eligibility=eligibility, rules=tuple(rules),
                   passed=passed)


def judged_rule(name: str, fold: int, value: float | None, limit: float, *, at_most: bool,
                what: str, undefined: str = "undefined") -> Rule:
    """``value`` strictly above ``limit``, or (``at_most``) not above it; None fails."""
    relation = "<=" if at_most else ">"
    if value is None:
        return Rule(name=name, fold=fold, split=DECIDING_SPLIT, value=None, limit=limit,
                    margin=None, passed=False,
                    explanation=f"{what} {undefined} (needs {relation} {limit:.4g}): fails")
    margin = limit - value if at_most else value - limit
    passed = margin >= 0 if at_most else margin > 0
    outcome = "passes" if passed else (f"fails (over by {-margin:.4g})" if at_most
                                       else f"fails (short by {-margin:.4g})")
    return Rule(name=name, fold=fold, split=DECIDING_SPLIT, value=value, limit=limit,
                margin=margin, passed=passed,
                explanation=f"{what} {value:.4g} {relation} {limit:.4g}: {outcome}")


def random_limit(split: SplitResult, percentile: float) -> float:
    """The ``percentile``-th percentile (linear interpolation) of the matched random
    policies' daily Sharpes on ``split`` (undefined ones count as 0)."""
    sharpes = [comparable_sharpe(s) for s in split.matched_random.daily_sharpes]
    return float(np.percentile(sharpes, percentile)) if sharpes else 0.0


def _fold_rules(fold: int, count: int, split: SplitResult, gate: PromotionGate) -> list[Rule]:
    agent, hold = split.policies[AGENT], split.policies[BUY_AND_HOLD]
    where = DECIDING_SPLIT if count == 1 else f"fold {fold + 1}/{count} {DECIDING_SPLIT}"
    sharpe = comparable_sharpe(agent.daily_sharpe)
    diff = split.agent.sharpe_vs_buy_and_hold
    random = split.matched_random
    rules = [
        judged_rule("net_return", fold, agent.total_return, gate.min_net_return, at_most=False,
              what=f"{where} net return"),
        judged_rule("sharpe_vs_buy_and_hold", fold, diff.low, gate.sharpe_margin_vs_buy_and_hold,
              at_most=False, undefined="undefined (the agent's daily returns do not vary)",
              what=f"{where} daily Sharpe {_num(agent.daily_sharpe)} minus buy-and-hold's "
              f"{_num(hold.daily_sharpe)}: {100 * diff.level:.0f} % bootstrap lower bound"),
        judged_rule("random_percentile", fold, sharpe, random_limit(split, gate.random_percentile),
              at_most=False,
              what=f"{where} daily Sharpe (percentile {split.agent.random_percentile:.1f}, p = "
              f"{split.agent.random_p_value:.3f} among {random.policies} matched random; "
              f"limit: their {gate.random_percentile:g}th percentile)"),
        judged_rule("kill_switch_hits", fold, agent.kill_switch_hits, gate.max_kill_switch_hits,
              at_most=True, what=f"{where} kill-switch hits"),
        judged_rule("guardrail_breaches", fold, agent.guardrail_breaches,
                    gate.max_guardrail_breaches,
              at_most=True, what=f"{where} guardrail breaches"),
    ]
    champion = split.policies.get(CHAMPION_POLICY)
    if gate.require_beats_champion and champion is not None:
        rules.append(judged_rule("beats_champion", fold, sharpe,
                           comparable_sharpe(champion.daily_sharpe), at_most=False,
                           what=f"{where} daily Sharpe vs the champion's on the same window"))
    return rules


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


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

