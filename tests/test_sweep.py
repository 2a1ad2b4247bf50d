"""``lpdm sweep``: the grid, resuming after a kill, isolation of failures, concurrency, Ray."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpdm.cli import build_parser, main
from lpdm.runs import RunDirectory, RunError
from lpdm.sweeps import scheduler
from lpdm.sweeps.cell import LOG_FILE, TRACEBACK_FILE
from lpdm.sweeps.command import spec_from_args
from lpdm.sweeps.grid import SWEEP_FILE, expand, record_spec

TESTS = Path(__file__).parent
# A tiny grid: 2 learners x 2 seeds of short CartPole runs, checkpointed often.
TINY = ["--env", "CartPole-v1", "--learner", "bp,lpdm", "--seeds", "2", "--total-steps", "3000",
        "--eval-every", "1000", "--eval-episodes", "2", "--checkpoint-every", "300"]


def spec(*argv):
    return spec_from_args(build_parser().parse_args(["sweep", "--out", "unused", *argv]))


def events(sweep_dir: Path) -> list[tuple[str, str]]:
    """(event, cell) of every line of the sweep log."""
    lines = (sweep_dir / LOG_FILE).read_text().splitlines()
    return [(line.split()[3], line.split()[4]) for line in lines]


def sweep_command(out: Path, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "lpdm.cli", "sweep", *TINY, "--workers", str(workers),
            "--no-progress", "--out", str(out)]


# --------------------------------------------------------------------------- the grid


def test_grid_covers_every_combination_with_readable_paths():
    cells = expand(spec("--env", "CartPole-v1,Pendulum-v1", "--learner", "bp,lpdm",
                        "--seeds", "2", "--lr", "0.001,0.003", "--hidden-sizes", "64,64/128"))
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    paths = {str(c.path) for c in cells}
    assert "CartPole-v1/reinforce/lpdm/lr=0.001,hidden-sizes=64-64/s1" in paths
    assert "Pendulum-v1/reinforce/bp/lr=0.003,hidden-sizes=128/s0" in paths
    cell = next(c for c in cells if str(c.path) == "Pendulum-v1/reinforce/bp/lr=0.003,"
                "hidden-sizes=128/s0")
    config = cell.config()
    assert (config.env, config.learner, config.seed) == ("Pendulum-v1", "bp", 0)
    assert config.algorithm.lr == 0.003 and config.network.hidden_sizes == (128,)


def test_values_keyed_by_algorithm():
    cells = expand(spec("--algo", "reinforce,ppo", "--learner", "bp",
                        "--total-steps", "reinforce=1000,ppo=2000,ppo=4000"))
    steps = {str(c.path): c.config().total_steps for c in cells}
    assert steps == {"CartPole-v1/reinforce/bp/s0": 1000,
                     "CartPole-v1/ppo/bp/total-steps=2000/s0": 2000,
                     "CartPole-v1/ppo/bp/total-steps=4000/s0": 4000}
    plain = expand(spec("--algo", "reinforce,ppo", "--total-steps", "500,ppo=900"))
    assert {c.algo: c.config().total_steps for c in plain} == {"reinforce": 500, "ppo": 900}


def test_a_boolean_flag_reads_as_lpdm_train_s_bare_or_negated_or_as_a_list():
    def huber(*argv):
        return [c.config().algorithm.huber for c in expand(spec("--algo", "dqn", *argv))]

    assert huber() == [False]
    assert huber("--huber") == huber("--huber", "true") == [True]
    assert huber("--no-huber") == [False]
    assert sorted(huber("--huber", "true,false")) == [False, True]


def test_suite_paper_is_every_environment_algorithm_and_learner():
    cells = expand(spec("--suite", "paper", "--seeds", "3"))
    assert len(cells) == 8 * 2 * 4 * 3
    assert len(expand(spec("--suite", "paper", "--algo", "ppo", "--learner", "bp"))) == 8


@pytest.mark.parametrize(("argv", "message"), [
    (["--learner", "bp,bp"], "--learner: bp is given twice"),
    (["--lr", "fast"], "--lr: cannot read 'fast'"),
    (["--total-steps", "sarsa=5"], "'sarsa' in 'sarsa=5' is not an algorithm"),
    (["--num-steps", "ppo=64"], "names an algorithm this sweep does not run"),
    (["--suite", "paper", "--env", "CartPole-v1,Walker2d-v4"],
     "--env: Walker2d-v4 not in --suite paper (CartPole-v1, "),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--seeds", "2", "--seed", "4"], "--seeds and --seed exclude each other"),
    (["--num-envs", "1,2"], "cell CartPole-v1/reinforce/lpdm/num-envs=2/s0: REINFORCE runs one"),
    (["--env", "NoSuchEnv-v9"], "unknown environment"),
    (["--address", "1.2.3.4:6379"], "--address needs --backend ray"),
    (["--workers", "0"], "--workers must be at least 1"),
])
def test_bad_grids_fail_with_one_line_before_anything_runs(tmp_path, capsys, argv, message):
    out = tmp_path / "sweep"
    rc = main(["sweep", "--out", str(out), "--total-steps", "100", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("lpdm: error:") and err.count("\n") == 1, err
    assert message in err
    assert not (out / SWEEP_FILE).exists()


def test_a_sweep_directory_holds_one_grid(tmp_path, capsys):
    record_spec(tmp_path, spec("--learner", "bp,lpdm", "--seeds", "3"), 6)
    record_spec(tmp_path, spec("--learner", "bp,lpdm", "--seeds", "3"), 6)  # same grid: fine
    with pytest.raises(RunError, match="seeds: 0,1,2 there, 0,1 now"):
        record_spec(tmp_path, spec("--learner", "bp,lpdm", "--seeds", "2"), 4)
    rc = main(["sweep", "--out", str(tmp_path), "--learner", "bp,lpdm", "--seeds", "3",
               "--lr", "0.01"])
    err = capsys.readouterr().err
    assert rc == 2 and "holds a different sweep (--lr: default there, 0.01 now)" in err


def test_missing_ray_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    rc = main(["sweep", "--out", str(tmp_path / "s"), "--backend", "ray"])
    assert rc == 2
    assert "--backend ray needs Ray: pip install 'lpdm[ray]'" in capsys.readouterr().err


def test_progress_into_a_log_file_is_a_status_line_every_few_minutes(capsys, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(scheduler.time, "monotonic", lambda: clock[0])
    display = scheduler._Display(total=8, finished=2, enabled=True, terminal=False)
    display.update(2.5, 2, 2, 0, 0)  # the first update is logged
    clock[0] += 10
    display.update(3.0, 3, 2, 0, 0)  # too soon: not logged
    display.line("finished CartPole-v1/reinforce/bp/s0: max_score 20.0")
    clock[0] += scheduler._Display.LOG_EVERY_SECONDS
    display.update(4.0, 4, 1, 1, 0)
    display.close()
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "[0:00:00] finished 2 · running 2 · failed 0 · 31% of 8 cells",
        "finished CartPole-v1/reinforce/bp/s0: max_score 20.0",
        "[0:05:10] finished 4 · running 1 · failed 1 · 50% of 8 cells"]
    assert "\r" not in out.err  # no bar redrawn into the log


# --------------------------------------------------------------------------- resuming


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _mid_run(out: Path) -> bool:
    """Some cell finished, and another is part-way, past a checkpoint."""
    summaries = [RunDirectory(p.parent).read_summary() for p in out.rglob("summary.json")]
    finished = sum(s.get("status") == "finished" for s in summaries)
    partway = sum(s.get("status") == "running" and 0 < s.get("steps", 0) < 3000
                  for s in summaries)
    return finished >= 1 and partway >= 1


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_a_background_sweep_stops_at_once_on_sigint_or_sigterm(tmp_path, stop):
    """Started the way ``nohup lpdm sweep ... &`` starts it (SIGINT ignored, inherited by
    the workers too), a sweep still stops within seconds, its runs marked interrupted."""
    out = tmp_path / "sweep"
    command = [*sweep_command(out), "--total-steps", "1000000", "--checkpoint-every", "100000"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    # both workers' cells under way (each has logged an episode), not one still starting
    _wait_for(lambda: len({p.parent.parent for p in out.rglob("metrics.csv")
                           if len(p.read_text().splitlines()) > 1}) >= 2,
              120, "a run under way in each worker")
    proc.send_signal(stop)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the sweep ran on after the signal") from None
    assert proc.returncode == 130, output
    assert "interrupted; rerun the same command to resume" in output
    statuses = {RunDirectory(p.parent).read_summary()["error"]
                for p in out.rglob("summary.json")}
    assert statuses and all(s.startswith("interrupted") for s in statuses), statuses


def test_kill_9_then_rerun_finishes_every_cell_exactly_once(tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert subprocess.run(sweep_command(reference), capture_output=True).returncode == 0

    proc = subprocess.Popen(sweep_command(out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for(lambda: _mid_run(out), 120, "a finished cell and a cell part-way")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    workers = {int(line.split()[2][4:]) for line in (out / LOG_FILE).read_text().splitlines()}

    def workers_gone() -> bool:
        alive = []
        for pid in workers:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        return not alive

    _wait_for(workers_gone, 10, "the orphaned workers to stop")
    interrupted = {str(p.parent.relative_to(out)) for p in out.rglob("summary.json")
                   if json.loads(p.read_text())["status"] == "running"}
    assert interrupted

    rerun = subprocess.run(sweep_command(out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "4 of 4 cells finished, 0 failed" in rerun.stdout
    log = events(out)
    cells = sorted(str(p.parent.relative_to(out)) for p in out.rglob("config.json"))
    assert len(cells) == 4
    for cell in cells:
        assert log.count(("start", cell)) == 1, cell
        assert log.count(("finished", cell)) == 1, cell
        assert log.count(("resume", cell)) == (1 if cell in interrupted else 0), cell
        summary = RunDirectory(out / cell).read_summary()
        assert summary["status"] == "finished" and summary["steps"] == 3000
        # resumed from its checkpoint, the run holds exactly the uninterrupted run's rows
        for name in ("metrics.csv", "evaluations.csv"):
            assert (out / cell / name).read_bytes() == (reference / cell / name).read_bytes()

    again = subprocess.run(sweep_command(out), capture_output=True, text=True)
    assert again.returncode == 0 and "(4 finished, 0 to resume" in again.stdout
    assert events(out) == log  # nothing ran


def test_two_sweeps_on_one_directory_never_run_a_cell_twice(tmp_path):
    out = tmp_path / "shared"
    command = sweep_command(out, workers=1)
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    outputs = [first.communicate()[0], second.communicate()[0]]
    assert first.returncode == 0 and second.returncode == 0
    for text in outputs:
        assert "4 of 4 cells finished, 0 failed" in text
    log = events(out)
    cells = sorted(str(p.parent.relative_to(out)) for p in out.rglob("config.json"))
    assert len(cells) == 4
    for cell in cells:
        assert log.count(("start", cell)) == 1 and log.count(("finished", cell)) == 1, cell
        assert ("resume", cell) not in log


# --------------------------------------------------------------------------- failures


def test_a_failing_cell_is_recorded_and_does_not_stop_the_others(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", "--env", "CartPole-v1,lpdm_test_envs:LpdmFailing-v0", "--learner", "bp",
            "--total-steps", "1500", "--eval-every", "1500", "--workers", "2", "--no-progress",
            "--out", str(out)]
    assert main(argv) == 1
    stdout = capsys.readouterr().out
    good = RunDirectory(out / "CartPole-v1/reinforce/bp/s0").read_summary()
    bad_dir = out / "lpdm_test_envs_LpdmFailing-v0/reinforce/bp/s0"
    bad = RunDirectory(bad_dir).read_summary()
    assert good["status"] == "finished" and good["steps"] == 1500
    assert bad["status"] == "failed"
    assert bad["error"] == "RuntimeError: this environment fails on purpose"
    assert "this environment fails on purpose" in (bad_dir / TRACEBACK_FILE).read_text()
    assert "1 of 2 cells finished, 1 failed" in stdout
    assert "failed lpdm_test_envs_LpdmFailing-v0/reinforce/bp/s0: RuntimeError" in stdout

    # a rerun retries the failed cell (it fails again) and leaves the finished one alone
    assert main(argv) == 1
    log = events(out)
    assert log.count(("start", "CartPole-v1/reinforce/bp/s0")) == 1
    assert log.count(("failed", "lpdm_test_envs_LpdmFailing-v0/reinforce/bp/s0")) == 2


def test_a_dying_worker_fails_its_cell_and_the_pool_recovers(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(["sweep", "--env", "lpdm_test_envs:LpdmCrashing-v0,CartPole-v1", "--learner",
               "bp", "--total-steps", "1000", "--eval-every", "1000", "--workers", "1",
               "--no-progress", "--out", str(out)])
    assert rc == 1
    crashed = RunDirectory(out / "lpdm_test_envs_LpdmCrashing-v0/reinforce/bp/s0").read_summary()
    assert crashed["status"] == "failed"
    assert "a worker process died while this cell ran" in crashed["error"]
    survivor = RunDirectory(out / "CartPole-v1/reinforce/bp/s0").read_summary()
    assert survivor["status"] == "finished"
    assert "1 of 2 cells finished, 1 failed" in capsys.readouterr().out


# --------------------------------------------------------------------------- ray


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="Ray is not installed (pip install 'lpdm[ray]')")
def test_ray_backend_runs_cells_on_a_local_instance(tmp_path):
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "lpdm.cli", "sweep", "--env", "CartPole-v1", "--learner",
               "bp,lpdm", "--total-steps", "1000", "--eval-every", "1000", "--backend", "ray",
               "--workers", "2", "--no-progress", "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "on 2 Ray (local instance) workers" in proc.stdout
    for learner in ("bp", "lpdm"):
        summary = RunDirectory(out / "CartPole-v1/reinforce" / learner / "s0").read_summary()
        assert summary["status"] == "finished" and summary["steps"] == 1000


def test_the_paper_suite_has_per_environment_budgets_unless_total_steps_is_given():
    cells = expand(spec("--suite", "paper", "--seeds", "1"))
    budgets = {c.env: c.config().total_steps for c in cells}
    assert budgets["CartPole-v1"] == 150_000 and budgets["Hopper-v4"] == 300_000
    assert len(set(budgets.values())) > 1
    assert {c.algo for c in cells} == {"reinforce", "ppo"}  # the paper's algorithms
    assert {c.learner for c in cells} == {"bp", "lpdm", "lpdm-guided", "frozen"}
    fixed = expand(spec("--suite", "paper", "--seeds", "1", "--total-steps", "5000"))
    assert {c.config().total_steps for c in fixed} == {5000}
    # a part of the suite (an ablation on some of its environments) at the suite's budgets
    part = expand(spec("--suite", "paper", "--env", "Hopper-v4,CartPole-v1", "--seeds", "1",
                       "--learner", "lpdm", "--sparse", "true"))
    assert {(c.env, c.config().total_steps) for c in part} == \
        {("Hopper-v4", 300_000), ("CartPole-v1", 150_000)}


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys, monkeypatch):
    from lpdm.sweeps import estimate

    monkeypatch.setattr(estimate, "MEASURE_SECONDS", 0.2)
    out = tmp_path / "planned"
    assert main(["sweep", "--env", "CartPole-v1", "--learner", "bp,lpdm", "--seeds", "3",
                 "--total-steps", "36000", "--workers", "2", "--dry-run", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "6 runs, in 2 populations of up to 3 seeds on 2 worker(s)" in text
    assert "CartPole-v1" in text and "lpdm" in text and "core-hours" in text
    line = next(x for x in text.splitlines() if x.startswith("CartPole-v1"))
    assert "216,000" in line  # 6 runs x 36k steps
    assert not out.exists()


def test_dry_run_measures_each_swept_network(tmp_path, capsys, monkeypatch):
    """A depth sweep's deep networks cost more than its shallow ones: each is measured."""
    from lpdm.sweeps import estimate

    measured = []
    monkeypatch.setattr(estimate, "measure_rate",
                        lambda config, members: measured.append(config.network.hidden_sizes)
                        or 1000.0)
    assert main(["sweep", "--env", "CartPole-v1", "--learner", "bp,lpdm", "--seeds", "2",
                 "--hidden-sizes", "16,16/16,16,16,16", "--total-steps", "3600",
                 "--dry-run", "--out", str(tmp_path / "planned")]) == 0
    assert measured == [(16, 16), (16, 16, 16, 16)]
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("CartPole-v1")]
    assert len(lines) == 2
    assert "hidden-sizes=16×2 " in lines[0] and "hidden-sizes=16×4 " in lines[1]
    assert all("lpdm" in line and "14,400" in line for line in lines)  # 2 learners x 2 seeds
