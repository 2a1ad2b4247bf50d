"""Stable-Baselines3 with an LPDM trunk (the sb3 extra): isolation, learning, save/load."""

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3 import DQN, PPO

from lpdm.local import LocalTrunk
from lpdm.sb3 import LPDMExtractor, LPDMGuidance


def ppo(seed=0, guided=False, **kwargs):
    policy_kwargs = dict(features_extractor_class=LPDMExtractor, net_arch=[],
                         features_extractor_kwargs=dict(seed=seed, guided=guided))
    return PPO("MlpPolicy", "CartPole-v1", policy_kwargs=policy_kwargs, seed=seed, verbose=0,
               device="cpu", **kwargs)


def trunk_of(model) -> LocalTrunk:
    return model.policy.features_extractor.trunk


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def test_the_rl_loss_never_changes_the_trunk_and_the_local_update_does(monkeypatch):
    model = ppo(n_steps=256, batch_size=64, n_epochs=2)
    before = snapshot(trunk_of(model))
    model.learn(256)
    assert not all(torch.equal(a, b) for a, b in zip(before, snapshot(trunk_of(model)),
                                                     strict=True))
    frozen = ppo(n_steps=256, batch_size=64, n_epochs=2)
    monkeypatch.setattr(trunk_of(frozen).optimizer, "step", lambda active=None: None)
    before = snapshot(trunk_of(frozen))
    head_before = snapshot(frozen.policy.action_net)
    frozen.learn(256)
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(trunk_of(frozen)),
                                                 strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(head_before,
                                                     snapshot(frozen.policy.action_net),
                                                     strict=True))


def test_sb3_ppo_with_an_lpdm_trunk_learns_cartpole():
    # measured (docs/api.md): last-100 training episodes 95, 86, 83 on seeds 0-2 at 16384
    # steps; a random policy scores about 22
    model = ppo(seed=0)
    model.learn(16384)
    assert np.mean([e["r"] for e in model.ep_info_buffer]) >= 60


def test_save_and_load_round_trip_the_trunk_and_its_optimizer(tmp_path):
    model = ppo(n_steps=128, batch_size=64, n_epochs=1)
    model.learn(128)
    model.save(tmp_path / "agent")
    loaded = PPO.load(tmp_path / "agent", device="cpu")
    torch.testing.assert_close(loaded.policy.state_dict(), model.policy.state_dict(), rtol=0,
                               atol=0)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0],
                          model.predict(obs, deterministic=True)[0])


def test_the_guided_trunk_takes_returns_through_the_callback():
    model = ppo(guided=True, n_steps=128, batch_size=64, n_epochs=1)
    with pytest.raises(RuntimeError, match="LPDMGuidance"):
        model.learn(128)
    model = ppo(guided=True, n_steps=128, batch_size=64, n_epochs=1)
    before = snapshot(trunk_of(model))
    model.learn(128, callback=LPDMGuidance("advantages"))
    assert not all(torch.equal(a, b) for a, b in zip(before, snapshot(trunk_of(model)),
                                                     strict=True))


def test_off_policy_algorithms_train_the_trunk_on_replay_batches():
    model = DQN("MlpPolicy", "CartPole-v1", learning_starts=64, train_freq=4, seed=0,
                device="cpu", policy_kwargs=dict(features_extractor_class=LPDMExtractor,
                                                 net_arch=[]), verbose=0)
    before = snapshot(model.q_net.features_extractor.trunk)
    model.learn(256)
    after = snapshot(model.q_net.features_extractor.trunk)
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    with pytest.raises(ValueError, match="on-policy"):
        model.learn(64, callback=LPDMGuidance())
