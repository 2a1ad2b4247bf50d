"""``lpdm tuned``: the overview of a folder of tuning studies, for the tuned study's page."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_tuned_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm tuned`` on the ``lpdm`` subcommand parser."""
    parser = commands.add_parser(
        "tuned", help="one row per tuning study under a folder: budget, best, chosen options",
        description="Read every tuning study under STUDIES (STUDIES/ENV/LEARNER/, as "
                    "lpdm tune --out leaves them) and print one row per study: the trials "
                    "it spent, its best held-out score and the options that trial chose, "
                    "and whether every study had the same budget; --write puts the table "
                    "into PAGE between its '<!-- tuned:begin -->' and '<!-- tuned:end -->' "
                    "lines, --check exits 1 when that block no longer matches the studies.")
    parser.add_argument("studies", metavar="STUDIES", help="folder of tuning studies")
    parser.add_argument("--learners", metavar="L[,L...]", default="",
                        help="the learners every environment is tuned for, for the status "
                             "line (default: those with a study under STUDIES)")
    parser.add_argument("--envs", metavar="E[,E...]", default="",
                        help="the environments planned, for the status line: those without "
                             "a study under STUDIES are listed (default: those with a study)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--write", metavar="PAGE", help="rewrite PAGE's tuned block")
    target.add_argument("--check", metavar="PAGE",
                        help="exit 1 if PAGE's tuned block differs from the studies")
    parser.set_defaults(handler=cmd_tuned)


def cmd_tuned(args: argparse.Namespace) -> int:
    from lpdm.report.generated_page import print_write_or_check
    from lpdm.tuning.overview import BEGIN, COMMAND, END, overview_table, plan_flags

    page = args.write or args.check
    learners = tuple(filter(None, args.learners.split(",")))
    envs = tuple(filter(None, args.envs.split(",")))
    table = overview_table(Path(args.studies), Path(page).parent if page else Path("."),
                           learners, envs)
    return print_write_or_check(args, table, "tuned block", BEGIN, END,
                                f"{COMMAND} {args.studies}{plan_flags(learners, envs)} --write")
