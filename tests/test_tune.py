"""``lpdm tune``: a tiny study, its resumption after kill -9, two workers on one database,
``--config best.json``, and bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lpdm.cli import main
from lpdm.tuning import study as tuning

pytest.importorskip("optuna")

TINY = ["--env", "CartPole-v1", "--algo", "reinforce", "--learner", "lpdm", "--hidden-sizes",
        "8", "--total-steps", "600", "--tune-seeds", "10,11", "--no-progress"]
# a space whose trials all score: the default one may draw 8 episodes per update, and a
# high learning rate may lengthen the episodes, either of which can leave a 600-step
# budget with no episode ending in its last 10% (the trial then fails, as it should)
SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
         "scale": {"type": "categorical", "choices": ["dim", "none", "max", "mean"]},
         "distance_batch": {"type": "categorical", "choices": [32, 64, 128]}}


@pytest.fixture
def tiny(tmp_path):
    """TINY with SPACE."""
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE))
    return [*TINY, "--space", str(path)]


def trials(out):
    with (out / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def tune_process(args, out, trials_wanted):
    return subprocess.Popen([sys.executable, "-m", "lpdm.cli", "tune", *args, "--trials",
                             str(trials_wanted), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_tiny_study_and_its_best_configuration(tmp_path, tiny, capsys):
    out = tmp_path / "study"
    assert main(["tune", *tiny, "--trials", "2", "--out", str(out)]) == 0
    rows = trials(out)
    assert [r["state"] for r in rows] == ["complete", "complete"]
    assert set(rows[0]) >= {"param_lr", "param_scale", "param_distance_batch"}
    best = json.loads((out / "best.json").read_text())
    assert best["score"] == max(float(r["score"]) for r in rows) and best["trials"] == 2
    assert (out / "history.png").exists()
    report = (out / "report.md").read_text()
    assert f"**Best:** trial {best['trial']}, score {best['score']:.1f}" in report
    assert "**Budget:** 2 of 2 trials spent: 2 complete" in report
    # the best configuration, trained on a trial's seed and budget, is that trial's run
    # (as the same population: a solo run differs from a member by float rounding)
    run = tmp_path / "confirm" / "s10"
    assert main(["train", "--config", str(out / "best.json"), "--seed", "10,11",
                 "--total-steps", "600", "--no-progress", "--out", str(run.parent)]) == 0
    trial_run = out / "trials" / f"{best['trial']:04d}" / "s10"
    assert json.loads((run / "config.json").read_text()) == \
        json.loads((trial_run / "config.json").read_text())
    assert (run / "metrics.csv").read_bytes() == (trial_run / "metrics.csv").read_bytes()
    # a finished study is not run again
    assert main(["tune", *tiny, "--trials", "2", "--out", str(out)]) == 0
    assert len(trials(out)) == 2


def test_killed_study_resumes_without_repeating_a_finished_trial(tmp_path, tiny, monkeypatch):
    out = tmp_path / "study"
    process = tune_process(tiny, out, 3)
    deadline = time.monotonic() + 300
    while not (out / "trials/0001/s10/checkpoint.pt").exists():  # trial 1 under way
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    first = (out / "trials/0000/s10/metrics.csv").read_bytes()
    # its heartbeat stopped: a worker with a short grace period retries the killed trial
    monkeypatch.setattr(tuning, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(tuning, "GRACE_SECONDS", 1)
    time.sleep(2)
    assert main(["tune", *tiny, "--trials", "3", "--out", str(out)]) == 0
    rows = trials(out)
    states = {r["trial"]: r["state"] for r in rows}
    # trial 0 finished before the kill (completed, or failed by lpdm: a 600-step budget can
    # leave a good policy without an episode ending in its last 10%); trial 1 was killed
    assert states["0"] == "complete" or rows[0]["error"]
    assert states["1"] == "fail" and not rows[1]["error"]  # stale, then retried
    retry = next(r for r in rows if r["retry_of"] == "1")
    assert retry["state"] in ("complete", "pruned") or retry["error"]
    # the budget: complete, pruned, or failed by lpdm (the killed trial 1 is not counted)
    assert sum(r["state"] in ("complete", "pruned") or bool(r["error"]) for r in rows) == 3
    assert (out / "trials/0000/s10/metrics.csv").read_bytes() == first  # not run again
    assert not (out / f"trials/{int(retry['trial']):04d}").exists()  # resumed in trial 1's


def test_two_workers_share_one_study(tmp_path, tiny):
    out = tmp_path / "study"
    workers = [tune_process(tiny, out, 4) for _ in range(2)]
    assert [w.wait(timeout=600) for w in workers] == [0, 0]
    rows = [r for r in trials(out) if r["state"] == "complete"]
    # one study of 4 trials, not two of 4, nor 5 when both workers start the last one
    assert len(rows) == 4
    assert len({r["trial"] for r in rows}) == len(rows)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks by hand
def test_a_trial_begun_when_the_budget_is_taken_is_not_run(tmp_path):
    """Two workers asking for a study's last trial together: the later one does not run."""
    out = tmp_path / "study"
    spec = tuning.TuneSpec("CartPole-v1", "reinforce", "lpdm", (10, 11), 600, 2, SPACE)
    study = tuning.open_study(spec, out)
    study.tell(study.ask(), 100.0)  # one trial done
    under_way = study.ask()  # another worker's last trial, begun first
    assert tuning.run_study(spec, out, progress=False) is not None
    rows = trials(out)
    assert [r["state"] for r in rows] == ["complete", "running", "surplus"]
    assert under_way.number == 1 and not (out / "trials").exists()


