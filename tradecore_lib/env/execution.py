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

:class:`ExecutionEngine` works on one :class:`Account` with Python floats (the single env);
:class:`BatchExecutionEngine` on a :class:`BatchAccount` of (N,) arrays (the vector env), with
the same floating-point operations in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(slots=True)
class BatchAccount:
    """(N,) float64 arrays: the accounts of N envs (same fields as :class:`Account`)."""

    cash: np.ndarray
    equity: np.ndarray
    peak: np.ndarray
    sl_bps: np.ndarray
    tp_bps: np.ndarray
    qty: np.ndarray
    entry: np.ndarray
    held_target: np.ndarray
    drawdown: np.ndarray
    bars_in_pos: np.ndarray

    @classmethod
    def fresh(cls, cfg: EnvConfig, n: int) -> BatchAccount:
        def full(v: float) -> np.ndarray:
            return np.full(n, float(v))
        cash = float(cfg.initial_cash)
        return cls(cash=full(cash), equity=full(cash), peak=full(cash),
                   sl_bps=full(cfg.stop_loss_bps), tp_bps=full(cfg.take_profit_bps),
                   qty=full(0.0), entry=full(0.0), held_target=full(0.0),
                   drawdown=full(0.0), bars_in_pos=full(0.0))

    def reset_where(self, mask: np.ndarray, cfg: EnvConfig) -> None:
        """Reset the accounts of the envs where ``mask`` is true.

        Builds new arrays rather than writing in place, so arrays handed out earlier (the
        step's infos) keep their values.
        """
        cash = float(cfg.initial_cash)
        for name, value in (("cash", cash), ("equity", cash), ("peak", cash),
                            ("sl_bps", float(cfg.stop_loss_bps)),
                            ("tp_bps", float(cfg.take_profit_bps)), ("qty", 0.0),
                            ("entry", 0.0), ("held_target", 0.0), ("drawdown", 0.0),
                            ("bars_in_pos", 0.0)):
            setattr(self, name, np.where(mask, value, getattr(self, name)))


class BatchExecutionEngine:
    """The :class:`ExecutionEngine` rules over N envs at once (no fill log)."""

    def __init__(self, cfg: EnvConfig, risk: RiskGuard) -> None:
        self.maker = float(cfg.maker_fee)
        self.taker = float(cfg.taker_fee)
        self.slip = float(cfg.slippage_bps) / BPS
        self.threshold = float(cfg.rebalance_threshold)
        self.risk = risk

    def execute(self, a: BatchAccount, target: np.ndarray, o: np.ndarray, h: np.ndarray,
                lo: np.ndarray, c: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Play one bar for every env; arrays are (N,). Returns (market, stop, limit) fees."""
        slip = self.slip
        sl = a.sl_bps / BPS
        tp = a.tp_bps / BPS
        qty = a.qty
        trade = np.abs(target - a.held_target) > self.threshold
        new_qty = np.where(trade, self.risk.target_qty_batch(target, a.equity, o, sl), qty)
        dq = new_qty - qty
        px = np.where(dq > 0.0, np.minimum(o * (1.0 + slip), h), np.maximum(o * (1.0 - slip), lo))
        market_fee = np.abs(dq) * px * self.taker
        cash = a.cash - dq * px - market_fee
        moved = dq != 0.0
        nonzero = new_qty != 0.0
        opened = moved & nonzero & ((qty == 0.0) | ((qty > 0.0) != (new_qty > 0.0)))
        added = moved & nonzero & ~opened & (np.abs(new_qty) > np.abs(qty))
        closed = moved & ~nonzero
        safe_new = np.where(nonzero, new_qty, 1.0)
        entry = np.where(opened, px, np.where(
            added, (a.entry * qty + px * dq) / safe_new, np.where(closed, 0.0, a.entry)))
        bars = np.where(opened | closed, 0.0, a.bars_in_pos)
        held = np.where(trade, target, a.held_target)
        qty = new_qty

        long = qty > 0.0
        short = qty < 0.0
        stop_l = entry * (1.0 - sl)
        tp_l = entry * (1.0 + tp)
        stop_s = entry * (1.0 + sl)
        tp_s = entry * (1.0 - tp)
        hit_stop = (long & (lo <= stop_l)) | (short & (h >= stop_s))
        hit_tp = ~hit_stop & (tp > 0.0) & ((long & (h >= tp_l)) | (short & (lo <= tp_s)))
        stop_px = np.where(long, np.maximum(np.minimum(o, stop_l) * (1.0 - slip), lo),
                           np.minimum(np.maximum(o, stop_s) * (1.0 + slip), h))
        tp_px = np.where(long, np.maximum(o, tp_l), np.minimum(o, tp_s))
        abs_qty = np.abs(qty)
        stop_fee = np.where(hit_stop, abs_qty * stop_px * self.taker, 0.0)
        limit_fee = np.where(hit_tp, abs_qty * tp_px * self.maker, 0.0)
        cash = np.where(hit_stop, cash + qty * stop_px - stop_fee,
                        np.where(hit_tp, cash + qty * tp_px - limit_fee, cash))
        exited = hit_stop | hit_tp
        qty = np.where(exited, 0.0, qty)
        entry = np.where(exited, 0.0, entry)
        held = np.where(exited, 0.0, held)

        equity = cash + qty * c
        a.cash = cash
        a.qty = qty
        a.entry = entry
        a.held_target = held
        a.equity = equity
        a.peak = np.maximum(a.peak, equity)
        a.drawdown = 1.0 - equity / a.peak
        a.bars_in_pos = np.where(qty != 0.0, bars + 1.0, 0.0)
        return market_fee, stop_fee, limit_fee
