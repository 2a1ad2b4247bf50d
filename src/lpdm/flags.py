"""Command-line flags of the configuration, shared by ``lpdm train`` and ``lpdm sweep``.

Flags are generated from :mod:`lpdm.config`, so both commands share one definition of
every option (a sweep takes each as a list of values).
"""

from __future__ import annotations

import argparse
from typing import Any

from lpdm.config import OPTIONS, Option


def add_config_arguments(parser: argparse.ArgumentParser, as_lists: bool = False) -> None:
    """One flag per configuration option; values stay unset unless given.

    With ``as_lists`` every flag takes a comma-separated list of values (for sweeps);
    values of a tuple option (``--hidden-sizes``) are then separated by ``/``.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS.values():
        section = option.path[0] if len(option.path) > 1 else "experiment"
        group = groups.setdefault(section, parser.add_argument_group(f"{section} options"))
        default = option.default if not isinstance(option.default, tuple) else \
            ",".join(map(str, option.default))
        help_text = f"{option.help} (default: {default})"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text,
                                  "dest": option.name}
        if as_lists:
            group.add_argument(option.flag, metavar="V[,V...]", **kwargs)
        elif option.type is bool:
            group.add_argument(option.flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            metavar = "{" + ",".join(option.choices) + "}" if option.choices else \
                option.type_name.upper().replace(" ", "_").replace("-", "_")
            group.add_argument(option.flag, metavar=metavar, **kwargs)


def given_values(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration values given on the command line, parsed, by option name."""
    values = {}
    for name, raw in vars(args).items():
        option: Option | None = OPTIONS.get(name)
        if option is None:
            continue
        values[name] = option.parse(raw) if isinstance(raw, str) else raw
    return values
