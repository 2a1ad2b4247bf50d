"""``lpdm sweep --dry-run``: the grid, its runs, and what it will cost.

The cost is measured, not guessed: each environment × algorithm × combination of swept
options (a network depth, say) trains its most expensive learner (the local learners'
updates cost more than ``bp``'s) for a few seconds, as a population of the sweep's size
(populations run faster per member than solo runs: ``lpdm bench --only population``), and
the cells' budgets divided by those rates give core-hours. The seconds measured are the
first of training, whose episodes and updates may cost more or less than later ones, so
the estimate is a guide, not a bound.
"""

from __future__ import annotations

import time
from collections import Counter

import gymnasium as gym

from lpdm.config import Config, resolve, with_values
from lpdm.envs import env_spaces
from lpdm.learners.spec import get_spec
from lpdm.sweeps.grid import Cell, SweepSpec, default_population, populations, short_variant

MEASURE_SECONDS = 3.0


def measure_rate(config: Config, seconds: float | None = None, members: int = 1) -> float:
    """Environment steps per second, summed over the members, of a population of
    ``members`` runs of ``config`` (seeds 0, 1, ...) on one core of this machine: whole
    iterations for about ``seconds``; DQN with its updates from the first step."""
    import torch

    from lpdm.runs import make_population

    seconds = MEASURE_SECONDS if seconds is None else seconds
    observation_space, action_space = env_spaces(config.env, config.envs.env_kwargs)
    values: dict[str, object] = {"threads": 1}
    if config.algo == "dqn":
        values["learning_starts"] = 0
    resolved = resolve(with_values(config, values),
                       isinstance(action_space, gym.spaces.Discrete),
                       tuple(observation_space.shape))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    algo, _ = make_population([with_values(resolved, {"seed": k}) for k in range(members)])
    try:
        for k in range(members):
            algo.runner.reset(k, k)
        steps, start = [0] * members, time.perf_counter()
        while time.perf_counter() - start < seconds or steps[0] == 0:
            done = algo.iterate(steps, [resolved.total_steps] * members)
            steps = [s + iteration.steps for s, iteration in zip(steps, done, strict=True)]
        return sum(steps) / (time.perf_counter() - start)
    finally:
        algo.runner.close()
        torch.set_num_threads(threads)


def print_plan(spec: SweepSpec, cells: list[Cell], workers: int | None,
               population: int | None) -> None:
    """Print the grid, the number of runs and the estimated core-hours."""
    import os

    workers = workers or len(os.sched_getaffinity(0))
    size = population or default_population(cells, workers)
    axes = len(spec.envs) * len(spec.algos) * len(spec.learners) * len(spec.seeds)
    combinations = len(cells) // max(axes, 1)
    print(f"grid: {len(spec.envs)} environment(s) x {len(spec.algos)} algorithm(s) x "
          f"{len(spec.learners)} learner(s) x {len(spec.seeds)} seed(s)"
          + (f" x {combinations} option combinations" if combinations > 1 else ""))
    print(f"  environments: {', '.join(spec.envs)}")
    print(f"  algorithms: {', '.join(spec.algos)}; learners: {', '.join(spec.learners)}; "
          f"seeds: {', '.join(map(str, spec.seeds))}")
    for name, keyed in spec.options.items():
        values = "; ".join(f"{'' if key == '*' else key + '='}{', '.join(map(str, v))}"
                           for key, v in keyed.items())
        print(f"  --{name.replace('_', '-')}: {values}")
    if spec.budgets and "total_steps" not in spec.options:
        print("  budgets: " + ", ".join(f"{env} {steps:,d}" for env, steps in spec.budgets.items()))
    print(f"{len(cells)} runs, in {len(populations(cells, size))} populations of up to {size} "
          f"seeds on {workers} worker(s)")
    steps: Counter[tuple[str, str, str]] = Counter()
    for cell in cells:
        steps[cell.env, cell.algo, cell.variant] += cell.config().total_steps
    print(f"measuring a few seconds of each of {len(steps)} environment, algorithm and option "
          "combination(s) ...", flush=True)
    rows = []
    for env, algo, variant in steps:
        # the learner measured: the grid's most expensive (its spec's cost rank)
        learner = max(spec.learners, key=lambda name: get_spec(name).cost_rank)
        cell = next(c for c in cells
                    if (c.env, c.algo, c.learner, c.variant) == (env, algo, learner, variant))
        rate = measure_rate(cell.config(), members=min(size, len(spec.seeds)))
        total = steps[env, algo, variant]
        rows.append((env, algo, short_variant(variant), learner, rate, total,
                     total / rate / 3600))
    env_width = max(len("environment"), *(len(r[0]) for r in rows))
    option_width = max(len(r[2]) for r in rows)
    options = f"{'options':<{option_width}}  " if option_width else ""
    print(f"{'environment':<{env_width}}  algorithm  {options}measured with  steps/s  "
          "total steps  core-hours")
    for env, algo, variant, learner, rate, total, hours in rows:
        options = f"{variant:<{option_width}}  " if option_width else ""
        print(f"{env:<{env_width}}  {algo:<9}  {options}{learner:<13}  {rate:7.0f}  "
              f"{total:11,d}  {hours:10.2f}")
    core_hours = sum(r[6] for r in rows)
    print(f"estimate: {core_hours:.1f} core-hours, about {core_hours / workers:.1f} hours on "
          f"{workers} worker(s), from each combination's first seconds in populations of "
          f"{min(size, len(spec.seeds))}")
