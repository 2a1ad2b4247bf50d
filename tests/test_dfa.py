"""``dfa``, direct feedback alignment: the update by hand, its equality with backpropagation
through the true backward weights, no gradient crossing a layer, members, checkpoints, and
training under every algorithm."""

import math

import pytest
import torch

from lpdm.algorithms.base import Algorithm
from lpdm.cli import main
from lpdm.config import LocalConfig
from lpdm.feedback import backprop_alignment
from lpdm.learners import get_spec, make_learner
from lpdm.networks import CategoricalHead, Trunk, TrunkSpec, seeded_generators
from lpdm.runs import RunDirectory, read_checkpoint

CONFIG = LocalConfig(distance_batch=16)


def build(name, trunk, hidden=None, actions=3, seeds=(0,), lr=1e-2):
    """A learner and the categorical head it reads the error of (attached as an algorithm
    attaches it), from generators seeded with ``seeds``."""
    generators = seeded_generators(seeds)
    spec = trunk if isinstance(trunk, TrunkSpec) else TrunkSpec((trunk,), hidden)
    head = CategoricalHead(Trunk(spec, generators=[]).out_dim, actions, generators)
    learner = make_learner(name, trunk, hidden, CONFIG, lr, generators)
    learner.attach_head(head, lambda w, g: CategoricalHead(w, actions, g))
    return learner, head


def rl_step(learner, head, obs, error=None, stepping=None):
    """Features, a loss on the head's output (``(o * error).sum()``, whose output error is
    ``error``; else a policy-gradient-like loss), its backward and ``after_backward``."""
    features = learner.features(obs)
    logits = head.logits(features)
    if error is None:
        loss = -torch.log_softmax(logits, -1)[..., 0].mean()
    else:
        loss = (logits * error).sum()
    loss.backward()
    learner.after_backward(torch.ones(obs.shape[0], dtype=torch.bool) if stepping is None
                           else stepping)
    return features


def grads(module):
    return [p.grad.clone() for p in module.parameters()]


def weights(module):
    return [p.detach().clone() for p in module.parameters()]


def test_is_a_local_learner_without_distance_matching():
    spec = get_spec("dfa")
    assert spec.local and not spec.distance_matching and not spec.control


def test_update_by_hand():
    """Two dense layers of width 2 on one input of width 2, a head of 2 outputs, the output
    error fixed at ``c``: the gradients and the first Adam step, computed by hand."""
    lr = 0.1
    learner, head = build("dfa", 2, (2, 2), actions=2, lr=lr)
    trunk = learner.trunk
    w1, b1 = [[0.5, -0.2], [0.1, 0.3]], [0.1, -0.1]
    w2, b2 = [[0.4, 0.2], [-0.3, 0.6]], [0.0, 0.2]
    feedback = ([[1.0, -2.0], [0.5, 0.0]], [[0.0, 1.0], [2.0, -1.0]])  # B_l [size, out]
    x, c = [1.0, 2.0], [0.3, -0.7]
    with torch.no_grad():
        for layer, (w, b) in zip(trunk.layers, ((w1, b1), (w2, b2)), strict=True):
            layer.weight.copy_(torch.tensor([w]))
            layer.bias.copy_(torch.tensor([b]))
        for i, matrix in enumerate(feedback):
            getattr(trunk, f"feedback_{i}").copy_(torch.tensor([matrix]))
    rl_step(learner, head, torch.tensor([[x]]), torch.tensor([[c]]))

    def layer(w, b, h):
        return [math.tanh(sum(w[i][j] * h[j] for j in range(2)) + b[i]) for i in range(2)]

    h1 = layer(w1, b1, x)
    h2 = layer(w2, b2, h1)
    expected = []
    for matrix, h_in, h_out in ((feedback[0], x, h1), (feedback[1], h1, h2)):
        # δ = (B e) ⊙ (1 − h²);  ∂W = δ h_inᵀ;  ∂b = δ
        delta = [sum(matrix[i][j] * c[j] for j in range(2)) * (1 - h_out[i] ** 2)
                 for i in range(2)]
        expected += [[[d * v for v in h_in] for d in delta], delta]
    for got, want in zip(grads(trunk), expected, strict=True):
        torch.testing.assert_close(got[0], torch.tensor(want), rtol=1e-6, atol=1e-7)
    # Adam's first step is lr · g / (|g| + ε): every nonzero gradient moves its weight by lr
    before = (w1, b1, w2, b2)
    for p, start, g in zip(trunk.parameters(), before, expected, strict=True):
        step = lr * torch.tensor(g) / (torch.tensor(g).abs() + 1e-8)
        torch.testing.assert_close(p.detach()[0], torch.tensor(start) - step)


