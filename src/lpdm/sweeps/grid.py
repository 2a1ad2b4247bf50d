"""A sweep's grid: its definition, the cells it expands to, and where each cell lives.

A grid is environments × algorithms × learners × seeds × every option given a list of
values. An option value may be keyed by algorithm (``--total-steps reinforce=50000,
ppo=100000``): cells of that algorithm take the keyed values, the others the plain ones.
Each cell is an ordinary run directory at ``ENV/ALGO/LEARNER[/VARIANT]/sSEED`` under the
sweep directory, where VARIANT names the values of the options swept over more than one
value, e.g. ``lr=0.001,hidden-sizes=64-64``.

The definition is recorded in ``sweep.json``; a sweep directory only ever holds one grid.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lpdm import __version__
from lpdm.config import ALGOS, OPTIONS, Config, ConfigError, Flag, acts, resolve, with_values
from lpdm.rundir import RunError, write_json_atomic

SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = 1
ALL_ALGOS = "*"  # key of option values that apply to every algorithm
ASSIGNMENTS = ("env_kwargs",)  # options whose values are KEY=VALUE themselves
AXES = ("env", "algo", "learner", "seed")  # options that are directories of the cell path


@dataclass(frozen=True)
class SweepSpec:
    """The definition of a sweep; ``options`` maps option name -> {algo or "*": values}."""

    envs: tuple[str, ...]
    algos: tuple[str, ...]
    learners: tuple[str, ...]
    seeds: tuple[int, ...]
    options: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    budgets: dict[str, int] = field(default_factory=dict)  # env -> total steps (a suite's)

    def values_for(self, algo: str, env: str | None = None) -> dict[str, list[Any]]:
        """The values each option takes in the cells of ``algo`` (on ``env``)."""
        values = {}
        if env in self.budgets and "total_steps" not in self.options:
            values["total_steps"] = [self.budgets[env]]
        for name, keyed in self.options.items():
            chosen = keyed.get(algo, keyed.get(ALL_ALGOS))
            if chosen is not None:
                values[name] = chosen
        return values

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form; equal grids give equal forms."""
        data = {"envs": list(self.envs), "algos": list(self.algos),
                "learners": list(self.learners), "seeds": list(self.seeds),
                "options": {name: {key: [_json_value(v) for v in values]
                                   for key, values in sorted(keyed.items())}
                            for name, keyed in sorted(self.options.items())}}
        if self.budgets:
            data["budgets"] = dict(self.budgets)
        return json.loads(json.dumps(data))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepSpec:
        options = {name: {key: [_from_json_value(OPTIONS[name], v) for v in values]
                          for key, values in keyed.items()}
                   for name, keyed in data["options"].items()}
        return cls(tuple(data["envs"]), tuple(data["algos"]), tuple(data["learners"]),
                   tuple(data["seeds"]), options, dict(data.get("budgets", {})))


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    env: str
    algo: str
    learner: str
    seed: int
    values: tuple[tuple[str, Any], ...]  # every option value given for this cell
    variant: str  # the swept option values, "" when none is swept
    path: PurePosixPath  # relative to the sweep directory

    def config(self) -> Config:
        """The cell's configuration: the grid's values for it, less the options that do not
        act on its algorithm and learner (the ``bp`` cells of a grid that sweeps
        ``--guidance-strength``), which still name its directory."""
        return with_values(Config(), {"env": self.env, "algo": self.algo,
                                      "learner": self.learner, "seed": self.seed,
                                      **{name: value for name, value in self.values
                                         if acts(name, self.algo, self.learner)}})


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _from_json_value(option: Flag, value: Any) -> Any:
    return tuple(value) if option.type is tuple and value is not None else value


# --------------------------------------------------------------------------- parsing


def parse_values(option: Flag, text: str) -> dict[str, list[Any]]:
    """Parse a comma-separated list of values (``/``-separated for tuple options).

    Values may be keyed by algorithm as ``ALGO=VALUE``. Returns {algo or "*": values}.
    """
    separator = option.list_separator
    keyed: dict[str, list[Any]] = {}
    for item in (part.strip() for part in text.split(separator)):
        if not item:
            continue
        key, value_text = ALL_ALGOS, item
        prefix = item.partition("=")[0].strip()
        if "=" in item and option.name not in AXES and (prefix in ALGOS or
                                                         option.name not in ASSIGNMENTS):
            key, _, value_text = (part.strip() for part in item.partition("="))
            if key not in ALGOS:
                raise ConfigError(f"{option.flag}: {key!r} in {item!r} is not an algorithm "
                                  f"({', '.join(ALGOS)})")
        value = option.parse(value_text)
        if value in keyed.get(key, []):
            raise ConfigError(f"{option.flag}: {value_text} is given twice")
        keyed.setdefault(key, []).append(value)
    if not keyed:
        raise ConfigError(f"{option.flag}: no value given")
    return keyed


# --------------------------------------------------------------------------- cells


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "-".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def short_variant(variant: str) -> str:
    """A variant for a title or a tick, a repeated list of integers and a path shortened:
    ``hidden-sizes=128-128-128-128`` -> ``hidden-sizes=128×4``,
    ``init-trunk=/runs/suite/Hopper-v4/ppo/bp`` -> ``init-trunk=…/ppo/bp``."""
    parts = []
    for part in variant.split(","):
        name, _, value = part.rpartition("=")
        values = value.split("-")
        if len(values) >= 2 and len(set(values)) == 1 and values[0].isdigit():
            value = f"{values[0]}×{len(values)}"
        elif value.count("/") > 2:
            value = "…/" + "/".join(value.rstrip("/").split("/")[-2:])
        parts.append(f"{name}={value}" if name else value)
    return ",".join(parts)


