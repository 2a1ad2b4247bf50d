"""``lpdm train``: the run-directory contract, determinism, status, and clean errors."""

import csv
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from lpdm.cli import main
from lpdm.runs import RunDirectory


def train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    rc = main(["train", "--env", "CartPole-v1", "--total-steps", "2000", "--out", str(out),
               "--no-progress", *extra])
    return rc, out


def test_train_writes_the_contract_files(tmp_path):
    rc, out = train(tmp_path, "--learner", "lpdm-guided", "--seed", "3")
    assert rc == 0
    for name in ("config.json", "metrics.csv", "evaluations.csv", "summary.json", "checkpoint.pt"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["learner"] == "lpdm-guided" and config["seed"] == 3
    assert config["network"]["hidden_sizes"] == [128, 256]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["steps"] == 2000
    for key in ("final_score", "max_score", "eval_score", "wall_seconds"):
        assert isinstance(summary[key], float)
    rows = RunDirectory(out).read_metrics()
    # final_score: the training returns of the episodes ending in the last 10% of steps
    late = [float(r["episodic_return"]) for r in rows if int(r["global_step"]) >= 1800]
    assert summary["final_score"] == pytest.approx(sum(late) / len(late))
    evaluations = RunDirectory(out).read_evaluations()
    late_evals = [float(e["mean_return"]) for e in evaluations if int(e["global_step"]) >= 1800]
    assert summary["eval_score"] == pytest.approx(sum(late_evals) / len(late_evals), rel=1e-5)
    assert rows, "at least one finished episode"
    assert {"global_step", "episodic_return", "policy_l1_local_loss",
            "policy_l2_distance_corr", "policy_l2_saturation"} <= set(rows[0])
    steps = [int(r["global_step"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] <= 2000
    evaluations = RunDirectory(out).read_evaluations()
    assert int(evaluations[-1]["global_step"]) == 2000


def test_same_seed_same_metrics(tmp_path):
    _, a = train(tmp_path, "--seed", "5", name="a")
    _, b = train(tmp_path, "--seed", "5", name="b")
    _, c = train(tmp_path, "--seed", "6", name="c")
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    assert (a / "evaluations.csv").read_bytes() == (b / "evaluations.csv").read_bytes()
    assert (a / "metrics.csv").read_bytes() != (c / "metrics.csv").read_bytes()


def test_box_actions_train(tmp_path):
    out = tmp_path / "pendulum"
    rc = main(["train", "--env", "Pendulum-v1", "--learner", "lpdm", "--total-steps", "600",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    train(tmp_path)
    rc, _ = train(tmp_path)
    assert rc == 2
    assert "--resume" in capsys.readouterr().err


def test_a_failing_run_says_so(tmp_path, monkeypatch):
    from lpdm.algorithms.reinforce import Reinforce

    calls = {"n": 0}
    original = Reinforce.iterate

    def failing(self, global_step, budget):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")
        return original(self, global_step, budget)

    monkeypatch.setattr(Reinforce, "iterate", failing)
    with pytest.raises(RuntimeError):
        train(tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "boom" in summary["error"]


class DictObservationEnv(gym.Env):
    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Discrete(2)


class MultiDiscreteActionEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (3,))
    action_space = gym.spaces.MultiDiscrete([2, 2])


gym.register("LpdmTestDictObs-v0", entry_point=DictObservationEnv)
gym.register("LpdmTestMultiDiscrete-v0", entry_point=MultiDiscreteActionEnv)


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "NoSuchEnv-v9"], "unknown environment"),
    (["--env", "LpdmTestDictObs-v0"], "observation space"),
    (["--env", "FrozenLake-v1"], "observation space Discrete"),
    (["--env", "LpdmTestMultiDiscrete-v0"], "action space MultiDiscrete"),
    (["--quantile-low", "0.9", "--quantile-high", "0.1"], "--quantile-low"),
    (["--total-steps", "-5"], "--total-steps"),
    (["--hidden-sizes", "64,0"], "--hidden-sizes"),
    (["--metric", "l7"], "--metric"),
    (["--lr", "fast"], "--lr"),
    (["--learner", "lpdm-guided", "--guidance-signal", "advantages"], "needs --algo ppo"),
    (["--guidance-strength", "0.1"], "does not act on --algo reinforce with --learner lpdm "
                                     "(it acts with --learner lpdm-guided)"),
    (["--buffer-size", "10", "--algo", "ppo"], "it acts with --algo dqn"),
    (["--seed", "-1"], "--seed must not be negative, got -1"),
    (["--seed", "0,-2"], "--seed must not be negative, got -2"),
    (["--gamma", "nan"], "--gamma must be a finite number"),
    (["--target-mean", "0.3", "--scale", "max"], "--target-mean needs --scale dim"),
])
def test_bad_input_fails_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    rc = main(["train", "--out", str(out), "--no-progress", "--total-steps", "100", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("lpdm: error:") and err.count("\n") == 1, err
    assert message in err
    assert not (out / "summary.json").exists()


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lpdm.cli", "train", "--env", "NoSuchEnv-v9", "--out",
         str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("lpdm: error: unknown environment")


def test_metrics_columns_are_numeric(tmp_path):
    _, out = train(tmp_path)
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    returns = np.array([float(r["episodic_return"]) for r in rows])
    assert np.all(returns > 0)


def test_mujoco_leaves_no_log_file_behind(tmp_path, monkeypatch, capfd):
    """HalfCheetah-v4's model triggers a MuJoCo deprecation warning at every make; MuJoCo
    would print it and append it to MUJOCO_LOG.TXT in the user's working directory. Other
    MuJoCo warnings still reach stderr."""
    import mujoco

    from lpdm.envs import make_env

    monkeypatch.chdir(tmp_path)
    make_env("HalfCheetah-v4").close()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert "settotalmass" not in "".join(capfd.readouterr())
    mujoco.get_mju_user_warning()("Nan, Inf or huge value in QACC")
    assert "MuJoCo warning: Nan, Inf or huge value in QACC" in capfd.readouterr().err


def test_reinforce_updates_on_several_episodes(tmp_path):
    """--episodes-per-update 3: every REINFORCE update (iteration) holds three whole
    episodes, but the last, which the budget may cut."""
    rc, out = train(tmp_path, "--algo", "reinforce", "--episodes-per-update", "3")
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] >= 3 * (summary["iterations"] - 1)
    assert summary["episodes"] <= 3 * summary["iterations"]
