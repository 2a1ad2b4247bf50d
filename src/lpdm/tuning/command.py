"""``lpdm tune``: the command line of a tuning study."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lpdm.config import OPTIONS, ConfigError
from lpdm.flags import add_config_arguments, given_values, parse_seeds

if TYPE_CHECKING:
    from lpdm.tuning.study import TuneSpec

DESCRIPTION = """\
Tune the options of one learner under one algorithm on one environment: --trials trials,
each a population of --seeds held-out seeds trained for --total-steps and scored by the
mean of their final scores, drawn by Optuna's TPE sampler from the search space (the
algorithm's and the learner's own, or --space FILE), the worst pruned on their learning
curves. Give every learner of a comparison the same --trials, --seeds and --total-steps.
The study lives in OUT/study.db (SQLite): rerunning the command resumes it (also after
kill -9, without repeating a finished trial), several processes on one OUT share it, and
--storage URL (e.g. postgresql://HOST/DB) lets workers on many machines share one study.
Writes OUT/best.json (for lpdm train --config and lpdm sweep --config), OUT/trials.csv and
the figures history.png and importances.png; optuna-dashboard sqlite:///OUT/study.db
shows the study live."""


def add_tune_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("tune", help="equal-budget hyperparameter search (Optuna)",
                                 description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, metavar="DIR", help="study directory")
    parser.add_argument("--trials", type=int, default=16, metavar="N",
                        help="trials of the study, over all its workers (default: 16)")
    parser.add_argument("--tune-seeds", default="10,11,12", metavar="S,S,...",
                        help="the held-out seeds every trial trains (default: 10,11,12; "
                        "never the seeds a claim is judged on)")
    parser.add_argument("--space", metavar="FILE", help="search space as JSON: option -> "
                        '{"type": "float"|"int"|"categorical", "low", "high", "log", '
                        '"choices"} (default: the algorithm\'s and the learner\'s)')
    parser.add_argument("--pruner", choices=("median", "halving", "none"), default="median",
                        help="stop poor trials early on their learning curves (default: "
                        "median)")
    parser.add_argument("--sampler-seed", type=int, default=0, help="seed of the sampler")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage shared by workers "
                        "(default: sqlite:///OUT/study.db)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the search space and the study's cost in core-hours "
                        "(from a few seconds of a trial at the defaults), then stop")
    add_config_arguments(parser)
    parser.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from lpdm.tuning.space import check_space, default_space, read_space
    from lpdm.tuning.study import TuneSpec, best_trial, counted, run_study

    if args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {args.trials}")
    values = given_values(args)
    if "seed" in values:
        raise ConfigError("lpdm tune trains the held-out --tune-seeds; drop --seed")
    env = values.pop("env", OPTIONS["env"].default)
    algo = values.pop("algo", OPTIONS["algo"].default)
    learner = values.pop("learner", OPTIONS["learner"].default)
    total_steps = values.pop("total_steps", OPTIONS["total_steps"].default)
    space = read_space(Path(args.space)) if args.space else default_space(algo, learner)
    check_space(space, algo, learner)
    if clash := sorted(set(space) & set(values)):
        raise ConfigError(f"{OPTIONS[clash[0]].flag} is both given and searched")
    spec = TuneSpec(env, algo, learner, tuple(parse_seeds(args.tune_seeds)), total_steps,
                    args.trials, space, values, args.pruner, args.sampler_seed)
    spec.config({}, spec.seeds[0])  # bad fixed options fail here, before any trial
    if args.dry_run:
        print_plan(spec)
        return 0
    out = Path(args.out)
    study = run_study(spec, out, args.storage, progress=not args.no_progress)
    best = best_trial(study)
    print(f"study {spec.name}: {len(counted(study))} of {spec.trials} trials")
    if best is None:
        print("no trial completed; see trials.csv")
        return 1
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in best.params.items())
    print(f"best: trial {best.number}, score {best.value:.2f} ({params})")
    print(f"configuration: {out / 'best.json'} (lpdm train --config {out / 'best.json'})")
    return 0


def print_plan(spec: TuneSpec) -> None:
    """The study's search space and its cost: every trial trains its seeds for the study's
    steps (pruned trials stop sooner, so this is an upper bound), at the rate of a few
    seconds of a population of those seeds at the defaults on one core."""
    from lpdm.sweeps.estimate import measure_rate

    print(f"study {spec.name}: {spec.trials} trials x {len(spec.seeds)} seeds "
          f"({', '.join(map(str, spec.seeds))}) x {spec.total_steps:,d} steps")
    for name, distribution in spec.space.items():
        shown = {k: v for k, v in distribution.items() if k != "type"}
        print(f"  {OPTIONS[name].flag}: {distribution['type']} {shown}")
    rate = measure_rate(spec.config({}, spec.seeds[0]), members=len(spec.seeds))
    steps = spec.trials * len(spec.seeds) * spec.total_steps
    print(f"measured {rate:.0f} steps/s on one core at the defaults: at most "
          f"{steps / rate / 3600:.1f} core-hours for {steps:,d} steps")
