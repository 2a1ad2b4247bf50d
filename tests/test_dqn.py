"""DQN: TD targets, target network, exploration, learner isolation, replay, learning."""

import json

import numpy as np
import pytest
import torch

from lpdm.algorithms.collector import Transition
from lpdm.algorithms.dqn import linear_schedule, td_target
from lpdm.cli import main
from lpdm.config import Config, resolve, with_values
from lpdm.replay import ReplayBuffers
from lpdm.runs import make_population, train

SMALL = {"learning_starts": 100, "batch_size": 16, "buffer_size": 500,
         "target_network_frequency": 50, "train_frequency": 10}


def population(learner="lpdm", seeds=(0,), **values):
    config = resolve(with_values(Config(), {"env": "CartPole-v1", "algo": "dqn",
                                            "learner": learner, "total_steps": 10_000,
                                            **SMALL, **values}), discrete_actions=True)
    algo, _ = make_population([with_values(config, {"seed": s}) for s in seeds])
    for k, seed in enumerate(seeds):
        algo.runner.reset(k, seed)
    return algo


def test_td_target_bootstraps_truncation_but_not_termination():
    rewards, next_best = torch.tensor([1.0, 1.0]), torch.tensor([10.0, 10.0])
    terminated = torch.tensor([1.0, 0.0])  # the second episode was truncated (or goes on)
    assert td_target(rewards, next_best, terminated, 0.9).tolist() == [1.0, 10.0]


def test_truncation_is_stored_as_not_terminated_with_the_true_final_observation():
    algo = population()
    final = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    for terminated, truncated in ((False, True), (True, False)):
        algo.store(0, Transition(obs=np.zeros(4), target_obs=np.zeros(4), action=np.int64(1),
                                 reward=1.0, terminated=terminated, truncated=truncated,
                                 next_obs=final))
        row = (algo.buffer.position[0] - 1) % algo.buffer.capacity
        assert algo.buffer.data["terminated"][0, row] == float(terminated)
        assert np.array_equal(algo.buffer.data["next_obs"][0, row], final)
        assert algo.buffer.episode_start[0] == 0  # either way the episode ended


def test_monte_carlo_returns_fill_in_when_the_episode_ends():
    buffer = ReplayBuffers(1, 8, (1,), (1,))
    for t, reward in enumerate([1.0, 2.0, 3.0]):
        buffer.add(0, np.zeros(1), np.zeros(1), np.zeros(1), 0, reward, t == 2, t == 2, 0.5)
    # returns-to-go with γ = 0.5: 1 + 0.5 (2 + 0.5 * 3) = 2.75, 2 + 1.5 = 3.5, 3
    assert buffer.data["returns"][0, :3].tolist() == [2.75, 3.5, 3.0]


def test_epsilon_falls_linearly_then_stays():
    assert linear_schedule(1.0, 0.05, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.05, 100, 50) == pytest.approx(0.525)
    assert linear_schedule(1.0, 0.05, 100, 100) == pytest.approx(0.05)
    assert linear_schedule(1.0, 0.05, 100, 1000) == pytest.approx(0.05)
    algo = population(exploration_fraction=0.5)
    assert algo.epsilon(2500) == pytest.approx(1.0 + (0.05 - 1.0) * 2500 / 5000)


def test_the_target_network_is_copied_on_schedule():
    algo = population(learner="bp")
    online = algo.policy.head.values.weight
    target = algo.target["head"].values.weight
    assert torch.equal(online, target)  # a copy from the start
    step = 0
    copies = []
    while step < 200:
        iteration = algo.iterate([step], [10_000])[0]
        before = step
        step += iteration.steps
        copies.append((before, step, torch.equal(online, target)))
    for before, after, equal in copies:
        crossed = after // 50 > before // 50 and after > 100
        if crossed:
            assert equal, (before, after)  # copied right after the crossing update
        elif after > 110:
            assert not equal, (before, after)  # the online network moved on alone


@pytest.mark.parametrize("learner", ["bp", "lpdm", "lpdm-guided", "frozen"])
def test_the_td_loss_trains_the_trunk_only_under_bp(learner, monkeypatch):
    algo = population(learner=learner)
    step = 0
    while step <= 100:  # fill the buffer past learning_starts
        step += algo.iterate([step], [10_000])[0].steps
    trunk = [p.detach().clone() for p in algo.policy.trunk.parameters()]
    head = [p.detach().clone() for p in algo.policy.head.parameters()]
    if learner in ("lpdm", "lpdm-guided"):  # no local step: only the TD loss could move it
        monkeypatch.setattr(algo.policy.trunk.optimizer, "step", lambda active=None: None)
    algo.iterate([step], [10_000])
    moved = not all(torch.equal(a, b) for a, b in zip(trunk, algo.policy.trunk.parameters(),
                                                      strict=True))
    assert moved == (learner == "bp")
    assert not all(torch.equal(a, b) for a, b in zip(head, algo.policy.head.parameters(),
                                                     strict=True))


def test_diagnostics_are_measured_in_one_of_every_ten_td_steps(monkeypatch):
    algo = population(learner="lpdm")
    measured = []
    learn = algo.policy.trunk.learn

    def spy(*args, **kwargs):
        measured.append(args[-1] if len(args) == 5 else kwargs.get("diagnostics", False))
        return learn(*args, **kwargs)

    monkeypatch.setattr(algo.policy.trunk, "learn", spy)
    step = 0
    while len(measured) < 25:
        step += algo.iterate([step], [10_000])[0].steps
    assert measured[:21] == [True] + [False] * 9 + [True] + [False] * 9 + [True]
    assert set(algo.diagnostics(0)) == set(algo.diagnostic_names())


def test_box_actions_are_refused_in_one_line(tmp_path, capsys):
    rc = main(["train", "--env", "Pendulum-v1", "--algo", "dqn", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Discrete" in err


@pytest.mark.parametrize(("learner", "threshold"), [("bp", 300), ("lpdm", 100)])
def test_dqn_learns_cartpole(tmp_path, learner, threshold):
    # measured on seed 0 at 30k steps: bp 487, lpdm 138 (a random policy scores ~22)
    config = Config(env="CartPole-v1", algo="dqn", learner=learner, seed=0, total_steps=30_000)
    summary = train(config, tmp_path / learner, progress_bar=False)
    assert summary["status"] == "finished" and summary["max_score"] >= threshold, summary
    saved = json.loads((tmp_path / learner / "config.json").read_text())
    assert saved["dqn"]["buffer_size"] == 10_000 and saved["dqn"]["lr"] == 2.5e-4
