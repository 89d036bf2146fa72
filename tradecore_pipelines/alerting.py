"""Alerts (run failures, champion warnings) and retention."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from tradecore_lib.markets import Market


def alerting_definitions(markets: Sequence[Market]) -> dg.Definitions:
    """The alert sensors and the retention job of ``markets``."""
    return dg.Definitions()
