"""The one trading engine: numba kernels that play one bar for N accounts.

Every rule of trading lives here, once, in the loop body of :func:`_play_accounts`: nudges of
the stop distances, the rebalance at the open (RiskGuard or all-equity sizing, taker fee,
slippage), intrabar stop-loss / take-profit (stop first), holding costs, the mark to market,
the kill switch and the prop-firm guardrails, the close at the end of an episode or data
segment, and the reward. The entry points:

* :func:`step_accounts`: each account plays its own current bar (the training env
  :class:`~tradecore_lib.env.vec_env.TradeVecEnv` and the single env, an N = 1 view);
* :func:`walk_accounts`: N accounts play the same bars in order, from a (N, T) matrix of
  targets (the evaluation backtest: the agent and every baseline in one pass);
* :func:`walk_mlp`: one account decided by a feed-forward policy network, in the kernel;
* :func:`write_observations`: the N observations (window + account vector).

**Timing** (no look-ahead): the target decided after bar ``t`` closed is executed on bar
``t + 1``. Prices: a fill's reference price (open, stop level, close) always lies in its bar;
slippage ``s`` is a cost on top (buys pay ``ref * (1 + s)``, sells get ``ref * (1 - s)``),
so a fill price may lie just outside the bar's range. Fees are ``|qty| * price * rate``.

1. *Rebalance* (market order, taker) at the open when the target moved by more than
   ``rebalance_threshold``. RiskGuard sizing: ``qty = target * min(risk_pct / stop_distance,
   max_leverage) * equity / open`` (equity at bar ``t``'s close). All-equity sizing (the
   buy-and-hold account): ``qty = target * equity / (price * (1 + taker))`` at the fill price,
   so the whole equity pays for the position and its fee.
2. *Stops*, intrabar on the bar's high/low, from the position's entry price (volume-weighted
   price of its fills in its direction). Long: stop ``entry * (1 - sl)``, take-profit
   ``entry * (1 + tp)``; short mirrored; the stop first when the bar touches both. A stop is
   a stop-market order: reference the stop level, or the open if the bar opened beyond it;
   taker fee. A take-profit is a resting limit at its price (or the better open), no
   slippage, maker fee. Either exit flattens and sets the held target to 0, so the account
   re-enters only when the target changes. The buy-and-hold account has no stops.
3. *Holding costs* on the position held through the bar, valued at the close: a short pays
   ``borrow_rate_annual`` pro rata (365-day year, the bar's length from the data); funding
   of a perpetual future is ``qty * close * funding[t]``, ``funding[t]`` the fraction of
   notional charged on the bar (:attr:`MarketData.funding`; longs pay a positive charge,
   shorts receive it).
4. *Mark to market* at the close: ``equity = cash + qty * close``; drawdown from the
   high-water mark (over the episode in training, over the whole split in a walk).
5. *Kill switch and guardrails*, checked at the close: drawdown >= ``max_drawdown`` or
   equity <= 0 (kill switch), equity <= ``initial_cash * (1 - max_total_loss)`` (guardrail,
   for good), equity <= the UTC day's starting equity ``* (1 - daily_loss_limit)``
   (guardrail, until the next UTC day). A breach halts trading and closes the position at
   the next bar's open (a taker fill of kind ``kill_switch`` / ``guardrail``); that step is
   ``terminated`` (a training episode ends after the charged exit). A walk keeps the halt:
   for the rest of the split, or until the next UTC day. Not for the buy-and-hold account.
6. *End*: at the last bar of an episode or data segment an open position is closed at the
   close (taker fee and slippage, kind ``end``): nothing is flattened for free. The
   buy-and-hold account holds through gaps and is closed at the walk's last bar only.

**Reward** (``reward: pnl_drawdown``) with equity ``E``, this bar's fees ``F`` (every fill's),
the equity before fees ``G = E + fees paid in the episode`` and ``M`` the episode's maximum
drawdown of ``G`` so far::

    reward_pnl      =  reward_scale * (E[t] - E[t-1] + F) / E[t-1]       (before fees)
    reward_fee      = -fee_coef * reward_scale * F / E[t-1]
    reward_drawdown = -drawdown_coef * reward_scale * (M[t] - M[t-1])     (new maximum only)

so over an episode ``sum(reward_pnl + reward_fee) = reward_scale * sum(net returns)`` (with
``fee_coef`` 1) and ``sum(reward_drawdown) = -drawdown_coef * reward_scale * M``: a fee is
charged once (not again through the drawdown it causes), and a drawdown once (not again
after each recovery). Holding costs are part of the net return (in ``reward_pnl``).
``reward: differential_sharpe`` pays Moody & Saffell's differential Sharpe ratio of the net
returns instead (exponential moving moments with rate ``sharpe_eta``; 0 during the episode's
first ``1 / sharpe_eta`` bars, while the moments warm up); the three terms are still reported.

Fills are recorded when asked (a fill buffer with rows: account, bar, kind, qty, price, fee;
kinds :data:`FILL_KINDS`; ``None`` records nothing); a caller sizes the buffer so one call
never overflows it (:func:`walk_accounts` returns early when it would).

Why numba: per account a bar is ~80 floating-point operations plus a 4 KB window copy; as ~80
numpy calls on (N,) arrays it cost ~400 us for N = 256, against ~55 us as these loops.
``fastmath`` is off (no reassociation, no FMA contraction), so the results are those of the
plain IEEE operations written here. ``cache=True`` keeps the compiled code in
``__pycache__`` so only the first process compiles.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# rows of the (len(STATE_ROWS), N) float64 account matrix
STATE_ROWS = (
    "cash", "equity", "peak", "sl_bps", "tp_bps", "qty", "entry", "held_target", "drawdown",
    "bars_in_pos", "halted", "pending_exit", "day", "day_start_equity", "fees_paid",
    "gross_peak", "max_gross_drawdown", "borrow_paid", "funding_paid", "kill_switch_hits",
    "guardrail_breaches", "sharpe_a", "sharpe_b", "steps",
)
(CASH, EQUITY, PEAK, SL_BPS, TP_BPS, QTY, ENTRY, HELD, DRAWDOWN, BARS, HALTED, PENDING, DAY,
 DAY_START, FEES_PAID, GROSS_PEAK, MAX_GROSS_DD, BORROW_PAID, FUNDING_PAID, KILLS, GUARDS,
 SHARPE_A, SHARPE_B, STEPS) = range(len(STATE_ROWS))
# values of the "halted" row
ACTIVE, HALT_FOR_GOOD, HALT_FOR_THE_DAY = 0.0, 1.0, 2.0
# account modes (one int8 per account)
RULES, BUY_AND_HOLD = 0, 1

# rows of the (len(INFO_ROWS), N) float info matrix of one step; "bar" is kept apart (int)
INFO_ROWS = (
    "reward_pnl", "reward_fee", "reward_drawdown", "target_position", "risk_units",
    "stop_distance", "take_profit_distance", "market_fee", "limit_fee", "stop_fee", "exit_fee",
    "fees", "borrow_cost", "funding_cost", "equity", "cash", "position_qty", "position_value",
    "drawdown", "kill_switch", "guardrail", "halted",
)
(R_PNL, R_FEE, R_DD, I_TARGET, I_RISK, I_SL, I_TP, I_MARKET, I_LIMIT, I_STOP, I_EXIT, I_FEES,
 I_BORROW, I_FUNDING, I_EQUITY, I_CASH, I_QTY, I_VALUE, I_DD, I_KILL, I_GUARD,
 I_HALTED) = range(len(INFO_ROWS))

FILL_KINDS = ("market", "stop", "take_profit", "kill_switch", "guardrail", "end")
(K_MARKET, K_STOP, K_TAKE_PROFIT, K_KILL, K_GUARDRAIL, K_END) = range(len(FILL_KINDS))
FILL_COLUMNS = ("account", "bar", "kind", "qty", "price", "fee")
FILLS_PER_BAR = 3  # most fills one account can make on one bar (market, exit, end)

# entries of the float64 parameter vector of a preset (see engine.kernel_params)
PARAM_NAMES = (
    "nudge_step_bps", "sl_lo", "sl_hi", "tp_lo", "tp_hi", "maker_fee", "taker_fee", "slippage",
    "rebalance_threshold", "risk_pct", "max_leverage", "max_drawdown", "reward_scale", "k_fee",
    "k_drawdown", "max_total_loss", "daily_loss_limit", "borrow_per_bar",
    "initial_cash", "differential_sharpe", "sharpe_eta",
)


@njit(cache=True, inline="always")
def _max(x: float, c: float) -> float:
    """``max(x, c)`` that keeps a NaN ``x`` (as Python's built-in does)."""
    return c if c > x else x


@njit(cache=True, inline="always")
def _min(x: float, c: float) -> float:
    """``min(x, c)`` that keeps a NaN ``x``."""
    return c if c < x else x


@njit(cache=True, inline="always")
def _param_tuple(p: np.ndarray) -> tuple:
    """The parameter vector as a tuple: the loops read it from registers (from the array
    they would reload it for every account, since the state array might alias it)."""
    return (p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12],
            p[13], p[14], p[15], p[16], p[17], p[18], p[19], p[20])


