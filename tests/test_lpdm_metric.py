"""lpdm-metric: task-aware targets (value and bisimulation forms), their local update, the
Polyak copy, members, checkpoints and the command line."""

import json

import pytest
import torch

from lpdm.algorithms.base import Algorithm
from lpdm.cli import main
from lpdm.config import Config, LocalConfig, resolve, with_values
from lpdm.distances import bisimulation_target, matched_scale, pair_gaps, value_target
from lpdm.learners import make_learner
from lpdm.learners.lpdm_metric import MetricConfig
from lpdm.local import LocalTrunk
from lpdm.metric import MetricTrunk
from lpdm.networks import TrunkSpec, seeded_generators
from lpdm.runs import make_population, read_checkpoint

D = torch.tensor([[0.0, 2.0, 4.0], [2.0, 0.0, 6.0], [4.0, 6.0, 0.0]])  # mean over pairs 4


# --------------------------------------------------------------------------- targets


def test_value_target_by_hand():
    # |v_i - v_j| = [[0,1,3],[1,0,2],[3,2,0]], mean 2, so c = 4 / 2 = 2
    values = torch.tensor([0.0, 1.0, 3.0])
    assert float(matched_scale(D, pair_gaps(values))) == 2.0
    expected = torch.tensor([[0.0, 2.0, 5.0], [2.0, 0.0, 5.0], [5.0, 5.0, 0.0]])
    assert torch.equal(value_target(D, values, 0.5), expected)  # 0.5 D + 0.5 * 2 * gaps
    assert torch.equal(value_target(D, torch.full((3,), 7.0), 0.5), 0.5 * D)  # no gap: c = 0


def test_value_target_ignores_padded_rows():
    values = torch.tensor([[0.0, 1.0, 3.0, 1e6]])
    padded = torch.zeros(1, 4, 4)
    padded[0, :3, :3] = D
    padded[0, 3, :3] = padded[0, :3, 3] = 100.0
    valid = torch.tensor([[True, True, True, False]])
    target = value_target(padded, values, 0.5, valid)
    assert torch.equal(target[0, :3, :3], value_target(D, values[0, :3], 0.5))
    assert torch.equal(target[0, 3, :3], torch.full((3,), 50.0))  # (1 - beta) d only


