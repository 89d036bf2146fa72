"""Out-of-sample evaluation of a trained run: deterministic backtests with the training env's
engine and fees (:mod:`.backtest`), metrics (:mod:`.metrics`), baselines, the equity chart
(:mod:`.plots`) and ``eval_summary.json`` (:mod:`.summary`). torch loads only when an agent
is loaded."""
