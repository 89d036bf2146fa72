"""Market definitions from ``configs/markets.yaml``.

A market is one instrument on one venue; its name ``<venue>_<base>_<quote>`` keys every asset
(``candles/<market>``, ``features/<market>``...) and its ``BASE-QUOTE`` names its lake folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tradecore_lib.candles import GapTolerance
from tradecore_lib.months import Month
from tradecore_lib.paths import config_dir

VENUES = ("synthetic", "kraken_spot", "kraken_futures")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SYMBOL_RE = re.compile(r"^([A-Z0-9]+)/([A-Z0-9]+)(?::([A-Z0-9]+))?$")
_REQUIRED = ("venue", "symbol", "first_month", "feature_preset", "train_preset")
_OPTIONAL = ("enabled", "source", "gap_tolerance", "refresh_cron", "freshness_fail_hours")


class MarketConfigError(ValueError):
    """``configs/markets.yaml`` is malformed."""


@dataclass(frozen=True)
class Market:
    """One market TradeCore builds an asset chain for."""

    name: str
    venue: str
    symbol: str
    first_month: Month
    feature_preset: str
    train_preset: str
    enabled: bool = True
    source: dict[str, Any] = field(default_factory=dict)
    gap_tolerance: GapTolerance = field(default_factory=GapTolerance)
    refresh_cron: str = "0 * * * *"
    freshness_fail_hours: float = 3.0

    @property
    def live(self) -> bool:
        """A real venue (refreshed on a schedule, watched for freshness), not the generator."""
        return self.venue != "synthetic"

    @property
    def base(self) -> str:
        return _SYMBOL_RE.match(self.symbol).group(1)  # type: ignore[union-attr]

    @property
    def quote(self) -> str:
        return _SYMBOL_RE.match(self.symbol).group(2)  # type: ignore[union-attr]

    @property
    def pair_dir(self) -> str:
        """The lake folder name of the pair, ``BASE-QUOTE``."""
        return f"{self.base}-{self.quote}"


def _parse_market(name: str, raw: Any, where: str) -> Market:
    if not isinstance(raw, dict):
        raise MarketConfigError(
            f"{where}: market {name!r} must be a mapping, got {type(raw).__name__}"
        )
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise MarketConfigError(f"{where}: market {name!r} lacks {', '.join(missing)}")
    unknown = set(raw) - {*_REQUIRED, *_OPTIONAL}
    if unknown:
        raise MarketConfigError(
            f"{where}: market {name!r} has unknown field(s) {sorted(unknown)}; "
            f"valid fields: {sorted([*_REQUIRED, *_OPTIONAL])}"
        )
    if not _NAME_RE.match(name):
        raise MarketConfigError(f"{where}: market name {name!r} must be lower_snake_case")
    venue = raw["venue"]
    if venue not in VENUES:
        raise MarketConfigError(f"{where}: market {name!r} has venue {venue!r}; valid: {VENUES}")
    symbol = str(raw["symbol"])
    match = _SYMBOL_RE.match(symbol)
    if not match:
        raise MarketConfigError(
            f"{where}: market {name!r} symbol {symbol!r} is not BASE/QUOTE or BASE/QUOTE:SETTLE"
        )
    expected = f"{venue}_{match.group(1)}_{match.group(2)}".lower()
    if name != expected:
        raise MarketConfigError(
            f"{where}: market {name!r} should be named {expected!r} (<venue>_<base>_<quote>)"
        )
    try:
        first_month = Month.parse(str(raw["first_month"]))
    except ValueError as exc:
        raise MarketConfigError(f"{where}: market {name!r} first_month: {exc}") from exc
    source = raw.get("source") or {}
    if not isinstance(source, dict):
        raise MarketConfigError(f"{where}: market {name!r} source must be a mapping")
    try:
        tolerance = GapTolerance(**(raw.get("gap_tolerance") or {}))
    except TypeError as exc:
        raise MarketConfigError(
            f"{where}: market {name!r} gap_tolerance: {exc}; valid keys: "
            "max_missing_fraction, max_gap_minutes"
        ) from exc
    return Market(
        name=name,
        venue=venue,
        symbol=symbol,
        first_month=first_month,
        feature_preset=str(raw["feature_preset"]),
        train_preset=str(raw["train_preset"]),
        enabled=bool(raw.get("enabled", True)),
        source=dict(source),
        gap_tolerance=tolerance,
        refresh_cron=str(raw.get("refresh_cron", Market.refresh_cron)),
        freshness_fail_hours=_positive(raw, "freshness_fail_hours", name, where),
    )


def _positive(raw: dict, key: str, name: str, where: str) -> float:
    value = raw.get(key, getattr(Market, key))
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise MarketConfigError(f"{where}: market {name!r} {key} must be a positive number")
    return float(value)


def load_markets(path: Path | None = None, *, include_disabled: bool = False) -> list[Market]:
    """Read the market list; by default only the enabled markets."""
    path = path or config_dir() / "markets.yaml"
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise MarketConfigError(f"market file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise MarketConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("markets"), dict):
        raise MarketConfigError(f"{path}: expected a top-level 'markets:' mapping")
    markets = [_parse_market(name, raw, str(path)) for name, raw in document["markets"].items()]
    return [m for m in markets if include_disabled or m.enabled]


def get_market(name: str, path: Path | None = None) -> Market:
    """One market by name, enabled or not."""
    for market in load_markets(path, include_disabled=True):
        if market.name == name:
            return market
    known = [m.name for m in load_markets(path, include_disabled=True)]
    raise MarketConfigError(f"unknown market {name!r}; markets.yaml lists {known}")
