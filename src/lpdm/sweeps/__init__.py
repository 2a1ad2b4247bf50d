"""Sweeps: many runs of one grid, on a local process pool or a Ray cluster, resumable.

- :mod:`~lpdm.sweeps.grid`: the grid definition, its cells and their directories;
- :mod:`~lpdm.sweeps.cell`: one cell run by a worker, under a per-cell lock;
- :mod:`~lpdm.sweeps.backends`: where cells run (process pool, Ray);
- :mod:`~lpdm.sweeps.scheduler`: hands cells to a backend, shows progress;
- :mod:`~lpdm.sweeps.command`: ``lpdm sweep``.
"""

from lpdm.sweeps.grid import Cell, SweepSpec, expand, read_spec

__all__ = ["Cell", "SweepSpec", "expand", "read_spec"]
