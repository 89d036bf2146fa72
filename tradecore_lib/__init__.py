"""TradeCore's plain-Python core: sources, lake, validation, features, environment, training.

Nothing in this package imports Dagster, so every piece runs in a notebook or inside a GPU
pod that only has ``dagster-pipes``.
"""
