"""Automation: features follow candles, retraining by lineage, the champion judged again."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from tradecore_lib.markets import Market


def automation_definitions(markets: Sequence[Market]) -> dg.Definitions:
    """The automation sensors and schedules of ``markets``."""
    return dg.Definitions()
