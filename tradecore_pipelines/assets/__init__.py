"""Asset factories, one module per layer."""
