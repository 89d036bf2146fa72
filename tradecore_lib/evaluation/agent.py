"""A trained run loaded for inference: the PPO policy, its frozen Brain Shampoo statistics,
the resolved config and the lineage."""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradecore_lib.train.checkpoints import CONFIG, LINEAGE, MODEL, VECNORMALIZE, RunStore
from tradecore_lib.train.config import TrainConfig, config_from_mapping


@dataclass
class Agent:
    """A finished run's policy, acting deterministically (the mode of its distribution)."""

    store: RunStore
    config: TrainConfig
    lineage: dict[str, Any]
    model: Any  # stable_baselines3.PPO
    vec_normalize: Any | None  # stable_baselines3 VecNormalize (statistics only, frozen)

    @classmethod
    def load(cls, store: RunStore) -> Agent:
        """Load ``store``'s final model on the CPU.

        Raises:
            FileNotFoundError: the run has no final ``model.zip`` (it never finished).
        """
        import torch
        from stable_baselines3 import PPO

        if not store.is_complete():
            raise FileNotFoundError(
                f"run {store.run_id} has no final model at {store.uri(MODEL)}: it did not "
                f"finish; re-materialize ppo_agent/{store.market} to resume it"
            )
        torch.set_num_threads(1)  # batch-of-one inference: threads only add overhead
        config = config_from_mapping(store.read_json(CONFIG), where=store.uri(CONFIG))
        model = PPO.load(io.BytesIO(store.read_bytes(MODEL)), device="cpu")
        vec_normalize = None
        if store.exists(VECNORMALIZE):
            vec_normalize = pickle.loads(store.read_bytes(VECNORMALIZE))
            vec_normalize.training = False
        return cls(store, config, store.read_json(LINEAGE), model, vec_normalize)

    def __call__(self, obs: np.ndarray) -> tuple[Any, np.ndarray | None]:
        """Deterministic action for one observation and the target-position probabilities
        (None for continuous actions)."""
        import torch

        if self.vec_normalize is not None:
            obs = self.vec_normalize.normalize_obs(obs)
        policy = self.model.policy
        with torch.no_grad():
            tensor = torch.as_tensor(obs[None], dtype=torch.float32)
            distribution = policy.get_distribution(tensor)
            action = distribution.get_actions(deterministic=True)[0].numpy()
        inner = distribution.distribution
        head = inner[0] if isinstance(inner, list) else inner
        probs = head.probs[0].numpy().astype(np.float64) if hasattr(head, "probs") else None
        if action.ndim == 0:
            return int(action), probs
        return action, probs
