"""The ``source:`` options of a ``coinbase_spot`` market, as a configuration model.

Kept apart from :mod:`.coinbase` so that validating ``configs/markets.yaml`` when the code
location loads does not import ccxt (as :mod:`.kraken_options` is for Kraken).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from tradecore_lib.config import ConfigModel

# ccxt's coinbase.fetch_ohlcv keeps at most 300 rows of a response (its ``maxLimit``, applied
# client-side after parsing), whatever Coinbase serves; Coinbase itself rejects a request for
# more than 350 candles. A window of at most 300 minutes is whole on both counts.
CCXT_OHLCV_LIMIT = 300


class CoinbaseOptions(ConfigModel):
    """Connection, retry and paging knobs, from the ``source:`` mapping of a Coinbase market."""

    rate_limit_ms: int | None = Field(
        default=None, ge=1,
        description="Minimum spacing between request costs in milliseconds (ccxt's leaky "
        "bucket); null keeps ccxt's value for coinbase (34 ms x cost 3 per Advanced Trade "
        "public call: about 10 requests/s, Coinbase's public limit per IP).",
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
    candles_per_request: int = Field(
        default=CCXT_OHLCV_LIMIT, ge=1, le=CCXT_OHLCV_LIMIT,
        description="Minutes per candles request (one ONE_MINUTE candle each). Coinbase serves "
        "at most 350 per request; ccxt keeps at most 300 of a response, hence the bound.",
    )
    checkpoint_every_pages: int = Field(
        default=20, ge=1,
        description="Candle requests between two checkpoints in the staging area.",
    )

    @model_validator(mode="after")
    def _delays_ordered(self) -> CoinbaseOptions:
        if self.retry_max_delay_s < self.retry_base_delay_s:
            raise ValueError(f"retry_max_delay_s ({self.retry_max_delay_s}) must be >= "
                             f"retry_base_delay_s ({self.retry_base_delay_s})")
        return self
