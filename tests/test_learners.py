"""Learners: which loss may change which weights, and the local update itself."""

import copy

import pytest
import torch

from lpdm.config import LocalConfig
from lpdm.learners import make_learner
from lpdm.local import LocalTrunkTrainer
from lpdm.networks import CategoricalHead, Trunk

LEARNERS = ["bp", "lpdm", "lpdm-guided", "frozen"]


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def setup(name: str, cfg: LocalConfig | None = None):
    torch.manual_seed(0)
    trunk = Trunk(6, (16, 32))
    head = CategoricalHead(32, 3)
    learner = make_learner(name, trunk, cfg or LocalConfig(distance_batch=32), lr=1e-2)
    groups = [{"params": list(head.parameters())}]
    if params := learner.rl_parameters():
        groups.append({"params": params})
    optimizer = torch.optim.Adam(groups, lr=1e-2)
    obs = torch.randn(50, 6)
    performance = torch.randn(50)
    return trunk, head, learner, optimizer, obs, performance


@pytest.mark.parametrize("name", LEARNERS)
def test_rl_loss_changes_the_trunk_only_under_bp(name):
    trunk, head, learner, optimizer, obs, performance = setup(name)
    features = learner.features(obs, performance)
    trunk_before, head_before = snapshot(trunk), snapshot(head)
    loss = -head.distribution(features).log_prob(torch.zeros(50, dtype=torch.long)).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert not same(head_before, snapshot(head)), "the RL loss must train the head"
    assert same(trunk_before, snapshot(trunk)) == (name != "bp")


@pytest.mark.parametrize("name", LEARNERS)
def test_computing_features_never_changes_the_head(name):
    trunk, head, learner, _, obs, performance = setup(name)
    trunk_before, head_before = snapshot(trunk), snapshot(head)
    learner.features(obs, performance)
    assert same(head_before, snapshot(head))
    # only the local learners train the trunk while computing features
    assert same(trunk_before, snapshot(trunk)) == (name in ("bp", "frozen"))


@pytest.mark.parametrize("name", ["lpdm", "lpdm-guided", "frozen"])
def test_local_and_frozen_features_carry_no_graph(name):
    _, _, learner, _, obs, performance = setup(name)
    assert not learner.features(obs, performance).requires_grad


def test_local_features_are_the_pre_update_outputs():
    trunk, _, learner, _, obs, _ = setup("lpdm", LocalConfig(distance_batch=64))
    with torch.no_grad():
        before = trunk(obs)
    assert torch.allclose(learner.features(obs), before)


def test_guided_learner_needs_performance():
    _, _, learner, _, obs, _ = setup("lpdm-guided")
    with pytest.raises(ValueError, match="performance"):
        learner.features(obs)


@pytest.mark.parametrize("overrides", [
    {}, {"sparse": True}, {"target": "local"}, {"metric": "l2"}, {"metric": "cosine"},
    {"scale": "mean"}, {"scale": "max"}, {"scale": "cross"}, {"scale": "cross", "metric": "l2"},
    {"target_scale": 0.3},
])
def test_local_loss_decreases_on_a_fixed_batch(overrides):
    torch.manual_seed(1)
    trunk = Trunk(5, (32, 32))
    cfg = LocalConfig(**overrides)
    trainer = LocalTrunkTrainer(trunk, cfg, lr=1e-2, guided=False)
    x = 0.3 * torch.randn(64, 5)  # distances a tanh layer can reach
    _, first = trainer.update(x, diagnostics=True)
    for _ in range(200):
        _, last = trainer.update(x, diagnostics=True)
    for a, b in zip(first, last, strict=True):
        assert b.local_loss < 0.6 * a.local_loss, (overrides, a, b)


