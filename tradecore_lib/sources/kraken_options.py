"""The ``source:`` options of a Kraken market (spot and futures), as a configuration model.

Kept apart from :mod:`.kraken_client` so that validating ``configs/markets.yaml`` when the code
location loads does not import ccxt.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from tradecore_lib.config import ConfigModel


class KrakenOptions(ConfigModel):
    """Connection and retry knobs, from the ``source:`` mapping of a Kraken market."""

    rate_limit_ms: int | None = Field(
        default=None, ge=1,
        description="Minimum spacing between requests in milliseconds (ccxt's leaky bucket); "
        "null keeps ccxt's value for the exchange, which follows Kraken's published public "
        "limits (spot 1000 ms, futures 600 ms).",
    )
    timeout_ms: int = Field(default=30_000, ge=1,
                            description="HTTP timeout of one request in milliseconds.")
    retry_attempts: int = Field(
        default=8, ge=1, description="Attempts per call, the first included, before giving up."
    )
    retry_base_delay_s: float = Field(
        default=1.0, ge=0, description="Backoff before the first retry in seconds; doubles per "
        "retry."
    )
    retry_max_delay_s: float = Field(default=60.0, ge=0,
                                     description="Cap of one backoff in seconds.")
    retry_budget_s: float = Field(
        default=120.0, gt=0,
        description="Total seconds one call may spend retrying (attempts and backoffs "
        "together); a permanent outage ends after about this long, whatever the attempts.",
    )
    trades_page_size: int = Field(
        default=1000, ge=1, le=1000,
        description="Trades per spot Trades request (Kraken serves at most 1000).",
    )
    checkpoint_every_pages: int = Field(
        default=20, ge=1,
        description="Spot trade pages between two checkpoints in the staging area.",
    )
    boundary_overlap_s: int = Field(
        default=60, ge=0,
        description="Seconds fetched before the month start, so the first minute is built from "
        "a cursor that starts before it.",
    )

    @model_validator(mode="after")
    def _delays_ordered(self) -> KrakenOptions:
        if self.retry_max_delay_s < self.retry_base_delay_s:
            raise ValueError(f"retry_max_delay_s ({self.retry_max_delay_s}) must be >= "
                             f"retry_base_delay_s ({self.retry_base_delay_s})")
        return self
