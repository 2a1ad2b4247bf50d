"""Learner specs and their registry: what the command line, sweeps and reports know of a
learner without building one (docs/design.md §2).

A learner is one module that declares its :class:`LearnerSpec` beside its class and
registers it (:func:`register`). The built-in learners are this package's modules;
plugins are the modules named in ``$LPDM_PLUGINS`` (comma separated; sweep workers inherit
it) and those of the ``lpdm.learners`` entry-point group. Spec modules import no torch:
torch is imported when a learner is built, so that ``lpdm --help`` and ``lpdm report`` stay
fast and torch-free.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from lpdm.errors import ConfigError

if TYPE_CHECKING:
    from lpdm.learners.base import Learner, LearnerContext

PLUGINS_ENV = "LPDM_PLUGINS"
ENTRY_POINTS = "lpdm.learners"
BUILTIN = ("bp", "lpdm", "lpdm_guided", "frozen", "linear", "lpdm_metric", "dfa",
           "layerwise")


@dataclass(frozen=True)
class LearnerSpec:
    """A learner as the rest of lpdm sees it.

    ``build(context)`` makes the learner for one network of an algorithm.
    """

    name: str
    summary: str  # how it trains the trunk, one line (help, tables)
    build: Callable[[LearnerContext], Learner]
    options: tuple[type, ...] = ()  # its own config sections (lpdm.config.Section)
    # the distance-matching options (section ``local``) act on how it trains its trunk
    distance_matching: bool = False
    # trains its trunk with no RL gradient crossing a hidden layer: compared with controls
    local: bool = False
    control: bool = False  # learns no trunk: the reference for whether trunk learning helps
    has_trunk: bool = True  # False: no hidden layer, the heads read the observation
    paper: bool = False  # part of the paper's comparison (a sweep's default learners)
    references: tuple[str, ...] = ()  # learners it is compared with besides bp and controls
    cost_rank: int = 0  # higher costs more per step (``--dry-run`` measures the highest)
    # the tuner's search space of its own options: option name -> distribution spec
    search_space: dict[str, Any] = field(default_factory=dict)
    color: str | None = None  # in figures


_REGISTRY: dict[str, LearnerSpec] = {}
_loaded = False


def register(spec: LearnerSpec) -> LearnerSpec:
    """Add ``spec`` to the registry (a name can be registered once); returns it."""
    known = _REGISTRY.get(spec.name)
    if known is not None and known is not spec:
        raise ConfigError(f"learner {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    """Import the built-in learners, then the plugins (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN:
        importlib.import_module(f"lpdm.learners.{name}")
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"${PLUGINS_ENV}: cannot import {module!r} ({error})") from None
    for entry in entry_points(group=ENTRY_POINTS):
        entry.load()


def reset_caches(reload: bool = False) -> None:
    """Forget what was derived from the registry (the table of flags), after a learner was
    registered by hand; ``reload`` also imports the plugins again at next use."""
    global _loaded
    from lpdm import config

    config.flags.cache_clear()
    config._flag_names.cache_clear()
    if reload:
        _loaded = False


def learner_specs() -> dict[str, LearnerSpec]:
    """Every registered learner by name, built-ins first, in the order they register."""
    _load()
    # built-ins in BUILTIN's order whatever imported them first, then plugins as registered
    order = {name.replace("_", "-"): i for i, name in enumerate(BUILTIN)}
    names = sorted(_REGISTRY, key=lambda name: order.get(name, len(order)))
    return {name: _REGISTRY[name] for name in names}


def learner_names() -> tuple[str, ...]:
    return tuple(learner_specs())


def get_spec(name: str) -> LearnerSpec:
    specs = learner_specs()
    if name not in specs:
        raise ConfigError(f"--learner: {name!r} is not one of {', '.join(specs)}")
    return specs[name]


def find_spec(name: str) -> LearnerSpec | None:
    """The spec of ``name``, or None for a learner not registered here (a report of an
    archive whose learner came from a plugin)."""
    return learner_specs().get(name)
