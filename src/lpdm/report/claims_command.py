"""``lpdm claims``: the claims table of ``docs/reproduction.md``, from the committed data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpdm.report.generated_page import add_page_options, repository_root


def add_claims_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm claims`` on the ``lpdm`` subcommand parser."""
    parser = commands.add_parser(
        "claims", help="the paper's claims judged on the committed studies",
        description="Judge each claim of the paper (lpdm.report.claims) on the committed "
                    "archives, reports' runs.csv and lpdm bench tables, and print the claims "
                    "table as Markdown; --write puts it into a page between its "
                    "'<!-- claims:begin -->' and '<!-- claims:end -->' lines, --check "
                    "exits 1 when that block no longer matches the data.")
    add_page_options(parser, "PAGE", "rewrite PAGE's claims block",
                     "exit 1 if PAGE's claims block differs from the data",
                     "the repository root the claims' data paths are under")
    parser.set_defaults(handler=cmd_claims)


def cmd_claims(args: argparse.Namespace) -> int:
    from lpdm.report.claims_page import COMMAND, claims_table, page_is_current, write_page

    root = repository_root(args)
    table = claims_table(root)
    if args.check:
        if not page_is_current(Path(args.check), table):
            print(f"lpdm: {args.check}: the claims table is stale; run "
                  f"`{COMMAND} --write {args.check}`", file=sys.stderr)
            return 1
        print(f"{args.check}: the claims table matches the data")
    elif args.write:
        changed = write_page(Path(args.write), table)
        print(f"{args.write}: claims table {'rewritten' if changed else 'unchanged'}")
    else:
        print(table, end="")
    return 0
