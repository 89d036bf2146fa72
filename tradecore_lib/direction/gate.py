"""The direction models' promotion gate: validation only, rule by rule.

:func:`judge_direction` reads the ``validation`` split of a direction evaluation and nothing
else (the test split is scored once and recorded, never used to decide), and returns the RL
gate's :class:`~tradecore_lib.evaluation.promotion.Verdict`: one
:class:`~tradecore_lib.evaluation.promotion.Rule` per limit (value, limit, signed margin,
passed, explanation), passed = eligible and every rule passed.

Rules (limits from :class:`~tradecore_lib.direction.config.DirectionPromotion`):

* ``accuracy_vs_best_baseline``: the lower end of the stationary-bootstrap 95 % interval of
  (model accuracy - best baseline accuracy) on the validation samples, with the best of
  majority, persistence and logistic regression taken on validation, must be above
  ``accuracy_margin`` (0 by default): the model must beat every baseline by more than the
  luck of the draw, not merely on average;
* ``calibration_error``: the model's expected calibration error on validation
  (``ece_bins`` equal-width bins) at most ``max_ece`` (0.05, the restart plan's);
* ``min_accuracy`` (only when set; off by default): the model's validation accuracy above
  it. The restart plan asked for 0.68; on liquid one-minute data no honest model reaches it
  (a 15-minute direction is close to a coin flip), so a fixed floor would refuse every real
  model or tempt leakage. The planted-edge control shows when such a floor is attainable;
* the economic check's rules of the RL gate
  (:func:`tradecore_lib.evaluation.promotion.judge`, limits from
  ``DirectionPromotion.economic``): the model's positions (long above ``p_long``, short below
  ``1 - p_long``, flat between) traded through the one engine with all costs must make a net
  return above ``min_net_return``, a daily Sharpe whose bootstrap 95 % lower bound minus
  buy-and-hold's is above ``sharpe_margin_vs_buy_and_hold``, a Sharpe above the
  ``random_percentile``-th percentile of random policies matched to its trades, no more
  kill-switch hits or guardrail breaches than allowed and, when the champion was scored on
  the same window, a daily Sharpe above the champion's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from tradecore_lib.direction.baselines import MODEL
from tradecore_lib.direction.config import DirectionPromotion
from tradecore_lib.evaluation.promotion import DECIDING_SPLIT, Rule, Verdict, judge, judged_rule
from tradecore_lib.evaluation.summary import FoldEvaluation

if TYPE_CHECKING:
    from tradecore_lib.direction.evaluate import DirectionSplit

MODEL_FOLD = 0  # a direction evaluation judges one trained model: one fold


def direction_rules(split: DirectionSplit, promotion: DirectionPromotion) -> list[Rule]:
    """The accuracy and calibration rules (and the optional accuracy floor) on ``split``."""
    model = split.models[MODEL].scores
    diff = split.accuracy_vs_best_baseline
    rules = [
        judged_rule("accuracy_vs_best_baseline", MODEL_FOLD, diff.low, promotion.accuracy_margin,
              at_most=False,
              undefined="undefined (too few labelled samples to resample)",
              what=f"{DECIDING_SPLIT} accuracy {model.accuracy:.4f} minus the best baseline's "
              f"({diff.baseline} {diff.baseline_accuracy:.4f}): "
              f"{100 * diff.level:.0f} % bootstrap lower bound"),
        judged_rule("calibration_error", MODEL_FOLD, model.ece, promotion.max_ece, at_most=True,
              what=f"{DECIDING_SPLIT} expected calibration error ({model.ece_bins} bins)"),
    ]
    if promotion.min_accuracy is not None:
        rules.append(judged_rule("min_accuracy", MODEL_FOLD, model.accuracy, promotion.min_accuracy,
                           at_most=False, what=f"{DECIDING_SPLIT} accuracy"))
    return rules


def judge_direction(splits: Mapping[str, DirectionSplit], promotion: DirectionPromotion, *,
                    eligible: bool, eligibility: str = "", run_id: str = "") -> Verdict:
    """The gate's verdict (see the module docstring) on ``splits["validation"]`` alone; any
    other entry of ``splits`` is never read (``splits`` may hold the validation split only).

    Args:
        splits: split name -> the evaluation's :class:`DirectionSplit`.
        promotion: the limits.
        eligible, eligibility: whether the preset may be promoted at all, and why not (a smoke
            preset never is).
        run_id: the model's run (recorded on the economic fold).
    """
    split = splits[DECIDING_SPLIT]
    economic = judge([FoldEvaluation(fold=MODEL_FOLD, run_id=run_id,
                                     splits={DECIDING_SPLIT: split.economic})],
                     promotion.economic, eligible=eligible, eligibility=eligibility)
    rules = (*direction_rules(split, promotion), *economic.rules)
    return Verdict(eligible=eligible, eligibility=eligibility, rules=rules,
                   passed=eligible and all(rule.passed for rule in rules))
