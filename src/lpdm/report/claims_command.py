"""``lpdm claims``: the claims table of ``docs/reproduction.md``, from the committed data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpdm.errors import ConfigError


def add_claims_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm claims`` on the ``lpdm`` subcommand parser."""
    parser = commands.add_parser(
        "claims", help="the paper's claims judged on the committed studies",
        description="Judge each claim of the paper (lpdm.report.claims) on the committed "
                    "archives, reports' runs.csv and lpdm bench tables, and print the claims "
                    "table as Markdown; --write puts it into a page between its "
                    "'<!-- claims:begin -->' and '<!-- claims:end -->' lines, --check "
                    "exits 1 when that block no longer matches the data.")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--write", metavar="PAGE", help="rewrite PAGE's claims block")
    target.add_argument("--check", metavar="PAGE",
                        help="exit 1 if PAGE's claims block differs from the data")
    parser.add_argument("--root", metavar="DIR", default=".",
                        help="the repository root the claims' data paths are under "
                             "(default: the current directory)")
    parser.set_defaults(handler=cmd_claims)


def cmd_claims(args: argparse.Namespace) -> int:
    from lpdm.report.claims_page import COMMAND, claims_table, page_is_current, write_page

    root = Path(args.root)
    if not (root / "docs/results").is_dir():
        raise ConfigError(f"--root {root}: no docs/results there (run from the repository "
                          "root or name it)")
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
