"""``lpdm sweep``: the command line of a sweep."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lpdm.config import OPTIONS, ConfigError, acts, read_config_file, where_it_acts
from lpdm.flags import add_config_arguments
from lpdm.learners.spec import learner_specs
from lpdm.suites import SUITES
from lpdm.sweeps.grid import (
    ALL_ALGOS,
    SweepSpec,
    check_cells,
    default_population,
    expand,
    parse_values,
    record_population,
    record_spec,
    recorded_population,
)

if TYPE_CHECKING:
    from lpdm.sweeps.backends import Backend


DESCRIPTION = """\
Run a grid of experiments: environments x algorithms x learners x seeds x every option
given a list of values (comma separated; '/' between values of --hidden-sizes). A value
may apply to one algorithm only: --total-steps reinforce=50000,ppo=100000. Each cell is
a run directory DIR/ENV/ALGO/LEARNER[/OPTION=VALUE,...]/sSEED. Rerunning the same command
resumes the sweep: finished cells are skipped, interrupted and failed ones resume from
their checkpoints. Exit status 1 if any cell failed."""


def add_sweep_command(commands: argparse._SubParsersAction) -> None:
    """Register ``lpdm sweep`` on the ``lpdm`` subcommand parser."""
    parser = commands.add_parser("sweep", help="run a grid of experiments, resumably",
                                 description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep directory")
    parser.add_argument("--suite", choices=sorted(SUITES),
                        help="the suite's environments at its budgets, with every algorithm "
                             "and learner unless --env/--algo/--learner narrow them")
    parser.add_argument("--seeds", type=int, metavar="K", help="seeds 0..K-1 (default 1; "
                        "or list seeds with --seed)")
    parser.add_argument("--workers", type=int, metavar="W", help="cells run at once, one "
                        "torch thread each (default: CPU cores here, or the Ray cluster's CPUs)")
    parser.add_argument("--population", type=int, metavar="P", help="train up to P cells that "
                        "differ only in their seed as one population, in one process (default: "
                        "the largest that keeps every worker busy; 1: every cell alone)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local process pool (default), or Ray tasks")
    parser.add_argument("--address", metavar="HOST:PORT",
                        help="Ray cluster to run on (default: a local Ray instance on loopback)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar; one line per ended cell")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the grid, the number of runs and an estimate of the "
                        "core-hours (from a few seconds of each environment and algorithm), "
                        "then stop")
    add_config_arguments(parser, as_lists=True)
    parser.set_defaults(handler=cmd_sweep)


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    """The grid that the command line describes."""
    given = {name: parse_values(OPTIONS[name], text) for name, text in vars(args).items()
             if name in OPTIONS}
    if args.config:  # one value each, where the command line gives none
        for name, value in read_config_file(args.config).items():
            given.setdefault(name, {ALL_ALGOS: [value]})
    suite = SUITES[args.suite] if args.suite else None
    if suite and "env" in given:  # a part of the suite, at the suite's budgets
        outside = [env for env in given["env"][ALL_ALGOS] if env not in suite.envs]
        if outside:
            raise ConfigError(f"--env: {', '.join(outside)} not in --suite {args.suite} "
                              f"({', '.join(suite.envs)})")

    def axis(name: str, suite_values: tuple | None) -> tuple:
        if name in given:
            return tuple(given.pop(name)[ALL_ALGOS])
        return suite_values if suite and suite_values else (OPTIONS[name].default,)

    envs = axis("env", suite.envs if suite else None)
    algos = axis("algo", suite.algos if suite else None)
    learners = axis("learner", tuple(name for name, learner in learner_specs().items()
                                     if learner.paper))
    if args.seeds is not None and "seed" in given:
        raise ConfigError("--seeds and --seed exclude each other")
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    seeds = tuple(range(args.seeds)) if args.seeds is not None else axis("seed", None)
    for name, keyed in given.items():
        for key in keyed:
            if key != ALL_ALGOS and key not in algos:
                raise ConfigError(f"{OPTIONS[name].flag}: {key}= names an algorithm this "
                                  f"sweep does not run ({', '.join(algos)})")
        if not any(acts(name, algo, learner) for algo in algos for learner in learners):
            raise ConfigError(f"{OPTIONS[name].flag} acts on none of this sweep's runs "
                              f"({where_it_acts(name)})")
    budgets = dict(suite.budgets) if suite else {}
    return SweepSpec(envs, algos, learners, seeds, given, budgets)


def make_backend(args: argparse.Namespace) -> Backend:
    from lpdm.sweeps.backends import LocalBackend, RayBackend

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.backend == "ray":
        return RayBackend(args.address, args.workers)
    if args.address:
        raise ConfigError("--address needs --backend ray")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return LocalBackend(args.workers or cores or 1)


def choose_population(out: Path, cells: list, given: int | None, workers: int) -> int:
    """The population size: as given, else as the sweep's first run recorded, else the
    largest that keeps every worker busy; recorded in ``sweep.json`` for reruns."""
    recorded = recorded_population(out)
    population = given or recorded or default_population(cells, workers)
    if recorded and population != recorded:
        print(f"  populations of {population} seeds instead of {recorded}: resumed cells may "
              "now differ from uninterrupted ones by float rounding", flush=True)
    if population != recorded:
        record_population(out, population)
    print(f"  populations of up to {population} seeds", flush=True)
    return population


def cmd_sweep(args: argparse.Namespace) -> int:
    from lpdm.sweeps.scheduler import cell_status, run_cells

    if args.population is not None and args.population < 1:
        raise ConfigError(f"--population must be at least 1, got {args.population}")
    out = Path(args.out)
    spec = spec_from_args(args)
    cells = expand(spec)
    check_cells(cells)
    if args.dry_run:
        from lpdm.sweeps.estimate import print_plan

        print_plan(spec, cells, args.workers, args.population)
        return 0
    backend = make_backend(args)
    interrupted = False
    try:
        record_spec(out, spec, len(cells))
        statuses = [cell_status(out, cell) for cell in cells]
        counts = {status: statuses.count(status) for status in
                  ("finished", "interrupted", "failed", "pending")}
        where = f"Ray ({args.address or 'local instance'})" if args.backend == "ray" else "local"
        print(f"sweep {out}: {len(cells)} cells ({counts['finished']} finished, "
              f"{counts['interrupted']} to resume, {counts['failed']} failed to retry, "
              f"{counts['pending']} to start) on {backend.workers} {where} workers", flush=True)
        population = choose_population(out, cells, args.population, backend.workers)
        outcome = run_cells(out, cells, backend, population, progress=not args.no_progress)
    except KeyboardInterrupt:
        interrupted = True
        print(f"sweep {out}: interrupted; rerun the same command to resume", flush=True)
        return 130
    finally:
        backend.close(interrupted)
    print(f"sweep {out}: {outcome.finished} of {outcome.total} cells finished, "
          f"{len(outcome.failed)} failed")
    for path, error in sorted(outcome.failed.items()):
        print(f"  failed {path}: {error}")
    print(f"report: lpdm report {out}")
    return 1 if outcome.failed else 0
