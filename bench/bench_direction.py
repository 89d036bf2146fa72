"""Direction LSTM training throughput: TradeCore's data pipeline vs a plain PyTorch loop.

Same network (the restart plan's LSTM: 2 bidirectional layers of 64, 60-minute windows, one
logit), same batch (256), same optimizer (Adam, gradient clip 1.0), same samples (every valid
window of one month of ``synthetic_btc_usd``), measured in the same run, alternating:

* ``tradecore``: :func:`tradecore_lib.direction.train.train_epoch` over a
  :class:`~tradecore_lib.direction.data.SequenceSet`: the (N, F) table and one row index per
  sample; each batch gathered with one fancy index (seeded ``torch.Generator`` order), plus
  the loop's loss / accuracy bookkeeping;
* ``plain``: a textbook loop over pre-built tensors: every window copied once into an
  (N, L, F) tensor before training (L times the table's memory), batches sliced with a
  ``randperm`` index, forward, BCE with logits, backward, clip, step.

Printed: training samples/s of each and their ratio (the issue's target: the pipeline within
1.2x of the plain loop, i.e. the data pipeline is not the bottleneck), the gather rate of each
without the network (samples/s of batches alone), and the memory each holds for the samples.

    .venv/bin/python bench/bench_direction.py [--device cuda] [--threads 1] [--batches 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import tests_path  # noqa: F401
import torch
from torch import nn

from tests.lakes import synthetic_lake
from tradecore_lib.direction.config import load_direction_config
from tradecore_lib.direction.data import (
    SequenceSet,
    SplitRange,
    epoch_generator,
    lstm_ends,
    market_series,
)
from tradecore_lib.direction.models import build_model
from tradecore_lib.direction.train import new_optimizer, train_epoch
from tradecore_lib.features import load_feature_preset
from tradecore_lib.train.data import load_frame

ROUNDS = 2


def plain_loop(model: nn.Module, optimizer: torch.optim.Optimizer, x_all: torch.Tensor,
               y_all: torch.Tensor, batch_size: int, batches: int, seed: int) -> float:
    """Samples/s of the textbook loop over pre-built (N, L, F) windows."""
    model.train()
    order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed))
    order = order.to(x_all.device)
    seen = 0
    start = time.perf_counter()
    for k in range(batches):
        index = order[k * batch_size:(k + 1) * batch_size]
        x, y = x_all[index], y_all[index]
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seen += len(index)
    if x_all.device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def gather_rates(samples: SequenceSet, x_all: torch.Tensor, batch_size: int,
                 device: torch.device) -> tuple[float, float]:
    """Samples/s of producing batches alone: the pipeline's gather vs slicing x_all."""
    def timed(run) -> float:
        start = time.perf_counter()
        n = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - start)

    def ours() -> int:
        return sum(int(y.shape[0]) for _, y in samples.batches(batch_size,
                                                               epoch_generator(0, 0)))

    def theirs() -> int:
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(0))
        order = order.to(device)
        return sum(int(x_all[order[i:i + batch_size]].shape[0])
                   for i in range(0, len(order), batch_size))

    return timed(ours), timed(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=30,
                        help="gradient steps timed per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_direction_config("cpu-default", {"device": "cpu"})
    batch = cfg.training.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        lake, market = synthetic_lake(f"{tmp}/lake", months=1)
        data = load_frame(lake, market, [market.first_month], market.feature_preset)
    month = market.first_month
    split = SplitRange("train", month.start_ms, month.end_ms)
    series, _ = market_series(market.name, data.frame,
                              load_feature_preset(market.feature_preset).columns,
                              cfg.candle_inputs, [split], cfg.horizon_minutes, cfg.dead_zone,
                              fit_on=split)
    length = cfg.lstm.sequence_length
    samples = SequenceSet(series, lstm_ends(series, split, length, labelled=True), length,
                          device)
    # The plain loop's inputs: every window copied once (what a Dataset of tensors holds).
    ends = samples.ends.cpu().numpy()
    windows = np.lib.stride_tricks.sliding_window_view(series.values, length, axis=0)
    x_all = torch.from_numpy(np.ascontiguousarray(windows[ends - length + 1].transpose(0, 2, 1))
                             ).to(device)
    y_all = samples.labels.clone()
    assert torch.equal(samples.gather(torch.arange(3, device=device))[0], x_all[:3])

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = build_model("lstm", cfg, samples.n_inputs).to(device)
        return model, new_optimizer(model, cfg)

    # warm-up (allocator, kernels) outside the figures
    model, optimizer = fresh()
    plain_loop(model, optimizer, x_all, y_all, batch, 3, 0)
    train_epoch(model, optimizer, samples, cfg, 0, 0, limit_batches=3)
    ours, theirs = [], []
    for _ in range(ROUNDS):
        model, optimizer = fresh()
        fit = train_epoch(model, optimizer, samples, cfg, 0, 0, limit_batches=args.batches)
        ours.append(fit["samples"] / fit["seconds"])
        model, optimizer = fresh()
        theirs.append(plain_loop(model, optimizer, x_all, y_all, batch, args.batches, 0))
    gather_ours, gather_theirs = gather_rates(samples, x_all, batch, device)
    best_ours, best_theirs = max(ours), max(theirs)
    table_mib = (samples.table.numel() * 4 + samples.ends.numel() * 8) / 2**20
    prebuilt_mib = x_all.numel() * 4 / 2**20

    print(f"direction LSTM on {len(samples):,} windows of {length} minutes x "
          f"{samples.n_inputs} inputs ({market.name}, {month}), batch {batch}, 2x64 "
          f"bidirectional, device {device}, {args.threads} torch thread(s), "
          f"{args.batches} steps x best of {ROUNDS}")
    print(f"{'loop':10} {'train samples/s':>16} {'x plain':>8} {'gather samples/s':>17} "
          f"{'sample memory':>14}")
    print(f"{'tradecore':10} {best_ours:16,.0f} {best_ours / best_theirs:7.2f}x "
          f"{gather_ours:17,.0f} {table_mib:11.1f} MiB")
    print(f"{'plain':10} {best_theirs:16,.0f} {1.0:7.2f}x {gather_theirs:17,.0f} "
          f"{prebuilt_mib:11.1f} MiB")
    print(f"plain / tradecore = {best_theirs / best_ours:.3f} (target: within 1.2x)")


if __name__ == "__main__":
    main()