def test_with_the_true_backward_weights_it_is_backpropagation():
    """One hidden layer, ``B_1`` set to the head weight's transpose: the trunk's gradient is
    backpropagation's, and the alignment diagnostic is 1."""
    obs = torch.randn(2, 20, 5, generator=torch.Generator().manual_seed(0))
    dfa, dfa_head = build("dfa", 5, (8,), seeds=(3, 4))
    bp, bp_head = build("bp", 5, (8,), seeds=(3, 4))
    with torch.no_grad():
        dfa.trunk.feedback_0.copy_(dfa_head.logits.weight.transpose(1, 2))
    features = bp.features(obs)
    (-torch.log_softmax(bp_head.logits(features), -1)[..., 0].mean()).backward()
    dfa.request_diagnostics()
    rl_step(dfa, dfa_head, obs)
    for a, b in zip(grads(dfa.trunk), grads(bp.trunk), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    assert all(torch.equal(a, b) for a, b in zip(grads(dfa_head), grads(bp_head), strict=True))
    for member in dfa.diagnostics:  # measured on the step's own batch and error
        assert member[0].bp_alignment == pytest.approx(1.0, abs=1e-5)
        assert member[0].grad_norm > 0
    error = torch.randn(2, 20, 3)
    alignment = backprop_alignment(dfa.trunk, dfa_head.logits.weight, obs, error)
    torch.testing.assert_close(alignment, torch.ones(2, 1))


def test_a_convolution_learns_as_backpropagation_through_the_true_backward_weights():
    spec = TrunkSpec((6, 6, 3), (), ((4, 3, 1),))  # one convolution, its maps the features
    obs = torch.rand(1, 10, 6, 6, 3, generator=torch.Generator().manual_seed(1))
    dfa, dfa_head = build("dfa", spec)
    bp, bp_head = build("bp", spec)
    with torch.no_grad():
        dfa.trunk.feedback_0.copy_(dfa_head.logits.weight.transpose(1, 2))
    (-torch.log_softmax(bp_head.logits(bp.features(obs)), -1)[..., 0].mean()).backward()
    rl_step(dfa, dfa_head, obs)
    for a, b in zip(grads(dfa.trunk), grads(bp.trunk), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_random_feedback_is_not_backpropagation():
    obs = torch.randn(1, 30, 5, generator=torch.Generator().manual_seed(2))
    dfa, head = build("dfa", 5, (16, 8))
    alignment = backprop_alignment(dfa.trunk, head.logits.weight, obs, torch.randn(1, 30, 3))
    assert alignment.shape == (1, 2)
    assert bool((alignment.abs() < 0.99).all())


def test_no_gradient_crosses_a_layer():
    """The RL gradient stops at the head, and with the output error fixed, layer 1's update
    does not depend on layer 2's weights (under backpropagation it would)."""
    obs, error = torch.randn(1, 12, 5), torch.randn(1, 12, 3)
    first, head = build("dfa", 5, (16, 8))
    features = first.features(obs)
    assert not features.requires_grad
    head.logits(features).sum().backward()
    assert all(p.grad is None for p in first.trunk.parameters())
    first.after_backward(torch.ones(1, dtype=torch.bool))

    layer_1 = []
    for scale in (1.0, -3.0):
        learner, head = build("dfa", 5, (16, 8))
        with torch.no_grad():
            learner.trunk.layers[1].weight.mul_(scale)
        rl_step(learner, head, obs, error)
        layer_1.append(grads(learner.trunk.layers[0]))
    assert all(torch.equal(a, b) for a, b in zip(*layer_1, strict=True))


def test_acting_keeps_nothing_and_learns_nothing():
    learner, head = build("dfa", 5, (16, 8))
    before = weights(learner.trunk)
    with torch.no_grad():
        head.logits(learner.features(torch.randn(1, 12, 5)))
    learner.after_backward(torch.ones(1, dtype=torch.bool))
    assert all(torch.equal(a, b) for a, b in zip(before, weights(learner.trunk), strict=True))


def test_the_update_belongs_to_the_rl_step_wherever_local_updates_are_placed():
    """``learn=False`` (PPO's ``--local-update epoch``) still learns with the RL step, and
    ``learn`` alone learns nothing (as under ``bp``)."""
    learner, head = build("dfa", 5, (16, 8))
    obs, before = torch.randn(1, 12, 5), weights(learner.trunk)
    learner.learn(obs)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(learner.trunk), strict=True))
    head.logits(learner.features(obs, learn=False)).sum().backward()
    learner.after_backward(torch.ones(1, dtype=torch.bool))
    assert not any(torch.equal(a, b) for a, b in zip(before, weights(learner.trunk),
                                                     strict=True))


def test_a_member_that_does_not_step_keeps_its_weights_and_moments():
    learner, head = build("dfa", 5, (16, 8), seeds=(1, 2))
    rl_step(learner, head, torch.randn(2, 12, 5))
    before = weights(learner.trunk)
    moments = [s["exp_avg"].clone() for s in learner.trunk.optimizer.state.values()]
    rl_step(learner, head, torch.randn(2, 12, 5), stepping=torch.tensor([False, True]))
    after = weights(learner.trunk)
    assert all(torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
               for a, b in zip(before, after, strict=True))
    assert all(torch.equal(m[0], s["exp_avg"][0])
               for m, s in zip(moments, learner.trunk.optimizer.state.values(), strict=True))


