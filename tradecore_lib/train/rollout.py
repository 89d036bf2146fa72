"""The rollout path of PPO training without the copies SB3 makes by default, same numbers.

An observation travels ``TradeVecEnv -> VecMonitor -> VecNormalize -> policy -> RolloutBuffer
-> minibatches``. Measured per 256-env step (``bench/bench_rollout_path.py``) SB3's defaults
copy or allocate it many more times than the arithmetic needs:

* ``VecNormalize.normalize_obs`` deep-copies the observation, then ``(obs - mean) / std`` and
  the clip allocate three float64 arrays of it before the float32 result, and
  ``RunningMeanStd.update`` (``np.mean`` and ``np.var``) two more passes with temporaries;
* ``RolloutBuffer.add`` copies the observation into a temporary (``np.array(obs)``) before
  copying it into the buffer; ``reset()`` allocates a fresh, never-touched buffer each
  rollout (every page of it faults on its first write); ``get()`` copies the whole buffer
  (``swap_and_flatten``) and every minibatch copies its rows twice (a fancy index, then
  ``th.tensor``).

:class:`TradeVecNormalize` and :class:`TradeRolloutBuffer` do the same arithmetic in the same
order, so their results are bit for bit SB3's (tests/lib/test_extractors.py compares them):

* :class:`TradeVecNormalize` updates the running moments and normalizes in one numba kernel
  that reads the observation three times and writes the float32 result once (the float64
  intermediates live in registers); terminal observations are normalized only for the envs
  that finished. It pickles as itself, with the attributes of ``VecNormalize``.
* :class:`TradeRolloutBuffer` keeps its observation storage between rollouts, writes each
  step's observations straight into it, never swaps it, and gathers a minibatch's rows with
  one ``index_select`` (the row of SB3's env-major sample ``i`` is found by index
  arithmetic, so the minibatches are SB3's exactly).

What stays (SB3 forces it): ``TradeVecEnv`` returns a fresh observation array every step,
because SB3's rollout still reads the previous one after ``step()`` returns (it is added to the
buffer after the next step); VecNormalize returns a new normalized array for the same reason;
the buffer holds its own copy of every observation (the rollout outlives the env's arrays);
and each minibatch is one gathered copy (the update needs contiguous rows).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from numba import njit
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn


@njit(cache=True)
def _batch_moments(obs: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
    """``np.mean(obs, axis=0)`` and ``np.var(obs, axis=0)`` of float32 (N, D) ``obs`` into
    float32 (D,) ``mean`` and ``var``, with numpy's arithmetic: float32 sums in row order
    (numpy reduces a C-contiguous array over axis 0 row after row), each divided by N in
    float64 and rounded to float32 (numpy divides by an intp count)."""
    n, d = obs.shape
    # 1-D loops over row views, which LLVM vectorizes (2-D indexing keeps them scalar)
    first = obs[0]
    for j in range(d):
        mean[j] = first[j]
    for i in range(1, n):
        row = obs[i]
        for j in range(d):
            mean[j] += row[j]
    for j in range(d):
        mean[j] = np.float32(np.float64(mean[j]) / n)
    for j in range(d):
        x = first[j] - mean[j]
        var[j] = x * x
    for i in range(1, n):
        row = obs[i]
        for j in range(d):
            x = row[j] - mean[j]
            var[j] += x * x
    for j in range(d):
        var[j] = np.float32(np.float64(var[j]) / n)


# float64 -> float32 rounding drops the low 29 bits of the mantissa; a value whose low bits
# sit this many float64 ulps or fewer from the halfway point may round differently from a
# neighbour that close (see _normalize)
_F32_DROPPED_BITS = (1 << 29) - 1
_F32_HALFWAY = 1 << 28
_NEAR_HALFWAY_ULPS = 8
# below float32's smallest normal number float32 drops more bits: divided too
_F32_MIN_NORMAL = 1.1754943508222875e-38


@njit(cache=True)
def _normalize(obs: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float,
               out: np.ndarray) -> None:
    """``np.clip((obs - mean) / std, -clip, clip).astype(np.float32)`` into ``out``, bit for
    bit: float32 (N, D) ``obs``, float64 (D,) ``mean`` and ``std`` (VecNormalize's
    ``sqrt(var + eps)``, positive).

    A float64 division costs six times a multiplication here, so the quotient is taken as
    ``(obs - mean) * (1 / std)``, within 2 float64 ulps of the true quotient. Rounding to
    float32 then gives the true quotient's float32 unless the product lies within a few ulps
    of a float32 halfway point (about one element in 10^7); those elements are divided.
    The test is made after clipping, so a product and a quotient on either side of ``clip``
    round alike too (unless ``clip`` itself is that close to a halfway point: then divided).
    """
    n, d = obs.shape
    low = -clip
    inv = 1.0 / std
    for i in range(n):
        row = obs[i]
        dst = out[i]
        near = 0
        for j in range(d):  # vectorized: no branch but the selects
            x = (np.float64(row[j]) - mean[j]) * inv[j]
            x = low if x < low else x
            x = clip if x > clip else x
            dropped = (np.float64(x).view(np.int64) & _F32_DROPPED_BITS) - _F32_HALFWAY
            tiny = (abs(x) < _F32_MIN_NORMAL) & (x != 0.0)
            near += np.int64((abs(dropped) <= _NEAR_HALFWAY_ULPS) | tiny)
            dst[j] = np.float32(x)
        if near:  # about one row in 50 at N x 837: divide that row's doubtful elements
            for j in range(d):
                x = (np.float64(row[j]) - mean[j]) * inv[j]
                x = low if x < low else x
                x = clip if x > clip else x
                dropped = (np.float64(x).view(np.int64) & _F32_DROPPED_BITS) - _F32_HALFWAY
                if abs(dropped) <= _NEAR_HALFWAY_ULPS or 0.0 < abs(x) < _F32_MIN_NORMAL:
                    x = (np.float64(row[j]) - mean[j]) / std[j]
                    x = low if x < low else x
                    dst[j] = np.float32(clip if x > clip else x)


class TradeVecNormalize(VecNormalize):
    """SB3's ``VecNormalize`` with the same statistics and outputs, computed without its
    copies (module docstring). Observations must be float32 Box arrays (TradeVecEnv's);
    anything else is handed to SB3's own code."""

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self.old_obs = obs
        self.old_reward = rewards
        if self.training and self.norm_obs:
            self._update_obs_rms(obs)
        obs = self.normalize_obs(obs)
        if self.training:
            self._update_reward(rewards)
        rewards = self.normalize_reward(rewards)
        # SB3 visits every env; only the finished ones carry a terminal observation.
        for idx in np.flatnonzero(dones).tolist():
            if "terminal_observation" in infos[idx]:
                infos[idx]["terminal_observation"] = self.normalize_obs(
                    infos[idx]["terminal_observation"])
        self.returns[dones] = 0
        return obs, rewards, dones, infos

    def _update_obs_rms(self, obs: Any) -> None:
        if not _fast(obs) or obs.ndim != 2:
            self.obs_rms.update(obs)
            return
        mean = np.empty(obs.shape[1], dtype=np.float32)
        var = np.empty_like(mean)
        _batch_moments(np.ascontiguousarray(obs), mean, var)
        self.obs_rms.update_from_moments(mean, var, obs.shape[0])

    def normalize_obs(self, obs: Any) -> Any:
        """Normalized float32 copy of ``obs`` (SB3's result, bit for bit). Without
        observation normalization ``obs`` itself is returned: TradeVecEnv hands out a fresh
        array every step and nothing writes into it afterwards, so SB3's defensive deep copy
        buys nothing."""
        if not self.norm_obs:
            return obs if isinstance(obs, np.ndarray) else super().normalize_obs(obs)
        if not _fast(obs):
            return super().normalize_obs(obs)
        std = np.sqrt(self.obs_rms.var + self.epsilon)
        out = np.empty(obs.shape, dtype=np.float32)
        flat = np.ascontiguousarray(obs).reshape(-1, obs.shape[-1])
        _normalize(flat, np.asarray(self.obs_rms.mean, dtype=np.float64), std,
                   float(self.clip_obs), out.reshape(-1, obs.shape[-1]))
        return out


def _fast(obs: Any) -> bool:
    return isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.ndim in (1, 2)


class TradeRolloutBuffer(RolloutBuffer):
    """SB3's ``RolloutBuffer`` with the same samples in the same minibatches, without its
    copies of the observations (module docstring).

    Observations stay in collection order, ``(n_steps, n_envs, *obs_shape)``; SB3 flattens
    them env-major (sample ``i`` is env ``i // n_steps`` at step ``i % n_steps``), so sample
    ``i`` is row ``(i % n_steps) * n_envs + i // n_steps`` here. The other arrays (a few
    floats per transition) are flattened as SB3 does.
    """

    observations: np.ndarray

    def reset(self) -> None:
        keep = getattr(self, "observations", None)
        super().reset()
        shape = (self.buffer_size, self.n_envs, *self.obs_shape)
        if keep is not None and keep.shape == shape and keep.dtype == self.observations.dtype:
            # every row is written again before get() reads it: no need for fresh zeros
            self.observations = keep
        self._obs_rows: torch.Tensor | None = None

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            episode_start: np.ndarray, value: torch.Tensor, log_prob: torch.Tensor) -> None:
        """SB3's ``RolloutBuffer.add`` for Box observations, each array assigned once (SB3
        copies each into a temporary first, ``np.array(obs)``, then into the buffer)."""
        if len(log_prob.shape) == 0:
            log_prob = log_prob.reshape(-1, 1)
        self.observations[self.pos] = obs.reshape((self.n_envs, *self.obs_shape))
        self.actions[self.pos] = action.reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = episode_start
        self.values[self.pos] = value.detach().cpu().numpy().flatten()
        self.log_probs[self.pos] = log_prob.detach().cpu().numpy()
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:
        assert self.full, ""
        indices = np.random.permutation(self.buffer_size * self.n_envs)
        if not self.generator_ready:
            for name in ("actions", "values", "log_probs", "advantages", "returns"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self._obs_rows = torch.from_numpy(
                self.observations.reshape(self.buffer_size * self.n_envs, *self.obs_shape))
            self.generator_ready = True
        if batch_size is None:
            batch_size = self.buffer_size * self.n_envs
        start = 0
        while start < self.buffer_size * self.n_envs:
            yield self._get_samples(indices[start:start + batch_size])
            start += batch_size

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None
                     ) -> RolloutBufferSamples:
        assert self._obs_rows is not None
        rows = (batch_inds % self.buffer_size) * self.n_envs + batch_inds // self.buffer_size
        observations = self._obs_rows.index_select(0, torch.from_numpy(rows))
        data = (
            self.actions[batch_inds].astype(np.float32, copy=False),
            self.values[batch_inds].flatten(),
            self.log_probs[batch_inds].flatten(),
            self.advantages[batch_inds].flatten(),
            self.returns[batch_inds].flatten(),
        )
        return RolloutBufferSamples(observations.to(self.device),
                                    *tuple(map(self.to_torch, data)))

