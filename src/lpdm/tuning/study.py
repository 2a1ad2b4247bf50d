"""A tuning study: trials of one environment × algorithm × learner in an Optuna database.

Each trial draws the options of its search space (TPE), trains them as one population of
held-out seeds for the study's steps (run directories ``OUT/trials/NNNN/sSEED``), and is
scored by the mean over its seeds of the report's final score (the mean training return
of the episodes that end in the last 10% of steps). A trial reports the mean 10-episode
return of its members every tenth of its budget, and the pruner may stop it there.

The database (``OUT/study.db``, SQLite, or a server given by ``--storage``) makes a study
resumable and shareable: several ``lpdm tune`` processes on one database share its
trials, and a process killed however it dies leaves its trial running until the heartbeat
has been silent for ``GRACE_SECONDS``; that trial is then retried with the same options,
resuming its runs from their checkpoints. Finished trials are never repeated. A worker
that was only suspended (its trial retried elsewhere meanwhile) leaves the trial to the
retry when it wakes, and goes on with the study.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpdm.config import Config, ConfigError, with_values
from lpdm.envs import derive_seed
from lpdm.errors import RunError
from lpdm.rundir import RunDirectory, write_json_atomic
from lpdm.runs import Progress, train_population
from lpdm.scores import MOVING_AVERAGE_WINDOW
from lpdm.sweeps.locks import exclusive
from lpdm.tuning.figures import draw_figures
from lpdm.tuning.report import write_report
from lpdm.tuning.space import suggest

STUDY_FILE = "study.db"
DEFINITION_FILE = "tune.json"
BEST_FILE = "best.json"
TRIALS_FILE = "trials.csv"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30
REPORTS_PER_TRIAL = 10  # intermediate values a trial gives the pruner
OWNERSHIP_CHECK_SECONDS = 5  # how often a trial asks the database whether it is still its own
PRUNERS = ("median", "halving", "none")


class TrialFailed(RuntimeError):
    """A trial that could not be scored (bad options, a member that failed); one line."""


class TrialSurplus(RuntimeError):
    """A trial begun when the study's budget was already taken by trials under way."""


class TrialTakenOver(RuntimeError):
    """This worker's trial, failed as stale by another worker (this one was silent for
    longer than ``GRACE_SECONDS``: stopped, or suspended) and retried there."""


@dataclass(frozen=True)
class TuneSpec:
    """What a study searches: every worker on one database must agree on it."""

    env: str
    algo: str
    learner: str
    seeds: tuple[int, ...]
    total_steps: int
    trials: int
    space: dict[str, dict[str, Any]]
    fixed: dict[str, Any] = field(default_factory=dict)  # other options, as given
    pruner: str = "median"
    sampler_seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.env}__{self.algo}__{self.learner}"

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def config(self, values: dict[str, Any], seed: int) -> Config:
        """The configuration of one member of a trial with ``values``."""
        return with_values(Config(), {**self.fixed, "env": self.env, "algo": self.algo,
                                      "learner": self.learner, "total_steps": self.total_steps,
                                      **values, "seed": seed})


