"""The synthetic venue as a :class:`~tradecore_lib.sources.CandleSource`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.sources import FetchResult
from tradecore_lib.synthetic import SyntheticParams, generate_month


@dataclass(frozen=True)
class SyntheticSource:
    params: SyntheticParams

    @classmethod
    def from_market(cls, market: Market) -> SyntheticSource:
        try:
            return cls(SyntheticParams.from_mapping(market.source))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"market {market.name}: bad synthetic source options: {exc}") from exc

    def fetch_month(
        self, market: Market, month: Month, *, now_ms: int, log: Callable[[str], None]
    ) -> FetchResult:
        table = generate_month(self.params, market.name, month, now_ms=now_ms)
        return FetchResult(
            table,
            {
                "source": "synthetic",
                "endpoint_kind": "generator",
                **{f"synthetic_{k}": v for k, v in asdict(self.params).items()},
            },
        )
