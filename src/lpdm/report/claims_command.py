"""``lpdm claims``: the claims table of ``docs/reproduction.md``, from the committed data."""

from __future__ import annotations

import argparse

from lpdm.report.generated_page import (
    add_page_options,
    print_write_or_check,
    repository_root,
)


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
    from lpdm.report.claims_page import BEGIN, COMMAND, END, claims_table

    table = claims_table(repository_root(args))
    return print_write_or_check(args, table, "claims table", BEGIN, END, f"{COMMAND} --write")