def test_bisimulation_target_by_hand():
    # |r_i - r_j| = [[0,0,1],[0,0,1],[1,1,0]], mean 2/3, so c = 4 / (2/3) = 6
    rewards = torch.tensor([1.0, 1.0, 2.0])
    following = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 2.0], [1.0, 2.0, 0.0]])
    pure = torch.tensor([[0.0, 0.5, 6.5], [0.5, 0.0, 7.0], [6.5, 7.0, 0.0]])
    torch.testing.assert_close(bisimulation_target(D, rewards, following, 1.0, 0.5), pure,
                               rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(bisimulation_target(D, rewards, following, 0.5, 0.5),
                               0.5 * D + 0.5 * pure, rtol=1e-6, atol=1e-6)
    # equal rewards: the discounted next distances alone
    assert torch.equal(bisimulation_target(D, torch.ones(3), following, 1.0, 0.5),
                       0.5 * following)


def test_the_bisimulation_trunk_matches_its_copy_of_the_next_observations():
    """The loss a layer reports is that of the target built from the Polyak copy's own
    output distances on the next observations."""
    torch.manual_seed(0)
    trunk = MetricTrunk(5, (12, 8), form="bisim", beta=0.7, gamma=0.9, tau=0.5, seeds=(2,))
    x, rewards, following = torch.randn(1, 20, 5), torch.randn(1, 20), torch.randn(1, 20, 5)
    trunk.learn(x, rewards=rewards, next_obs=following)  # the copy now lags the trunk
    copies = trunk.copy_outputs(following)
    with torch.no_grad():
        outputs = [torch.tanh(trunk.layers[0](x))]
        outputs.append(torch.tanh(trunk.layers[1](outputs[0])))
    trunk.learn(x, rewards=rewards, next_obs=following, diagnostics=True)
    target_x = torch.cdist(x, x, p=1) / 5
    for layer, (y, copy) in enumerate(zip(outputs, copies, strict=True)):
        width = y.shape[-1]
        target = bisimulation_target(target_x, rewards, torch.cdist(copy, copy, p=1) / width,
                                     0.7, 0.9)
        loss = torch.linalg.vector_norm(target - torch.cdist(y, y, p=1) / width)
        assert trunk.diagnostics[0][layer].local_loss == pytest.approx(float(loss), rel=1e-5)


def test_the_polyak_copy_follows_the_trunk_at_its_rate():
    trunk = MetricTrunk(4, (6,), form="bisim", tau=0.25, seeds=(0, 1), lr=0.1)
    before = trunk.polyak_l0_weight.clone()
    assert torch.equal(before, trunk.layers[0].weight)  # it starts as the trunk
    valid = torch.tensor([[True] * 8, [False] * 8])  # member 1 has no data: not stepped
    torch.manual_seed(0)
    trunk.learn(torch.randn(2, 8, 4), valid=valid, rewards=torch.randn(2, 8),
                next_obs=torch.randn(2, 8, 4))
    weight = trunk.layers[0].weight.detach()
    torch.testing.assert_close(trunk.polyak_l0_weight[0], 0.25 * weight[0] + 0.75 * before[0])
    assert torch.equal(trunk.polyak_l0_weight[1], before[1])
    trunk.reset_copy(torch.tensor([True, False]))
    assert torch.equal(trunk.polyak_l0_weight[0], weight[0])


# --------------------------------------------------------------------------- the update


def twins(form: str, cfg: LocalConfig, members: int = 2):
    closed, autograd = (MetricTrunk(11, (32, 16), form=form, beta=0.6, gamma=0.9, tau=0.1,
                                    lr=1e-2, seeds=range(3, 3 + members), config=cfg)
                        for _ in range(2))
    assert closed.closed_form
    autograd.closed_form = False
    return closed, autograd


@pytest.mark.parametrize("form", ["value", "bisim"])
@pytest.mark.parametrize("overrides", [{}, {"scale": "cross"}, {"target": "local"}])
def test_closed_form_update_equals_autograd(form, overrides):
    closed, autograd = twins(form, LocalConfig(**overrides))
    torch.manual_seed(3)
    for n in (5, 64, 100):
        x, p, r, following = (torch.randn(2, n, 11), torch.randn(2, n), torch.randn(2, n),
                              torch.randn(2, n, 11))
        outs = [t.learn(x, p, diagnostics=True, rewards=r, next_obs=following)
                for t in (closed, autograd)]
        assert torch.equal(*outs)
        assert closed.diagnostics == autograd.diagnostics
    assert all(torch.equal(a, b) for a, b in zip(closed.state_dict().values(),
                                                 autograd.state_dict().values(), strict=True)
               if isinstance(a, torch.Tensor))


@pytest.mark.parametrize("form", ["value", "bisim"])
@pytest.mark.parametrize("overrides", [{"distance_batch": 16}, {"sparse": True, "scale": "mean"}])
def test_beta_zero_is_lpdm_exactly(form, overrides):
    cfg = LocalConfig(**overrides)
    metric = MetricTrunk(6, (16, 8), form=form, beta=0.0, seeds=(1, 2), config=cfg)
    plain = LocalTrunk(6, (16, 8), seeds=(1, 2), config=cfg)
    torch.manual_seed(0)
    valid = torch.ones(2, 40, dtype=torch.bool)
    valid[1, 25:] = False
    for _ in range(3):
        x, p = torch.randn(2, 40, 6), torch.randn(2, 40)
        out = metric.learn(x, p, valid=valid, rewards=torch.randn(2, 40),
                           next_obs=torch.randn(2, 40, 6))
        assert torch.equal(out, plain.learn(x, p, valid=valid))
    for a, b in zip(metric.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("form", ["value", "bisim"])
def test_a_member_learns_as_a_population_of_one(form):
    sections = {"task_metric": MetricConfig(metric_form=form)}
    cfg = LocalConfig(distance_batch=16)
    trio = make_learner("lpdm-metric", 6, (16, 8), cfg, 1e-2, seeded_generators((7, 8, 9)),
                        sections)
    solo = make_learner("lpdm-metric", 6, (16, 8), cfg, 1e-2, seeded_generators([8]), sections)
    torch.manual_seed(0)
    for _ in range(3):
        obs, p, r, following = (torch.randn(3, 40, 6), torch.randn(3, 40), torch.randn(3, 40),
                                torch.randn(3, 40, 6))
        trio.set_transitions(r, following)
        solo.set_transitions(r[1:2], following[1:2])
        torch.testing.assert_close(trio.features(obs, p)[1:2], solo.features(obs[1:2], p[1:2]),
                                   rtol=1e-5, atol=1e-6)
    for a, b in zip(trio.trunk.state_dict().values(), solo.trunk.state_dict().values(),
                    strict=True):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a[1], b[0], rtol=1e-4, atol=1e-6)


def test_perturbing_one_member_never_changes_another():
    trunks = [MetricTrunk(6, (16, 8), form="bisim", seeds=(1, 2, 3), distance_batch=16)
              for _ in range(2)]
    torch.manual_seed(0)
    obs, r, following = torch.randn(3, 40, 6), torch.randn(3, 40), torch.randn(3, 40, 6)
    other = following.clone()
    other[0] = 100 * torch.randn(40, 6)
    with torch.no_grad():
        trunks[1].polyak_l0_weight[0].fill_(float("nan"))
    out_a = trunks[0].learn(obs, rewards=r, next_obs=following)
    out_b = trunks[1].learn(obs, rewards=r, next_obs=other)
    assert torch.equal(out_a[1:], out_b[1:])
    for a, b in zip(trunks[0].state_dict().values(), trunks[1].state_dict().values(),
                    strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a[1:], b[1:])


@pytest.mark.parametrize("form", ["value", "bisim"])
def test_a_convolutional_trunk_learns(form):
    spec = TrunkSpec((6, 6, 3), (16,), ((4, 3, 1),), channels_last=True)
    trunk = MetricTrunk(spec.in_shape, spec.hidden, conv=spec.conv, form=form,
                        seeds=(0, 1), lr=1e-2)
    before = [p.detach().clone() for p in trunk.parameters()]
    torch.manual_seed(0)
    x = torch.rand(2, 10, 6, 6, 3)
    out = trunk.learn(x, torch.randn(2, 10), rewards=torch.randn(2, 10),
                      next_obs=torch.rand(2, 10, 6, 6, 3), diagnostics=True)
    assert out.shape == (2, 10, 16) and not trunk.closed_form
    assert all(not torch.equal(a, b) for a, b in zip(before, trunk.parameters(), strict=True))
    if form == "bisim":  # the copy's flattened maps of the convolution, then the dense layer
        assert [tuple(c.shape) for c in trunk.copy_outputs(x)] == [(2, 10, 64), (2, 10, 16)]
    assert all(layer.local_loss > 0 for layer in trunk.diagnostics[0])


def test_a_trunk_without_its_signals_says_what_it_needs():
    with pytest.raises(ValueError, match="performance"):
        MetricTrunk(4, (6,), form="value").learn(torch.randn(8, 4))
    with pytest.raises(ValueError, match="reward and next observation"):
        MetricTrunk(4, (6,), form="bisim").learn(torch.randn(8, 4))


def test_state_dict_round_trip_resumes_exactly():
    torch.manual_seed(0)
    batches = [(torch.randn(2, 30, 5), torch.randn(2, 30), torch.randn(2, 30, 5))
               for _ in range(3)]
    first = MetricTrunk(5, (8, 8), form="bisim", seeds=(4, 5), distance_batch=16)
    for x, r, following in batches[:2]:
        first.learn(x, rewards=r, next_obs=following)
    second = MetricTrunk(5, (8, 8), form="bisim", seeds=(0, 0), distance_batch=16)
    second.load_state_dict(first.state_dict())
    x, r, following = batches[2]
    assert torch.equal(first.learn(x, rewards=r, next_obs=following),
                       second.learn(x, rewards=r, next_obs=following))
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)


