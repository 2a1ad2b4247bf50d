"""What the commands that generate a committed page from the data share (``lpdm claims``,
``lpdm leaderboard``): print it, ``--write`` it, or ``--check`` that it is current, from the
repository root the data lie under (``--root``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lpdm.errors import ConfigError


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
