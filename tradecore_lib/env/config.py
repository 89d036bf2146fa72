"""Environment presets: the typed :class:`EnvConfig` and loading of ``configs/env/*.json``.

A preset is a JSON object whose keys are fields of :class:`EnvConfig`; keys left out take the
defaults below. Unknown keys and out-of-range values are rejected with an error that names the
key and the preset, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from tradecore_lib.config_files import preset_names, read_preset_file

ACTION_MODES = ("discrete", "continuous")


class EnvConfigError(ValueError):
    """An environment preset is missing, malformed or has a bad value (the message says which)."""


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines one trading environment (one preset).

    Units: ``*_bps`` are basis points of price (1 bp = 0.01 %), fees are fractions of notional
    (0.0005 = 0.05 %), ``risk_pct`` and ``max_drawdown`` are fractions of equity, lengths are
    in bars (one bar = one candle of the frame, one minute for the lake's 1m candles).

    Attributes:
        window: bars in the observation window (the current bar included).
        features: feature columns to observe, in this order; ``None`` takes every numeric,
            non-boolean column of the frame other than ``ts``, OHLCV and ``trades``.
        exclude_column: optional boolean column; rows where it is true (e.g. an indicator
            warm-up marker) never appear in an episode or its observation window.
        action_mode: ``"discrete"`` (one of ``positions``) or ``"continuous"`` (a target in
            [-1, 1]).
        positions: the discrete action set, as signed target fractions in [-1, 1].
        rebalance_threshold: the engine trades only when the target moves by more than this
            (absolute, in target-fraction units); 0 trades on every change.
        nudge: add "Nudge Bars" actions that tighten or loosen the stop-loss and take-profit
            distances by ``nudge_step_bps`` per step, within their bounds.
        nudge_step_bps: size of one nudge.
        stop_loss_bps: initial stop-loss distance from the entry price.
        stop_loss_bounds_bps: [min, max] the stop-loss distance may be nudged to.
        take_profit_bps: initial take-profit distance; 0 disables take-profit.
        take_profit_bounds_bps: [min, max] the take-profit distance may be nudged to.
        maker_fee: fee rate of limit fills (take-profit).
        taker_fee: fee rate of market fills (rebalancing) and stop fills.
        slippage_bps: adverse slippage applied to market and stop fills (never to limits).
        risk_pct: equity fraction lost if a full-size position hits its stop.
        max_leverage: cap of position notional / equity.
        max_drawdown: drawdown from the episode's equity peak that ends it (kill switch).
        initial_cash: starting equity, quote currency.
        reward_scale: multiplies each reward term (returns are fractions of equity).
        fee_coef: weight of the fee term (1 makes pnl + fee the net return).
        drawdown_coef: weight of the penalty on each increase of drawdown.
        episode_length: decisions per episode; ``None`` runs to the end of the data segment.
        random_start: seeded random episode starts; false walks the data in order.
        max_gap_minutes: largest step between consecutive ``ts`` an episode may span.
        norm_window: bars of the trailing window of the causal volume/feature z-score.
        norm_min_periods: bars needed before a z-score exists (earlier rows are unusable).
        obs_clip: every observation value is clipped to [-obs_clip, obs_clip].
        time_scale_bars: time in position is observed as bars / time_scale_bars.
    """

    window: int = 64
    features: tuple[str, ...] | None = None
    exclude_column: str | None = None
    action_mode: str = "discrete"
    positions: tuple[float, ...] = (-1.0, 0.0, 1.0)
    rebalance_threshold: float = 0.0
    nudge: bool = False
    nudge_step_bps: float = 10.0
    stop_loss_bps: float = 100.0
    stop_loss_bounds_bps: tuple[float, float] = (25.0, 500.0)
    take_profit_bps: float = 200.0
    take_profit_bounds_bps: tuple[float, float] = (50.0, 1000.0)
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    slippage_bps: float = 1.0
    risk_pct: float = 0.01
    max_leverage: float = 2.0
    max_drawdown: float = 0.25
    initial_cash: float = 10_000.0
    reward_scale: float = 100.0
    fee_coef: float = 1.0
    drawdown_coef: float = 1.0
    episode_length: int | None = 1440
    random_start: bool = True
    max_gap_minutes: float = 5.0
    norm_window: int = 1440
    norm_min_periods: int = 60
    obs_clip: float = 10.0
    time_scale_bars: float = 1440.0
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def account_size(self) -> int:
        """Length of the account vector at the end of each observation (5, or 7 with nudge)."""
        return 7 if self.nudge else 5

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of every field (the resolved preset)."""
        raw = asdict(self)
        for key, value in raw.items():
            if isinstance(value, tuple):
                raw[key] = list(value)
        return raw


def _fail(cfg_name: str, key: str, message: str) -> EnvConfigError:
    return EnvConfigError(f"env preset {cfg_name!r}: {key!r} {message}")


def _validate(cfg: EnvConfig) -> None:
    n = cfg.name
    if not isinstance(cfg.window, int) or isinstance(cfg.window, bool) or cfg.window < 1:
        raise _fail(n, "window", f"must be a positive integer, got {cfg.window!r}")
    if cfg.action_mode not in ACTION_MODES:
        raise _fail(n, "action_mode", f"must be one of {ACTION_MODES}, got {cfg.action_mode!r}")
    if len(cfg.positions) < 2 or any(not -1.0 <= p <= 1.0 for p in cfg.positions):
        raise _fail(n, "positions", f"needs >= 2 values in [-1, 1], got {list(cfg.positions)}")
    finite_nonneg = (
        "rebalance_threshold", "nudge_step_bps", "take_profit_bps", "maker_fee", "taker_fee",
        "slippage_bps", "fee_coef", "drawdown_coef",
    )
    for key in finite_nonneg:
        value = getattr(cfg, key)
        if not _is_real(value) or not math.isfinite(value) or value < 0:
            raise _fail(n, key, f"must be a finite number >= 0, got {value!r}")
    positive = (
        "stop_loss_bps", "risk_pct", "max_leverage", "initial_cash", "reward_scale",
        "max_gap_minutes", "obs_clip", "time_scale_bars",
    )
    for key in positive:
        value = getattr(cfg, key)
        if not _is_real(value) or not math.isfinite(value) or value <= 0:
            raise _fail(n, key, f"must be a finite number > 0, got {value!r}")
    if cfg.stop_loss_bps > 10_000:
        raise _fail(n, "stop_loss_bps", f"must be <= 10000 (100 %), got {cfg.stop_loss_bps}")
    if cfg.slippage_bps >= 10_000 or cfg.maker_fee >= 1 or cfg.taker_fee >= 1:
        raise EnvConfigError(f"env preset {n!r}: fees must be < 1 and slippage_bps < 10000")
    if not 0 < cfg.max_drawdown <= 1:
        raise _fail(n, "max_drawdown", f"must be in (0, 1], got {cfg.max_drawdown!r}")
    for key in ("stop_loss_bounds_bps", "take_profit_bounds_bps"):
        lo_hi = getattr(cfg, key)
        if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
            raise _fail(n, key, f"must be [min, max] with 0 < min <= max, got {list(lo_hi)}")
    if cfg.nudge:
        lo, hi = cfg.stop_loss_bounds_bps
        if not lo <= cfg.stop_loss_bps <= hi:
            raise _fail(n, "stop_loss_bps", f"{cfg.stop_loss_bps} is outside its bounds {lo, hi}")
        lo, hi = cfg.take_profit_bounds_bps
        if cfg.take_profit_bps and not lo <= cfg.take_profit_bps <= hi:
            raise _fail(n, "take_profit_bps", f"{cfg.take_profit_bps} is outside {lo, hi}")
    if cfg.episode_length is not None and (
        not isinstance(cfg.episode_length, int) or cfg.episode_length < 1
    ):
        raise _fail(n, "episode_length", f"must be a positive integer or null, got "
                    f"{cfg.episode_length!r}")
    for key in ("norm_window", "norm_min_periods"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or value < 1:
            raise _fail(n, key, f"must be a positive integer, got {value!r}")
    if cfg.norm_min_periods > cfg.norm_window:
        raise _fail(n, "norm_min_periods", "must not exceed norm_window")
    if cfg.features is not None and (
        not all(isinstance(f, str) for f in cfg.features) or len(set(cfg.features)) != len(
            cfg.features)
    ):
        raise _fail(n, "features", "must be a list of distinct column names or null")


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TUPLE_KEYS = {"features", "positions", "stop_loss_bounds_bps", "take_profit_bounds_bps"}


def config_from_mapping(raw: Mapping[str, Any], name: str = "custom",
                        base: EnvConfig | None = None) -> EnvConfig:
    """Build an :class:`EnvConfig` from a mapping (a parsed preset), on top of ``base``.

    Raises:
        EnvConfigError: an unknown key (named, with the valid ones) or a bad value.
    """
    known = {f.name for f in fields(EnvConfig)} - {"name"}
    unknown = sorted(set(raw) - known - {"description"})
    if unknown:
        raise EnvConfigError(
            f"env preset {name!r}: unknown key(s) {unknown}; valid keys: {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "description":
            continue
        if key in _TUPLE_KEYS and value is not None:
            if not isinstance(value, list | tuple):
                raise _fail(name, key, f"must be a list, got {value!r}")
            value = tuple(value)
        if key in {"positions", "stop_loss_bounds_bps", "take_profit_bounds_bps"}:
            if not all(_is_real(v) for v in value):
                raise _fail(name, key, f"must hold numbers, got {list(value)}")
            value = tuple(float(v) for v in value)
        values[key] = value
    return replace(base or EnvConfig(name=name), name=name, **values)


def available_presets() -> list[str]:
    """Names of the presets in ``configs/env/``."""
    return preset_names("env")


def load_env_config(preset: str | Mapping[str, Any] | EnvConfig = "default") -> EnvConfig:
    """Resolve a preset name (``configs/env/<name>.json``), a mapping, or a config.

    A mapping may name a base preset with ``"preset": "<name>"`` and override some keys.
    """
    if isinstance(preset, EnvConfig):
        return preset
    if isinstance(preset, str):
        raw = read_preset_file("env", preset, "env preset", EnvConfigError)
        return config_from_mapping(raw, name=preset)
    if isinstance(preset, Mapping):
        raw = dict(preset)
        base_name = raw.pop("preset", None)
        base = load_env_config(base_name) if base_name is not None else None
        name = f"{base_name}+overrides" if base_name else "custom"
        return config_from_mapping(raw, name=name, base=base)
    raise EnvConfigError(f"preset must be a name, a mapping or an EnvConfig, got {preset!r}")
