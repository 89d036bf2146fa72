"""The ``source:`` options of a ``coinbase_spot`` market, as a configuration model.

Kept apart from :mod:`.coinbase` so that validating ``configs/markets.yaml`` when the code
location loads does not import ccxt (as :mod:`.kraken_options` is for Kraken).
"""

from __future__ import annotations

from pydantic import Field

from tradecore_lib.sources.ccxt_options import CcxtOptions

# ccxt's coinbase.fetch_ohlcv keeps at most 300 rows of a response (its ``maxLimit``, applied
# client-side after parsing), whatever Coinbase serves; Coinbase itself rejects a request for
# more than 350 candles. A window of at most 300 minutes is whole on both counts.
CCXT_OHLCV_LIMIT = 300


class CoinbaseOptions(CcxtOptions):
    """Connection, retry and paging knobs, from the ``source:`` mapping of a Coinbase market."""

    candles_per_request: int = Field(
        default=CCXT_OHLCV_LIMIT, ge=1, le=CCXT_OHLCV_LIMIT,
        description="Minutes per candles request (one ONE_MINUTE candle each). Coinbase serves "
        "at most 350 per request; ccxt keeps at most 300 of a response, hence the bound.",
    )
    checkpoint_every_pages: int = Field(
        default=20, ge=1,
        description="Candle requests between two checkpoints in the staging area.",
    )
