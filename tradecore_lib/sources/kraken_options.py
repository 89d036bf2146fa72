"""The ``source:`` options of a Kraken market (spot and futures), as a configuration model.

Kept apart from :mod:`.kraken_client` so that validating ``configs/markets.yaml`` when the code
location loads does not import ccxt.
"""

from __future__ import annotations

from pydantic import Field

from tradecore_lib.sources.ccxt_options import CcxtOptions


class KrakenOptions(CcxtOptions):
    """Connection, retry and paging knobs, from the ``source:`` mapping of a Kraken market."""

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