@njit(cache=True, inline="always")
def _record(fills: np.ndarray | None, n_fills: np.ndarray | None, j: int, bar: int, kind: int,
            qty: float, price: float, fee: float) -> None:
    # ``fills`` None (not recording) compiles a specialization without this store: its mere
    # presence made the training step twice as slow (the arrays could alias the state)
    if fills is None or n_fills is None:
        return
    k = n_fills[0]
    fills[k, 0] = j
    fills[k, 1] = bar
    fills[k, 2] = kind
    fills[k, 3] = qty
    fills[k, 4] = price
    fills[k, 5] = fee
    n_fills[0] = k + 1


@njit(cache=True)
def _play_accounts(state: np.ndarray, target: np.ndarray, d_sl: np.ndarray, d_tp: np.ndarray,
                   bar: np.ndarray, is_end: np.ndarray, mode: np.ndarray, opens: np.ndarray,
                   highs: np.ndarray, lows: np.ndarray, closes: np.ndarray, day: np.ndarray,
                   funding: np.ndarray, p: np.ndarray, nudge: bool, info: np.ndarray,
                   reward: np.ndarray, terminated_out: np.ndarray, fills: np.ndarray | None,
                   n_fills: np.ndarray | None) -> None:
    """The rules (see the module docstring): play bar ``bar[j]`` for every account ``j`` with
    target ``target[j]`` (nudges ``d_sl[j]``/``d_tp[j]``, in steps), ``is_end[j]`` when the bar
    is the last of its episode or segment, ``mode[j]`` :data:`RULES` or
    :data:`BUY_AND_HOLD`. ``day``: (T,) UTC day of each bar; ``funding``: (T,) funding charged
    on each bar, fraction of notional. Updates ``state[:, j]``, writes ``info[:, j]``,
    ``reward[j]`` and ``terminated_out[j]``.

    The rules are written in this one loop body rather than in a function called per account:
    numba reference-counts the arrays passed to a call, which made the training step twice as
    slow."""
    (step, sl_lo, sl_hi, tp_lo, tp_hi, maker, taker, slip, threshold, risk_pct, leverage,
     max_drawdown, scale, k_fee, k_dd, max_total_loss, daily_loss_limit, borrow_per_bar,
     initial, differential_sharpe, eta) = _param_tuple(p)
    for j in range(state.shape[1]):
        i = bar[j]
        o = opens[i]
        h = highs[i]
        lo = lows[i]
        c = closes[i]
        tgt = target[j]
        passive = mode[j] == BUY_AND_HOLD
        sl_bps = state[SL_BPS, j]
        tp_bps = state[TP_BPS, j]
        cash = state[CASH, j]
        equity_prev = state[EQUITY, j]
        held = state[HELD, j]
        qty = state[QTY, j]
        entry = state[ENTRY, j]
        bars = state[BARS, j]
        halted = state[HALTED, j]
        pending = state[PENDING, j]
        market_fee = 0.0
        stop_fee = 0.0
        limit_fee = 0.0
        exit_fee = 0.0
        kill_hit = 0.0
        guard_hit = 0.0
        terminated = False
        # a new UTC day: the daily loss limit's reference, and the end of a daily halt
        if day[i] != state[DAY, j]:
            state[DAY, j] = day[i]
            state[DAY_START, j] = equity_prev
            if halted == HALT_FOR_THE_DAY:
                halted = ACTIVE
        if pending >= 0.0 and qty != 0.0:
            # the exit a breach at the last close asked for, at this open
            px = o * (1.0 - slip) if qty > 0.0 else o * (1.0 + slip)
            exit_fee = abs(qty) * px * taker
            cash = cash + qty * px - exit_fee
            _record(fills, n_fills, j, i, int(pending), -qty, px, exit_fee)
            qty = 0.0
            entry = 0.0
            held = 0.0
            terminated = True
        elif halted == ACTIVE:
            if nudge:
                sl_bps = _min(_max(sl_bps + d_sl[j] * step, sl_lo), sl_hi)
                if tp_bps > 0.0:
                    tp_bps = _min(_max(tp_bps + d_tp[j] * step, tp_lo), tp_hi)
            sl = sl_bps / 10_000.0
            tp = tp_bps / 10_000.0
            if abs(tgt - held) > threshold:
                if passive:
                    px = o * (1.0 + slip) if tgt > 0.0 else o * (1.0 - slip)
                    new_qty = tgt * equity_prev / (px * (1.0 + taker))
                else:
                    new_qty = tgt * _min(risk_pct / sl, leverage) * equity_prev / o
                dq = new_qty - qty
                if dq != 0.0:
                    px = o * (1.0 + slip) if dq > 0.0 else o * (1.0 - slip)
                    market_fee = abs(dq) * px * taker
                    cash = cash - dq * px - market_fee
                    _record(fills, n_fills, j, i, K_MARKET, dq, px, market_fee)
                    if new_qty == 0.0:
                        entry = 0.0
                        bars = 0.0
                    elif qty == 0.0 or (qty > 0.0) != (new_qty > 0.0):
                        entry = px
                        bars = 0.0
                    elif abs(new_qty) > abs(qty):
                        entry = (entry * qty + px * dq) / new_qty
                    qty = new_qty
                held = tgt
            exited = False
            if not passive and qty > 0.0:
                stop = entry * (1.0 - sl)
                tpl = entry * (1.0 + tp)
                if lo <= stop:
                    px = _min(o, stop) * (1.0 - slip)
                    stop_fee = abs(qty) * px * taker
                    cash = cash + qty * px - stop_fee
                    _record(fills, n_fills, j, i, K_STOP, -qty, px, stop_fee)
                    exited = True
                elif tp > 0.0 and h >= tpl:
                    px = _max(o, tpl)
                    limit_fee = abs(qty) * px * maker
                    cash = cash + qty * px - limit_fee
                    _record(fills, n_fills, j, i, K_TAKE_PROFIT, -qty, px, limit_fee)
                    exited = True
            elif not passive and qty < 0.0:
                stop = entry * (1.0 + sl)
                tpl = entry * (1.0 - tp)
                if h >= stop:
                    px = _max(o, stop) * (1.0 + slip)
                    stop_fee = abs(qty) * px * taker
                    cash = cash + qty * px - stop_fee
                    _record(fills, n_fills, j, i, K_STOP, -qty, px, stop_fee)
                    exited = True
                elif tp > 0.0 and lo <= tpl:
                    px = _min(o, tpl)
                    limit_fee = abs(qty) * px * maker
                    cash = cash + qty * px - limit_fee
                    _record(fills, n_fills, j, i, K_TAKE_PROFIT, -qty, px, limit_fee)
                    exited = True
            if exited:
                qty = 0.0
                entry = 0.0
                held = 0.0
        pending = -1.0
        # holding costs of the position held through the bar
        borrow = -qty * c * borrow_per_bar if qty < 0.0 else 0.0
        funding_cost = qty * c * funding[i]
        cash = cash - borrow - funding_cost
        equity = cash + qty * c
        peak = _max(state[PEAK, j], equity)
        drawdown = 1.0 - equity / peak
        if not passive and halted == ACTIVE and not terminated:
            breach = -1.0
            if equity <= 0.0 or drawdown >= max_drawdown:
                breach = K_KILL
                halted = HALT_FOR_GOOD
                kill_hit = 1.0
            elif max_total_loss > 0.0 and equity <= initial * (1.0 - max_total_loss):
                breach = K_GUARDRAIL
                halted = HALT_FOR_GOOD
                guard_hit = 1.0
            elif daily_loss_limit > 0.0 and equity <= state[DAY_START, j] * (
                    1.0 - daily_loss_limit):
                breach = K_GUARDRAIL
                halted = HALT_FOR_THE_DAY
                guard_hit = 1.0
            if breach >= 0.0:
                if qty != 0.0 and not is_end[j]:
                    pending = breach  # closed at the next open
                else:
                    terminated = True  # flat already, or closed at this close below
        if is_end[j] and qty != 0.0:
            px = c * (1.0 - slip) if qty > 0.0 else c * (1.0 + slip)
            fee = abs(qty) * px * taker
            exit_fee += fee
            cash = cash + qty * px - fee
            _record(fills, n_fills, j, i, K_END, -qty, px, fee)
            qty = 0.0
            entry = 0.0
            held = 0.0
            equity = cash
            peak = _max(state[PEAK, j], equity)
            drawdown = 1.0 - equity / peak
        state[CASH, j] = cash
        state[EQUITY, j] = equity
        state[PEAK, j] = peak
        state[SL_BPS, j] = sl_bps
        state[TP_BPS, j] = tp_bps
        state[QTY, j] = qty
        state[ENTRY, j] = entry
        state[HELD, j] = held
        state[DRAWDOWN, j] = drawdown
        state[BARS, j] = bars + 1.0 if qty != 0.0 else 0.0
        state[HALTED, j] = halted
        state[PENDING, j] = pending
        state[BORROW_PAID, j] += borrow
        state[FUNDING_PAID, j] += funding_cost
        state[KILLS, j] += kill_hit
        state[GUARDS, j] += guard_hit

        fees = market_fee + stop_fee + limit_fee + exit_fee
        base = _max(equity_prev, 1e-9)
        r_pnl = scale * (equity - equity_prev + fees) / base
        r_fee = k_fee * fees / base
        fees_paid = state[FEES_PAID, j] + fees
        gross = equity + fees_paid
        gross_peak = _max(state[GROSS_PEAK, j], gross)
        gross_dd = 1.0 - gross / gross_peak
        max_dd = state[MAX_GROSS_DD, j]
        r_dd = k_dd * _max(gross_dd - max_dd, 0.0)
        state[FEES_PAID, j] = fees_paid
        state[GROSS_PEAK, j] = gross_peak
        state[MAX_GROSS_DD, j] = _max(max_dd, gross_dd)
        if differential_sharpe != 0.0:
            ret = (equity - equity_prev) / base
            a = state[SHARPE_A, j]
            b = state[SHARPE_B, j]
            variance = b - a * a
            dsr = 0.0
            steps = state[STEPS, j] + 1.0
            state[STEPS, j] = steps
            # paid once the moving moments have seen 1 / eta bars: before, a variance made of
            # a few returns makes the ratio explode
            if variance > 0.0 and steps * eta > 1.0:
                dsr = (b * (ret - a) - 0.5 * a * (ret * ret - b)) / variance ** 1.5
            state[SHARPE_A, j] = a + eta * (ret - a)
            state[SHARPE_B, j] = b + eta * (ret * ret - b)
            reward[j] = dsr
        else:
            reward[j] = r_pnl + r_fee + r_dd
        terminated_out[j] = terminated
        sl_now = sl_bps / 10_000.0
        info[R_PNL, j] = r_pnl
        info[R_FEE, j] = r_fee
        info[R_DD, j] = r_dd
        info[I_TARGET, j] = tgt
        info[I_RISK, j] = abs(qty) * c * sl_now / (risk_pct * _max(equity, 1e-9))
        info[I_SL, j] = sl_now
        info[I_TP, j] = tp_bps / 10_000.0
        info[I_MARKET, j] = market_fee
        info[I_LIMIT, j] = limit_fee
        info[I_STOP, j] = stop_fee
        info[I_EXIT, j] = exit_fee
        info[I_FEES, j] = fees
        info[I_BORROW, j] = borrow
        info[I_FUNDING, j] = funding_cost
        info[I_EQUITY, j] = equity
        info[I_CASH, j] = cash
        info[I_QTY, j] = qty
        info[I_VALUE, j] = qty * c
        info[I_DD, j] = drawdown
        info[I_KILL, j] = kill_hit
        info[I_GUARD, j] = guard_hit
        info[I_HALTED, j] = halted


