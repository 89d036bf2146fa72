"""Market definitions from ``configs/markets.yaml``: a :class:`MarketsFile` of :class:`Market`.

A market is one instrument on one venue; its name ``<venue>_<base>_<quote>`` keys every asset
(``<market>/candles``, ``<market>/features``...) and its ``BASE-QUOTE`` names its lake folder.

:func:`load_markets` validates the whole file and everything it points at before returning:
each market's fields, its ``source:`` options by the venue's options model
(:data:`tradecore_lib.sources.SOURCE_OPTIONS`), its ``gap_tolerance``, its feature preset
(``configs/tools/``), its training preset (``configs/train/``) and that preset's env preset
(``configs/env/``). The code location calls it, so a mistake in any of these files fails the
load with the file, market or preset and field named, before any work starts.

A market's ``holding_costs`` (:class:`HoldingCosts`) say what holding a position costs there:
the borrow rate of a spot short, the funding of a perpetual future (the venue's history, none,
or a constant). What a market gives replaces its env preset's ``borrow_rate_annual`` /
``funding_rate_8h``; what it leaves out keeps the preset's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tradecore_lib.candles import GapTolerance
from tradecore_lib.config import (
    ConfigModel,
    Loc,
    check_reference,
    did_you_mean,
    format_location,
    validate,
)
from tradecore_lib.errors import ConfigError
from tradecore_lib.months import Month
from tradecore_lib.paths import config_dir

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SYMBOL_RE = re.compile(r"^([A-Z0-9]+)/([A-Z0-9]+)(?::([A-Z0-9]+))?$")


class MarketConfigError(ConfigError):
    """``configs/markets.yaml`` (or a preset it names) is malformed."""


def _month(value: Any) -> Month:
    if isinstance(value, Month):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a month YYYY-MM in quotes, got {value!r}")
    return Month.parse(value)


MonthField = Annotated[Month, PlainValidator(_month), PlainSerializer(str)]

# Bounds of a constant funding rate per 8 hours (the env preset's funding_rate_8h bounds).
FUNDING_8H_BOUNDS = (-0.1, 0.1)
FUNDING_CHOICES = ("venue", "none")


def _funding(value: Any) -> str | float:
    """``venue``, ``none`` or a constant funding rate per 8 hours within the bounds."""
    lo, hi = FUNDING_8H_BOUNDS
    expected = (f"'venue' (the venue's historical rates), 'none', or a constant funding rate "
                f"per 8 hours in [{lo}, {hi}]")
    if isinstance(value, str):
        if value in FUNDING_CHOICES:
            return value
        raise ValueError(f"must be {expected}{did_you_mean(value, FUNDING_CHOICES)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be {expected}")
    if not lo <= value <= hi:
        raise ValueError(f"a constant funding rate per 8 hours must be in [{lo}, {hi}]")
    return float(value)


FundingField = Annotated[str | float, PlainValidator(_funding)]


class TradingFees(ConfigModel):
    """The venue's fee schedule for one market (``trading_fees:`` of a market), fractions of
    notional: what every fill pays there, so a verdict is judged at the venue's real costs.
    Each field left out keeps the env preset's (``maker_fee`` / ``taker_fee``)."""

    # strict: a quoted number where a rate belongs is a mistake
    maker_fee: Annotated[float, Field(strict=True, ge=0.0, le=0.1)] | None = Field(
        default=None, description="Fee rate of limit fills (take-profit); null keeps the env "
        "preset's.")
    taker_fee: Annotated[float, Field(strict=True, ge=0.0, le=0.1)] | None = Field(
        default=None, description="Fee rate of market and stop fills; null keeps the env "
        "preset's.")

    def env_overrides(self) -> dict[str, float]:
        """The env preset fields these fees replace: only what is set."""
        return {name: value for name, value in
                (("maker_fee", self.maker_fee), ("taker_fee", self.taker_fee))
                if value is not None}


class HoldingCosts(ConfigModel):
    """What holding a position costs on one market (``holding_costs:`` of a market).

    Each field left out keeps the value of the market's env preset (``borrow_rate_annual``,
    ``funding_rate_8h``); the engine charges both every bar a position is held.
    """

    # strict: a boolean or a quoted number where a rate belongs is a mistake
    borrow_rate_annual: Annotated[float, Field(strict=True, ge=0.0, le=10.0)] | None = Field(
        default=None,
        description="Borrow cost of a spot short, annual fraction of its notional (365-day "
        "year), charged pro rata every bar the short is held; null keeps the env preset's. "
        "Not for perpetual futures, whose holding cost is funding.",
    )
    funding: FundingField | None = Field(
        default=None,
        description="Funding of a perpetual future (a long pays a positive rate, a short "
        "receives it): 'venue' charges the venue's historical rate of each funding period at "
        "the bar the period falls in (the <market>/funding asset); 'none' charges nothing; a "
        "number is a constant rate per 8 hours, charged pro rata every bar. Null keeps the env "
        "preset's funding_rate_8h.",
    )

    def env_overrides(self) -> dict[str, float]:
        """The env preset fields these costs replace (``borrow_rate_annual``,
        ``funding_rate_8h``): only what is set; ``venue`` funding travels with the data as the
        frame's funding column instead, so the preset's constant is zeroed under it."""
        overrides: dict[str, float] = {}
        if self.borrow_rate_annual is not None:
            overrides["borrow_rate_annual"] = self.borrow_rate_annual
        if self.funding is not None:
            overrides["funding_rate_8h"] = (self.funding if isinstance(self.funding, float)
                                            else 0.0)
        return overrides


