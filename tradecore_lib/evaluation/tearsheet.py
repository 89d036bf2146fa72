"""The evaluation's tearsheet: one self-contained HTML page (``tearsheet.html``, saved beside
``eval_summary.json``) a quant reads the way they read a quantstats report.

Written here rather than with ``quantstats.reports.html``: quantstats (0.0.86) imports
``yfinance`` unconditionally (``quantstats/_compat.py``), and yfinance needs ``curl_cffi``,
which needs ``cffi >= 2.1.1`` while ccxt pins ``cffi == 2.0.0``, so the two cannot be installed
together. The page is built from the evaluation's own figures (empyrical metrics through
:mod:`tradecore_lib.evaluation.scoring`, matplotlib charts from
:mod:`tradecore_lib.evaluation.plots`), so it shows exactly what the gate judged:

* the verdict and every rule of the gate (value, limit, margin);
* the comparison table (every fold and split, every baseline, matched random as median and
  95th percentile) and the agent's statistics (PSR, DSR, matched random percentile and
  p-value, the Sharpe difference to buy-and-hold with its bootstrap bound, recovery);
* for the newest fold: equity and drawdown, daily returns and the rolling Sharpe ratio, and
  the monthly returns of the agent against buy-and-hold.

Images are inline (base64), so the file opens anywhere without its folder.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tradecore_lib.evaluation.plots import ROLLING_DAYS, daily_png
from tradecore_lib.evaluation.promotion import AGENT, BUY_AND_HOLD
from tradecore_lib.evaluation.scoring import Track
from tradecore_lib.evaluation.summary import ROW_DESCRIPTIONS, EvaluationSummary

TEARSHEET = "tearsheet.html"

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em;
       color: #222; max-width: 1200px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
tr.agent td { font-weight: 600; } .pass { color: #1a7f37; } .fail { color: #cf222e; }
.verdict { padding: 0.6em 1em; border-radius: 4px; background: #f6f8fa; }
img { max-width: 100%; } .note { color: #555; font-size: 0.85em; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return "<td>n/a</td>"
    if isinstance(value, bool):
        css = "pass" if value else "fail"
        return f'<td class="{css}">{"pass" if value else "fail"}</td>'
    if isinstance(value, float):
        return f"<td>{value:.4g}</td>"
    if isinstance(value, int):
        return f"<td>{value}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def html_table(rows: list[dict[str, Any]], descriptions: Mapping[str, str] | None = None
               ) -> str:
    """Rows (dicts with the same keys) as an HTML table; a row whose ``policy`` is the agent
    is emphasized; ``descriptions`` become the headers' tooltips."""
    if not rows:
        return '<p class="note">(none)</p>'
    described = descriptions or {}
    head = "".join(f'<th title="{html.escape(described.get(k, ""))}">{html.escape(k)}</th>'
                   for k in rows[0])
    body = "".join(
        f'<tr class="{"agent" if r.get("policy") == AGENT else ""}">'
        + "".join(_cell(v) for v in r.values()) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def monthly_returns(daily: pd.Series) -> pd.Series:
    """Compounded return of each calendar month of ``daily`` (UTC daily returns), indexed by
    ``YYYY-MM``."""
    months = daily.index.strftime("%Y-%m")
    return (1.0 + daily).groupby(months).prod() - 1.0


def _monthly_rows(tracks: Mapping[str, Mapping[str, Track]]) -> list[dict[str, Any]]:
    rows = []
    for split, policies in tracks.items():
        agent = monthly_returns(policies[AGENT].daily)
        hold = monthly_returns(policies[BUY_AND_HOLD].daily)
        rows += [{"split": split, "month": month, "agent_pct": round(100 * agent[month], 2),
                  "buy_and_hold_pct": round(100 * hold[month], 2),
                  "difference_pct": round(100 * (agent[month] - hold[month]), 2)}
                 for month in agent.index]
    return rows


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def tearsheet_html(summary: EvaluationSummary, tracks: Mapping[str, Mapping[str, Track]],
                   chart_png: bytes) -> str:
    """The tearsheet page of ``summary``.

    Args:
        summary: the evaluation.
        tracks: the newest fold's tracks, split -> policy -> :class:`Track` (at least the
            agent and buy-and-hold).
        chart_png: the equity and drawdown chart of the newest fold
            (:func:`~tradecore_lib.evaluation.plots.equity_png`).
    """
    run, verdict = summary.run, summary.verdict
    title = f"{summary.market}: run {run.run_id}"
    status = "promotable" if verdict.passed else ("not eligible" if not verdict.eligible
                                                  else "refused")
    rules = [{"fold": r.fold + 1, "rule": r.name, "value": r.value, "limit": r.limit,
              "margin": r.margin, "passed": r.passed} for r in verdict.rules]
    daily = {split: {name: policies[name].daily for name in (AGENT, BUY_AND_HOLD)}
             for split, policies in tracks.items()}
    champion = summary.champion
    facts = [
        ("market", summary.market), ("preset", run.preset),
        ("folds", str(len(summary.folds))), ("feature preset", summary.feature_preset),
        ("env", ", ".join(f"{k}={v}" for k, v in summary.env.items())),
        ("champion", f"{champion.model_name} v{champion.model_version}: {champion.note}"
         if champion else "none"),
        ("generated", summary.generated_at),
    ]
    fact_rows = "".join(f'<tr><th class="text">{html.escape(k)}</th>'
                        f'<td class="text">{html.escape(v)}</td></tr>' for k, v in facts)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>TradeCore tearsheet: {html.escape(title)}</h1>",
        f"<table>{fact_rows}</table>",
        f'<p class="verdict"><b>{status}</b>: {html.escape(verdict.explanation())}</p>',
        "<h2>Promotion gate (validation only, every fold)</h2>", html_table(rules),
        "<h2>Comparison (out of sample)</h2>", html_table(summary.rows(), ROW_DESCRIPTIONS),
        "<h2>Agent statistics</h2>", html_table(summary.agent_rows()),
        "<h2>Equity and drawdown (newest fold)</h2>", _img(chart_png, "equity and drawdown"),
        f"<h2>Daily returns and {ROLLING_DAYS}-day rolling Sharpe (newest fold)</h2>",
        _img(daily_png(daily, title), "daily returns"),
        "<h2>Monthly returns (newest fold)</h2>", html_table(_monthly_rows(tracks)),
        '<p class="note">Daily figures are on UTC calendar days, annualized with sqrt(365); '
        "intervals are 95 % stationary-bootstrap percentile intervals; matched random "
        "policies have the agent's trade count, holding times and long/short mix on the same "
        "split; the test split is scored and recorded, never judged.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
