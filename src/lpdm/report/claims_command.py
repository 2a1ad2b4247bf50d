"""``lpdm claims`` and ``lpdm headline``: the claims table of ``docs/reproduction.md`` and the
README's answer to the paper, from the committed data."""

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


def add_headline_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm headline`` on the ``lpdm`` subcommand parser."""
    parser = commands.add_parser(
        "headline", help="the README's answer to the paper, from the committed studies",
        description="Write the README's paragraph 'Does it work as the paper says?' from the "
                    "committed data (the leaderboards, the claims' verdicts, the tuned "
                    "study's confirmed environments) and print it; --write puts it into a "
                    "page between its '<!-- headline:begin -->' and '<!-- headline:end -->' "
                    "lines, --check exits 1 when that block no longer matches the data.")
    add_page_options(parser, "PAGE", "rewrite PAGE's headline block",
                     "exit 1 if PAGE's headline block differs from the data",
                     "the repository root the data paths are under")
    parser.set_defaults(handler=cmd_headline)


def cmd_headline(args: argparse.Namespace) -> int:
    from lpdm.report.headline import BEGIN, END, headline

    text = headline(repository_root(args))
    return print_write_or_check(args, text, "headline", BEGIN, END, "lpdm headline --write")