class Market(ConfigModel):
    """One market TradeCore builds an asset chain for (one entry of ``markets:``)."""

    loader_fields = frozenset({"name"})
    name: str = Field(description="<venue>_<base>_<quote>, lower case (the entry's key).")
    venue: str = Field(description="synthetic | kraken_spot | kraken_futures | coinbase_spot.")
    symbol: str = Field(description="ccxt unified symbol, BASE/QUOTE or BASE/QUOTE:SETTLE.")
    first_month: MonthField = Field(description="The first monthly partition, \"YYYY-MM\".")
    feature_preset: str = Field(description="Indicator preset in configs/tools/.")
    train_preset: str = Field(description="Training preset in configs/train/.")
    direction_preset: str | None = Field(
        default=None, description="Direction-model preset in configs/direction/: the market "
        "gets a direction chain (its LSTM, and a place in its venue's transformer); null: "
        "none.",
    )
    enabled: bool = Field(default=True, description="False lists the market but builds no "
                          "assets for it.")
    source: dict[str, Any] = Field(
        default_factory=dict, description="Venue options, validated by the venue's options "
        "model (tradecore_lib.sources.SOURCE_OPTIONS).",
    )
    gap_tolerance: GapTolerance = Field(default_factory=GapTolerance,
                                        description="When the gaps check fails.")
    refresh_cron: str = Field(default="0 * * * *",
                              description="Live venues: when the current month is refreshed "
                              "(UTC cron).")
    freshness_fail_hours: float = Field(
        default=3.0, gt=0, description="Live venues: candles older than this many hours fail "
        "their freshness policy.",
    )
    holding_costs: HoldingCosts = Field(
        default_factory=HoldingCosts,
        description="Borrow rate of spot shorts and funding of perpetual futures; what is left "
        "out keeps the env preset's.",
    )
    trading_fees: TradingFees = Field(
        default_factory=TradingFees,
        description="The venue's maker and taker fees for your tier; what is left out keeps "
        "the env preset's.",
    )

    @classmethod
    def field_model(cls, name: str, raw: Any) -> type[BaseModel] | None:
        if name == "source":
            from tradecore_lib.sources import SOURCE_OPTIONS

            venue = raw.get("venue")
            return SOURCE_OPTIONS.get(venue) if isinstance(venue, str) else None
        return None

    @field_validator("name")
    @classmethod
    def _snake_case(cls, name: str) -> str:
        if not _NAME_RE.match(name):
            raise ValueError(f"market name {name!r} must be lower_snake_case")
        return name

    @field_validator("venue")
    @classmethod
    def _known_venue(cls, venue: str) -> str:
        from tradecore_lib.sources import source_options_model

        source_options_model(venue)  # raises naming the valid venues
        return venue

    @field_validator("symbol")
    @classmethod
    def _symbol_form(cls, symbol: str) -> str:
        if not _SYMBOL_RE.match(symbol):
            raise ValueError(f"symbol {symbol!r} is not BASE/QUOTE or BASE/QUOTE:SETTLE")
        return symbol

    @field_validator("source", mode="before")
    @classmethod
    def _source_options(cls, raw: Any, info: ValidationInfo) -> Any:
        from tradecore_lib.sources import parse_source_options

        raw = {} if raw is None else raw
        venue = info.data.get("venue")
        if venue is not None and isinstance(raw, dict):
            parse_source_options(venue, raw)  # field errors surface as source.<key>
        return raw

    @model_validator(mode="after")
    def _holding_costs_fit_the_venue(self) -> Market:
        from tradecore_lib.sources.funding import FUNDING_VENUES

        costs = self.holding_costs
        if costs.funding == "venue" and self.venue not in FUNDING_VENUES:
            raise ValueError(f"holding_costs.funding: venue {self.venue!r} publishes no funding "
                             f"history (venues that do: {', '.join(sorted(FUNDING_VENUES))}); "
                             "use 'none' or a constant rate per 8 hours")
        if self.venue in FUNDING_VENUES and costs.borrow_rate_annual:
            raise ValueError(f"holding_costs.borrow_rate_annual: {self.venue} markets are "
                             "perpetual futures, whose shorts borrow nothing (their holding cost "
                             "is funding); remove it or set it to 0")
        from tradecore_lib.sources import SPOT_VENUES

        if self.venue in SPOT_VENUES and isinstance(costs.funding, float) and costs.funding:
            raise ValueError("holding_costs.funding: a spot market pays no funding; remove it "
                             "or set it to 'none'")
        return self

    def env_overrides(self) -> dict[str, float]:
        """The env preset fields this market's costs replace (its trading fees and holding
        costs): training and every economic judgement trade under them."""
        return {**self.trading_fees.env_overrides(), **self.holding_costs.env_overrides()}

    @property
    def funding_from_venue(self) -> bool:
        """Whether the engine charges the venue's historical funding (``<market>/funding``)."""
        return self.holding_costs.funding == "venue"

    @model_validator(mode="after")
    def _named_after_venue_and_symbol(self) -> Market:
        expected = f"{self.venue}_{self.base}_{self.quote}".lower()
        if self.name != expected:
            raise ValueError(f"market {self.name!r} should be named {expected!r} "
                             "(<venue>_<base>_<quote>)")
        return self

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


