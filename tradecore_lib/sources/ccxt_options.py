"""The connection and retry options every ccxt venue's ``source:`` mapping carries.

Kept apart from :mod:`.ccxt_client` so that validating ``configs/markets.yaml`` when the code
location loads does not import ccxt. Each venue's options model (:mod:`.kraken_options`,
:mod:`.coinbase_options`) adds what is its own.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from tradecore_lib.config import ConfigModel


class CcxtOptions(ConfigModel):
    """Connection and retry knobs of a ccxt venue (:class:`~.ccxt_client.CcxtClient`)."""

    rate_limit_ms: int | None = Field(
        default=None, ge=1,
        description="Minimum spacing between request costs in milliseconds (ccxt's leaky "
        "bucket); null keeps ccxt's value for the exchange, which follows the venue's published "
        "public limits (Kraken spot 1000 ms, Kraken Futures 600 ms, Coinbase about 10 "
        "requests/s).",
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

    @model_validator(mode="after")
    def _delays_ordered(self) -> Self:
        if self.retry_max_delay_s < self.retry_base_delay_s:
            raise ValueError(f"retry_max_delay_s ({self.retry_max_delay_s}) must be >= "
                             f"retry_base_delay_s ({self.retry_base_delay_s})")
        return self