def test_members_are_independent_and_a_member_learns_as_a_population_of_one():
    seeds = (1, 2, 3)
    torch.manual_seed(0)
    batches = [torch.randn(3, 20, 5) for _ in range(3)]
    trio = [build("dfa", 5, (16, 8), seeds=seeds) for _ in range(2)]
    solo = build("dfa", 5, (16, 8), seeds=(2,))
    with torch.no_grad():  # member 0 of the second trio goes astray
        trio[1][0].trunk.layers[0].weight[0].mul_(5.0)
    for obs in batches:
        other = obs.clone()
        other[0] = 100 * torch.randn(20, 5)
        rl_step(*trio[0], obs)
        rl_step(*trio[1], other)
        rl_step(*solo, obs[1:2])
    (a, _), (b, _), (s, _) = trio[0], trio[1], solo
    assert all(torch.equal(x[1:], y[1:]) for x, y in zip(weights(a.trunk), weights(b.trunk),
                                                         strict=True))
    assert all(torch.equal(x[1:], y[1:]) for x, y in zip(a.trunk.buffers(), b.trunk.buffers(),
                                                         strict=True))
    for x, y in zip(weights(a.trunk), weights(s.trunk), strict=True):
        torch.testing.assert_close(x[1:2], y, rtol=1e-5, atol=1e-6)


def test_feedback_matrices_are_drawn_per_member_from_its_generator():
    (a, _), (b, _) = build("dfa", 5, (16, 8), seeds=(7, 8)), build("dfa", 5, (16, 8), seeds=(8,))
    assert [tuple(f.shape) for f in a.trunk.feedback] == [(2, 16, 3), (2, 8, 3)]
    assert all(torch.equal(x[1:], y) for x, y in zip(a.trunk.feedback, b.trunk.feedback,
                                                     strict=True))
    assert not torch.equal(a.trunk.feedback[0][0], a.trunk.feedback[0][1])


SMOKE = ["--env", "CartPole-v1", "--learner", "dfa", "--eval-episodes", "1", "--no-progress"]


@pytest.mark.parametrize(("algo", "extra"), [
    ("reinforce", ["--total-steps", "600"]),
    ("ppo", ["--total-steps", "1024", "--num-steps", "128", "--seed", "0,1"]),
    ("dqn", ["--total-steps", "600", "--learning-starts", "200", "--train-frequency", "4",
             "--double-dqn"]),
])
def test_trains_under_every_algorithm(tmp_path, algo, extra):
    out = tmp_path / algo
    assert main(["train", *SMOKE, "--algo", algo, *extra, "--out", str(out)]) == 0
    member = out / "s1" if "--seed" in extra else out
    summary = RunDirectory(member).read_summary()
    assert summary["status"] == "finished"
    networks = read_checkpoint(member / "checkpoint.pt")["algorithm"]["networks"]
    assert networks["0.trunk.feedback_0"].shape == (1, 128, 2)  # member 1's own, 2 actions
    name = {"ppo": "actor", "dqn": "q", "reinforce": "policy"}[algo]
    rows = RunDirectory(member).read_metrics()
    measured = [row for row in rows if row[f"{name}_l1_grad_norm"]]
    assert measured
    assert all(-1 <= float(row[f"{name}_l{i}_bp_alignment"]) <= 1
               for row in measured for i in (1, 2))


def test_trains_a_conv_trunk(tmp_path):
    pytest.importorskip("minatar")
    out = tmp_path / "minatar"
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--algo", "dqn", "--learner", "dfa",
                 "--total-steps", "400", "--learning-starts", "200", "--buffer-size", "400",
                 "--eval-every", "400", "--eval-episodes", "1", "--no-progress",
                 "--out", str(out)]) == 0
    networks = read_checkpoint(out / "checkpoint.pt")["algorithm"]["networks"]
    assert networks["0.trunk.feedback_0"].shape == (1, 16 * 8 * 8, 3)  # the conv's maps


RESUME = ["--env", "CartPole-v1", "--algo", "ppo", "--learner", "dfa", "--seed", "1",
          "--total-steps", "2048", "--num-steps", "128", "--checkpoint-every", "512",
          "--eval-every", "1024", "--eval-episodes", "1", "--no-progress"]


def test_an_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    assert main(["train", *RESUME, "--out", str(reference)]) == 0
    original, calls = Algorithm.timed_update, {"n": 0}

    def interrupt(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Algorithm, "timed_update", interrupt)
    assert main(["train", *RESUME, "--out", str(interrupted)]) == 130
    monkeypatch.setattr(Algorithm, "timed_update", original)
    assert main(["train", "--resume", str(interrupted), "--no-progress"]) == 0
    for name in ("metrics.csv", "evaluations.csv"):
        assert (reference / name).read_bytes() == (interrupted / name).read_bytes(), name
    a = read_checkpoint(reference / "checkpoint.pt")["algorithm"]["networks"]
    b = read_checkpoint(interrupted / "checkpoint.pt")["algorithm"]["networks"]
    assert "0.trunk.feedback_1" in a and "0.trunk._extra_state" in a
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # weights, feedback, Adam moments
