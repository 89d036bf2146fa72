"""TradeCore's Dagster layer: asset factories, checks, resources, automation, ``Definitions``.

Logic lives in :mod:`tradecore_lib`; this package only wires it into Dagster.
"""

import warnings

import dagster as dg

# We knowingly use beta/preview Dagster APIs (single-run backfills, partitioned asset checks,
# allow_nonexistent_upstream_partitions); say so once here instead of on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
