"""Command line: ``lpdm train | eval | sweep | tune | tuned | report | claims | headline |
leaderboard | bench``.

Configuration flags are generated from :mod:`lpdm.config`, so ``train`` and ``sweep``
share one definition of every option. Errors a user can fix are printed as one line
(``lpdm: error: ...``) with exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lpdm.config import OPTIONS, Config, ConfigError, with_values
from lpdm.errors import USER_ERRORS, RunError
from lpdm.flags import add_config_arguments, given_values, parse_seeds
from lpdm.signals import interrupt_on_signals


def _default_out(config: Config, population: bool) -> Path:
    name = f"{config.env}__{config.algo}__{config.learner}"
    return Path("runs") / (name if population else f"{name}__s{config.seed}")


def cmd_train(args: argparse.Namespace) -> int:
    from lpdm.runs import (
        RunDirectory,
        is_population_dir,
        member_dir,
        population_members,
        train_population,
    )

    seed_text = vars(args).pop("seed", None)
    values = given_values(args)
    progress = not args.no_progress
    if args.resume:
        if values or seed_text is not None:
            flags = ", ".join([*(OPTIONS[name].flag for name in values),
                               *(["--seed"] if seed_text is not None else [])])
            raise ConfigError(f"a resumed run keeps its configuration; drop {flags}")
        target = Path(args.resume)
        outs = population_members(target) if is_population_dir(target) else [target]
        configs = [RunDirectory(o).read_config() for o in outs]
        summaries = train_population(configs, outs, resume=True, progress_bar=progress)
    else:
        seeds = parse_seeds(seed_text) if seed_text is not None else [Config().seed]
        population = seed_text is not None and "," in seed_text
        configs = [with_values(Config(), {**values, "seed": seed}) for seed in seeds]
        out = Path(args.out) if args.out else _default_out(configs[0], population)
        outs = [member_dir(out, seed) for seed in seeds] if population else [out]
        summaries = train_population(configs, outs, progress_bar=progress)
    for out, summary in zip(outs, summaries, strict=True):
        _print_summary(out, summary)
    return 0 if all(s["status"] == "finished" for s in summaries) else 1


def _print_summary(out: Path, summary: dict) -> None:
    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    print(f"{summary['status']}: {summary['env']} {summary['algo']} {summary['learner']} "
          f"seed {summary['seed']}, {summary['steps']} steps in {summary['wall_seconds']:.0f}s; "
          f"max_score {fmt(summary['max_score'])}, final_score {fmt(summary['final_score'])}, "
          f"eval_score {fmt(summary.get('eval_score'))}"
          + (f"; {summary['error']}" if summary.get("error") else ""))
    print(f"results: {out}")


def cmd_eval(args: argparse.Namespace) -> int:
    from lpdm.evaluation import Evaluator, VideoError
    from lpdm.runs import load_agent

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    agent = load_agent(Path(args.dir))
    video_dir = str(Path(args.dir) / "videos") if args.video else None
    try:
        evaluator = Evaluator(agent.config, video_dir=video_dir)
        try:
            returns = evaluator.run(agent.algo.act, [agent.normalization], args.episodes,
                                    [args.seed])[0]
        finally:
            evaluator.close()
    except VideoError as error:
        if video_dir and Path(video_dir).is_dir() and not any(Path(video_dir).iterdir()):
            Path(video_dir).rmdir()
        raise RunError(str(error)) from None
    finally:
        agent.close()
    c = agent.config
    print(f"{c.env} {c.algo} {c.learner} seed {c.seed}, checkpoint at step {agent.global_step}: "
          f"return {returns.mean():.2f} ± {returns.std():.2f} over {returns.size} episodes "
          f"(min {returns.min():.2f}, max {returns.max():.2f})")
    if video_dir:
        print(f"videos: {video_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpdm", description="Backpropagation-free RL with Local Pairwise Distance Matching")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one agent into a run directory")
    train.add_argument("--out", help="run directory (default: runs/ENV__ALGO__LEARNER__sSEED); "
                       "with a list of seeds, the population's directory, one run per seed in "
                       "OUT/sSEED (default: runs/ENV__ALGO__LEARNER)")
    train.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR, or "
                       "every unfinished member of the population in DIR")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_arguments(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a run's last checkpoint with the deterministic policy")
    evaluate.add_argument("dir", help="run directory")
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes (default: 10)")
    evaluate.add_argument("--seed", type=int, default=12345,
                          help="seed of the evaluation episodes (default: 12345)")
    evaluate.add_argument("--video", action="store_true",
                          help="record the episodes as MP4 into DIR/videos")
    evaluate.set_defaults(handler=cmd_eval)

    from lpdm.bench_command import add_bench_parser
    from lpdm.report.claims_command import add_claims_command, add_headline_command
    from lpdm.report.command import add_report_command
    from lpdm.report.leaderboard_command import add_leaderboard_command
    from lpdm.sweeps.command import add_sweep_command
    from lpdm.tuning.command import add_tune_command
    from lpdm.tuning.overview_command import add_tuned_command

    add_sweep_command(commands)
    add_tune_command(commands)
    add_tuned_command(commands)
    add_report_command(commands)
    add_claims_command(commands)
    add_headline_command(commands)
    add_leaderboard_command(commands)
    add_bench_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    interrupt_on_signals()
    try:
        parser = build_parser()  # reads the learner registry, plugins included
        args = parser.parse_args(argv)
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"lpdm: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lpdm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
