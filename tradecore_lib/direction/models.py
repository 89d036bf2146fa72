"""The direction networks: a per-market LSTM and a multi-market transformer encoder.

Both output logits (``sigmoid(logit) = p_up``, the probability that the next ``H`` minutes'
log return is above the dead zone) and are trained with binary cross-entropy with logits.
Their constructor keywords are plain numbers (:meth:`kwargs`), stored in the checkpoint so a
model is rebuilt from its file alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tradecore_lib.direction.config import DirectionConfig, ModelKind


class DirectionLSTM(nn.Module):
    """Stacked (by default bidirectional) LSTM over one market's window, one logit.

    Input ``x``: (B, L, F) float32 normalized inputs of bars ``t-L+1 .. t`` (oldest first).
    Output: (B,) float32 logits of ``label[t] = 1``.

    The head reads the last layer's final hidden state of each direction: the forward pass
    ends at bar ``t``, the backward pass at bar ``t-L+1`` after reading the whole window; both
    have seen every bar of the window and nothing after ``t``.
    """

    def __init__(self, n_inputs: int, hidden_size: int = 64, num_layers: int = 2,
                 bidirectional: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        self.config = {"n_inputs": n_inputs, "hidden_size": hidden_size,
                       "num_layers": num_layers, "bidirectional": bidirectional,
                       "dropout": dropout}
        self.directions = 2 if bidirectional else 1
        self.lstm = nn.LSTM(n_inputs, hidden_size, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.directions * hidden_size, 1)

    def kwargs(self) -> dict[str, Any]:
        """Constructor keywords (what the checkpoint stores to rebuild it)."""
        return dict(self.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)  # h_n: (num_layers * directions, B, hidden)
        last = h_n[-self.directions:].transpose(0, 1).reshape(x.shape[0], -1)
        return self.head(self.dropout(last)).squeeze(-1)


class DirectionTransformer(nn.Module):
    """Transformer encoder over the minutes of several aligned markets, one logit per market.

    Inputs: ``x`` (B, L, M, F) float32 normalized inputs; ``present`` (B, L, M) bool, False
    for cells with no usable bar (no bar in that market at that minute, a warm-up row or a
    non-finite input: see :mod:`tradecore_lib.direction.data`). Output: (B, M) float32 logits,
    one per market, of ``label[t] = 1``.

    One token per minute (L tokens): the M markets' inputs of that minute side by side, with
    absent cells zeroed, plus one presence flag per market, projected to ``d_model``, plus a
    learned position (minute of the window) embedding. **Masking**: a minute missing in any
    market is a padding key (no token attends to it), so the encoder reads only the minutes
    common to all the markets. The decision minute ``t`` is the exception: its token is the
    one the logits are read from and is always attended, its absent markets' slots zero with
    their presence flag 0 (a market absent at ``t`` has no label there; its logit is never
    scored). So every window has at least one key.
    """

    def __init__(self, n_inputs: int, n_markets: int, sequence_length: int, d_model: int = 64,
                 num_layers: int = 4, num_heads: int = 8, feedforward: int = 128,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.config = {"n_inputs": n_inputs, "n_markets": n_markets,
                       "sequence_length": sequence_length, "d_model": d_model,
                       "num_layers": num_layers, "num_heads": num_heads,
                       "feedforward": feedforward, "dropout": dropout}
        self.n_markets = n_markets
        self.sequence_length = sequence_length
        self.project = nn.Linear(n_markets * (n_inputs + 1), d_model)
        self.position_embedding = nn.Embedding(sequence_length, d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, feedforward, dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_markets)

    def kwargs(self) -> dict[str, Any]:
        """Constructor keywords (what the checkpoint stores to rebuild it)."""
        return dict(self.config)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        b, length, m, _ = x.shape
        if length != self.sequence_length or m != self.n_markets:
            raise ValueError(f"expected windows of {self.sequence_length} minutes x "
                             f"{self.n_markets} markets, got {length} x {m}")
        # Absent cells are zeroed here too (the sample builders already do), so nothing a
        # cell held before it was masked can reach the output.
        flags = present.unsqueeze(-1).to(x.dtype)
        cells = torch.cat([x * flags, flags], dim=-1).reshape(b, length, -1)
        positions = torch.arange(length, device=x.device)
        tokens = self.project(cells) + self.position_embedding(positions)[None]
        padding = ~present.all(dim=-1)  # (B, L): a minute missing in any market
        padding[:, -1] = False  # the decision minute is always read
        encoded = self.encoder(tokens, src_key_padding_mask=padding)
        return self.head(self.norm(encoded[:, -1]))


def build_model(kind: ModelKind, cfg: DirectionConfig, n_inputs: int,
                n_markets: int = 1) -> nn.Module:
    """A fresh network of ``kind`` with ``cfg``'s hyper-parameters (seed torch first)."""
    if kind == "lstm":
        p = cfg.lstm
        return DirectionLSTM(n_inputs, p.hidden_size, p.num_layers, p.bidirectional, p.dropout)
    t = cfg.transformer
    return DirectionTransformer(n_inputs, n_markets, t.sequence_length, t.d_model, t.num_layers,
                                t.num_heads, t.feedforward, t.dropout)


def rebuild_model(kind: ModelKind, kwargs: dict[str, Any]) -> nn.Module:
    """The network of ``kind`` from its stored constructor keywords."""
    return DirectionLSTM(**kwargs) if kind == "lstm" else DirectionTransformer(**kwargs)