class MarketsFile(ConfigModel):
    """The document ``configs/markets.yaml``: ``markets:`` maps each name to its entry."""

    markets: dict[str, Market] = Field(description="Market name -> its definition.")

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, raw: Any) -> Any:
        markets = raw.get("markets") if isinstance(raw, dict) else None
        if not isinstance(markets, dict):
            return raw
        named = {}
        for name, entry in markets.items():
            if isinstance(entry, dict) and "name" in entry:
                raise ValueError(f"market {name!r}: 'name' is not a field, the key names the "
                                 "market")
            named[name] = {**entry, "name": str(name)} if isinstance(entry, dict) else entry
        return {**raw, "markets": named}

    @classmethod
    def describe_location(cls, loc: Loc) -> str:
        if len(loc) >= 2 and loc[0] == "markets":
            rest = loc[2:]
            return f"market {loc[1]!r}" + (f": {format_location(rest)}" if rest else "")
        return format_location(loc)


def markets_file() -> Path:
    """``configs/markets.yaml`` (under ``TRADECORE_CONFIG_DIR`` when set)."""
    return config_dir() / "markets.yaml"


def _resolve_references(markets: list[Market], path: Path) -> list[str]:
    """Problems of the presets the markets name, each preset validated completely once (a
    broken preset shared by several markets is reported once, naming them all)."""
    from tradecore_lib.direction.config import load_direction_config
    from tradecore_lib.features.presets import load_feature_preset
    from tradecore_lib.train.config import load_train_config

    loaders = {"feature_preset": ("tools", load_feature_preset),
               "train_preset": ("train", load_train_config),  # resolves its env preset too
               "direction_preset": ("direction", load_direction_config)}
    problems = []
    for field, (kind, load) in loaders.items():
        users: dict[str, list[str]] = {}
        for market in markets:
            if getattr(market, field) is not None:
                users.setdefault(getattr(market, field), []).append(repr(market.name))
        for name, names in users.items():
            where = f"{path}: market{'s' if len(names) > 1 else ''} {', '.join(names)}"
            try:
                check_reference(kind, name, field, where)
                load(name)
            except ConfigError as exc:
                problems.append(str(exc) if str(exc).startswith(where) else f"{where}: {exc}")
    return problems


def load_markets(path: Path | None = None, *, include_disabled: bool = False) -> list[Market]:
    """Read and validate the market list and every preset it names; by default only the
    enabled markets are returned (disabled ones are validated too).

    Raises:
        MarketConfigError: naming the file, the market and the field (or the preset file and
            its field), one line per problem, every problem of the file at once.
    """
    path = path or markets_file()
    try:
        # libyaml's C parser where PyYAML has it: this file is read at every code-location load
        document = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise MarketConfigError(f"market file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise MarketConfigError(f"{path}: not valid YAML: {exc}") from None
    parsed = validate(MarketsFile, document, str(path), error=MarketConfigError)
    problems = _resolve_references(list(parsed.markets.values()), path)
    if problems:
        raise MarketConfigError("\n".join(problems))
    return [m for m in parsed.markets.values() if include_disabled or m.enabled]


def get_market(name: str, path: Path | None = None) -> Market:
    """One market by name, enabled or not."""
    markets = {m.name: m for m in load_markets(path, include_disabled=True)}
    if name not in markets:
        raise MarketConfigError(f"unknown market {name!r}{did_you_mean(name, markets) or ';'} "
                                f"{path or markets_file()} lists {', '.join(sorted(markets))}")
    return markets[name]
