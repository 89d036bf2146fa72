"""A trained run loaded for inference: the PPO policy as an :class:`MlpPolicy` (with its frozen
VecNormalize statistics), the resolved config and the lineage.

The backtest asks the policy for one decision per bar, in order (the account state it observes
depends on the previous decisions), so per-call overhead decides its speed: SB3's
``get_distribution`` costs ~60 us a bar, torch modules called directly ~30 us, a numpy
forward pass ~11 us, the network inside the walk's kernel ~2 us. :func:`mlp_policy` therefore
hands the backtest the network of the ``MlpPolicy`` TradeCore trains (Linear layers with tanh
or ReLU, then the action head) as float32 arrays. The kernel computes in float32 like torch,
with another summation order, so its outputs agree with torch's to float rounding (~1e-6)
and the deterministic action (each head's mode) is torch's except at exact ties.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.evaluation.backtest import MlpPolicy
from tradecore_lib.train.checkpoints import CONFIG, LINEAGE, MODEL, VECNORMALIZE, RunStore
from tradecore_lib.train.config import TrainConfig, parse_train_config


class UnfinishedRunError(TradeCoreError, FileNotFoundError):
    """A run has no final model (it never finished training)."""


def mlp_policy(model: Any, vec_normalize: Any | None) -> MlpPolicy:
    """The deterministic actor of an SB3 PPO ``MlpPolicy`` (``Discrete``, ``MultiDiscrete`` or
    ``Box`` actions) and its frozen VecNormalize observation statistics, as arrays.

    An affine features extractor (``ppo.policy.extractor: temporal``) is folded exactly into
    the first layer (:func:`~tradecore_lib.train.extractors.affine_map`), so the kernel
    plays the same network over the raw (normalized) observation.

    Raises:
        TradeCoreError: the network has a layer other than Linear, Tanh or ReLU, or a
            features extractor that is not affine.
    """
    import torch
    from gymnasium import spaces

    from tradecore_lib.train.extractors import affine_map  # torch and SB3: loaded here only

    def array(tensor: Any) -> np.ndarray:
        return tensor.detach().cpu().numpy().astype(np.float32)

    weights, biases, activations = [], [], set()
    for module in model.policy.mlp_extractor.policy_net:
        if isinstance(module, torch.nn.Linear):
            weights.append(np.ascontiguousarray(array(module.weight).T))
            biases.append(array(module.bias))
        elif isinstance(module, torch.nn.Tanh | torch.nn.ReLU):
            activations.add(type(module))
        else:
            raise TradeCoreError(f"the policy network has a {module!r} layer: TradeCore's "
                                 "backtest runs MlpPolicy networks of Linear layers with tanh "
                                 "or relu")
    if len(activations) > 1:
        raise TradeCoreError("the policy network mixes tanh and relu layers")
    head = model.policy.action_net
    head_weight = np.ascontiguousarray(array(head.weight).T)
    head_bias = array(head.bias)
    try:
        fold = affine_map(model.policy.pi_features_extractor)
    except TypeError as error:
        raise TradeCoreError(f"TradeCore's backtest cannot play this policy: {error}") from None
    if fold is not None:
        # features = obs @ matrix + bias feed the first layer (W, b): the kernel plays
        # obs @ (matrix @ W) + (bias @ W + b), computed in float64 and rounded once.
        matrix, bias = fold
        first_weight, first_bias = (weights[0], biases[0]) if weights else (head_weight,
                                                                            head_bias)
        folded_weight = np.ascontiguousarray((matrix @ first_weight).astype(np.float32))
        folded_bias = (bias @ first_weight + first_bias).astype(np.float32)
        if weights:
            weights[0], biases[0] = folded_weight, folded_bias
        else:
            head_weight, head_bias = folded_weight, folded_bias
    space = model.action_space
    if isinstance(space, spaces.Discrete):
        dims: tuple[int, ...] = (int(space.n),)
    elif isinstance(space, spaces.MultiDiscrete):
        dims = tuple(int(n) for n in space.nvec)
    else:
        dims = ()
    dim = int(np.prod(model.observation_space.shape))
    shift, scale, clip = np.zeros(dim), np.ones(dim), np.inf
    if vec_normalize is not None and vec_normalize.norm_obs:
        rms = vec_normalize.obs_rms
        # VecNormalize.normalize_obs: clip((obs - mean) / sqrt(var + epsilon), +-clip_obs)
        shift = np.asarray(rms.mean, dtype=np.float64)
        scale = np.sqrt(np.asarray(rms.var, dtype=np.float64) + vec_normalize.epsilon)
        clip = float(vec_normalize.clip_obs)
    return MlpPolicy(obs_shift=shift, obs_scale=scale, obs_clip=clip, weights=tuple(weights),
                     biases=tuple(biases), relu=torch.nn.ReLU in activations,
                     head_weight=head_weight, head_bias=head_bias, action_dims=dims)


@dataclass
class Agent:
    """A finished run: :attr:`policy` is what the backtest plays (deterministic: the mode of
    the policy's distribution, on observations normalized with the frozen statistics)."""

    store: RunStore
    config: TrainConfig
    lineage: dict[str, Any]
    model: Any  # stable_baselines3.PPO
    vec_normalize: Any | None  # stable_baselines3 VecNormalize (statistics only, frozen)
    policy: MlpPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = mlp_policy(self.model, self.vec_normalize)

    @classmethod
    def load(cls, store: RunStore) -> Agent:
        """Load ``store``'s final model on the CPU.

        Raises:
            UnfinishedRunError: the run has no final ``model.zip`` (it never finished).
        """
        from stable_baselines3 import PPO

        if not store.is_complete():
            raise UnfinishedRunError(
                f"run {store.run_id} has no final model at {store.uri(MODEL)}: it did not "
                f"finish; re-materialize {store.market}/ppo_agent to resume it"
            )
        config = parse_train_config(store.read_json(CONFIG), where=store.uri(CONFIG))
        model = PPO.load(io.BytesIO(store.read_bytes(MODEL)), device="cpu")
        vec_normalize = None
        if store.exists(VECNORMALIZE):
            vec_normalize = pickle.loads(store.read_bytes(VECNORMALIZE))
            vec_normalize.training = False
        return cls(store, config, store.read_json(LINEAGE), model, vec_normalize)
