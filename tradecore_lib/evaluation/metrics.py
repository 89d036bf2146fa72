"""The metric records of an evaluation: what one policy did on one split, the matched random
policies as a population, and the statistics only the agent gets.

Plain pydantic records (no engine, no statistics library imported), so readers such as the
Dagster code location load them cheaply; :mod:`tradecore_lib.evaluation.scoring` computes them.
A ratio that is undefined (no dispersion, no losing day, too few days) is ``None``, never NaN
or infinity, so every record round-trips through JSON.

Units: returns, drawdowns and exposure are fractions (0.01 = 1 %); fees and holding costs are
quote currency; daily figures annualize with sqrt(365) (the market trades every day), per-bar
figures with the bars per year of the bar spacing (525,600 for one-minute bars).

**Undefined Sharpe ratios.** A return series without dispersion has no Sharpe ratio (a flat
policy, or one that never traded): records hold None. Comparisons (the gate's random-percentile
and champion rules, the agent's percentile and p-value among matched random) score it 0 with
:func:`comparable_sharpe`, the Sharpe of earning nothing, so a policy that did nothing never
ranks above one that did something.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from tradecore_lib.train.record import RecordModel


def comparable_sharpe(value: float | None) -> float:
    """A recorded Sharpe ratio for comparisons: an undefined one (None) counts as 0."""
    return 0.0 if value is None else float(value)


class PolicyMetrics(RecordModel):
    """How one policy did on one split (or on several splits chained, for the overall rows)."""

    total_return: float = Field(description="final equity / initial equity - 1, after fees, "
                                "slippage and holding costs")
    daily_sharpe: float | None = Field(
        description="annualized Sharpe ratio of the UTC daily returns (sqrt 365, risk-free 0); "
        "None without dispersion")
    daily_sharpe_low: float | None = Field(
        default=None, description="lower end of the stationary-bootstrap 95 % interval of the "
        "daily Sharpe (None where not computed)")
    daily_sharpe_high: float | None = Field(
        default=None, description="upper end of the same interval")
    bar_sharpe: float | None = Field(description="annualized Sharpe ratio of the per-bar "
                                     "returns")
    sortino: float | None = Field(description="annualized Sortino ratio of the daily returns "
                                  "(downside deviation, target 0); None without a losing day")
    max_drawdown: float = Field(description="largest fall of equity from its running peak "
                                "(bar closes)")
    exposure: float = Field(description="share of bars ending with an open position")
    trades: int = Field(description="round trips (flat -> position -> flat, or a flip)")
    win_rate: float | None = Field(description="share of round trips with a positive net PnL")
    turnover: float = Field(description="traded notional / mean equity")
    fees: float = Field(description="fees paid, quote currency")
    borrow_cost: float = Field(description="borrow paid for spot shorts, quote currency")
    funding_cost: float = Field(description="funding paid (negative: received) on perpetual "
                                "futures, quote currency")
    kill_switch_hits: int = Field(description="times the kill switch closed the account")
    guardrail_breaches: int = Field(description="daily-loss / total-loss guardrail breaches")
    bars: int = Field(description="bars played")
    days: int = Field(description="UTC days of daily returns")


class SharpeDifference(RecordModel):
    """Paired stationary-bootstrap interval of (agent daily Sharpe - baseline daily Sharpe)
    on the same days: the gate's evidence that the agent beats buy-and-hold."""

    estimate: float | None
    low: float | None = Field(description="lower end of the interval (the gate compares it "
                              "with sharpe_margin_vs_buy_and_hold)")
    high: float | None
    level: float = Field(description="coverage of the interval, e.g. 0.95")
    samples: int = Field(description="bootstrap replicates")
    mean_block: float = Field(description="mean block length, days")


class MatchedRandom(RecordModel):
    """The matched random policies of one split: random position sequences with the agent's
    number of trades, holding times and long/short mix on that split, placed at random times
    and played by the same engine (:func:`tradecore_lib.evaluation.stats.matched_random_positions`).
    """

    policies: int = Field(description="how many were played")
    seed: int = Field(description="row i was drawn with the seed (seed, i)")
    agent_trades: int = Field(description="trades of the agent they were matched to")
    target: float = Field(description="target fraction they trade (the agent's median "
                          "non-zero target magnitude)")
    daily_sharpes: tuple[float | None, ...] = Field(
        description="each policy's daily Sharpe, in seed order")
    median: PolicyMetrics = Field(description="the median of each metric over the policies")
    p95: PolicyMetrics = Field(description="the 95th percentile of each metric")


class AgentStatistics(RecordModel):
    """What only the agent is judged or reported by, on one split."""

    psr: float | None = Field(description="probabilistic Sharpe ratio: P(true daily Sharpe > 0) "
                              "given the sample length, skewness and kurtosis")
    dsr: float | None = Field(description="deflated Sharpe ratio: the PSR against the Sharpe "
                              "the best of n_trials no-skill trials would show by luck")
    n_trials: int = Field(description="trials the DSR deflates for: every training run of the "
                          "market recorded in MLflow (at least this record's runs)")
    trial_sharpe_variance: float | None = Field(
        description="variance of the trials' annualized daily Sharpe ratios")
    trial_variance_source: str = Field(description="where that variance comes from")
    sharpe_vs_buy_and_hold: SharpeDifference
    random_percentile: float = Field(description="percent of the matched random policies whose "
                                     "daily Sharpe is at or below the agent's")
    random_p_value: float = Field(description="(1 + #random >= agent) / (1 + #random)")
    recovery: float | None = Field(
        default=None, description="control markets: the agent's cumulative log return / the "
        "oracle's on the same rows and costs")
    recovery_note: str = Field(default="", description="why recovery is None, when it is")


@dataclass(frozen=True)
class Trials:
    """The trials a deflated Sharpe ratio deflates for.

    Attributes:
        count: training runs tried on the market (every one recorded in MLflow).
        sharpes: the annualized validation daily Sharpes recorded for them, where known.
    """

    count: int
    sharpes: tuple[float, ...] = ()
