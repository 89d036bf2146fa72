"""RiskGuard: position size from risk budget and stop distance, leverage cap, kill switch.

A target of ``a`` in [-1, 1] asks for ``a`` times the RiskGuard's full size, whose notional is

    equity * min(risk_pct / stop_distance, max_leverage)

so that a full-size position hitting its stop loses ``risk_pct`` of equity (before fees,
slippage and gaps), and never exceeds ``max_leverage`` times equity. The episode is ended
(terminated) when equity is <= 0 or its drawdown from the episode's peak equity reaches
``max_drawdown``.

The vector env performs the same IEEE operations in the same order in
:func:`tradecore_lib.env.kernels.step_accounts`, so the two envs agree bit for bit.
"""

from __future__ import annotations

from tradecore_lib.env.config import EnvConfig

BPS = 10_000.0


class RiskGuard:
    """Sizing and kill switch of one preset (stateless; the account holds the state)."""

    def __init__(self, cfg: EnvConfig) -> None:
        self.risk_pct = float(cfg.risk_pct)
        self.max_leverage = float(cfg.max_leverage)
        self.max_drawdown = float(cfg.max_drawdown)

    def leverage(self, stop_distance: float) -> float:
        """Full-size notional / equity for a stop ``stop_distance`` (fraction of price) away."""
        return min(self.risk_pct / stop_distance, self.max_leverage)

    def target_qty(self, target: float, equity: float, price: float,
                   stop_distance: float) -> float:
        """Signed base-currency quantity for ``target`` at ``price`` (quote per base)."""
        return target * self.leverage(stop_distance) * equity / price

    def risk_units(self, qty: float, price: float, stop_distance: float,
                   equity: float) -> float:
        """Loss at the stop of the position, in units of ``risk_pct * equity``."""
        return abs(qty) * price * stop_distance / (self.risk_pct * max(equity, 1e-9))

    def killed(self, equity: float, drawdown: float) -> bool:
        """Whether the kill switch ends the episode."""
        return equity <= 0.0 or drawdown >= self.max_drawdown
