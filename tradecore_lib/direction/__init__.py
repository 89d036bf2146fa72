"""Supervised direction models (issue 14): a per-market LSTM and a venue's multi-market
transformer predicting the sign of the next ``horizon_minutes`` log return.

* :mod:`.config` typed presets (``configs/direction/``), :mod:`.launch` model keys and the
  command line, :mod:`.labels` the one labelling rule: these load only pydantic and numpy.
* :mod:`.data` strided windows over one table, :mod:`.models` the networks, :mod:`.train` the
  entry point ``python -m tradecore_lib.direction.train``, :mod:`.predict` the
  ``DirectionPredictions`` of a finished run, :mod:`.store` its folder: these load torch.
* :mod:`.evaluate`, :mod:`.metrics`, :mod:`.baselines`, :mod:`.gate`: scoring and the gate.
"""

from tradecore_lib.direction.config import (
    DirectionConfig,
    DirectionConfigError,
    load_direction_config,
    parse_direction_config,
)
from tradecore_lib.direction.launch import (
    DirectionRequest,
    model_kind,
    model_markets,
    multi_model_key,
    parse_direction_request,
    plan_direction_folds,
    venue_markets,
)

__all__ = [
    "DirectionConfig",
    "DirectionConfigError",
    "DirectionRequest",
    "load_direction_config",
    "model_kind",
    "model_markets",
    "multi_model_key",
    "parse_direction_request",
    "parse_direction_config",
    "plan_direction_folds",
    "venue_markets",
]