def test_weights_put_in_from_outside_reset_the_copy():
    """``--init-trunk`` calls the algorithm's ``weights_loaded``, which resets the copy."""
    config = resolve(with_values(Config(), {"algo": "dqn", "learner": "lpdm-metric",
                                            "metric_form": "bisim", "hidden_sizes": (8,)}),
                     discrete_actions=True)
    algo, _ = make_population([with_values(config, {"seed": s}) for s in (0, 1)])
    trunk = algo.policy.trunk
    with torch.no_grad():
        trunk.layers[0].weight.add_(1.0)
    algo.weights_loaded(torch.tensor([False, True]))
    assert torch.equal(trunk.polyak_l0_weight[1], trunk.layers[0].weight[1])
    assert not torch.equal(trunk.polyak_l0_weight[0], trunk.layers[0].weight[0])


# --------------------------------------------------------------------------- configuration


def test_defaults_follow_the_form_and_the_algorithm():
    def resolved(algo, **values):
        config = with_values(Config(algo=algo, learner="lpdm-metric"), values)
        return resolve(config, discrete_actions=True).learner_options["task_metric"]

    assert (resolved("ppo").metric_beta, resolved("ppo").guidance_signal) == (0.5, "returns")
    bisim = resolved("dqn", metric_form="bisim", gamma=0.9)
    assert (bisim.metric_beta, bisim.metric_gamma, bisim.guidance_signal) == (1.0, 0.9, "td")


