"""Checkpoints: an interrupted run resumed from its last checkpoint equals the uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from lpdm.algorithms.base import Algorithm
from lpdm.cli import main
from lpdm.envs import derive_seed
from lpdm.evaluation import Evaluator
from lpdm.runs import RunDirectory, load_agent, read_checkpoint

PPO_ARGS = ["--env", "CartPole-v1", "--algo", "ppo", "--learner", "lpdm", "--seed", "1",
            "--total-steps", "4096", "--checkpoint-every", "1024", "--eval-every", "1024",
            "--eval-episodes", "2", "--no-progress"]


def same_files(a, b):
    for name in ("metrics.csv", "evaluations.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("status", "steps", "final_score", "max_score", "episodes", "iterations"):
        assert sa[key] == sb[key], key
    wa = read_checkpoint(a / "checkpoint.pt")["algorithm"]["networks"]
    wb = read_checkpoint(b / "checkpoint.pt")["algorithm"]["networks"]
    torch.testing.assert_close(wa, wb, rtol=0, atol=0)  # weights and optimizer states


def train_interrupted(out, monkeypatch, update: int = 6) -> None:
    """``lpdm train`` of PPO_ARGS into ``out``, interrupted (Ctrl-C) at its ``update``-th
    update."""
    calls = {"n": 0}
    original = Algorithm.timed_update

    def interrupt(self):
        calls["n"] += 1
        if calls["n"] == update:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Algorithm, "timed_update", interrupt)
    assert main(["train", *PPO_ARGS, "--out", str(out)]) == 130
    monkeypatch.setattr(Algorithm, "timed_update", original)


def test_interrupted_ppo_run_resumes_exactly(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    assert main(["train", *PPO_ARGS, "--out", str(reference)]) == 0

    interrupted = tmp_path / "interrupted"
    train_interrupted(interrupted, monkeypatch)
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["status"] == "failed" and "--resume" in summary["error"]
    assert 0 < summary["steps"] < 4096

    assert main(["train", "--resume", str(interrupted), "--no-progress"]) == 0
    same_files(reference, interrupted)


def test_interrupted_dqn_run_resumes_its_diagnostics_schedule(tmp_path, monkeypatch):
    """DQN measures diagnostics in one update of ten, and metrics rows carry the last ones:
    a checkpoint between two measurements keeps both the schedule and the values."""
    args = ["--env", "CartPole-v1", "--algo", "dqn", "--learner", "lpdm", "--seed", "2",
            "--total-steps", "2000", "--checkpoint-every", "750", "--eval-every", "1000",
            "--eval-episodes", "1", "--no-progress", *DQN_SMALL[:6]]
    reference = tmp_path / "reference"
    assert main(["train", *args, "--out", str(reference)]) == 0
    calls = {"n": 0}
    original = Algorithm.timed_update

    def interrupt(self):  # at 750 steps: 25 updates (from step 500, one in 10); stop at 90
        calls["n"] += 1
        if calls["n"] == 90:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Algorithm, "timed_update", interrupt)
    interrupted = tmp_path / "interrupted"
    assert main(["train", *args, "--out", str(interrupted)]) == 130
    monkeypatch.setattr(Algorithm, "timed_update", original)
    assert main(["train", "--resume", str(interrupted), "--no-progress"]) == 0
    same_files(reference, interrupted)


def test_resume_of_a_finished_run_does_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--env", "CartPole-v1", "--total-steps", "500", "--out", str(out),
          "--no-progress"])
    before = (out / "metrics.csv").read_bytes()
    assert main(["train", "--resume", str(out)]) == 0
    assert (out / "metrics.csv").read_bytes() == before
    assert "finished" in capsys.readouterr().out


def test_resume_refuses_new_options(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--total-steps", "300", "--out", str(out), "--no-progress"])
    assert main(["train", "--resume", str(out), "--total-steps", "600"]) == 2
    assert "--total-steps" in capsys.readouterr().err


def run_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "lpdm.cli", "train", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


DQN_SMALL = ["--learning-starts", "500", "--buffer-size", "2000", "--batch-size", "32",
             "--target-network-frequency", "200"]


@pytest.mark.parametrize("algo", ["reinforce", "ppo", "dqn"])
def test_sigkilled_run_resumes_to_the_same_rows(tmp_path, algo):
    args = ["--env", "CartPole-v1", "--algo", algo, "--learner", "lpdm-guided", "--seed", "2",
            "--total-steps", "6000", "--checkpoint-every", "1500", "--eval-every", "2000",
            "--eval-episodes", "1", "--no-progress", *(DQN_SMALL if algo == "dqn" else [])]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert run_cli(*args, "--out", str(reference)).wait() == 0

    process = run_cli(*args, "--out", str(killed))
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once a checkpoint exists, mid-way
        summary = RunDirectory(killed).read_summary() if (killed / "summary.json").exists() else {}
        if (killed / "checkpoint.pt").exists() and summary.get("steps", 0) >= 3000:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["status"] == "running"  # a killed run never looks finished
    assert summary["steps"] < 6000

    assert run_cli("--resume", str(killed)).wait() == 0
    same_files(reference, killed)


def test_checkpoint_round_trip_keeps_normalisation_and_evaluation(tmp_path):
    out = tmp_path / "pendulum"
    assert main(["train", "--env", "Pendulum-v1", "--algo", "ppo", "--learner", "lpdm",
                 "--total-steps", "2048", "--num-steps", "512", "--eval-every", "1024",
                 "--eval-episodes", "2", "--out", str(out), "--no-progress"]) == 0
    agent = load_agent(out)
    assert agent.normalization["obs_count"] > 2048
    last = RunDirectory(out).read_evaluations()[-1]
    evaluator = Evaluator(agent.config)
    summary = json.loads((out / "summary.json").read_text())
    seed = derive_seed(agent.config.seed, 1_000_000 + summary["evaluations"] - 1)
    returns = evaluator.run(agent.algo.act, [agent.normalization], 2, [seed])[0]
    evaluator.close()
    agent.close()
    assert float(last["mean_return"]) == pytest.approx(returns.mean(), rel=1e-5)


@pytest.mark.parametrize("env", ["Pendulum-v1", "CartPole-v1"])
def test_evaluation_on_the_batched_stack_equals_the_wrapped_environments(tmp_path, env):
    """The evaluator's frozen batched stack, a member's episodes side by side, gives the
    returns that each member's own Gymnasium vector environment, its normalisation frozen,
    gives episode after episode (members of a population of two, one evaluated alone, then
    both), to float rounding."""
    from lpdm.envs import EnvRunner, load_normalization_state, make_vector_env

    out = tmp_path / "pop"
    assert main(["train", "--env", env, "--algo", "ppo", "--learner", "lpdm", "--seed", "3,4",
                 "--total-steps", "1024", "--num-steps", "256", "--eval-every", "1024",
                 "--eval-episodes", "1", "--out", str(out), "--no-progress"]) == 0
    agents = [load_agent(out / f"s{seed}") for seed in (3, 4)]
    norms = [agent.normalization for agent in agents]

    def act(obs):  # [2, 1, ...]: each member's own agent
        return np.stack([agent.algo.act(obs[k:k + 1])[0] for k, agent in enumerate(agents)])

    evaluator = Evaluator(agents[0].config, 2)
    batched = [evaluator.run(act, norms, 2, [11, None]), evaluator.run(act, norms, 2, [12, 13])]
    evaluator.close()
    for seeds, got in zip(([11, None], [12, 13]), batched, strict=True):
        for k, seed in enumerate(seeds):
            if seed is None:
                assert got[k].size == 0
                continue
            runner = EnvRunner(make_vector_env(agents[k].config, 1))
            load_normalization_state(runner.envs, norms[k], freeze=True)
            wrapped = []
            for j in range(2):
                runner.reset(derive_seed(seed, j))
                while not (step := runner.step(agents[k].algo.act(runner.obs[None])[0])).episodes:
                    pass
                wrapped.append(step.episodes[0].episodic_return)
            runner.close()
            # side by side, the forward pass batches a member's episodes: float rounding
            assert got[k].tolist() == pytest.approx(wrapped, rel=1e-6), (env, seed)
    for agent in agents:
        agent.close()


def test_eval_command(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--total-steps", "1000", "--out", str(out), "--no-progress"])
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "3"]) == 0
    line = capsys.readouterr().out
    assert "over 3 episodes" in line and "±" in line


def test_eval_of_a_directory_without_a_run_fails_cleanly(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_eval_records_video_where_rendering_works(tmp_path, capsys):
    pytest.importorskip("moviepy")
    out = tmp_path / "run"
    main(["train", "--total-steps", "300", "--out", str(out), "--no-progress"])
    assert main(["eval", str(out), "--episodes", "2", "--video"]) == 0
    assert len(list((out / "videos").glob("*.mp4"))) == 2


def test_eval_video_says_why_when_rendering_fails(tmp_path, capsys, monkeypatch):
    pytest.importorskip("moviepy")

    def broken_render(self):
        raise RuntimeError("no OpenGL context")

    out = tmp_path / "run"
    main(["train", "--total-steps", "300", "--out", str(out), "--no-progress"])
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    monkeypatch.setattr(CartPoleEnv, "render", broken_render)
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "1", "--video"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lpdm: error: cannot render CartPole-v1") and "no OpenGL" in err
    assert not (out / "videos").exists()


def test_tensorboard_logs_alongside_csv(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main(["train", "--algo", "ppo", "--total-steps", "1024", "--tensorboard",
                 "--out", str(out), "--no-progress"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"charts/episodic_return", "losses/policy_loss", "eval/mean_return",
            "diagnostics/actor_l1_distance_corr"} <= tags
    assert (out / "metrics.csv").exists()


def test_a_damaged_checkpoint_resumes_from_the_one_before(tmp_path, monkeypatch, capsys):
    """A crash while ``checkpoint.pt`` was written (a truncated file): the run resumes from
    ``checkpoint.prev.pt``, says so, and still ends as the uninterrupted run."""
    reference = tmp_path / "reference"
    assert main(["train", *PPO_ARGS, "--out", str(reference)]) == 0
    assert (reference / "checkpoint.prev.pt").exists()

    damaged = tmp_path / "damaged"
    train_interrupted(damaged, monkeypatch)
    latest = damaged / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated
    capsys.readouterr()
    assert main(["train", "--resume", str(damaged), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "checkpoint.pt is damaged" in err and "resuming from the checkpoint before it " \
        "(checkpoint.prev.pt, step" in err
    same_files(reference, damaged)


def test_a_damaged_checkpoint_without_an_earlier_one_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--env", "CartPole-v1", "--total-steps", "300", "--out", str(out),
                 "--no-progress"]) == 0
    (out / "checkpoint.prev.pt").unlink(missing_ok=True)
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (out / "summary.json").write_text('{"status": "running"}')
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint.pt is damaged" in err and \
        "no earlier checkpoint" in err


def test_metric_rows_reach_the_file_as_episodes_end(tmp_path):
    """A long run's metrics.csv can be followed (tail -f) between checkpoints."""
    from lpdm.runs import CsvLog

    path = tmp_path / "metrics.csv"
    log = CsvLog(path, ("global_step", "episodic_return"), None)
    log.write({"global_step": 200, "episodic_return": 21.5})
    assert path.read_text().splitlines() == ["global_step,episodic_return", "200,21.5"]
    log.write({"global_step": 300, "episodic_return": float("nan")})
    assert path.read_text().splitlines()[-1] == "300,"
    log.close()


def test_an_interrupt_while_the_members_start_marks_them_interrupted(tmp_path, monkeypatch):
    """Ctrl-C after one member of a population wrote its "running" summary, before the
    training loop: that member is marked interrupted (so a sweep says so), and resumes."""
    from lpdm.runs import Member, member_dir

    original = Member.open_logs
    opened = {"n": 0}

    def open_then_interrupt(self, columns):
        opened["n"] += 1
        if opened["n"] == 2:
            raise KeyboardInterrupt
        original(self, columns)

    monkeypatch.setattr(Member, "open_logs", open_then_interrupt)
    args = [a for a in PPO_ARGS if a not in ("--seed", "1")]
    assert main(["train", *args, "--seed", "0,1", "--out", str(tmp_path)]) == 130
    monkeypatch.setattr(Member, "open_logs", original)
    first = json.loads((member_dir(tmp_path, 0) / "summary.json").read_text())
    assert first["status"] == "failed" and first["error"].startswith("interrupted")
    assert main(["train", "--resume", str(member_dir(tmp_path, 0)), "--no-progress"]) == 0
    assert RunDirectory(member_dir(tmp_path, 0)).read_summary()["status"] == "finished"
