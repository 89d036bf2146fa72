"""TradeCore's Dagster layer: asset factories, checks, resources, automation, ``Definitions``.

Logic lives in :mod:`tradecore_lib`; this package only wires it into Dagster.
"""