@njit(cache=True)
def step_accounts(state: np.ndarray, target: np.ndarray, d_sl: np.ndarray, d_tp: np.ndarray,
                  bar: np.ndarray, end: np.ndarray, opens: np.ndarray, highs: np.ndarray,
                  lows: np.ndarray, closes: np.ndarray, day: np.ndarray, funding: np.ndarray,
                  p: np.ndarray, nudge: bool, info: np.ndarray, reward: np.ndarray,
                  truncated: np.ndarray, dones: np.ndarray, fills: np.ndarray | None,
                  n_fills: np.ndarray | None) -> None:
    """Play bar ``bar[j]`` for every account ``j`` (its episode ends at bar ``end[j]``).

    Updates ``state`` in place; fills ``info`` (one row per :data:`INFO_ROWS` entry),
    ``reward``, ``truncated`` and ``dones`` (terminated or truncated)."""
    n = state.shape[1]
    is_end = bar >= end
    terminated = np.empty(n, dtype=np.bool_)
    _play_accounts(state, target, d_sl, d_tp, bar, is_end, np.zeros(n, dtype=np.int8), opens,
                   highs, lows, closes, day, funding, p, nudge, info, reward, terminated,
                   fills, n_fills)
    for j in range(n):
        truncated[j] = not terminated[j] and is_end[j]
        dones[j] = terminated[j] or is_end[j]