def test_guided_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(2)
    trunk = Trunk(5, (32,))
    trainer = LocalTrunkTrainer(trunk, LocalConfig(guidance_strength=0.3), lr=1e-2, guided=True)
    x, p = 0.3 * torch.randn(64, 5), torch.randn(64)
    _, first = trainer.update(x, p, diagnostics=True)
    for _ in range(200):
        _, last = trainer.update(x, p, diagnostics=True)
    assert last[0].local_loss < 0.5 * first[0].local_loss


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_and_streaming_updates_give_identical_weights(sparse):
    torch.manual_seed(3)
    trunk = Trunk(7, (16, 16, 16, 8))
    twin = copy.deepcopy(trunk)
    fused = LocalTrunkTrainer(trunk, LocalConfig(update_mode="fused", sparse=sparse), 1e-2, True)
    streaming = LocalTrunkTrainer(twin, LocalConfig(update_mode="streaming", sparse=sparse),
                                  1e-2, True)
    for _ in range(5):
        x, p = torch.randn(40, 7), torch.randn(40)
        out_fused, _ = fused.update(x, p)
        out_streaming, _ = streaming.update(x, p)
        assert torch.equal(out_fused, out_streaming)
    assert same(snapshot(trunk), snapshot(twin))


def test_local_learner_splits_large_batches_into_distance_blocks():
    _trunk, _, learner, _, _, _ = setup("lpdm", LocalConfig(distance_batch=32))
    steps = []
    original = learner.trainer.update

    def counting_update(x, performance=None, diagnostics=False, target_rows=None):
        steps.append(x.shape[0])
        return original(x, performance, diagnostics, target_rows)

    learner.trainer.update = counting_update
    out = learner.features(torch.randn(100, 6))
    assert steps == [25, 25, 25, 25]  # never a block larger than N, nearly equal sizes
    assert out.shape == (100, 32)


@pytest.mark.parametrize("name", LEARNERS)
def test_diagnostics_are_reported_per_layer_once_per_request(name):
    _, _, learner, _, obs, performance = setup(name)
    learner.features(obs, performance)
    assert learner.diagnostics == []  # nothing measured unless asked
    learner.request_diagnostics()
    learner.features(obs, performance)
    assert len(learner.diagnostics) == 2
    for layer in learner.diagnostics:
        assert layer.local_loss > 0
        assert -1 <= layer.distance_corr <= 1
        assert 0 <= layer.saturation <= 1


def test_layer_targets_scale_and_source():
    from lpdm.distances import pairwise_distances
    from lpdm.local import LayerTargets

    x, raw = torch.randn(20, 5), 10 * torch.randn(20, 5)
    plain = LayerTargets(LocalConfig(), x)(x, 32)
    assert torch.equal(plain.distances, pairwise_distances(x)) and plain.width == 5
    scaled = LayerTargets(LocalConfig(target_scale=0.5), x)(x, 32)
    assert torch.allclose(scaled.distances, 0.5 * pairwise_distances(x))
    from_raw = LayerTargets(LocalConfig(), raw)(x, 32)  # --target-obs raw
    assert torch.equal(from_raw.distances, pairwise_distances(raw))
    cross = LayerTargets(LocalConfig(scale="cross"), x)
    assert torch.allclose(cross(x, 32).distances, pairwise_distances(x, scale="none") / 32)
    assert torch.allclose(cross(x, 64).distances, pairwise_distances(x, scale="none") / 64)
    h = torch.randn(20, 32)
    local = LayerTargets(LocalConfig(scale="cross", target="local"), x)(h, 64)
    assert torch.allclose(local.distances, pairwise_distances(h, scale="none") / 64)
    assert local.width == 32


def test_target_rows_steer_the_local_update():
    torch.manual_seed(5)
    x, raw = torch.randn(40, 6), 3 * torch.randn(40, 6)
    trunks = [Trunk(6, (16,)) for _ in range(3)]
    for t in trunks[1:]:
        t.load_state_dict(trunks[0].state_dict())
    trainers = [LocalTrunkTrainer(t, LocalConfig(), 1e-2, False) for t in trunks]
    trainers[0].update(x)
    trainers[1].update(x, target_rows=x)
    trainers[2].update(x, target_rows=raw)
    assert same(snapshot(trunks[0]), snapshot(trunks[1]))
    assert not same(snapshot(trunks[0]), snapshot(trunks[2]))


def test_linear_learner_has_no_trunk():
    trunk = Trunk(6, ())
    learner = make_learner("linear", trunk, LocalConfig(), lr=1e-2)
    obs = torch.randn(10, 6)
    assert torch.equal(learner.features(obs), obs)
    assert trunk.out_dim == 6 and not list(trunk.parameters())
    learner.request_diagnostics()
    learner.features(obs)
    assert learner.diagnostics == [] and learner.rl_parameters() == []