def record_definition(out: Path, spec: TuneSpec) -> None:
    """Write ``tune.json``, or refuse if the folder holds another study."""
    path = out / DEFINITION_FILE
    if path.exists():
        existing = json.loads(path.read_text())
        if existing != spec.to_json():
            changed = sorted(k for k in existing if existing.get(k) != spec.to_json().get(k))
            raise RunError(f"{out} holds another study (differs in {', '.join(changed)}); "
                           "rerun its own command to resume it, or choose another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, spec.to_json())


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("lpdm tune needs Optuna: pip install 'lpdm[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # lpdm says what failed, in one line
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_study(spec: TuneSpec, out: Path, storage: str | None = None) -> Any:
    """The study in ``storage`` (default ``OUT/study.db``), created on first use."""
    optuna = _optuna()
    url = storage or f"sqlite:///{(out / STUDY_FILE).absolute()}"
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    pruner = {"median": lambda: optuna.pruners.MedianPruner(
                  n_startup_trials=4, n_warmup_steps=spec.total_steps // 4),
              "halving": optuna.pruners.SuccessiveHalvingPruner,
              "none": optuna.pruners.NopPruner}[spec.pruner]()
    # workers started together would race to create the database's tables: one at a time
    with exclusive(out / ".study.lock"):
        rdb = optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=3))
        study = optuna.create_study(study_name=spec.name, storage=rdb, direction="maximize",
                                    load_if_exists=True, pruner=pruner)
    # workers sharing a study draw different random starting points
    seed = derive_seed(spec.sampler_seed, len(study.trials), os.getpid())
    study.sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=max(1, min(10, spec.trials // 2)))
    return study


def _surplus(trial: Any, trials: int) -> bool:
    """Whether the budget is taken without ``trial``: trials counted, and trials under way
    that began before it (workers asking together for the last trial both get one; the
    one asked first runs it)."""
    running = _optuna().trial.TrialState.RUNNING
    ahead = [t for t in trial.study.get_trials(deepcopy=False, states=(running,))
             if t.number < trial.number]
    return len(counted(trial.study)) + len(ahead) >= trials


def counted(study: Any) -> list[Any]:
    """The trials that spent the study's budget: complete, pruned, or failed by lpdm (a
    trial failed because its process died is retried instead, and not counted)."""
    states = _optuna().trial.TrialState
    return [t for t in study.trials if t.state in (states.COMPLETE, states.PRUNED)
            or (t.state == states.FAIL and "error" in t.user_attrs)]


class _Pruning:
    """``should_stop`` of a trial's population: reports the members' mean recent return to
    Optuna every tenth of the budget and stops them if the pruner says so, or at once if
    another worker has taken the trial over."""

    def __init__(self, trial: Any, total_steps: int) -> None:
        self.trial = trial
        self.every = max(total_steps // REPORTS_PER_TRIAL, 1)
        self.next = self.every
        self.pruned: str | None = None
        self.taken_over = False
        self.checked = -math.inf

    def _still_running(self) -> bool:
        if time.monotonic() - self.checked < OWNERSHIP_CHECK_SECONDS:
            return True
        self.checked = time.monotonic()
        running = _optuna().trial.TrialState.RUNNING
        return any(t.number == self.trial.number for t in
                   self.trial.study.get_trials(deepcopy=False, states=(running,)))

    def __call__(self, members: list[Progress]) -> str | None:
        if not self.taken_over and not self._still_running():
            self.taken_over = True
            return "taken over by another lpdm tune worker"
        step = min(m.global_step for m in members)
        if step < self.next:
            return None
        self.next = (step // self.every + 1) * self.every
        recent = [np.mean(m.returns[-MOVING_AVERAGE_WINDOW:]) for m in members if m.returns]
        if not recent:
            return None
        self.trial.report(float(np.mean(recent)), step)
        if self.trial.should_prune():
            self.pruned = f"pruned by lpdm tune at step {step}"
        return self.pruned


def objective(spec: TuneSpec, out: Path, trial: Any) -> float:
    """Train one trial (or resume it, when it is a retry of a trial whose process died)."""
    optuna = _optuna()
    frozen = trial.study.get_trials(deepcopy=False)[trial.number]
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    number = trial.number if retried is None else retried
    if _surplus(trial, spec.trials):
        trial.set_user_attr("surplus", True)
        trial.study.stop()
        raise TrialSurplus("the study's trials were all taken by other workers")
    values = suggest(trial, spec.space)
    trial.set_user_attr("worker", _worker())
    folder = out / "trials" / f"{number:04d}"
    outs = [folder / f"s{seed}" for seed in spec.seeds]
    try:
        resume = all(RunDirectory(o).config.exists() for o in outs)
        configs = ([RunDirectory(o).read_config() for o in outs] if resume else
                   [spec.config(values, seed) for seed in spec.seeds])
        pruning = _Pruning(trial, spec.total_steps)
        summaries = train_population(configs, outs, resume=resume, progress_bar=False,
                                     should_stop=pruning)
    except (ConfigError, RunError) as error:
        return _failed(trial, str(error))
    if pruning.taken_over:
        raise TrialTakenOver(f"trial {trial.number}")
    if pruning.pruned:
        raise optuna.TrialPruned(pruning.pruned)
    broken = [s for s in summaries if s["status"] != "finished"]
    if broken:
        return _failed(trial, f"seed {broken[0]['seed']}: {broken[0].get('error', 'failed')}")
    scores = [s["final_score"] for s in summaries]
    if any(score is None for score in scores):
        return _failed(trial, "no episode ended in the last 10% of steps")
    trial.set_user_attr("final_scores", scores)
    return float(np.mean(scores))


def _failed(trial: Any, error: str) -> float:
    trial.set_user_attr("error", error)
    raise TrialFailed(error)


def run_study(spec: TuneSpec, out: Path, storage: str | None = None,
              progress: bool = True) -> Any:
    """Run trials until the study has ``spec.trials`` (with any other workers), writing the
    trials table and the best configuration after each; returns the study."""
    record_definition(out, spec)
    study = open_study(spec, out, storage)

    def enough(study: Any, trial: Any) -> None:
        if "error" in trial.user_attrs:
            print(f"trial {trial.number} failed: {trial.user_attrs['error']}", flush=True)
        write_results(study, spec, out)
        if len(counted(study)) >= spec.trials:
            study.stop()

    while len(counted(study)) < spec.trials:
        try:
            study.optimize(lambda trial: objective(spec, out, trial),
                           n_trials=spec.trials - len(counted(study)), callbacks=[enough],
                           catch=(TrialFailed, TrialSurplus), show_progress_bar=progress)
            break
        except ValueError:
            # Optuna cannot record the end of a trial that another worker has failed as
            # stale; that worker retries it, and this one goes on with the study
            lost = _lost_trial(study)
            if lost is None:
                raise
            print(f"trial {lost}: this worker was silent for more than {GRACE_SECONDS} s "
                  "and another worker took the trial over; going on", flush=True)
    write_results(study, spec, out)
    return study


# --------------------------------------------------------------------------- results


def _worker() -> str:
    """This process, as a trial's ``worker`` attribute names it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _lost_trial(study: Any) -> int | None:
    """The number of this process's latest trial, if another worker failed it as stale."""
    states = _optuna().trial.TrialState
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == _worker()]
    if mine and mine[-1].state == states.FAIL and "error" not in mine[-1].user_attrs:
        return mine[-1].number
    return None


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, score, its options, seconds, error."""
    rows = []
    for t in study.trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else math.nan
        state = "surplus" if t.user_attrs.get("surplus") else t.state.name.lower()
        rows.append({"trial": t.number, "state": state,
                     "score": t.value if t.value is not None else math.nan,
                     **{f"param_{k}": v for k, v in t.params.items()},
                     "seconds": round(seconds, 1),
                     "retry_of": t.system_attrs.get("failed_trial", ""),
                     "worker": t.user_attrs.get("worker", ""),
                     "error": t.user_attrs.get("error", "")})
    return rows


def best_trial(study: Any) -> Any | None:
    states = _optuna().trial.TrialState
    done = [t for t in study.trials if t.state == states.COMPLETE and t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def best_values(spec: TuneSpec, trial: Any) -> dict[str, Any]:
    """The options a confirmation run takes: the study's fixed options and the best
    trial's, with its environment, algorithm and learner (not its seeds or budget)."""
    return {"env": spec.env, "algo": spec.algo, "learner": spec.learner, **spec.fixed,
            **trial.params}


def write_results(study: Any, spec: TuneSpec, out: Path) -> None:
    """``trials.csv``, ``best.json`` (once a trial completed), the study's figures and its
    page, ``report.md``."""
    rows = trial_rows(study)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = out / f"{TRIALS_FILE}.{os.getpid()}.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / TRIALS_FILE)
    best, spent = best_trial(study), len(counted(study))
    if best is not None:
        write_json_atomic(out / BEST_FILE, {
            "format": 1, "study": spec.name, "trial": best.number, "score": best.value,
            "seeds": list(spec.seeds), "total_steps": spec.total_steps,
            "trials": spent, "values": best_values(spec, best)})
    importances = draw_figures(study, out, best)
    write_report(out, spec, rows, spent, best, importances)
