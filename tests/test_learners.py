"""Learners: which loss may change which weights, the local update itself, and members.

Batches are a population's, ``[K, B, ...]``; most tests use one member (a solo run).
"""


import pytest
import torch

from lpdm.config import LocalConfig
from lpdm.distances import pairwise_distances
from lpdm.learners import make_learner
from lpdm.local import LayerTargets, LocalTrunk
from lpdm.networks import CategoricalHead, seeded_generators
from lpdm.optim import MemberAdam

LEARNERS = ["bp", "lpdm", "lpdm-guided", "frozen"]


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def setup(name: str, cfg: LocalConfig | None = None, seeds=(0,)):
    generators = seeded_generators(seeds)
    head = CategoricalHead(32, 3, generators)
    learner = make_learner(name, 6, (16, 32), cfg or LocalConfig(distance_batch=32), 1e-2,
                           generators)
    trunk = learner.trunk
    groups = [{"params": list(head.parameters()), "lr": 1e-2}]
    if params := learner.rl_parameters():
        groups.append({"params": params, "lr": 1e-2})
    optimizer = MemberAdam(groups)
    torch.manual_seed(0)
    obs = torch.randn(len(seeds), 50, 6)
    performance = torch.randn(len(seeds), 50)
    return trunk, head, learner, optimizer, obs, performance


@pytest.mark.parametrize("name", LEARNERS)
def test_rl_loss_changes_the_trunk_only_under_bp(name):
    trunk, head, learner, optimizer, obs, performance = setup(name)
    features = learner.features(obs, performance)
    trunk_before, head_before = snapshot(trunk), snapshot(head)
    loss = -head.distribution(features).log_prob(torch.zeros(1, 50, dtype=torch.long)).mean()
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
    {"target_scale": 0.3}, {"target_mean": 0.3},
])
def test_local_loss_decreases_on_a_fixed_batch(overrides):
    trunk = LocalTrunk(5, (32, 32), lr=1e-2, seeds=(1,), **overrides)
    torch.manual_seed(1)
    x = 0.3 * torch.randn(64, 5)  # distances a tanh layer can reach
    trunk.learn(x, diagnostics=True)
    first = trunk.diagnostics
    for _ in range(200):
        trunk.learn(x, diagnostics=True)
    last = trunk.diagnostics
    for a, b in zip(first[0], last[0], strict=True):
        assert b.local_loss < 0.6 * a.local_loss, (overrides, a, b)


def test_guided_loss_decreases_on_a_fixed_batch():
    trunk = LocalTrunk(5, (32,), lr=1e-2, guided=True, seeds=(2,), guidance_strength=0.3)
    torch.manual_seed(2)
    x, p = 0.3 * torch.randn(64, 5), torch.randn(64)
    trunk.learn(x, p, diagnostics=True)
    first = trunk.diagnostics[0][0].local_loss
    for _ in range(200):
        trunk.learn(x, p, diagnostics=True)
    assert trunk.diagnostics[0][0].local_loss < 0.5 * first


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_and_streaming_updates_give_identical_weights(sparse):
    fused = LocalTrunk(7, (16, 16, 16, 8), lr=1e-2, guided=True, seeds=(3,), metric="l2",
                       sparse=sparse)
    streaming = LocalTrunk(7, (16, 16, 16, 8), lr=1e-2, guided=True, seeds=(3,), metric="l2",
                           sparse=sparse, update_mode="streaming")
    torch.manual_seed(3)
    for _ in range(5):
        x, p = torch.randn(40, 7), torch.randn(40)
        assert torch.equal(fused.learn(x, p), streaming.learn(x, p))
    assert same(snapshot(fused), snapshot(streaming))


def test_local_learner_splits_large_batches_into_distance_blocks():
    _trunk, _, learner, _, _, _ = setup("lpdm", LocalConfig(distance_batch=32))
    steps = []
    original = learner.trunk._step

    def counting_step(x, per_row, valid, active, diagnostics):
        assert x.shape[1] == 32  # every block padded to N: shapes never depend on co-members
        steps.append(int(valid.sum()))
        return original(x, per_row, valid, active, diagnostics)

    learner.trunk._step = counting_step
    out = learner.features(torch.randn(1, 100, 6))
    assert steps == [25, 25, 25, 25]  # never a block larger than N, nearly equal sizes
    assert out.shape == (1, 100, 32)


