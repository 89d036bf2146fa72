"""Reward: scaled PnL minus fees minus a drawdown penalty (terms returned separately).

With ``E`` the equity, ``F`` the fees paid on the bar and ``D`` the drawdown from the episode's
peak equity (a fraction), the reward of the step that plays bar ``t + 1`` is

    reward_pnl      =  reward_scale * (E[t+1] - E[t] + F) / E[t]       (gross return)
    reward_fee      = -fee_coef * reward_scale * F / E[t]
    reward_drawdown = -drawdown_coef * reward_scale * max(D[t+1] - D[t], 0)
    reward          =  reward_pnl + reward_fee + reward_drawdown

so with ``fee_coef = 1`` the first two terms add up to the scaled net return, and the
drawdown penalty adds up over an episode to the scaled deepest drawdown.
The vector env performs the same operations in the same order
(:func:`tradecore_lib.env.kernels.step_accounts`).
"""

from __future__ import annotations

from tradecore_lib.env.config import EnvConfig


class RewardFn:
    """Reward coefficients of one preset."""

    def __init__(self, cfg: EnvConfig) -> None:
        self.scale = float(cfg.reward_scale)
        self.k_fee = -(float(cfg.fee_coef) * self.scale)
        self.k_dd = -(float(cfg.drawdown_coef) * self.scale)

    def terms(self, equity_prev: float, equity: float, fees: float, dd_prev: float,
              dd: float) -> tuple[float, float, float, float]:
        """(reward, reward_pnl, reward_fee, reward_drawdown) of one env."""
        base = max(equity_prev, 1e-9)
        r_pnl = self.scale * (equity - equity_prev + fees) / base
        r_fee = self.k_fee * fees / base
        r_dd = self.k_dd * max(dd - dd_prev, 0.0)
        return r_pnl + r_fee + r_dd, r_pnl, r_fee, r_dd
