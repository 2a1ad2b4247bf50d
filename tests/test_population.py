"""Populations: members trained together stay independent, fail alone, resume exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from lpdm_test_envs import NaNAfter

from lpdm import runs
from lpdm.cli import main
from lpdm.config import Config
from lpdm.runs import RunDirectory, read_checkpoint, train_population

ARGS = ["--env", "CartPole-v1", "--total-steps", "3000", "--checkpoint-every", "500",
        "--eval-every", "1000", "--eval-episodes", "2", "--no-progress"]


def population(tmp_path, name, seeds=(0, 1, 2), algo="reinforce", learner="lpdm"):
    configs = [Config(env="CartPole-v1", algo=algo, learner=learner, seed=s, total_steps=3000)
               for s in seeds]
    outs = [tmp_path / name / f"s{s}" for s in seeds]
    return train_population(configs, outs, progress_bar=False), outs


def test_a_member_whose_environment_fails_stops_alone(tmp_path, monkeypatch):
    _, reference_dirs = population(tmp_path, "reference")
    original = runs.make_population

    def sabotaged(configs, device_envs=None):
        algo, generators = original(configs, device_envs)
        if len(configs) == 3:
            envs = algo.runner.env_grid[1]
            envs[0] = NaNAfter(envs[0], 300)
        return algo, generators

    monkeypatch.setattr(runs, "make_population", sabotaged)
    summaries, dirs = population(tmp_path, "sabotaged")
    assert [s["status"] for s in summaries] == ["finished", "failed", "finished"]
    assert summaries[1]["error"].startswith("environment returned NaN in observation 3 at step")
    assert "\n" not in summaries[1]["error"]
    assert json.loads((dirs[1] / "summary.json").read_text())["status"] == "failed"
    for k in (0, 2):  # the others never noticed: byte for byte the unsabotaged members
        for name in ("metrics.csv", "evaluations.csv"):
            assert (dirs[k] / name).read_bytes() == (reference_dirs[k] / name).read_bytes()


def test_a_member_whose_local_loss_diverges_stops_alone(tmp_path, monkeypatch):
    original = runs.make_population

    def poisoned(configs, device_envs=None):
        algo, generators = original(configs, device_envs)
        with torch.no_grad():
            algo.policy.trunk.layers[1].weight[0, 0, 0] = float("nan")
        return algo, generators

    monkeypatch.setattr(runs, "make_population", poisoned)
    summaries, _ = population(tmp_path, "poisoned", seeds=(0, 1))
    assert summaries[0]["status"] == "failed"
    assert summaries[0]["error"] == "local loss of policy layer 2 diverged"
    assert summaries[1]["status"] == "finished" and summaries[1]["steps"] == 3000


def test_a_failing_solo_run_says_why_in_one_line(tmp_path, monkeypatch, capsys):
    original = runs.make_population

    def sabotaged(configs, device_envs=None):
        algo, generators = original(configs, device_envs)
        envs = algo.runner.env_grid[0]
        envs[0] = NaNAfter(envs[0], 48)
        return algo, generators

    monkeypatch.setattr(runs, "make_population", sabotaged)
    assert main(["train", *ARGS, "--out", str(tmp_path / "solo")]) == 1
    summary = RunDirectory(tmp_path / "solo").read_summary()
    assert summary["status"] == "failed"
    # the 48th transition: two autoreset steps came between
    assert summary["error"] == "environment returned NaN in observation 3 at step 48"
    assert "environment returned NaN" in capsys.readouterr().out


def test_seed_list_trains_a_population_into_member_directories(tmp_path):
    out = tmp_path / "pop"
    assert main(["train", *ARGS, "--seed", "3,5", "--out", str(out)]) == 0
    for seed in (3, 5):
        member = RunDirectory(out / f"s{seed}")
        assert member.read_config().seed == seed
        assert member.read_summary()["status"] == "finished"
        assert member.checkpoint.exists()
        assert read_checkpoint(member.checkpoint)["algorithm"]["networks"][
            "0.trunk.layers.0.weight"].shape[0] == 1  # each member's own state


def test_a_population_compacts_as_members_end_and_each_equals_its_solo_run(tmp_path,
                                                                           monkeypatch):
    """REINFORCE members need different numbers of iterations (one episode each): as they
    end, the population shrinks to the others, and every member still computes bit for bit
    what it computes alone (docs/design.md §2.3)."""
    sizes = []
    compact = runs.Trainer.compact

    def recording(self):
        compact(self)
        sizes.append(len(self.live))

    monkeypatch.setattr(runs.Trainer, "compact", recording)
    _, outs = population(tmp_path, "pop")
    assert min(sizes) < 3 and sizes == sorted(sizes, reverse=True)
    for seed, out in zip((0, 1, 2), outs, strict=True):
        (solo,), = [population(tmp_path, f"solo{seed}", seeds=(seed,))[1]]
        for name in ("metrics.csv", "evaluations.csv"):
            assert (out / name).read_bytes() == (solo / name).read_bytes(), (seed, name)


def run_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "lpdm.cli", "train", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_kill_9_then_resume_reproduces_the_population(tmp_path, algo):
    args = [*ARGS, "--algo", algo, "--seed", "0,1,2", "--total-steps", "6000",
            "--checkpoint-every", "1000"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert run_cli(*args, "--out", str(reference)).wait() == 0
    process = run_cli(*args, "--out", str(killed))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        steps = [RunDirectory(killed / f"s{s}").read_summary().get("steps", 0)
                 if (killed / f"s{s}" / "summary.json").exists() else 0 for s in range(3)]
        if min(steps) >= 2000:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert any(RunDirectory(killed / f"s{s}").read_summary()["status"] == "running"
               for s in range(3))
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    for s in range(3):
        for name in ("metrics.csv", "evaluations.csv"):
            assert (killed / f"s{s}" / name).read_bytes() == \
                (reference / f"s{s}" / name).read_bytes(), (s, name)
        a = read_checkpoint(killed / f"s{s}" / "checkpoint.pt")["algorithm"]["networks"]
        b = read_checkpoint(reference / f"s{s}" / "checkpoint.pt")["algorithm"]["networks"]
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_seed_lists_are_refused(tmp_path, capsys):
    assert main(["train", *ARGS, "--seed", "1,1", "--out", str(tmp_path / "x")]) == 2
    assert "repeats" in capsys.readouterr().err
    assert main(["train", *ARGS, "--seed", "1,a", "--out", str(tmp_path / "y")]) == 2


def test_members_with_a_non_finite_weight_fail_and_huge_finite_weights_do_not(tmp_path):
    """Member 0 gets a NaN weight, member 2 an infinity; member 1's weights are finite but
    so large that their sum overflows: only 0 and 2 fail, each naming the weight."""
    configs = [runs.prepare_run(Config(env="CartPole-v1", algo="ppo", learner="bp", seed=s),
                                tmp_path / f"s{s}") for s in range(3)]
    algo, _ = runs.make_population(configs)
    weight = algo.policy.trunk.layers[0].weight
    with torch.no_grad():
        weight[0, 0, 0] = float("nan")
        weight[1, 0, :2] = 3e38
        weight[2, 1, 1] = -float("inf")
    algo.check_members()
    assert sorted(algo.failures) == [0, 2]
    assert algo.failures[0] == algo.failures[2] == \
        "actor weight trunk.layers.0.weight is not finite"