@pytest.mark.parametrize("name", LEARNERS)
def test_diagnostics_are_reported_per_layer_once_per_request(name):
    _, _, learner, _, obs, performance = setup(name)
    learner.features(obs, performance)
    assert learner.diagnostics == []  # nothing measured unless asked
    learner.request_diagnostics()
    learner.features(obs, performance)
    assert len(learner.diagnostics) == 1 and len(learner.diagnostics[0]) == 2
    for layer in learner.diagnostics[0]:
        assert layer.local_loss > 0
        assert -1 <= layer.distance_corr <= 1
        assert 0 <= layer.saturation <= 1
        assert 0 < layer.distance_entropy <= 1


def test_layer_targets_scale_and_source():
    x, raw = torch.randn(1, 20, 5), 10 * torch.randn(1, 20, 5)
    plain = LayerTargets(LocalConfig(), x)(x, 32)
    assert torch.equal(plain.distances, pairwise_distances(x)) and plain.width == 5
    scaled = LayerTargets(LocalConfig(target_scale=0.5), x)(x, 32)
    assert torch.allclose(scaled.distances, 0.5 * pairwise_distances(x))
    from_raw = LayerTargets(LocalConfig(), raw)(x, 32)  # --target-obs raw
    assert torch.equal(from_raw.distances, pairwise_distances(raw))
    cross = LayerTargets(LocalConfig(scale="cross"), x)
    assert torch.allclose(cross(x, 32).distances, pairwise_distances(x, scale="none") / 32)
    assert torch.allclose(cross(x, 64).distances, pairwise_distances(x, scale="none") / 64)
    h = torch.randn(1, 20, 32)
    local = LayerTargets(LocalConfig(scale="cross", target="local"), x)(h, 64)
    assert torch.allclose(local.distances, pairwise_distances(h, scale="none") / 64)
    assert local.width == 32


def test_target_rows_steer_the_local_update():
    torch.manual_seed(5)
    x, raw = torch.randn(1, 40, 6), 3 * torch.randn(1, 40, 6)
    trunks = [LocalTrunk(6, (16,), lr=1e-2) for _ in range(3)]
    trunks[0].learn(x)
    trunks[1].learn(x, target_rows=x)
    trunks[2].learn(x, target_rows=raw)
    assert same(snapshot(trunks[0]), snapshot(trunks[1]))
    assert not same(snapshot(trunks[0]), snapshot(trunks[2]))


def test_linear_learner_has_no_trunk():
    learner = make_learner("linear", 6, (), LocalConfig(), 1e-2, seeded_generators([0]))
    trunk = learner.trunk
    obs = torch.randn(1, 10, 6)
    assert torch.equal(learner.features(obs), obs)
    assert trunk.out_dim == 6 and not list(trunk.parameters())
    learner.request_diagnostics()
    learner.features(obs)
    assert learner.diagnostics == [] and learner.rl_parameters() == []


# --------------------------------------------------------------------------- members


def member_slice(module: torch.nn.Module, k: int) -> list[torch.Tensor]:
    return [p.detach()[k].clone() for p in module.parameters()]


@pytest.mark.parametrize("name", ["lpdm", "lpdm-guided"])
@pytest.mark.parametrize("overrides", [{}, {"sparse": True}, {"scale": "mean"},
                                       {"distance_batch": 16}])
def test_a_member_learns_as_a_population_of_one(name, overrides):
    """Same seed, same data: member 1 of three equals a solo run up to float rounding."""
    cfg = LocalConfig(**overrides)
    seeds = (7, 8, 9)
    trio = make_learner(name, 6, (16, 8), cfg, 1e-2, seeded_generators(seeds))
    solo = make_learner(name, 6, (16, 8), cfg, 1e-2, seeded_generators([8]))
    torch.manual_seed(0)
    for _ in range(4):
        obs, p = torch.randn(3, 40, 6), torch.randn(3, 40)
        out_trio = trio.features(obs, p)
        out_solo = solo.features(obs[1:2], p[1:2])
        torch.testing.assert_close(out_trio[1:2], out_solo, rtol=1e-5, atol=1e-6)
    for a, b in zip(member_slice(trio.trunk, 1), member_slice(solo.trunk, 0), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["lpdm", "lpdm-guided", "bp"])