@njit(cache=True)
def walk_accounts(state: np.ndarray, targets: np.ndarray, d_sl: np.ndarray, d_tp: np.ndarray,
                  start_target: np.ndarray, mode: np.ndarray, rows: np.ndarray,
                  seg_first: np.ndarray, seg_end: np.ndarray, k0: int, k1: int,
                  opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, closes: np.ndarray,
                  day: np.ndarray, funding: np.ndarray, p: np.ndarray, nudge: bool,
                  info: np.ndarray, fills: np.ndarray, n_fills: np.ndarray,
                  equity_out: np.ndarray, qty_out: np.ndarray) -> int:
    """Play rows ``k0 .. k1 - 1`` of a walk for every account; returns the next row to play
    (``k1``, or earlier when the fill buffer could overflow: grow it and call again).

    Row ``k`` plays bar ``rows[k]`` with the target decided at row ``k - 1``
    (``targets[j, k - 1]``; ``start_target[j]`` on row 0, flat on the first row of a later
    data segment, ``seg_first[k]``, except for a buy-and-hold account, which holds through
    gaps). ``seg_end[k]`` marks a segment's last bar, where positions are closed (a
    buy-and-hold account's at the walk's last row only). ``d_sl`` / ``d_tp``: the nudges
    decided with the targets ((N, T), or (N, 0) without nudge). Writes ``equity_out[j, k]``
    and ``qty_out[j, k]``, the account at the close of the row's bar.
    """
    n = state.shape[1]
    last = rows.shape[0] - 1
    capacity = fills.shape[0]
    target = np.empty(n)
    a = np.zeros(n)
    b = np.zeros(n)
    bar = np.empty(n, dtype=np.int64)
    is_end = np.empty(n, dtype=np.bool_)
    reward = np.empty(n)
    terminated = np.empty(n, dtype=np.bool_)
    for k in range(k0, k1):
        if n_fills[0] + FILLS_PER_BAR * n > capacity:
            return k
        cut = seg_first[k]
        for j in range(n):
            restart = cut and mode[j] != BUY_AND_HOLD
            if k == 0:
                target[j] = start_target[j]
            elif restart:
                target[j] = 0.0
            else:
                target[j] = targets[j, k - 1]
            if nudge and k > 0 and not restart:
                a[j] = d_sl[j, k - 1]
                b[j] = d_tp[j, k - 1]
            else:
                a[j] = 0.0
                b[j] = 0.0
            bar[j] = rows[k]
            is_end[j] = k == last if mode[j] == BUY_AND_HOLD else seg_end[k]
        _play_accounts(state, target, a, b, bar, is_end, mode, opens, highs, lows, closes, day,
                       funding, p, nudge, info, reward, terminated, fills, n_fills)
        for j in range(n):
            equity_out[j, k] = state[EQUITY, j]
            qty_out[j, k] = state[QTY, j]
    return k1


