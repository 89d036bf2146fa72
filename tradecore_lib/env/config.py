"""Environment presets: the typed :class:`EnvConfig` and loading of ``configs/env/*.json``.

A preset is a JSON object whose keys are fields of :class:`EnvConfig`; keys left out take the
defaults below. It is read with :func:`tradecore_lib.config.read_json_preset` and validated with
:func:`tradecore_lib.config.validate`, so an unknown key is refused with the valid keys and a
"did you mean", and a wrong type or an out-of-range value (a negative ``taker_fee``) is named
with the preset and the field, as every configuration file of TradeCore is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from tradecore_lib.config import ConfigModel, preset_file, preset_names, read_json_preset, validate
from tradecore_lib.errors import ConfigError


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads True as 1: a boolean where a number belongs is a mistake.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


Number = Annotated[float, BeforeValidator(_no_bool)]
Count = Annotated[int, BeforeValidator(_no_bool)]
Bounds = Annotated[tuple[Number, Number], Field(description="[min, max]")]


class EnvConfig(ConfigModel):
    """Everything that defines one trading environment (one preset).

    Units: ``*_bps`` are basis points of price (1 bp = 0.01 %), fees are fractions of notional
    (0.0005 = 0.05 %), ``risk_pct`` and ``max_drawdown`` are fractions of equity, lengths are
    in bars (one bar = one candle of the frame, one minute for the lake's 1m candles).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(default="custom", description="Preset name (set by the loader).")
    description: str = Field(default="", description="What this preset is for.")
    window: Count = Field(
        default=64, ge=1, le=4096,
        description="Bars in the observation window (the current bar included).")
    features: tuple[str, ...] | None = Field(
        default=None,
        description="Feature columns to observe, in this order; null takes every numeric, "
        "non-boolean column of the frame other than ts, OHLCV and trades.")
    exclude_column: str | None = Field(
        default=None,
        description="Optional boolean column; rows where it is true (an indicator warm-up "
        "marker) never appear in an episode or its observation window.")
    action_mode: Literal["discrete", "continuous"] = Field(
        default="discrete",
        description="discrete: one of `positions`; continuous: a target in [-1, 1].")
    positions: tuple[Annotated[Number, Field(ge=-1.0, le=1.0)], ...] = Field(
        default=(-1.0, 0.0, 1.0), min_length=2,
        description="The discrete action set, as signed target fractions in [-1, 1] of the "
        "RiskGuard's full size.")
    rebalance_threshold: Number = Field(
        default=0.0, ge=0.0, le=2.0,
        description="Trade only when the target moves by more than this (target-fraction "
        "units); 0 trades on every change.")
    nudge: bool = Field(
        default=False, title="Nudge Bars",
        description="Nudge Bars: add actions that tighten, keep or loosen the stop-loss and "
        "take-profit distances by nudge_step_bps per step, within their bounds.")
    nudge_step_bps: Number = Field(
        default=10.0, gt=0.0, le=1000.0, description="Size of one nudge, basis points.")
    stop_loss_bps: Number = Field(
        default=100.0, gt=0.0, le=10_000.0,
        description="Initial stop-loss distance from the entry price, basis points.")
    stop_loss_bounds_bps: Bounds = Field(
        default=(25.0, 500.0),
        description="[min, max] the stop-loss distance may be nudged to, basis points.")
    take_profit_bps: Number = Field(
        default=200.0, ge=0.0, le=100_000.0,
        description="Initial take-profit distance, basis points; 0 disables take-profit.")
    take_profit_bounds_bps: Bounds = Field(
        default=(50.0, 1000.0),
        description="[min, max] the take-profit distance may be nudged to, basis points.")
    maker_fee: Number = Field(
        default=0.0002, ge=0.0, le=0.1,
        description="Fee rate of limit fills (take-profit), fraction of notional.")
    taker_fee: Number = Field(
        default=0.0005, ge=0.0, le=0.1,
        description="Fee rate of market and stop fills, fraction of notional.")
    slippage_bps: Number = Field(
        default=1.0, ge=0.0, le=1000.0,
        description="Adverse slippage of market and stop fills (never of limits), basis "
        "points of the reference price.")
    risk_pct: Number = Field(
        default=0.01, gt=0.0, le=1.0,
        description="RiskGuard: equity fraction lost when a full-size position hits its stop.")
    max_leverage: Number = Field(
        default=2.0, gt=0.0, le=100.0, description="RiskGuard: cap of notional / equity.")
    max_drawdown: Number = Field(
        default=0.25, gt=0.0, le=1.0,
        description="Kill switch: drawdown from the equity high-water mark (of the episode in "
        "training, of the whole split in evaluation) at which the position is closed at the "
        "next open and trading halts (a training episode ends after that exit).")
    daily_loss_limit: Number | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Prop-firm guardrail: a loss of this fraction of the UTC day's starting "
        "equity closes the position at the next open and halts trading until the next UTC "
        "day (a training episode ends); null: off.")
    max_total_loss: Number | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Prop-firm guardrail: equity at or below initial_cash * (1 - this) closes "
        "the position at the next open and halts trading for good; null: off.")
    borrow_rate_annual: Number = Field(
        default=0.0, ge=0.0, le=10.0,
        description="Borrow cost of a spot short, annual fraction of its notional (365-day "
        "year), charged every bar it is held; 0 for perpetual futures.")
    funding_rate_8h: Number = Field(
        default=0.0, ge=-0.1, le=0.1,
        description="Funding rate of a perpetual future per 8 hours, charged pro rata every "
        "bar (longs pay a positive rate, shorts receive it); a frame column funding_charge "
        "(the venue's historical rates, each period's on its bar) takes precedence.")
    initial_cash: Number = Field(
        default=10_000.0, gt=0.0, le=1e12, description="Starting equity, quote currency.")
    reward_scale: Number = Field(
        default=100.0, gt=0.0, le=1e6,
        description="Multiplies each reward term (returns are fractions of equity).")
    fee_coef: Number = Field(
        default=1.0, ge=0.0, le=100.0,
        description="Weight of the fee term (1 makes reward_pnl + reward_fee the net return).")
    drawdown_coef: Number = Field(
        default=1.0, ge=0.0, le=100.0,
        description="Weight of the drawdown penalty, charged on each new maximum drawdown of "
        "the episode's equity before fees (its sum is the maximum drawdown).")
    reward: Literal["pnl_drawdown", "differential_sharpe"] = Field(
        default="pnl_drawdown",
        description="pnl_drawdown: scaled net return minus the drawdown penalty; "
        "differential_sharpe: the differential Sharpe ratio of the net returns (Moody & "
        "Saffell), whose sum tracks the episode's Sharpe ratio.")
    sharpe_eta: Number = Field(
        default=0.001, gt=0.0, le=1.0,
        description="differential_sharpe: rate of the moving mean and variance of the returns "
        "(about 1 / bars of memory); the reward is 0 for the episode's first 1 / sharpe_eta "
        "bars, while they warm up.")
    episode_length: Count | None = Field(
        default=1440, ge=1,
        description="Decisions per training episode; null runs to the end of the data segment.")
    random_start: bool = Field(
        default=True,
        description="Seeded random episode starts; false walks the data in order.")
    max_gap_minutes: Number = Field(
        default=5.0, gt=0.0, le=100_000.0,
        description="Largest step between consecutive ts an episode may span, minutes.")
    norm_window: Count = Field(
        default=1440, ge=1, le=1_000_000,
        description="Bars of the trailing window of the causal volume/feature z-score.")
    norm_min_periods: Count = Field(
        default=60, ge=1, description="Bars needed before a z-score exists.")
    obs_clip: Number = Field(
        default=10.0, gt=0.0, le=1e6,
        description="Every observation value is clipped to [-obs_clip, obs_clip].")
    time_scale_bars: Number = Field(
        default=1440.0, gt=0.0, le=1e9,
        description="Time in position is observed as bars / time_scale_bars.")

    @model_validator(mode="after")
    def _consistent(self) -> EnvConfig:
        for key in ("stop_loss_bounds_bps", "take_profit_bounds_bps"):
            lo, hi = getattr(self, key)
            if not 0.0 < lo <= hi <= 100_000.0:
                raise ValueError(f"{key} must be [min, max] with 0 < min <= max, got "
                                 f"{[lo, hi]}")
        if self.nudge:
            lo, hi = self.stop_loss_bounds_bps
            if not lo <= self.stop_loss_bps <= hi:
                raise ValueError(f"stop_loss_bps {self.stop_loss_bps} is outside "
                                 f"stop_loss_bounds_bps {[lo, hi]}")
            lo, hi = self.take_profit_bounds_bps
            if self.take_profit_bps and not lo <= self.take_profit_bps <= hi:
                raise ValueError(f"take_profit_bps {self.take_profit_bps} is outside "
                                 f"take_profit_bounds_bps {[lo, hi]}")
        if self.norm_min_periods > self.norm_window:
            raise ValueError(f"norm_min_periods {self.norm_min_periods} exceeds norm_window "
                             f"{self.norm_window}")
        if self.features is not None and len(set(self.features)) != len(self.features):
            raise ValueError(f"features must be distinct column names, got "
                             f"{list(self.features)}")
        return self

    @property
    def account_size(self) -> int:
        """Length of the account vector at the end of each observation (5, or 7 with nudge)."""
        return 7 if self.nudge else 5

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of every field (the resolved preset)."""
        return self.model_dump(mode="json")


def available_env_presets() -> list[str]:
    """Names of the presets in ``configs/env/``."""
    return preset_names("env")


def load_env_config(preset: str | Mapping[str, Any] | EnvConfig = "default",
                    overrides: Mapping[str, Any] | None = None) -> EnvConfig:
    """Resolve a preset name (``configs/env/<name>.json``) plus ``overrides`` (keys replaced).

    ``preset`` may also be a mapping, optionally naming its base with ``"preset": "<name>"``
    (as :meth:`TrainConfig.env_settings` builds it), or an :class:`EnvConfig` (returned as is
    when there are no overrides).

    Raises:
        ConfigError: the preset does not exist, or a key is unknown or has a bad value (the
            message names the preset and the field).
    """
    if isinstance(preset, EnvConfig):
        if not overrides:
            return preset
        raw = {**preset.model_dump(), **overrides}
        return validate(EnvConfig, raw, f"env preset {preset.name!r} with overrides")
    if isinstance(preset, Mapping):
        mapping = dict(preset)
        base = mapping.pop("preset", None)
        mapping.update(overrides or {})
        if base is None:
            return validate(EnvConfig, mapping, "env settings")
        return load_env_config(str(base), mapping)
    if not isinstance(preset, str):
        raise ConfigError(f"an env preset is a name, a mapping or an EnvConfig, got {preset!r}")
    raw = read_json_preset("env", preset, "env preset")
    if "name" in raw:
        raise ConfigError(f"env preset {preset!r} ({preset_file('env', preset)}): 'name' is "
                          "set by the file name, remove the key")
    where = f"env preset {preset!r} ({preset_file('env', preset)})"
    if overrides:
        where += " with overrides"
    return validate(EnvConfig, {**raw, **(overrides or {}), "name": preset}, where)
