"""``lpdm claims`` and ``lpdm headline``: the claims table of ``docs/reproduction.md`` and the
README's answer to the paper, each a generated block of a page, from the committed data."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from lpdm.report.generated_page import (
    add_page_options,
    print_write_or_check,
    repository_root,
)


def _add_block_command(commands: argparse._SubParsersAction, name: str, summary: str,
                       block: str, what: str, handler: Callable[..., int]) -> None:
    """Register ``lpdm NAME``, which prints ``what`` or writes/checks it as PAGE's ``block``
    block (between ``<!-- block:begin -->`` and ``<!-- block:end -->``)."""
    parser = commands.add_parser(
        name, help=f"{what}, from the committed studies",
        description=f"{summary}; --write puts it into a page between its '<!-- {block}:begin "
                    f"-->' and '<!-- {block}:end -->' lines, --check exits 1 when that block "
                    "no longer matches the data.")
    add_page_options(parser, "PAGE", f"rewrite PAGE's {block} block",
                     f"exit 1 if PAGE's {block} block differs from the data",
                     "the repository root the data paths are under")
    parser.set_defaults(handler=handler)


def add_claims_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm claims`` on the ``lpdm`` subcommand parser."""
    _add_block_command(
        commands, "claims", "Judge each claim of the paper (lpdm.report.claims) on the "
        "committed archives, reports' runs.csv and lpdm bench tables, and print the claims "
        "table as Markdown", "claims", "the paper's claims judged", cmd_claims)


def add_headline_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm headline`` on the ``lpdm`` subcommand parser."""
    _add_block_command(
        commands, "headline", "Write the README's paragraph 'Does it work as the paper "
        "says?' from the committed data (the leaderboards, the claims' verdicts, the tuned "
        "study's confirmed environments) and print it", "headline",
        "the README's answer to the paper", cmd_headline)


def cmd_claims(args: argparse.Namespace) -> int:
    from lpdm.report.claims_page import BEGIN, COMMAND, END, claims_table

    table = claims_table(repository_root(args))
    return print_write_or_check(args, table, "claims table", BEGIN, END, f"{COMMAND} --write")


def cmd_headline(args: argparse.Namespace) -> int:
    from lpdm.report.headline import BEGIN, END, headline

    text = headline(repository_root(args))
    return print_write_or_check(args, text, "headline", BEGIN, END, "lpdm headline --write")
