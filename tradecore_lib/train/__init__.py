"""PPO training: the typed config and presets (:mod:`.config`), the train-month frames
(:mod:`.data`), the run's checkpoint folder (:mod:`.checkpoints`) and the entry point
``python -m tradecore_lib.train.ppo_train``.

Importing this package loads only pydantic; torch and stable-baselines3 load with
:mod:`tradecore_lib.train.ppo_train`.
"""

from tradecore_lib.train.config import (
    Fold,
    TrainConfig,
    TrainConfigError,
    load_train_config,
    parse_train_config,
)

__all__ = ["Fold", "TrainConfig", "TrainConfigError", "load_train_config", "parse_train_config"]
