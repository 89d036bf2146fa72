"""The promotion gate: does an evaluation's test backtest meet its preset's thresholds?"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """One threshold's outcome. ``margin`` is how far past the limit the value is, signed so
    that >= 0 passes (e.g. -0.3 means short by 0.3)."""

    name: str
    value: float | None
    limit: float
    passed: bool
    margin: float | None
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(summary: dict[str, Any]) -> list[Rule]:
    """The rules of ``summary["promotion"]`` applied to its test split (null = not checked)."""
    gate = summary["promotion"]
    test = summary["splits"]["test"]["policies"]
    agent, hold = test["agent"], test["buy_and_hold"]
    rules: list[Rule] = []

    def at_least(name: str, value: float | None, limit: float, what: str) -> None:
        margin = None if value is None else value - limit
        passed = margin is not None and margin >= 0
        verdict = "meets" if passed else "misses"
        shown = "undefined" if value is None else f"{value:.4g}"
        rules.append(Rule(name, value, limit, passed, margin,
                          f"{what} {shown} {verdict} >= {limit:.4g}"
                          + ("" if passed or margin is None else f" (short by {-margin:.4g})")))

    if gate["min_sharpe_margin_vs_buy_and_hold"] is not None:
        limit = gate["min_sharpe_margin_vs_buy_and_hold"]
        at_least("sharpe_vs_buy_and_hold", agent["sharpe"] - hold["sharpe"], limit,
                 f"test Sharpe {agent['sharpe']:.3f} minus buy-and-hold's {hold['sharpe']:.3f} =")
    if gate["max_drawdown"] is not None:
        limit = gate["max_drawdown"]
        value = agent["max_drawdown"]
        margin = limit - value
        passed = margin >= 0
        rules.append(Rule(
            "max_drawdown", value, limit, passed, margin,
            f"test max drawdown {100 * value:.2f}% {'within' if passed else 'exceeds'} "
            f"{100 * limit:.2f}%" + ("" if passed else f" (over by {100 * -margin:.2f} points)"),
        ))
    if gate["min_trades"] is not None:
        at_least("min_trades", agent["trades"], gate["min_trades"], "test trades")
    if gate["min_total_return"] is not None:
        at_least("min_total_return", agent["total_return"], gate["min_total_return"],
                 "test total return")
    return rules