def test_perturbing_one_member_never_changes_another(name):
    seeds = (1, 2, 3)
    learners = [make_learner(name, 6, (16, 8), LocalConfig(distance_batch=16), 1e-2,
                             seeded_generators(seeds)) for _ in range(2)]
    torch.manual_seed(0)
    obs, p = torch.randn(3, 40, 6), torch.randn(3, 40)
    other = obs.clone()
    other[0] = 100 * torch.randn(40, 6)  # member 0's data changes; so do its weights
    with torch.no_grad():
        learners[1].trunk.layers[0].weight[0].fill_(float("nan"))
    out_a = learners[0].features(obs, p)
    out_b = learners[1].features(other, p)
    assert torch.equal(out_a[1:], out_b[1:])
    assert all(torch.equal(a[1:], b[1:]) for a, b in zip(learners[0].trunk.parameters(),
                                                         learners[1].trunk.parameters(),
                                                         strict=True))


def test_padded_rows_are_ignored():
    """A member with padding rows learns exactly as on its real rows alone."""
    seeds = (4,)
    padded = make_learner("lpdm-guided", 6, (16,), LocalConfig(), 1e-2, seeded_generators(seeds))
    plain = make_learner("lpdm-guided", 6, (16,), LocalConfig(), 1e-2, seeded_generators(seeds))
    torch.manual_seed(0)
    obs, p = torch.randn(1, 30, 6), torch.randn(1, 30)
    valid = torch.ones(1, 40, dtype=torch.bool)
    valid[0, 30:] = False
    out = padded.features(torch.cat([obs, 50 * torch.randn(1, 10, 6)], 1),
                          torch.cat([p, 1e3 * torch.randn(1, 10)], 1), valid=valid)
    torch.testing.assert_close(out[:, :30], plain.features(obs, p))
    for a, b in zip(padded.trunk.parameters(), plain.trunk.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_members_with_more_data_take_more_local_steps():
    """Blocks per member: 2 blocks of 20 rows for member 0, 1 of 10 for member 1."""
    seeds = (0, 1)
    learner = make_learner("lpdm", 6, (8,), LocalConfig(distance_batch=20), 1e-2,
                           seeded_generators(seeds))
    valid = torch.zeros(2, 40, dtype=torch.bool)
    valid[0, :40], valid[1, :10] = True, True
    learner.features(torch.randn(2, 40, 6), valid=valid)
    steps = learner.trunk.optimizer.state[learner.trunk.layers[0].weight]["step"]
    assert steps.tolist() == [2.0, 1.0]


def test_target_mean_sets_the_mean_target_distance():
    """--target-mean rescales each block's target so that its mean over pairs of real rows
    is the value asked for, whatever the observations' scale; it refuses to combine with a
    target scale or a matrix-dependent scaling."""
    x = torch.randn(2, 12, 5) * torch.tensor([[[0.1]], [[10.0]]])  # two members, two scales
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[1, 9:] = False  # the second member's last rows are padding
    target = LayerTargets(LocalConfig(target_mean=0.3), x, valid=valid)(x, 32).distances
    for member, n in ((0, 12), (1, 9)):
        real = target[member, :n, :n]
        assert torch.isclose(real.sum() / (n * (n - 1)), torch.tensor(0.3))
        by_hand = pairwise_distances(x[member, :n])  # dim scaling: l1 / width
        assert torch.allclose(real, 0.3 * by_hand / (by_hand.sum() / (n * (n - 1))))
    with pytest.raises(ValueError, match="target-scale"):
        LocalTrunk(5, (8,), target_mean=0.3, target_scale=0.5)
    with pytest.raises(ValueError, match="--scale dim or none"):
        LocalTrunk(5, (8,), target_mean=0.3, scale="max")
    with pytest.raises(ValueError, match="positive"):
        LocalTrunk(5, (8,), target_mean=0.0)
