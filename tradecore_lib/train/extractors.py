"""Features extractors of the PPO policy: what the policy and value networks see of an observation.

A TradeCore observation (:mod:`tradecore_lib.env.spaces`) is one flat float32 vector of
``D = W * C + A`` values: the window of the last ``W`` bars of ``C`` columns, time-major
(element ``k * C + c`` is column ``c`` at bar ``t - W + 1 + k``, oldest bar first; see
:mod:`tradecore_lib.env.observation`), then the ``A`` account values (5, 7 with nudge).
Both extractors below are SB3 ``BaseFeaturesExtractor`` s, shared by the policy and the value
network (SB3's default for PPO), chosen by the training preset's ``ppo.policy.extractor``:

``mlp`` (:class:`FlattenWindow`)
    The observation as it is (SB3's ``FlattenExtractor``): ``features = obs``, ``D`` features,
    no parameters, no FLOPs. The first hidden layer of each network then reads all ``D``
    values: with ``net_arch [h, ...]`` that is ``2 * D * h`` multiply-adds per observation for
    the two networks, most of the policy's compute (table below).

``temporal`` (:class:`TemporalPatches`)
    A strided temporal convolution over the window: the ``W`` bars are cut into ``W / P``
    patches of ``P = patch_bars`` consecutive bars, and one learned linear map of a patch's
    ``P * C`` values to ``H = channels`` values is applied to every patch (the same filters at
    every position of the window, a ``Conv1d(C, H, kernel_size=P, stride=P)``); the
    ``(W / P) * H`` outputs and the ``A`` account values, passed through, are the features:
    ``features_dim = (W / P) * H + A``. Parameters ``P * C * H + H``; multiply-adds per
    observation ``W * C * H`` (each value is read once). Because the observation is
    time-major, a patch is a contiguous run of ``P * C`` floats: the convolution is one matrix
    product over a reshaped view, without an im2col copy.

    The map is affine on purpose (no activation): the networks after it bring the
    non-linearity, and an affine extractor composes exactly with the first hidden layer into
    one dense layer over the raw observation (:func:`affine_map`), which is how the
    evaluation's in-kernel network (:class:`tradecore_lib.evaluation.backtest.MlpPolicy`) can
    play either extractor. It can express every linear statistic of the window, e.g. a sum
    of close-to-close returns over any range of lags (the planted temporal edge's predictor:
    bars 5..30 back) as a combination of per-patch partial sums.

Per observation, ``net_arch [64, 64]``, 3 discrete actions, temporal ``P = 4, H = 16`` (the
defaults; :func:`describe`): parameters of the extractor + of the two networks and heads,
features the networks read, multiply-adds of one forward pass in all:

=========================  =====  =====================  ==========================
observation                D      mlp: params, MACs      temporal: params, feat, MACs
=========================  =====  =====================  ==========================
control, 32 x 7 + 5        229    38,020, 37,760         464 + 25,732, 133, 29,056
default, 64 x 7 + 5        453    66,692, 66,432         464 + 42,116, 261, 49,024
extended, 64 x 13 + 5      837    115,844, 115,584       848 + 42,116, 261, 55,168
64 x 17 + 7 (bench_env)    1095   148,868, 148,608       1,104 + 42,372, 263, 59,520
=========================  =====  =====================  ==========================

With cpu-default's ``net_arch [128, 128]`` on the extended observation: 247,552 MACs (mlp)
against 113,408 (temporal). ``P = 8, H = 16`` halves the features again (extended: 38,784
MACs) but recovered less of the planted temporal edge (bench/bench_extractor_controls.py).

FLOPs here are multiply-adds of one forward pass of one observation (:func:`describe` gives
both figures for a concrete observation); the PPO update runs every rollout sample forward
and backward ``n_epochs`` times, so they scale the update's cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

Extractor = Literal["mlp", "temporal"]


def _flat_dim(observation_space: spaces.Space) -> int:
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"the features extractors read a flat Box observation (W * C + A "
                         f"values), got {observation_space}")
    return int(observation_space.shape[0])


def check_temporal(obs_dim: int, window: int, account_size: int, patch_bars: int,
                   channels: int) -> None:
    """Refuse a temporal layout that does not fit an observation of ``obs_dim`` values.

    Raises:
        ValueError: the observation is not ``window`` bars of whole columns plus
            ``account_size`` values, ``patch_bars`` does not divide ``window`` (the message
            lists the values that do), or ``channels`` < 1.
    """
    if window < 1 or account_size < 0 or obs_dim <= account_size or (
            (obs_dim - account_size) % window):
        raise ValueError(f"an observation of {obs_dim} values is not a window of {window} bars "
                         f"of whole columns plus {account_size} account values")
    if patch_bars < 1 or window % patch_bars:
        fits = [p for p in range(1, window + 1) if window % p == 0]
        raise ValueError(f"ppo.policy.patch_bars {patch_bars} must divide the env's window of "
                         f"{window} bars; values that do: {fits}")
    if channels < 1:
        raise ValueError(f"ppo.policy.channels must be >= 1, got {channels}")


class FlattenWindow(BaseFeaturesExtractor):
    """``mlp``: the observation unchanged, ``(B, D) -> (B, D)`` (0 parameters, 0 FLOPs).

    Equivalent to SB3's ``FlattenExtractor`` on TradeCore's flat observation (same outputs,
    same state dict: none), named here so that both choices are built the same way.
    """

    def __init__(self, observation_space: spaces.Box) -> None:
        super().__init__(observation_space, _flat_dim(observation_space))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return observations.flatten(1)


class TemporalPatches(BaseFeaturesExtractor):
    """``temporal``: a strided temporal convolution of the window plus the account vector.

    ``(B, W * C + A) -> (B, (W / P) * H + A)``: patch ``j`` (bars ``j * P .. j * P + P - 1``
    of the window, oldest first) gives features ``j * H .. j * H + H - 1``; the account values
    follow unchanged. See the module docstring for the FLOPs.

    Args:
        observation_space: the env's flat Box, ``W * C + A`` values.
        window: ``W``, bars in the observation window (the env preset's ``window``).
        account_size: ``A``, account values after the window (5, 7 with nudge).
        patch_bars: ``P``, bars per patch (kernel and stride); must divide ``W``.
        channels: ``H``, learned filters per patch.

    Raises:
        ValueError: see :func:`check_temporal`.
    """

    def __init__(self, observation_space: spaces.Box, window: int, account_size: int,
                 patch_bars: int = 4, channels: int = 16) -> None:
        dim = _flat_dim(observation_space)
        check_temporal(dim, window, account_size, patch_bars, channels)
        self.window, self.account_size = window, account_size
        self.columns = (dim - account_size) // window
        self.patch_bars, self.channels = patch_bars, channels
        self.patches = window // patch_bars
        super().__init__(observation_space, self.patches * channels + account_size)
        # One Linear over a patch's P * C values (time-major: bar, then column) is the
        # Conv1d(C, H, P, stride=P) with its kernel laid out as the flattened patch.
        self.patch = torch.nn.Linear(patch_bars * self.columns, channels)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        n = observations.shape[0]
        split = self.window * self.columns
        # a view: rows of the (B, D) batch are contiguous runs of patches
        patches = observations[:, :split].reshape(n, self.patches, -1)
        encoded = self.patch(patches).reshape(n, -1)
        return torch.cat((encoded, observations[:, split:]), dim=1)

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """The extractor as one affine map: ``features = obs @ matrix + bias``.

        Returns ``matrix`` (D, features_dim) and ``bias`` (features_dim,), float64, built
        from the weights (block ``j`` of rows and columns holds the patch filter, the
        account block is the identity).
        """
        weight = self.patch.weight.detach().cpu().double().numpy().T  # (P * C, H)
        bias = self.patch.bias.detach().cpu().double().numpy()
        rows = self.patch_bars * self.columns
        matrix = np.zeros((self.window * self.columns + self.account_size, self.features_dim))
        for j in range(self.patches):
            matrix[j * rows:(j + 1) * rows, j * self.channels:(j + 1) * self.channels] = weight
        split = self.patches * self.channels
        matrix[self.window * self.columns:, split:] = np.eye(self.account_size)
        return matrix, np.concatenate([np.tile(bias, self.patches),
                                       np.zeros(self.account_size)])


def affine_map(extractor: torch.nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """``(matrix (D, F), bias (F,))`` of an affine features extractor (``features = obs @
    matrix + bias``), float64; ``None`` for the identity (``mlp``, or SB3's own flatten).

    What an evaluation that plays the policy as a plain MLP over the raw observation folds
    into the first hidden layer: ``W1' = matrix @ W1``, ``b1' = bias @ W1 + b1``.

    Raises:
        TypeError: ``extractor`` is not one of the extractors above nor SB3's flatten.
    """
    from stable_baselines3.common.torch_layers import FlattenExtractor

    if isinstance(extractor, FlattenWindow | FlattenExtractor):
        return None
    if isinstance(extractor, TemporalPatches):
        return extractor.dense()
    raise TypeError(f"features extractor {type(extractor).__name__} is not affine: only "
                    "FlattenWindow, TemporalPatches and SB3's FlattenExtractor are")


@dataclass(frozen=True)
class ExtractorCost:
    """Size of one extractor + the networks after it, for one observation.

    Attributes:
        extractor_params, extractor_flops: the extractor's parameters and multiply-adds.
        features_dim: what the policy and value networks read.
        network_params, network_flops: the policy and value MLPs and their heads (the
            hidden layers ``net_arch`` of each, the action head and the value head).
    """

    extractor_params: int
    extractor_flops: int
    features_dim: int
    network_params: int
    network_flops: int

    @property
    def total_flops(self) -> int:
        """Multiply-adds of one forward pass (extractor + both networks)."""
        return self.extractor_flops + self.network_flops


def describe(extractor: Extractor, obs_dim: int, window: int, account_size: int,
             net_arch: list[int], action_outputs: int, patch_bars: int = 4,
             channels: int = 16) -> ExtractorCost:
    """Parameters and multiply-adds per observation of ``extractor`` with ``net_arch`` for
    the policy and the value network (``action_outputs`` logits: 3 for short/flat/long)."""
    if extractor == "mlp":
        params = flops = 0
        features = obs_dim
    else:
        columns = (obs_dim - account_size) // window
        params = patch_bars * columns * channels + channels
        flops = window * columns * channels
        features = (window // patch_bars) * channels + account_size
    widths = [features, *net_arch]
    hidden_flops = sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    hidden_params = hidden_flops + sum(net_arch)
    head = net_arch[-1]
    network_flops = 2 * hidden_flops + head * action_outputs + head
    network_params = 2 * hidden_params + head * action_outputs + action_outputs + head + 1
    return ExtractorCost(params, flops, features, network_params, network_flops)


def policy_kwargs(extractor: Extractor, *, window: int | None = None,
                  account_size: int | None = None, patch_bars: int = 4,
                  channels: int = 16) -> dict[str, Any]:
    """The ``features_extractor_class`` / ``features_extractor_kwargs`` of SB3's
    ``policy_kwargs`` for ``extractor``; ``temporal`` needs the env's ``window`` (bars) and
    ``account_size`` (account values after the window)."""
    if extractor == "mlp":
        return {"features_extractor_class": FlattenWindow}
    if window is None or account_size is None:
        raise ValueError("the temporal extractor needs the env's window and account_size")
    kwargs: Mapping[str, int] = {"window": window, "account_size": account_size,
                                 "patch_bars": patch_bars, "channels": channels}
    return {"features_extractor_class": TemporalPatches, "features_extractor_kwargs": dict(kwargs)}