@njit(cache=True)
def decode_actions(actions: np.ndarray, discrete: bool, nudge: bool, positions: np.ndarray,
                   target: np.ndarray, d_sl: np.ndarray, d_tp: np.ndarray) -> None:
    """Env actions (n, 1 or 3) float64 to target fractions and stop / take-profit nudges (in
    steps), see :mod:`tradecore_lib.env.spaces`: discrete, an index into ``positions`` (and
    nudge choices 0/1/2 = tighten/keep/loosen); continuous, the target and nudges clipped to
    [-1, 1]. Fills ``target``, and ``d_sl`` / ``d_tp`` with nudge."""
    for j in range(actions.shape[0]):
        if discrete:
            index = int(actions[j, 0])
            if not 0 <= index < positions.shape[0]:
                raise ValueError("a discrete action is not an index into the preset's positions")
            target[j] = positions[index]
            if nudge:
                if not (0 <= actions[j, 1] <= 2 and 0 <= actions[j, 2] <= 2):
                    raise ValueError("a nudge action is not 0 (tighten), 1 (keep) or 2 (loosen)")
                d_sl[j] = int(actions[j, 1]) - 1.0
                d_tp[j] = int(actions[j, 2]) - 1.0
        else:
            target[j] = _min(_max(actions[j, 0], -1.0), 1.0)
            if nudge:
                d_sl[j] = _min(_max(actions[j, 1], -1.0), 1.0)
                d_tp[j] = _min(_max(actions[j, 2], -1.0), 1.0)


