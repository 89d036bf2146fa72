"""The ``tradecore`` console script.

Subcommands are grouped by topic (``tradecore indicators list``); each topic registers its
parser in :func:`build_parser`, so later topics add one function, not a new script.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tradecore_lib.features import REGISTRY, PresetError, load_feature_preset
from tradecore_lib.paths import config_dir

EXIT_INVALID = 2


def _indicators_list(args: argparse.Namespace) -> int:
    if args.json:
        catalog = [
            {
                "name": card.name,
                "label": card.label,
                "description": card.description,
                "params": [
                    {"name": s.name, "type": s.kind, "default": s.default, "min": s.low,
                     "max": s.high, "description": s.description}
                    for s in card.params
                ],
                "outputs_at_defaults": card.outputs(card.defaults()),
                "lookback_at_defaults": card.lookback(card.defaults()),
                "talib": list(card.talib),
            }
            for card in REGISTRY.values()
        ]
        print(json.dumps(catalog, indent=2))
        return 0
    for card in REGISTRY.values():
        defaults = card.defaults()
        engine = "TA-Lib " + ", ".join(card.talib) if card.talib else "numpy"
        print(f"{card.name} - {card.label} [{engine}]")
        print(f"    {card.description}")
        for spec in card.params:
            print(f"    param {spec.describe()}")
        print(f"    columns at defaults: {', '.join(card.outputs(defaults))}")
        print(f"    lookback at defaults: {card.lookback(defaults)} bars")
        print()
    print(f"Presets live in {config_dir() / 'tools'}; check one with "
          "`tradecore indicators validate NAME`.")
    return 0


def _indicators_validate(args: argparse.Namespace) -> int:
    try:
        preset = load_feature_preset(args.preset)
    except PresetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(
        f"{preset.source}: valid preset {preset.name!r}: {len(preset.indicators)} indicators, "
        f"{len(preset.columns)} columns, lookback {preset.lookback} bars"
    )
    print("columns: " + ", ".join(preset.columns))
    return 0


def _add_indicators(commands: argparse._SubParsersAction) -> None:
    indicators = commands.add_parser("indicators", help="the indicator catalog and presets")
    actions = indicators.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="print the indicator catalog")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_indicators_list)
    validate = actions.add_parser(
        "validate", help="validate a preset; exit 0 if valid, 2 if not"
    )
    validate.add_argument(
        "preset", metavar="PRESET", help="a preset name in configs/tools or a JSON file path"
    )
    validate.set_defaults(handler=_indicators_validate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradecore", description="TradeCore command line tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_indicators(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tradecore`` script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
