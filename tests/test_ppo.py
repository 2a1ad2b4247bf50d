"""PPO: GAE with truncation, next-step autoreset, and the actor-critic update."""

import json

import gymnasium as gym
import numpy as np
import pytest

from lpdm.algorithms.ppo import generalized_advantages
from lpdm.cli import main
from lpdm.config import Config, LocalConfig, resolve
from lpdm.envs import EnvRunner, make_vector_env, normalization_state


def gae_case(terminal_kind: str):
    # t0, t1 (episode ends: truncated or terminated), t2 the dummy autoreset step, t3.
    # values[2] is V of the true final observation returned with the end of the episode.
    rewards = np.array([[1.0], [1.0], [0.0], [1.0]])
    values = np.array([[0.5], [0.6], [2.0], [0.4]])
    terminated = np.zeros((4, 1), dtype=bool)
    truncated = np.zeros((4, 1), dtype=bool)
    (truncated if terminal_kind == "truncated" else terminated)[1, 0] = True
    return generalized_advantages(rewards, values, np.array([0.3]), terminated, truncated,
                                  gamma=0.9, gae_lambda=0.5)


def test_gae_bootstraps_a_truncation_from_the_final_observation():
    advantages, returns = gae_case("truncated")
    # t3: 1 + 0.9*0.3 - 0.4 = 0.87
    # t1: 1 + 0.9*2.0 - 0.6 = 2.2 (bootstrapped from V(final obs); recursion stops)
    # t0: (1 + 0.9*0.6 - 0.5) + 0.9*0.5*2.2 = 1.04 + 0.99 = 2.03
    assert advantages[3, 0] == pytest.approx(0.87)
    assert advantages[1, 0] == pytest.approx(2.2)
    assert advantages[0, 0] == pytest.approx(2.03)
    assert returns[0, 0] == pytest.approx(2.53)
    assert returns[1, 0] == pytest.approx(2.8)


def test_gae_does_not_bootstrap_a_termination():
    advantages, _ = gae_case("terminated")
    assert advantages[1, 0] == pytest.approx(0.4)  # 1 - 0.6
    assert advantages[0, 0] == pytest.approx(1.04 + 0.45 * 0.4)
    assert advantages[3, 0] == pytest.approx(0.87)


def test_runner_flags_the_autoreset_step_and_returns_the_final_observation():
    config = resolve(Config(env="CartPole-v1", algo="ppo"), discrete_actions=True)
    runner = EnvRunner(make_vector_env(config, 2))
    runner.reset(seed=0)
    seen_end = False
    for _ in range(200):
        before = runner._autoreset.copy()
        step = runner.step(np.zeros(2, dtype=np.int64))  # always push left: short episodes
        assert np.array_equal(step.valid, ~before)
        assert not (step.terminated & ~step.valid).any()
        for i in np.flatnonzero(step.terminated):
            seen_end = True
            # the final observation is out of bounds: a true terminal state, not a reset
            x, theta = step.next_obs[i, 0], step.next_obs[i, 2]
            assert abs(x) > 2.4 or abs(theta) > 0.2095
    runner.close()
    assert seen_end


