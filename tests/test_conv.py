"""Image observations and convolutional trunks, trained by every learner."""

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lpdm.cli import main
from lpdm.config import Config, ConfigError, LocalConfig, resolve
from lpdm.envs import EnvError, check_spaces, make_env
from lpdm.learners import make_learner
from lpdm.local import LocalTrunk, distance_rows
from lpdm.networks import MemberConv2d, Trunk, TrunkSpec, seeded_generators
from lpdm.runs import RunDirectory

SPEC = TrunkSpec((6, 6, 3), (16,), ((4, 3, 1),), channels_last=True)  # an HWC image


def test_member_convolutions_are_each_members_own():
    conv = MemberConv2d(3, 4, 3, 2, 1.0, seeded_generators([0, 1]))
    x = torch.randn(2, 5, 3, 7, 7)
    y = conv(x)
    for k in range(2):
        expected = F.conv2d(x[k], conv.weight[k], conv.bias[k], stride=2)
        torch.testing.assert_close(y[k], expected)
    assert y.shape == (2, 5, 4, 3, 3)


def test_trunks_read_images_channels_last_or_first():
    hwc = Trunk(SPEC, generators=seeded_generators([0]))
    chw = Trunk(TrunkSpec((3, 6, 6), (16,), ((4, 3, 1),), channels_last=False),
                generators=seeded_generators([0]))
    x = torch.rand(1, 2, 6, 6, 3)
    torch.testing.assert_close(hwc(x), chw(x.permute(0, 1, 4, 2, 3)))
    assert hwc(x).shape == (1, 2, 16) and hwc.out_dim == 16
    assert hwc(x > 0.5).shape == (1, 2, 16)  # bool images are read as floats


def test_distance_variants_by_hand():
    y = torch.zeros(1, 2, 2, 1, 2)  # two samples, 2 channels, 1 x 2 positions
    y[0, 1, 0] = torch.tensor([[1.0, 3.0]])
    flat = distance_rows(y, LocalConfig(conv_distance="flat"))
    pooled = distance_rows(y, LocalConfig(conv_distance="pooled"))
    assert flat.shape == (1, 2, 4) and pooled.shape == (1, 2, 2)
    # flat l1 per feature: (1 + 3) / 4 = 1; pooled: channel means (2, 0) vs (0, 0): 2 / 2 = 1
    from lpdm.distances import pairwise_distances
    assert pairwise_distances(flat)[0, 0, 1].item() == pytest.approx(1.0)
    assert pairwise_distances(pooled)[0, 0, 1].item() == pytest.approx(1.0)
    y[0, 1, 0] = torch.tensor([[2.0, -2.0]])  # the same magnitude, opposite signs
    assert pairwise_distances(distance_rows(y, LocalConfig(conv_distance="flat")))[0, 0, 1] \
        .item() == pytest.approx(1.0)
    assert pairwise_distances(distance_rows(y, LocalConfig(conv_distance="pooled")))[0, 0, 1] \
        .item() == pytest.approx(0.0)  # pooling cannot tell where a feature is


@pytest.mark.parametrize("overrides", [{"conv_distance": "flat"}, {"conv_distance": "pooled"},
                                       {"conv_distance": "flat", "scale": "max"}])
def test_conv_local_loss_decreases_on_a_fixed_batch(overrides):
    trunk = LocalTrunk((6, 6, 3), (16,), conv=((4, 3, 1),), lr=1e-2, seeds=(1,), **overrides)
    assert not trunk.closed_form  # convolutions learn by autograd, layer by layer
    torch.manual_seed(1)
    x = (torch.rand(48, 6, 6, 3) > 0.7).float()
    trunk.learn(x, diagnostics=True)
    first = [layer.local_loss for layer in trunk.diagnostics[0]]
    for _ in range(150):
        trunk.learn(x, diagnostics=True)
    last = [layer.local_loss for layer in trunk.diagnostics[0]]
    assert len(first) == 2
    for a, b in zip(first, last, strict=True):
        assert b < 0.7 * a, (overrides, first, last)


