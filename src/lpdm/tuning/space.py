"""Search spaces: option name -> distribution, declared with each algorithm's options
section (``search_space``) and with each learner's spec, so that every learner under one
algorithm is searched over the algorithm's options plus its own.

A distribution is ``{"type": "float", "low": a, "high": b, "log": bool}``, ``{"type":
"int", "low": a, "high": b, "log": bool}`` or ``{"type": "categorical", "choices": [...]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lpdm.config import ALGORITHM_SECTIONS, OPTIONS, ConfigError, acts
from lpdm.learners.spec import get_spec

KINDS = ("float", "int", "categorical")


def default_space(algo: str, learner: str) -> dict[str, dict[str, Any]]:
    """The algorithm's space, then the learner's own."""
    return {**ALGORITHM_SECTIONS[algo].search_space, **get_spec(learner).search_space}


def read_space(path: Path) -> dict[str, dict[str, Any]]:
    """A search space from a JSON file (an object of option name -> distribution)."""
    try:
        space = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"--space {path}: {error}") from None
    if not isinstance(space, dict):
        raise ConfigError(f"--space {path}: expected an object of option -> distribution")
    return space


def check_space(space: dict[str, dict[str, Any]], algo: str, learner: str) -> None:
    """Raise :class:`ConfigError` on an empty space, an unknown option, an option that does
    not act on the algorithm and learner, or a malformed distribution."""
    if not space:
        raise ConfigError(f"the search space of {learner} under {algo} is empty: give one "
                          "with --space FILE")
    for name, distribution in space.items():
        if name not in OPTIONS:
            raise ConfigError(f"search space: unknown option {name!r}")
        if not acts(name, algo, learner):
            raise ConfigError(f"search space: {OPTIONS[name].flag} does not act on --algo "
                              f"{algo} with --learner {learner}")
        kind = distribution.get("type") if isinstance(distribution, dict) else None
        if kind not in KINDS:
            raise ConfigError(f"search space: {name}: type must be one of {', '.join(KINDS)}")
        if kind == "categorical":
            if not distribution.get("choices"):
                raise ConfigError(f"search space: {name}: no choices")
        elif not distribution.get("low", 0) < distribution.get("high", 0):
            raise ConfigError(f"search space: {name}: need low < high")


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Draw one value per option from an Optuna ``trial``."""
    values = {}
    for name, d in space.items():
        if d["type"] == "float":
            values[name] = trial.suggest_float(name, d["low"], d["high"], log=d.get("log", False))
        elif d["type"] == "int":
            values[name] = trial.suggest_int(name, d["low"], d["high"], log=d.get("log", False))
        else:
            values[name] = trial.suggest_categorical(name, d["choices"])
    return values