@pytest.mark.parametrize(("learner", "extra"), [
    ("bp", []), ("lpdm-guided", ["--guidance-signal", "advantages"]), ("linear", []),
    ("lpdm-guided", ["--scale", "cross", "--target-obs", "raw", "--target-scale", "0.5"]),
])
def test_ppo_runs_on_box_actions_with_normalisation(tmp_path, learner, extra):
    out = tmp_path / learner
    rc = main(["train", "--env", "Pendulum-v1", "--algo", "ppo", "--learner", learner,
               "--total-steps", "1024", "--num-steps", "256", "--num-minibatches", "4",
               "--update-epochs", "2", "--out", str(out), "--no-progress", *extra])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["envs"]["norm_obs"] and config["envs"]["norm_reward"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 1024


def test_cleanrl_defaults_are_resolved_per_action_space():
    discrete = resolve(Config(algo="ppo"), discrete_actions=True)
    assert (discrete.envs.num_envs, discrete.ppo.num_steps, discrete.ppo.num_minibatches,
            discrete.ppo.update_epochs, discrete.ppo.lr, discrete.ppo.ent_coef) == \
        (4, 128, 4, 4, 2.5e-4, 0.01)
    continuous = resolve(Config(algo="ppo", env="Hopper-v4"), discrete_actions=False)
    assert (continuous.envs.num_envs, continuous.ppo.num_steps, continuous.ppo.num_minibatches,
            continuous.ppo.update_epochs, continuous.ppo.lr, continuous.ppo.ent_coef) == \
        (1, 2048, 32, 10, 3e-4, 0.0)
    assert continuous.network.hidden_sizes == (128, 256)
    assert continuous.envs.norm_obs and not discrete.envs.norm_obs


def test_guidance_defaults_are_resolved_per_algorithm():
    """Selected on held-out seeds (docs/method.md): PPO advantages at 0.1, REINFORCE
    returns at 0.3, DQN the TD target; a value given on the command line is kept."""
    chosen = {algo: resolve(Config(algo=algo, learner="lpdm-guided"), discrete_actions=True)
              for algo in ("ppo", "reinforce", "dqn")}
    guidance = {algo: c.learner_options["guidance"] for algo, c in chosen.items()}
    assert {algo: (g.guidance_signal, g.guidance_strength) for algo, g in guidance.items()} == \
        {"ppo": ("advantages", 0.1), "reinforce": ("returns", 0.3), "dqn": ("td", 0.3)}
    given = Config(algo="ppo", learner="lpdm-guided")
    given.learner_options["guidance"].guidance_strength = 1.0
    given.learner_options["guidance"].guidance_signal = "returns"
    kept = resolve(given, discrete_actions=True).learner_options["guidance"]
    assert (kept.guidance_signal, kept.guidance_strength) == ("returns", 1.0)


def test_normalisation_state_round_trips():
    config = resolve(Config(env="Pendulum-v1", algo="ppo"), discrete_actions=False)
    envs = make_vector_env(config, 1)
    envs.reset(seed=0)
    for _ in range(50):
        envs.step(np.zeros((1, 1), dtype=np.float32))
    state = normalization_state(envs)
    assert state["obs_count"] > 50 and np.any(state["obs_mean"] != 0)
    fresh = make_vector_env(config, 1)
    from lpdm.envs import load_normalization_state

    load_normalization_state(fresh, state, freeze=True)
    restored = normalization_state(fresh)
    for key, value in state.items():
        assert np.allclose(restored[key], value)
    envs.close()
    fresh.close()
    assert isinstance(envs.single_action_space, gym.spaces.Box)


def test_async_vector_envs_give_the_same_run_as_sync(tmp_path):
    args = ["train", "--env", "CartPole-v1", "--algo", "ppo", "--learner", "bp",
            "--total-steps", "1024", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "sync")]) == 0
    assert main([*args, "--async-envs", "--out", str(tmp_path / "async")]) == 0
    assert (tmp_path / "sync" / "metrics.csv").read_bytes() == \
        (tmp_path / "async" / "metrics.csv").read_bytes()


def test_raw_target_observations_are_the_unnormalised_ones():
    config = resolve(Config(env="Pendulum-v1", algo="ppo", local=LocalConfig(target_obs="raw")),
                     discrete_actions=False)
    runner = EnvRunner(make_vector_env(config, 2))
    runner.reset(seed=0)
    for _ in range(5):
        step = runner.step(np.zeros((2, 1), dtype=np.float32))
        # Pendulum's raw observation is (cos, sin, angular velocity): |cos|, |sin| <= 1
        assert np.all(np.abs(step.target_obs[:, :2]) <= 1.0)
        assert not np.allclose(step.target_obs, step.obs)
    runner.close()


@pytest.mark.parametrize("placement", ["epoch", "rollout"])
def test_the_local_update_can_sit_outside_the_minibatches(tmp_path, monkeypatch, placement):
    """--local-update epoch / rollout: the trunks take their local steps on the whole
    rollout (in blocks of --distance-batch rows), once per epoch or once per rollout, and
    the minibatches' RL steps read them without learning."""
    from lpdm.local import LocalTrunk

    calls = []
    original = LocalTrunk.learn

    def counted(self, x, *args, **kwargs):
        calls.append(x.shape[1])
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(LocalTrunk, "learn", counted)
    out = tmp_path / placement
    assert main(["train", "--env", "CartPole-v1", "--algo", "ppo", "--learner", "lpdm",
                 "--total-steps", "1024", "--num-steps", "128", "--update-epochs", "3",
                 "--local-update", placement, "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished"
    per_rollout = 3 if placement == "epoch" else 1  # --update-epochs 3
    # actor and critic trunks, on the whole rollout of 128 steps x 4 environments
    assert calls == [128 * 4] * (2 * summary["iterations"] * per_rollout)


def test_a_backpropagation_critic_under_a_local_actor(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--env", "CartPole-v1", "--algo", "ppo", "--learner", "lpdm",
                 "--critic-learner", "bp", "--total-steps", "1024", "--out", str(out),
                 "--no-progress"]) == 0
    from lpdm.runs import load_agent

    agent = load_agent(out)
    try:
        assert type(agent.algo.policy.learner).__name__ == "LocalLearner"
        assert type(agent.algo.critic.learner).__name__ == "BackpropLearner"
        # the critic's trunk is in the RL optimizer, the actor's is not
        trained = {id(p) for p in agent.algo.optimizer.params}
        assert all(id(p) in trained for p in agent.algo.critic.trunk.parameters())
        assert not any(id(p) in trained for p in agent.algo.policy.trunk.parameters())
    finally:
        agent.close()
    assert main(["train", "--algo", "ppo", "--learner", "bp", "--critic-learner",
                 "lpdm-guided", "--total-steps", "100", "--out", str(tmp_path / "x"),
                 "--no-progress"]) == 2