@njit(cache=True)
def _forward(x: np.ndarray, weights: tuple, biases: tuple, relu: bool, head_w: np.ndarray,
             head_b: np.ndarray, buf_a: np.ndarray, buf_b: np.ndarray, out: np.ndarray) -> None:
    """``out = head(act(... act(x @ W0 + b0) ...))`` in float32, ``x`` copied into ``buf_a``
    first (both buffers as long as the widest layer)."""
    n_in = x.shape[0]
    for d in range(n_in):
        buf_a[d] = x[d]
    for li in range(len(weights)):
        w = weights[li]
        b = biases[li]
        if li % 2 == 0:
            src = buf_a
            dst = buf_b
        else:
            src = buf_b
            dst = buf_a
        n_out = w.shape[1]
        for o in range(n_out):
            dst[o] = b[o]
        for i in range(n_in):
            xi = src[i]
            for o in range(n_out):
                dst[o] += xi * w[i, o]
        for o in range(n_out):
            dst[o] = max(dst[o], np.float32(0.0)) if relu else np.tanh(dst[o])
        n_in = n_out
    src = buf_a if len(weights) % 2 == 0 else buf_b
    for o in range(out.shape[0]):
        out[o] = head_b[o]
    for i in range(n_in):
        xi = src[i]
        for o in range(out.shape[0]):
            out[o] += xi * head_w[i, o]