def test_bad_input_and_failing_trials(tmp_path, capsys):
    def tune(*extra, out="bad"):
        code = main(["tune", *TINY, "--trials", "2", "--out", str(tmp_path / out), *extra])
        return code, capsys.readouterr()

    space = tmp_path / "space.json"
    space.write_text(json.dumps({"no_such_option": {"type": "float", "low": 0, "high": 1}}))
    code, output = tune("--space", str(space))
    assert code == 2 and "unknown option 'no_such_option'" in output.err
    space.write_text("{}")
    code, output = tune("--space", str(space))
    assert code == 2 and "search space of lpdm under reinforce is empty" in output.err
    space.write_text(json.dumps({"clip_coef": {"type": "float", "low": 0.1, "high": 0.3}}))
    code, output = tune("--space", str(space))
    assert code == 2 and "--clip-coef does not act on --algo reinforce" in output.err
    # every trial fails (REINFORCE runs one environment): recorded, and the study goes on
    space.write_text(json.dumps({"num_envs": {"type": "categorical", "choices": [2]}}))
    code, output = tune("--space", str(space), out="failing")
    assert code == 1 and "no trial completed" in output.out
    rows = trials(tmp_path / "failing")
    assert [r["state"] for r in rows] == ["fail", "fail"]
    assert "REINFORCE runs one environment" in rows[0]["error"]


def test_dry_run_prints_the_space_and_the_cost(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["tune", *TINY, "--trials", "4", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 trials x 2 seeds (10, 11) x 600 steps" in text and "--scale: categorical" in text
    assert "core-hours for 4,800 steps" in text and not out.exists()


def test_a_worker_whose_trial_was_taken_over_goes_on(tmp_path, monkeypatch, capsys):
    """A worker suspended past the grace period finds its trial failed as stale by another
    worker (who retries it): it stops training it, says so, and goes on with the study."""
    out = tmp_path / "study"
    spec = tuning.TuneSpec("CartPole-v1", "reinforce", "lpdm", (10, 11), 600, 2, SPACE,
                           fixed={"hidden_sizes": [8]})
    real = tuning.train_population
    trained = []

    def another_worker_fails_trial_0_as_stale(configs, outs, **kwargs):
        trial = kwargs["should_stop"].trial
        if trial.number == 0:
            from optuna.trial import TrialState
            trial.study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        summaries = real(configs, outs, **kwargs)
        trained.append((trial.number, [s["status"] for s in summaries]))
        return summaries

    monkeypatch.setattr(tuning, "train_population", another_worker_fails_trial_0_as_stale)
    assert tuning.run_study(spec, out, progress=False) is not None
    assert "trial 0: this worker was silent" in capsys.readouterr().out
    rows = trials(out)
    assert rows[0]["state"] == "fail" and not rows[0]["error"]  # not counted: retried
    assert trained[0] == (0, ["failed", "failed"])  # stopped at its first iteration
    assert [r["state"] for r in rows[1:]] == ["complete", "complete"]
