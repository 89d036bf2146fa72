"""Where a PPO rollout's time goes between TradeVecEnv, VecNormalize and the rollout buffer:
SB3's defaults against TradeCore's copy-free pieces (tradecore_lib/train/rollout.py).

One observation's path in training is ``TradeVecEnv -> VecMonitor -> VecNormalize -> policy ->
RolloutBuffer -> minibatches``. Each row times one stage on the same frame, in one run, per
env step of ``N`` envs (microseconds per step of all N envs, best of ``--repeat``):

* ``TradeVecEnv.step``, then ``+ VecMonitor`` (episode statistics);
* ``+ VecNormalize``: SB3's vs :class:`TradeVecNormalize` (same numbers, bit for bit);
* ``buffer.add``: SB3's ``RolloutBuffer.add`` vs :class:`TradeRolloutBuffer`'s, each filling a
  whole rollout (n_steps adds) and reset before it, as PPO does every rollout;
* ``minibatches``: one rollout's ``get()`` over ``n_epochs`` epochs of ``batch`` samples
  (µs per rollout transition);
* ``collect_rollouts``: SB3 PPO's whole collection (policy forward included, MLP 64-64) on
  SB3's stack vs TradeCore's, in env-steps/s.

Observation: the ``extended`` feature preset on a synthetic month (64 bars x 13 columns + 5
account values = 837 float32, what cpu-default trains on for the Kraken markets)::

    .venv/bin/python bench/bench_rollout_path.py [--n-envs 256] [--repeat 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import numpy as np
import tests_path  # noqa: F401
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from tests.lakes import write_synthetic_months
from tradecore_lib.env import make_vec_env
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.rollout import TradeRolloutBuffer, TradeVecNormalize

ROLLOUT = 8192
BATCH = 256
EPOCHS = 4


def extended_frame():
    """One synthetic month of ``synthetic_btc_usd`` with the ``extended`` feature preset."""
    market = get_market("synthetic_btc_usd").model_copy(update={"feature_preset": "extended"})
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(f"{tmp}/lake")
        write_synthetic_months(lake, market, [market.first_month])
        return load_frame(lake, market, [market.first_month], market.feature_preset).frame


def _best(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def step_us(make: Callable[[], VecEnv], n: int, steps: int, repeat: int) -> float:
    """Microseconds per ``step()`` of the stack ``make()`` builds, random actions."""
    venv = make()
    venv.reset()
    actions = list(np.random.default_rng(0).integers(0, 3, (64, n)))

    def run() -> float:
        start = time.perf_counter()
        for k in range(steps):
            venv.step(actions[k & 63])
        return (time.perf_counter() - start) / steps * 1e6

    run()  # warm-up (numba kernels, first allocations)
    return _best(repeat, run)


def buffer_us(cls: type[RolloutBuffer], venv: VecEnv, repeat: int) -> tuple[float, float]:
    """(µs per add() of N observations, µs per transition of get() over EPOCHS epochs)."""
    n = venv.num_envs
    n_steps = ROLLOUT // n
    buffer = cls(n_steps, venv.observation_space, venv.action_space, device="cpu", n_envs=n)
    venv.reset()
    obs = [venv.step(np.zeros(n, dtype=np.int64))[0] for _ in range(8)]
    action = np.zeros(n, dtype=np.int64)
    reward = np.zeros(n, dtype=np.float32)
    start_flags = np.zeros(n, dtype=bool)
    value = torch.zeros(n, 1)
    log_prob = torch.zeros(n)

    def fill() -> float:
        buffer.reset()
        start = time.perf_counter()
        for k in range(n_steps):
            buffer.add(obs[k & 7], action, reward, start_flags, value, log_prob)
        return (time.perf_counter() - start) / n_steps * 1e6

    def sample() -> float:
        fill()
        start = time.perf_counter()
        for _ in range(EPOCHS):
            for batch in buffer.get(BATCH):
                batch.observations.sum()  # touch the minibatch as the update does
        return (time.perf_counter() - start) / ROLLOUT * 1e6

    fill()
    return _best(repeat, fill), _best(repeat, sample)


def collect_rate(venv: VecEnv, buffer_class: type[RolloutBuffer], repeat: int) -> float:
    """Env-steps/s of SB3 PPO's collect_rollouts (MLP 64-64, one torch thread)."""
    n = venv.num_envs
    model = PPO("MlpPolicy", venv, n_steps=ROLLOUT // n, batch_size=BATCH, seed=0, device="cpu",
                rollout_buffer_class=buffer_class,
                policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.Tanh})
    _, callback = model._setup_learn(ROLLOUT * (repeat + 1), reset_num_timesteps=True)
    callback.on_training_start(locals(), globals())

    def run() -> float:
        start = time.perf_counter()
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        return time.perf_counter() - start

    run()
    return ROLLOUT / _best(repeat, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-envs", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="env steps per timed stage")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frame = extended_frame()
    n = args.n_envs
    settings = {"preset": "default", "exclude_column": WARMUP_COLUMN}

    def env() -> VecEnv:
        return make_vec_env(frame, n, settings, seed=0)

    def stack(normalize: type[VecNormalize]) -> VecEnv:
        return normalize(VecMonitor(env()), gamma=0.99)

    dim = env().observation_space.shape[0]
    print(f"{len(frame)} bars, observation {dim} float32, N = {n} envs, rollout {ROLLOUT}, "
          f"minibatches {BATCH} x {EPOCHS} epochs, 1 torch thread, best of {args.repeat}")
    steps = {
        "TradeVecEnv.step": step_us(env, n, args.steps, args.repeat),
        "+ VecMonitor": step_us(lambda: VecMonitor(env()), n, args.steps, args.repeat),
        "+ VecNormalize (SB3)": step_us(lambda: stack(VecNormalize), n, args.steps, args.repeat),
        "+ TradeVecNormalize": step_us(lambda: stack(TradeVecNormalize), n, args.steps,
                                       args.repeat),
    }
    sb3_add, sb3_get = buffer_us(RolloutBuffer, stack(VecNormalize), args.repeat)
    our_add, our_get = buffer_us(TradeRolloutBuffer, stack(TradeVecNormalize), args.repeat)
    sb3_rate = collect_rate(stack(VecNormalize), RolloutBuffer, args.repeat)
    our_rate = collect_rate(stack(TradeVecNormalize), TradeRolloutBuffer, args.repeat)

    print(f"\n{'stage (per step of N envs)':34} {'µs':>9} {'µs/env-step':>12}")
    for name, us in steps.items():
        print(f"{name:34} {us:9.0f} {us / n:12.2f}")
    sb3_norm = steps["+ VecNormalize (SB3)"] - steps["+ VecMonitor"]
    our_norm = steps["+ TradeVecNormalize"] - steps["+ VecMonitor"]
    print(f"\n{'':34} {'SB3':>9} {'TradeCore':>10} {'SB3 / ours':>11}")
    print(f"{'VecNormalize alone, µs/step':34} {sb3_norm:9.0f} {our_norm:10.0f} "
          f"{sb3_norm / max(our_norm, 1e-9):10.2f}x")
    print(f"{'buffer.add, µs/step':34} {sb3_add:9.0f} {our_add:10.0f} {sb3_add / our_add:10.2f}x")
    print(f"{'minibatches, µs/transition':34} {sb3_get:9.2f} {our_get:10.2f} "
          f"{sb3_get / our_get:10.2f}x")
    print(f"{'collect_rollouts, env-steps/s':34} {sb3_rate:9.0f} {our_rate:10.0f} "
          f"{our_rate / sb3_rate:10.2f}x (ours / SB3)")


if __name__ == "__main__":
    main()