@njit(cache=True, inline="always")
def _argmax(x: np.ndarray, start: int, stop: int) -> int:
    best = start
    for i in range(start + 1, stop):
        if x[i] > x[best]:
            best = i
    return best - start


@njit(cache=True)
def walk_mlp(state: np.ndarray, targets: np.ndarray, d_sl: np.ndarray, d_tp: np.ndarray,
             rows: np.ndarray, seg_first: np.ndarray, seg_end: np.ndarray, opens: np.ndarray,
             highs: np.ndarray, lows: np.ndarray, closes: np.ndarray, day: np.ndarray,
             funding: np.ndarray, p: np.ndarray, nudge: bool, fills: np.ndarray,
             n_fills: np.ndarray, equity_out: np.ndarray, qty_out: np.ndarray,
             values: np.ndarray, window: int, time_scale: float, clip: float,
             positions: np.ndarray, head_sizes: np.ndarray, obs_shift: np.ndarray,
             obs_scale: np.ndarray, obs_clip: float, weights: tuple, biases: tuple, relu: bool,
             head_w: np.ndarray, head_b: np.ndarray, probs_out: np.ndarray) -> None:
    """The whole walk of one account (column 0 of ``state``) driven by a feed-forward policy
    network, decided in the kernel: each row is played (:func:`walk_accounts`), observed
    (:func:`write_observations`), normalized (``clip((obs - obs_shift) / obs_scale,
    +-obs_clip)``, as VecNormalize), passed through the network and decided into
    ``targets[0, k]`` (and the nudges): the mode of each discrete head (``head_sizes``,
    targets from ``positions``), or the clipped outputs when ``head_sizes`` is empty
    (continuous). ``probs_out[k]`` gets the softmax of the first discrete head.

    The fill buffer must hold ``FILLS_PER_BAR`` fills per row.
    """
    n_rows = rows.shape[0]
    dim = values.shape[1] * window + (7 if nudge else 5)
    width = dim
    for li in range(len(weights)):
        width = max(width, weights[li].shape[1])
    buf_a = np.empty(width, dtype=np.float32)
    buf_b = np.empty(width, dtype=np.float32)
    out = np.empty(head_w.shape[1], dtype=np.float32)
    obs = np.empty((1, dim), dtype=np.float32)
    x = np.empty(dim, dtype=np.float32)
    bar = np.zeros(1, dtype=np.int64)
    envs = np.zeros(1, dtype=np.int64)
    start_target = np.zeros(1)
    mode = np.zeros(1, dtype=np.int8)
    info = np.empty((len(INFO_ROWS), 1))
    n_first = head_sizes[0] if head_sizes.shape[0] > 0 else 0
    action = np.zeros((1, 3 if nudge else 1))
    decided = np.empty(1)
    a = np.zeros(1)
    b = np.zeros(1)
    for k in range(n_rows):
        walk_accounts(state, targets, d_sl, d_tp, start_target, mode, rows, seg_first, seg_end,
                      k, k + 1, opens, highs, lows, closes, day, funding, p, nudge, info,
                      fills, n_fills, equity_out, qty_out)
        bar[0] = rows[k]
        write_observations(values, window, bar, envs, state, closes, nudge, time_scale, clip,
                           obs)
        for d in range(dim):
            z = (np.float64(obs[0, d]) - obs_shift[d]) / obs_scale[d]
            x[d] = np.float32(min(max(z, -obs_clip), obs_clip))
        _forward(x, weights, biases, relu, head_w, head_b, buf_a, buf_b, out)
        if n_first > 0:  # the mode of each head, as SB3's deterministic action
            start = 0
            for h in range(head_sizes.shape[0]):
                action[0, h] = _argmax(out, start, start + head_sizes[h])
                start += head_sizes[h]
            top = out[_argmax(out, 0, n_first)]
            total = np.float32(0.0)
            for i in range(n_first):
                total += np.exp(out[i] - top)
            for i in range(n_first):
                probs_out[k, i] = np.exp(out[i] - top) / total
        else:
            for h in range(action.shape[1]):
                action[0, h] = out[h]
        decode_actions(action, n_first > 0, nudge, positions, decided, a, b)
        targets[0, k] = decided[0]
        if nudge:
            d_sl[0, k] = a[0]
            d_tp[0, k] = b[0]


