"""The indicator registry (the "Card Catalog"): every indicator's schema and implementation.

An :class:`Indicator` declares its parameters (:class:`ParamSpec`: type, default, bounds), the
names of the columns it produces, how many bars of history it needs before its values are
settled (its *lookback*), and a vectorized implementation over :class:`CandleArrays`.
Implementations register themselves in :mod:`tradecore_lib.features.indicators`; everything
else (presets, the CLI, the Dagster asset) reads :data:`REGISTRY`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tradecore_lib.candles import ts_millis
from tradecore_lib.errors import ConfigError

ParamValue = int | float | tuple[int, ...]
Params = Mapping[str, ParamValue]
ParamKind = Literal["int", "float", "int_list"]

# Seed influence of an exponential average must fall below this before a value counts as
# settled: ~float32 resolution, so a settled value equals the infinite-history value as float32.
SETTLE_TOLERANCE = 1e-7


class ParamError(ConfigError):
    """A parameter value has the wrong type or lies outside its bounds."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of an indicator.

    Attributes:
        name: key in a preset's ``params`` mapping.
        kind: ``int``, ``float`` or ``int_list`` (a list of distinct ints, e.g. windows).
        default: value used when a preset omits the parameter.
        low, high: inclusive bounds (for ``int_list``: bounds of every element).
        description: what it means, with its unit (bars are one-minute candle rows).
        max_items: longest allowed ``int_list``.
    """

    name: str
    kind: ParamKind
    default: ParamValue
    low: float
    high: float
    description: str
    max_items: int = 8

    def coerce(self, value: Any) -> ParamValue:
        """Check ``value`` against type and bounds; return it normalized (lists become tuples)."""
        if self.kind == "int_list":
            if not isinstance(value, (list, tuple)) or not value:
                raise ParamError(f"must be a non-empty list of integers, got {value!r}")
            if len(value) > self.max_items:
                raise ParamError(f"has {len(value)} items; at most {self.max_items} allowed")
            items = tuple(self._scalar(item, int) for item in value)
            if len(set(items)) != len(items):
                raise ParamError(f"has duplicate items in {list(value)}")
            return items
        return self._scalar(value, int if self.kind == "int" else float)

    def _scalar(self, value: Any, kind: type) -> int | float:
        # bool is an int subclass in Python; a preset saying `true` for a window is a mistake.
        integral = isinstance(value, int) and not isinstance(value, bool)
        if kind is int and not integral:
            raise ParamError(f"must be an integer, got {value!r} ({type(value).__name__})")
        if kind is float and not (integral or isinstance(value, float)):
            raise ParamError(f"must be a number, got {value!r} ({type(value).__name__})")
        if not (self.low <= value <= self.high) or (kind is float and not math.isfinite(value)):
            raise ParamError(f"= {value!r} is out of bounds [{_num(self.low)}, {_num(self.high)}]")
        return kind(value)

    def describe(self) -> str:
        """``window (int, default 60, 2..20160): ...`` for catalogs and error messages."""
        kind = "list of int" if self.kind == "int_list" else self.kind
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return (
            f"{self.name} ({kind}, default {default}, {_num(self.low)}..{_num(self.high)}): "
            f"{self.description}"
        )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class CandleArrays:
    """One continuous candle series as float64 numpy arrays of shape ``(n,)``.

    ``ts_ms`` is int64 UTC milliseconds; prices are quote currency, volume base currency.
    Rows are the real candles (a gap is simply two rows more than a minute apart), so every
    window below counts rows, not minutes. ``cached`` memoizes intermediate series shared
    by several indicators (log returns, ATR...), so a preset computes each only once.
    """

    ts_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    _cache: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_table(cls, table: pa.Table) -> CandleArrays:
        """Arrays of a table in the candle schema (``tradecore_lib.candles.CANDLE_SCHEMA``)."""

        def column(name: str) -> np.ndarray:
            # TA-Lib needs writable-or-not C-contiguous float64; arrow chunks may be split.
            return np.ascontiguousarray(table.column(name).to_numpy(), dtype=np.float64)

        return cls(
            ts_ms=ts_millis(table).astype(np.int64),
            open=column("open"),
            high=column("high"),
            low=column("low"),
            close=column("close"),
            volume=column("volume"),
        )

    def __len__(self) -> int:
        return int(self.close.shape[0])

    def cached(self, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def clear_cache(self) -> None:
        """Forget memoized intermediates (they are recomputed on demand)."""
        self._cache.clear()


Compute = Callable[[CandleArrays, Params], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Indicator:
    """A catalog card.

    Attributes:
        name: key used in presets (``rsi``).
        label: friendly name (``Relative Strength Index``).
        description: what the columns mean, their units and formula.
        params: parameter schema.
        outputs: column names produced for given (validated) params.
        lookback: bars of history before a value equals, to float32 precision, the value
            computed on an arbitrarily long history (exponential averages count the bars for
            their seed's weight to fall below :data:`SETTLE_TOLERANCE`).
        compute: ``(candles, params) -> {column: float64 array of shape (n,)}``; the value at
            row ``t`` may only depend on rows ``<= t``.
        talib: TA-Lib functions it calls (empty: numpy only).
        check: cross-parameter rules, returning problem messages (``fast < slow``).
    """

    name: str
    label: str
    description: str
    params: tuple[ParamSpec, ...]
    outputs: Callable[[Params], list[str]]
    lookback: Callable[[Params], int]
    compute: Compute
    talib: tuple[str, ...] = ()
    check: Callable[[Params], list[str]] | None = None

    def defaults(self) -> dict[str, ParamValue]:
        return {spec.name: spec.default for spec in self.params}

    def param(self, name: str) -> ParamSpec | None:
        return next((spec for spec in self.params if spec.name == name), None)


REGISTRY: dict[str, Indicator] = {}


def register(indicator: Indicator) -> Indicator:
    """Add ``indicator`` to :data:`REGISTRY`; names are unique."""
    if indicator.name in REGISTRY:
        raise ValueError(f"indicator {indicator.name!r} is registered twice")
    REGISTRY[indicator.name] = indicator
    return indicator


def ema_settle_bars(alpha: float) -> int:
    """Bars after which an exponential average's seed weighs less than :data:`SETTLE_TOLERANCE`.

    ``alpha`` is the smoothing factor (``2 / (n + 1)`` for EMA, ``1 / n`` for Wilder).
    """
    return math.ceil(math.log(SETTLE_TOLERANCE) / math.log1p(-alpha))