@pytest.mark.parametrize("name", ["bp", "lpdm", "lpdm-guided", "frozen"])
def test_the_rl_loss_reaches_conv_layers_only_under_bp(name):
    generators = seeded_generators([0])
    learner = make_learner(name, SPEC, None, LocalConfig(), 1e-2, generators)
    head = torch.nn.Linear(16, 2)
    obs, performance = torch.rand(1, 30, 6, 6, 3), torch.randn(1, 30)
    before = [p.detach().clone() for p in learner.trunk.parameters()]
    features = learner.features(obs, performance)
    local_moved = not all(torch.equal(a, b) for a, b in zip(before, learner.trunk.parameters(),
                                                            strict=True))
    assert local_moved == (name in ("lpdm", "lpdm-guided"))
    middle = [p.detach().clone() for p in learner.trunk.parameters()]
    for p in learner.trunk.parameters():
        p.grad = None  # whatever the local update left
    head(features).sum().backward()
    reached = [p.grad is not None for p in learner.trunk.parameters()]
    assert all(reached) if name == "bp" else not any(reached)
    assert all(torch.equal(a, b) for a, b in zip(middle, learner.trunk.parameters(),
                                                 strict=True))


def test_image_spaces_are_checked_in_one_line():
    image = gym.spaces.Box(0, 1, (10, 10, 4), dtype=bool)
    check_spaces("img", image, gym.spaces.Discrete(3))
    with pytest.raises(EnvError, match="dtype int64"):
        check_spaces("img", gym.spaces.Box(0, 1, (10, 10, 4), dtype=np.int64),
                     gym.spaces.Discrete(3))
    with pytest.raises(EnvError, match="flat"):
        check_spaces("img", gym.spaces.Box(0, 1, (10, 10), dtype=np.float32),
                     gym.spaces.Discrete(3))
    with pytest.raises(ConfigError, match="--trunk conv needs image"):
        resolve(Config(env="CartPole-v1", network=Config().network.__class__(trunk="conv")),
                discrete_actions=True, obs_shape=(4,))
    assert resolve(Config(env="x"), True, (10, 10, 4)).network.trunk == "conv"
    assert resolve(Config(env="x"), True, (4, 84, 84)).envs.image_layout == "chw"
    assert resolve(Config(env="x"), True, (10, 10, 4)).envs.image_layout == "hwc"


def test_minatar_without_the_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "minatar", None)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    if "MinAtar/Asterix-v1" in gym.registry:
        pytest.skip("MinAtar is registered in this process already")
    with pytest.raises(EnvError, match=r"pip install 'lpdm\[minatar\]'"):
        make_env("MinAtar/Asterix-v1")


@pytest.mark.parametrize(("algo", "learner"), [("ppo", "lpdm"), ("dqn", "lpdm-guided"),
                                               ("reinforce", "bp")])
def test_minatar_trains_with_a_conv_trunk(tmp_path, algo, learner):
    pytest.importorskip("minatar")
    out = tmp_path / algo
    extra = ["--learning-starts", "200", "--buffer-size", "1000"] if algo == "dqn" else []
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--algo", algo, "--learner", learner,
                 "--total-steps", "1024", "--num-steps", "128", "--eval-every", "1024",
                 "--eval-episodes", "1", "--out", str(out), "--no-progress", *extra]
                if algo == "ppo" else
                ["train", "--env", "MinAtar/Breakout-v1", "--algo", algo, "--learner", learner,
                 "--total-steps", "1024", "--eval-every", "1024", "--eval-episodes", "1",
                 "--out", str(out), "--no-progress", *extra]) == 0
    config = RunDirectory(out).read_config()
    assert config.network.trunk == "conv" and config.envs.image_layout == "hwc"
    rows = RunDirectory(out).read_metrics()
    name = {"ppo": "actor", "dqn": "q", "reinforce": "policy"}[algo]
    assert rows and f"{name}_l1_saturation" in rows[0]  # the conv layer's diagnostics