@njit(cache=True)
def write_observations(values: np.ndarray, window: int, bar: np.ndarray, envs: np.ndarray,
                       state: np.ndarray, closes: np.ndarray, nudge: bool, time_scale: float,
                       clip: float, out: np.ndarray) -> None:
    """Write row ``j`` of ``out`` for every account ``j`` in ``envs``: the flattened window of
    ``values`` (T, C) ending at ``bar[j]``, then the clipped account vector (see
    :mod:`tradecore_lib.env.spaces`).

    The window of a bar is one contiguous run of ``values``' memory, so it is copied once,
    straight into ``out``, with no gather index and no temporary.
    """
    flat = values.reshape(-1)
    n_cols = values.shape[1]
    wc = window * n_cols
    for j in envs:
        start = (bar[j] - window + 1) * n_cols
        src = flat[start:start + wc]
        row = out[j]
        # a 1-D element loop over views, which LLVM vectorizes: a slice assignment copies
        # the source to a temporary first (numba cannot rule out overlap) and 2-D indexing
        # keeps the loop scalar; both ran at half this speed or less
        for k in range(wc):
            row[k] = src[k]
        close = closes[bar[j]]
        qty = state[QTY, j]
        eq = _max(state[EQUITY, j], 1e-9)
        out[j, wc] = _min(_max(qty * close / eq, -clip), clip)
        out[j, wc + 1] = _min(_max(state[CASH, j] / eq, -clip), clip)
        out[j, wc + 2] = _min(_max(qty * (close - state[ENTRY, j]) / eq, -clip), clip)
        out[j, wc + 3] = _min(_max(state[DRAWDOWN, j], -clip), clip)
        out[j, wc + 4] = _min(_max(state[BARS, j] / time_scale, -clip), clip)
        if nudge:
            out[j, wc + 5] = _min(_max(state[SL_BPS, j] / 100.0, -clip), clip)
            out[j, wc + 6] = _min(_max(state[TP_BPS, j] / 100.0, -clip), clip)
