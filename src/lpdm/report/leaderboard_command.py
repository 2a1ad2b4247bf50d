"""``lpdm leaderboard``: the BP-free learners' leaderboard, from the committed studies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpdm.report.generated_page import add_page_options, repository_root


def add_leaderboard_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm leaderboard`` on the ``lpdm`` subcommand parser."""
    parser = commands.add_parser(
        "leaderboard", help="every learner against bp and frozen, from the committed studies",
        description="Rank every learner with committed runs, per algorithm (the studies of "
                    "lpdm.report.leaderboard.BOARDS), by the IQM of its normalised final "
                    "scores, against bp and frozen, with its cost per iteration and which "
                    "BP-free learner to use; print the page as Markdown, or --write it (with "
                    "its figures) into DIR/README.md, or --check that DIR's page is current.")
    add_page_options(parser, "DIR", "write DIR/README.md and the figures",
                     "exit 1 if DIR/README.md differs from the data, or lacks a figure",
                     "the repository root the studies' paths are under")
    parser.set_defaults(handler=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from lpdm.report.leaderboard_page import COMMAND, PAGE, build, page, stale, write

    root = repository_root(args)
    boards = build(root)
    if args.check:
        cause = stale(Path(args.check), boards)
        if cause:
            print(f"lpdm: {cause}; run `{COMMAND} --write {args.check}`", file=sys.stderr)
            return 1
        print(f"{Path(args.check) / PAGE}: the leaderboard matches the data")
    elif args.write:
        changed = write(Path(args.write), boards)
        print(f"{Path(args.write) / PAGE}: {'rewritten' if changed else 'unchanged'}, "
              "figures drawn")
    else:
        print(page(boards), end="")
    return 0