def _segment(text: str) -> str:
    """A directory name for ``text``: characters outside [A-Za-z0-9._=,+-] become ``_``."""
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of the grid, ordered env, algo, learner, variant, seed."""
    cells = []
    for env, algo in itertools.product(spec.envs, spec.algos):
        values = spec.values_for(algo, env)
        names = list(values)
        swept = [name for name in names if len(values[name]) > 1]
        for learner in spec.learners:
            for combo in itertools.product(*(values[name] for name in names)):
                chosen = dict(zip(names, combo, strict=True))
                variant = ",".join(f"{OPTIONS[name].flag[2:]}={_format_value(chosen[name])}"
                                   for name in swept)
                parts = [_segment(env), algo, learner, *([_segment(variant)] if variant else [])]
                for seed in spec.seeds:
                    path = PurePosixPath(*parts, f"s{seed}")
                    cells.append(Cell(env, algo, learner, seed, tuple(chosen.items()), variant,
                                      path))
    paths = [cell.path for cell in cells]
    if len(set(paths)) != len(paths):
        duplicate = next(p for p in paths if paths.count(p) > 1)
        raise ConfigError(f"two cells of the grid share the directory {duplicate}")
    return cells


def fixed_values(spec: SweepSpec, cell: Cell) -> tuple[str, ...]:
    """The options ``spec`` sets to one value other than the default in ``cell``, each as
    a variant writes it (``sparse=true``): what sets the cell apart from another sweep's
    cell of the same variant."""
    values = spec.values_for(cell.algo, cell.env)
    config = cell.config()
    return tuple(f"{OPTIONS[name].flag[2:]}={_format_value(chosen[0])}"
                 for name, chosen in values.items()
                 if len(chosen) == 1 and acts(name, cell.algo, cell.learner)
                 and chosen[0] != OPTIONS[name].default_for(config))


def populations(cells: list[Cell], size: int) -> list[list[Cell]]:
    """The cells grouped into populations: cells that differ only in their seed (the same
    directory but for ``sSEED``), at most ``size`` to a group, by seed."""
    by_config: dict[PurePosixPath, list[Cell]] = {}
    for cell in cells:
        by_config.setdefault(cell.path.parent, []).append(cell)
    groups = []
    for members in by_config.values():
        members = sorted(members, key=lambda c: c.seed)
        groups += [members[i:i + size] for i in range(0, len(members), max(size, 1))]
    return groups


def default_population(cells: list[Cell], workers: int) -> int:
    """The largest population that still gives every worker one (at most all seeds of a
    configuration)."""
    if not cells:
        return 1
    seeds = max(len(g) for g in populations(cells, len(cells)))
    return max(1, min(seeds, len(cells) // max(workers, 1)))


def check_cells(cells: list[Cell]) -> None:
    """Resolve every cell's configuration, so that bad values fail before anything runs."""
    import gymnasium as gym

    from lpdm.envs import env_spaces

    discrete: dict[str, bool] = {}
    for cell in cells:
        config = cell.config()
        if cell.env not in discrete:
            observation_space, action_space = env_spaces(cell.env, config.envs.env_kwargs)
            discrete[cell.env] = (isinstance(action_space, gym.spaces.Discrete),
                                  tuple(observation_space.shape))
        try:
            resolve(config, *discrete[cell.env])
        except ConfigError as error:
            raise ConfigError(f"cell {cell.path}: {error}") from None


# --------------------------------------------------------------------------- sweep.json


def recorded_population(directory: Path) -> int | None:
    """The population size a sweep's first run chose (``sweep.json``), if recorded."""
    path = directory / SWEEP_FILE
    if not path.exists():
        return None
    value = json.loads(path.read_text()).get("population")
    return int(value) if value else None


def record_population(directory: Path, size: int) -> None:
    """Record the population size in ``sweep.json``: reruns group cells the same way."""
    path = directory / SWEEP_FILE
    data = json.loads(path.read_text())
    data["population"] = size
    write_json_atomic(path, data)


def read_spec(directory: Path) -> SweepSpec | None:
    """The grid recorded in ``directory/sweep.json``, or None if there is none."""
    path = directory / SWEEP_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return SweepSpec.from_json(data["grid"])
    except (ValueError, KeyError, TypeError) as error:
        raise RunError(f"{path} is not a sweep definition ({error})") from None


def record_spec(directory: Path, spec: SweepSpec, cells: int) -> None:
    """Write ``sweep.json``, or refuse if the directory holds a different grid."""
    existing = read_spec(directory)
    if existing is not None:
        if existing.to_json() != spec.to_json():
            raise RunError(f"{directory} holds a different sweep ({_difference(existing, spec)}); "
                           "rerun its own command to resume it, or choose another --out")
        return
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / SWEEP_FILE, {"format": SWEEP_FORMAT, "lpdm": __version__,
                                               "cells": cells, "grid": spec.to_json()})


def _difference(old: SweepSpec, new: SweepSpec) -> str:
    a, b = old.to_json(), new.to_json()
    for key in ("envs", "algos", "learners", "seeds"):
        if a[key] != b[key]:
            return f"{key}: {','.join(map(str, a[key]))} there, {','.join(map(str, b[key]))} now"
    for name in sorted(set(a["options"]) | set(b["options"])):
        if a["options"].get(name) != b["options"].get(name):
            return (f"{OPTIONS[name].flag}: {_describe(a['options'].get(name))} there, "
                    f"{_describe(b['options'].get(name))} now")
    return "unknown difference"


def _describe(keyed: dict[str, list] | None) -> str:
    if keyed is None:
        return "default"
    return ",".join(f"{'' if key == ALL_ALGOS else key + '='}{value}"
                    for key, values in keyed.items() for value in values)
