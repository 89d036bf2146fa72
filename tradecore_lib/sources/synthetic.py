"""The synthetic venue as a :class:`~tradecore_lib.sources.CandleSource`.

The candles come from :mod:`tradecore_lib.sources.synthetic_generator`; a market's ``source:``
options in ``configs/markets.yaml`` are a :class:`SyntheticOptions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.sources import FetchResult
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month

__all__ = ["SyntheticOptions", "SyntheticSource"]


@dataclass(frozen=True)
class SyntheticSource:
    """Generates a synthetic market's months with its :class:`SyntheticOptions`."""

    options: SyntheticOptions

    @classmethod
    def from_market(cls, market: Market) -> SyntheticSource:
        """The source of ``market``; its options are validated (ConfigError naming it)."""
        return cls(SyntheticOptions.from_mapping(
            market.source, f"configs/markets.yaml: market {market.name}: source"))

    def fetch_month(
        self, market: Market, month: Month, *, now_ms: int, log: Callable[[str], None]
    ) -> FetchResult:
        table = generate_month(self.options, market.name, month, now_ms=now_ms)
        return FetchResult(
            table,
            {
                "source": "synthetic",
                "endpoint_kind": "generator",
                **{f"synthetic_{k}": v for k, v in self.options.provenance().items()},
            },
        )
