"""Command-line flags of the configuration, shared by ``lpdm train`` and ``lpdm sweep``.

Flags are generated from :mod:`lpdm.config`, so both commands share one definition of
every option (a sweep takes each as a list of values); one flag stands for the options of
one name in several sections (``--lr``: each algorithm's).
"""

from __future__ import annotations

import argparse
from typing import Any

from lpdm.config import OPTIONS, ConfigError, Flag, read_config_file


def add_config_arguments(parser: argparse.ArgumentParser, as_lists: bool = False) -> None:
    """One flag per configuration option; values stay unset unless given.

    With ``as_lists`` every flag takes a comma-separated list of values (for sweeps);
    values of a tuple option (``--hidden-sizes``) are then separated by ``/``, and a
    boolean flag given bare (``--huber``) or negated (``--no-huber``) reads as ``lpdm
    train``'s does.
    """
    parser.add_argument("--config", metavar="FILE", help="take option values from FILE (e.g. "
                        "the best.json of lpdm tune); flags given here override them")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in OPTIONS.values():
        section = ", ".join(dict.fromkeys(option.sections)) or "experiment"
        group = groups.setdefault(section, parser.add_argument_group(f"{section} options"))
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": option.help,
                                  "dest": option.name}
        if as_lists and option.type is bool:
            group.add_argument(option.flag, metavar="V[,V...]", nargs="?", const="true",
                               **kwargs)
            group.add_argument("--no-" + option.flag.removeprefix("--"), action="store_const",
                               const="false", default=argparse.SUPPRESS, dest=option.name,
                               help=argparse.SUPPRESS)
        elif as_lists:
            group.add_argument(option.flag, metavar="V[,V...]", **kwargs)
        elif option.type is bool:
            group.add_argument(option.flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            metavar = "{" + ",".join(option.choices) + "}" if option.choices else \
                option.type_name.upper().replace(" ", "_").replace("-", "_")
            group.add_argument(option.flag, metavar=metavar, **kwargs)


def given_values(args: argparse.Namespace, with_file: bool = True) -> dict[str, Any]:
    """The configuration values given on the command line, parsed, by option name, over
    those of ``--config FILE`` (unless not ``with_file``)."""
    values = read_config_file(args.config) if with_file and getattr(args, "config", None) \
        else {}
    for name, raw in vars(args).items():
        option: Flag | None = OPTIONS.get(name)
        if option is None:
            continue
        values[name] = option.parse(raw) if isinstance(raw, str) else raw
    return values


def parse_seeds(text: str) -> list[int]:
    """``--seed`` (and ``lpdm tune --tune-seeds``): one seed, or a comma-separated list
    (a population), each checked as ``--seed`` is."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seed: cannot read {text!r} as integers") from None
    if not seeds:
        raise ConfigError("--seed: no seed given")
    for seed in seeds:
        OPTIONS["seed"].first.check_value(seed)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seed: {text} repeats a seed")
    return seeds
