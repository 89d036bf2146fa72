"""ExecutionEngine: fills, fees, slippage and intrabar stop-loss / take-profit for one bar.

Timing (no look-ahead): the agent decides after bar ``t`` closes; :meth:`ExecutionEngine.execute`
then plays bar ``t + 1``:

1. **Rebalance** (market order, taker fee, adverse slippage) at bar ``t + 1``'s open when the
   target moved by more than ``rebalance_threshold``; the quantity comes from the RiskGuard
   with the equity at bar ``t``'s close. Buys fill at ``min(open * (1 + slip), high)``, sells
   at ``max(open * (1 - slip), low)``.
2. **Stops**, intrabar on bar ``t + 1``'s high/low, from the position's entry price (the
   volume-weighted price of its fills in its direction). Long: stop ``entry * (1 - sl)``,
   take-profit ``entry * (1 + tp)``; short mirrored. When the bar touches both, the stop is
   assumed first (conservative). A stop is a stop-market order: it fills at the stop, or at
   the open if the bar opened beyond it, with slippage, clipped to the bar, and pays the taker
   fee. A take-profit is a resting limit: it fills at its price (or the better open), no
   slippage, maker fee. Either exit flattens the position and sets the held target to 0.
3. **Mark to market** at bar ``t + 1``'s close: ``equity = cash + qty * close``.

Every fill's price lies inside its bar's [low, high]; every fill pays
``|qty| * price * rate``. Cash may go negative (margin): ``cash`` is quote currency,
``qty`` base currency (signed).

:class:`ExecutionEngine` works on one :class:`Account` with Python floats (the single env); the
vector env steps a :class:`BatchAccount` with :func:`tradecore_lib.env.kernels.step_accounts`,
which performs the same floating-point operations in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

from tradecore_lib.env.config import EnvConfig
from tradecore_lib.env.risk import BPS, RiskGuard


class Fill(NamedTuple):
    """One executed order. ``qty`` signed base units (+ buy), ``price`` quote per base."""

    bar: int
    kind: str  # "market" | "stop" | "take_profit"
    qty: float
    price: float
    fee: float
    rate: float


@dataclass(slots=True)
class Account:
    """State of one env's account (quote currency unless noted)."""

    cash: float
    equity: float
    peak: float
    sl_bps: float
    tp_bps: float
    qty: float = 0.0  # signed, base currency
    entry: float = 0.0  # entry price of the open position, 0 when flat
    held_target: float = 0.0  # target fraction the position was last sized for
    drawdown: float = 0.0  # 1 - equity / peak
    bars_in_pos: float = 0.0

    @classmethod
    def fresh(cls, cfg: EnvConfig) -> Account:
        cash = float(cfg.initial_cash)
        return cls(cash=cash, equity=cash, peak=cash, sl_bps=float(cfg.stop_loss_bps),
                   tp_bps=float(cfg.take_profit_bps))


