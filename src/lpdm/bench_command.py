"""``lpdm bench``: its command line, without torch (``lpdm --help`` stays fast); the
measurements are :mod:`lpdm.bench`."""

from __future__ import annotations

import argparse

TABLES = ("kernel", "update", "throughput", "memory", "population")
MARKDOWN_BEGIN = "<!-- lpdm bench: begin -->"
MARKDOWN_END = "<!-- lpdm bench: end -->"


def add_bench_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm bench`` on the CLI's subcommands."""
    parser = commands.add_parser("bench", help="measure kernels, update cost, throughput, memory")
    parser.add_argument("--markdown", metavar="FILE",
                        help="also write the tables to FILE (only between its "
                        f"'{MARKDOWN_BEGIN}' and '{MARKDOWN_END}' lines if it has them)")
    parser.add_argument("--only", default=",".join(TABLES),
                        help=f"comma-separated tables to run, of {', '.join(TABLES)} "
                        "(default: all)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="device of the kernel table (default: cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the kernel table (default: torch's default, "
                        "the number of cores); the other tables use 1, as training")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds in all (for tests; numbers not meaningful)")
    parser.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from lpdm.bench import cmd_bench

    return cmd_bench(args)
