"""``lpdm report``: the command line of a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from lpdm.config import ConfigError


def add_report_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm report`` on the ``lpdm`` subcommand parser."""
    parser = commands.add_parser(
        "report", help="tables, figures and verdicts of a sweep",
        description="Write DIR/report/: index.html (self-contained), report.md, scores.csv, "
                    "runs.csv, layer_profiles.csv (when runs logged per-layer diagnostics), "
                    "the figures as PNG and archive.npz (every run's scores, options and "
                    "training returns, which a later report can read in place of the run "
                    "directories), from a sweep directory, a folder of runs, sweeps and "
                    "archives, or an archive. Several sources merge into one "
                    "report (--out needed).")
    parser.add_argument("sources", metavar="DIR", nargs="+",
                        help="sweep directory, folder of runs, or archive.npz")
    parser.add_argument("--out", metavar="DIR",
                        help="report directory (default: DIR/report; needed for several DIR)")
    parser.add_argument("--stuck-threshold", action="append", default=[],
                        metavar="ENV[:ALGO]=VALUE",
                        help="final score under which a run of ENV (under every algorithm, "
                             "or under ALGO only) counts as stuck (default, per environment "
                             "and algorithm: half-way from min(0, the lowest final score) to "
                             "the best learner's median final score); repeatable")
    parser.set_defaults(handler=cmd_report)


def parse_thresholds(items: list[str]) -> dict[str, float]:
    """``ENV=VALUE`` and ``ENV:ALGO=VALUE`` items, keyed ``ENV`` and ``ENV:ALGO``."""
    thresholds = {}
    for item in items:
        env, sep, value = item.rpartition("=")
        try:
            if not sep or not env:
                raise ValueError
            thresholds[env] = float(value)
        except ValueError:
            raise ConfigError("--stuck-threshold: expected ENV=NUMBER or ENV:ALGO=NUMBER, "
                              f"got {item!r}") from None
    return thresholds


def cmd_report(args: argparse.Namespace) -> int:
    from lpdm.report.build import build_report

    report = build_report([Path(s) for s in args.sources], Path(args.out) if args.out else None,
                          parse_thresholds(args.stuck_threshold))
    print(report.headline())
    print(f"report: {report.html}")
    return 0
