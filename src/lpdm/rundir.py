"""A run directory's files and how they are written and read, without torch: what the
report, sweeps and the command line need of a run (docs/design.md §4).

- ``config.json``: the resolved configuration (:mod:`lpdm.config`, any format);
- ``metrics.csv``: one row per finished training episode;
- ``evaluations.csv``: one row per deterministic evaluation;
- ``summary.json``: ``status`` (``running``, ``finished`` or ``failed``), scores, timing;
- ``checkpoint.pt`` and the one before it, ``checkpoint.prev.pt`` (:mod:`lpdm.runs`).
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpdm.config import Config, from_dict
from lpdm.errors import RunError

CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all, through a temporary file of this writer's own
    (two sweeps may write one ``sweep.json`` at once): a reader never sees a partial file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` whole or not at all (``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False,
                                       default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


@dataclass
class RunDirectory:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def evaluations(self) -> Path:
        return self.path / "evaluations.csv"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def previous_checkpoint(self) -> Path:
        """The checkpoint before the latest, kept in case the latest is damaged."""
        return self.path / PREVIOUS_CHECKPOINT_FILE

    def read_config(self) -> Config:
        if not self.config.exists():
            raise RunError(f"{self.path} is not a run directory (no config.json)")
        try:
            return from_dict(json.loads(self.config.read_text()))
        except ValueError as error:  # bad JSON, or a ConfigError
            raise RunError(f"{self.config}: {error}") from None

    def read_summary(self) -> dict:
        return json.loads(self.summary.read_text()) if self.summary.exists() else {}

    def read_metrics(self) -> list[dict[str, str]]:
        with self.metrics.open(newline="") as f:
            return list(csv.DictReader(f))

    def read_evaluations(self) -> list[dict[str, str]]:
        with self.evaluations.open(newline="") as f:
            return list(csv.DictReader(f))