class ExecutionEngine:
    """Scalar engine of one env; keeps a log of its fills in :attr:`fills` (reset per episode)."""

    def __init__(self, cfg: EnvConfig, risk: RiskGuard) -> None:
        self.maker = float(cfg.maker_fee)
        self.taker = float(cfg.taker_fee)
        self.slip = float(cfg.slippage_bps) / BPS
        self.threshold = float(cfg.rebalance_threshold)
        self.risk = risk
        self.fills: list[Fill] = []

    def execute(self, a: Account, target: float, o: float, h: float, lo: float, c: float,
                bar: int) -> tuple[float, float, float]:
        """Play bar ``bar`` (prices o/h/lo/c) for ``target``; returns (market, stop, limit) fees."""
        market_fee = stop_fee = limit_fee = 0.0
        slip = self.slip
        sl = a.sl_bps / BPS
        tp = a.tp_bps / BPS
        qty = a.qty
        entry = a.entry
        bars = a.bars_in_pos
        if abs(target - a.held_target) > self.threshold:
            new_qty = self.risk.target_qty(target, a.equity, o, sl)
            dq = new_qty - qty
            if dq != 0.0:
                if dq > 0.0:
                    px = min(o * (1.0 + slip), h)
                else:
                    px = max(o * (1.0 - slip), lo)
                market_fee = abs(dq) * px * self.taker
                a.cash = a.cash - dq * px - market_fee
                if new_qty == 0.0:
                    entry = 0.0
                    bars = 0.0
                elif qty == 0.0 or (qty > 0.0) != (new_qty > 0.0):
                    entry = px
                    bars = 0.0
                elif abs(new_qty) > abs(qty):
                    entry = (entry * qty + px * dq) / new_qty
                qty = new_qty
                self.fills.append(Fill(bar, "market", dq, px, market_fee, self.taker))
            a.held_target = target
        exited = False
        if qty > 0.0:
            stop = entry * (1.0 - sl)
            tpl = entry * (1.0 + tp)
            if lo <= stop:
                px = max(min(o, stop) * (1.0 - slip), lo)
                stop_fee = abs(qty) * px * self.taker
                a.cash = a.cash + qty * px - stop_fee
                exited = True
                self.fills.append(Fill(bar, "stop", -qty, px, stop_fee, self.taker))
            elif tp > 0.0 and h >= tpl:
                px = max(o, tpl)
                limit_fee = abs(qty) * px * self.maker
                a.cash = a.cash + qty * px - limit_fee
                exited = True
                self.fills.append(Fill(bar, "take_profit", -qty, px, limit_fee, self.maker))
        elif qty < 0.0:
            stop = entry * (1.0 + sl)
            tpl = entry * (1.0 - tp)
            if h >= stop:
                px = min(max(o, stop) * (1.0 + slip), h)
                stop_fee = abs(qty) * px * self.taker
                a.cash = a.cash + qty * px - stop_fee
                exited = True
                self.fills.append(Fill(bar, "stop", -qty, px, stop_fee, self.taker))
            elif tp > 0.0 and lo <= tpl:
                px = min(o, tpl)
                limit_fee = abs(qty) * px * self.maker
                a.cash = a.cash + qty * px - limit_fee
                exited = True
                self.fills.append(Fill(bar, "take_profit", -qty, px, limit_fee, self.maker))
        if exited:
            qty = 0.0
            entry = 0.0
            a.held_target = 0.0
        a.qty = qty
        a.entry = entry
        equity = a.cash + qty * c
        a.equity = equity
        a.peak = max(a.peak, equity)
        a.drawdown = 1.0 - equity / a.peak
        a.bars_in_pos = bars + 1.0 if qty != 0.0 else 0.0
        return market_fee, stop_fee, limit_fee


class BatchAccount:
    """The accounts of N envs: a (10, N) float64 matrix :attr:`state` with one row per
    :class:`Account` field, in field order (the layout :mod:`tradecore_lib.env.kernels` steps
    in place). Fields read as row views, e.g. ``batch.equity``."""

    __slots__ = ("state",)

    def __init__(self, cfg: EnvConfig, n: int) -> None:
        self.state = np.repeat(_fresh_column(cfg), n, axis=1)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.state[ACCOUNT_FIELDS.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def reset_where(self, mask: np.ndarray, cfg: EnvConfig) -> None:
        """Reset the accounts of the envs where ``mask`` is true, in place (the step infos
        hold copies, so earlier infos keep their values)."""
        self.state[:, mask] = _fresh_column(cfg)


ACCOUNT_FIELDS = tuple(f.name for f in fields(Account))


def _fresh_column(cfg: EnvConfig) -> np.ndarray:
    """(10, 1) float64: a fresh account's fields in :data:`ACCOUNT_FIELDS` order."""
    fresh = Account.fresh(cfg)
    return np.array([[float(getattr(fresh, name))] for name in ACCOUNT_FIELDS])
