"""A plain-Python reference of the trading rules: the oracle of the engine's property tests."""
