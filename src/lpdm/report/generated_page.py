"""What the commands that generate a committed page from the data share (``lpdm claims``,
``lpdm leaderboard``, ``lpdm tuned``): print it, ``--write`` it, or ``--check`` that it is
current, from the repository root the data lie under (``--root``); a generated block
between two marker lines of a page that is otherwise written by hand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpdm.errors import ConfigError, RunError


def add_page_options(parser: argparse.ArgumentParser, metavar: str, write_help: str,
                     check_help: str, root_help: str) -> None:
    """``--write`` / ``--check`` (one of them) and ``--root`` on ``parser``."""
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--write", metavar=metavar, help=write_help)
    target.add_argument("--check", metavar=metavar, help=check_help)
    parser.add_argument("--root", metavar="DIR", default=".",
                        help=f"{root_help} (default: the current directory)")


def repository_root(args: argparse.Namespace) -> Path:
    """``--root``, checked to hold the committed studies (``docs/results``)."""
    root = Path(args.root)
    if not (root / "docs/results").is_dir():
        raise ConfigError(f"--root {root}: no docs/results there (run from the repository "
                          "root or name it)")
    return root


def replace_block(page: str, block: str, name: str, begin: str, end: str) -> str:
    """``page`` with the text between its ``begin`` and ``end`` lines replaced by ``block``."""
    if page.count(begin) != 1 or page.count(end) != 1 or page.index(begin) > page.index(end):
        raise RunError(f"{name} needs one '{begin}' line before one '{end}' line")
    before = page[:page.index(begin) + len(begin)]
    return f"{before}\n{block}{page[page.index(end):]}"


def write_block(page: Path, block: str, begin: str, end: str) -> bool:
    """Rewrite the block of ``page`` between ``begin`` and ``end``; True when it changed."""
    text = page.read_text()
    updated = replace_block(text, block, str(page), begin, end)
    if updated != text:
        page.write_text(updated)
    return updated != text


def block_is_current(page: Path, block: str, begin: str, end: str) -> bool:
    """Whether the block of ``page`` between ``begin`` and ``end`` is ``block``."""
    text = page.read_text()
    return replace_block(text, block, str(page), begin, end) == text


def print_write_or_check(args: argparse.Namespace, block: str, what: str, begin: str,
                         end: str, rewrite: str) -> int:
    """Print ``block``, or ``--write`` it into the page between ``begin`` and ``end``, or
    ``--check`` it there (exit status 1 when stale, saying to run ``rewrite`` PAGE)."""
    if args.check:
        if not block_is_current(Path(args.check), block, begin, end):
            print(f"lpdm: {args.check}: the {what} is stale; run `{rewrite} {args.check}`",
                  file=sys.stderr)
            return 1
        print(f"{args.check}: the {what} matches the data")
    elif args.write:
        changed = write_block(Path(args.write), block, begin, end)
        print(f"{args.write}: {what} {'rewritten' if changed else 'unchanged'}")
    else:
        print(block, end="")
    return 0