COMMON = ["--env", "CartPole-v1", "--learner", "lpdm-metric", "--eval-episodes", "1",
          "--no-progress", "--hidden-sizes", "16"]
DQN = ["--algo", "dqn", "--total-steps", "900", "--learning-starts", "300", "--batch-size",
       "32", "--buffer-size", "1000", "--train-frequency", "5", "--checkpoint-every", "300",
       "--eval-every", "900"]


@pytest.mark.parametrize("args", [
    ["--algo", "reinforce", "--total-steps", "600", "--metric-beta", "0.3"],
    ["--algo", "ppo", "--total-steps", "512", "--num-steps", "64", "--num-envs", "2"],
    [*DQN, "--metric-form", "bisim"],
    [*DQN, "--metric-form", "value", "--guidance-signal", "returns"],
])
def test_trains_under_every_algorithm(tmp_path, args):
    out = tmp_path / "run"
    assert main(["train", *COMMON, *args, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["learner"] == "lpdm-metric"
    config = json.loads((out / "config.json").read_text())
    assert set(config["task_metric"]) == {"metric_form", "metric_beta", "metric_gamma",
                                          "metric_tau", "guidance_signal"}
    networks = read_checkpoint(out / "checkpoint.pt")["algorithm"]["networks"]
    bisim = "bisim" in args
    assert any("polyak_l0_weight" in key for key in networks) == bisim


@pytest.mark.parametrize(("args", "message"), [
    (["--algo", "ppo", "--metric-form", "bisim"], "--metric-form bisim needs --algo dqn"),
    (["--algo", "reinforce", "--metric-form", "bisim"], "--metric-form bisim needs --algo dqn"),
    (["--algo", "reinforce", "--guidance-signal", "td"], "--guidance-signal td needs --algo dqn"),
    (["--metric-beta", "1.5"], "--metric-beta must lie in [0, 1]"),
    (["--metric-tau", "0"], "--metric-tau must lie in (0, 1]"),
])
def test_refused_combinations_fail_with_one_line(tmp_path, capsys, args, message):
    rc = main(["train", *COMMON, *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err


def test_an_interrupted_bisim_run_resumes_exactly(tmp_path, monkeypatch):
    args = [*COMMON, *DQN, "--metric-form", "bisim", "--seed", "3"]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    assert main(["train", *args, "--out", str(reference)]) == 0
    calls = {"n": 0}
    original = Algorithm.timed_update

    def interrupt(self):
        calls["n"] += 1
        # past the checkpoint at step 600 (60 updates: DQN measures diagnostics in one of
        # ten updates and its count of updates starts afresh on resuming)
        if calls["n"] == 100:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Algorithm, "timed_update", interrupt)
    assert main(["train", *args, "--out", str(interrupted)]) == 130
    monkeypatch.setattr(Algorithm, "timed_update", original)
    assert main(["train", "--resume", str(interrupted), "--no-progress"]) == 0
    for name in ("metrics.csv", "evaluations.csv"):
        assert (reference / name).read_bytes() == (interrupted / name).read_bytes()
    saved = [read_checkpoint(d / "checkpoint.pt")["algorithm"]["networks"]
             for d in (reference, interrupted)]
    torch.testing.assert_close(saved[0], saved[1], rtol=0, atol=0)
