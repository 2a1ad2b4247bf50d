"""The ``layerwise`` learner: per-layer RL losses (docs/design.md §2, "layerwise")."""

import json

import pytest
import torch

from lpdm.algorithms.base import Algorithm, LearnedNetwork
from lpdm.cli import main
from lpdm.config import Config, LocalConfig, resolve, with_values
from lpdm.learners import make_learner
from lpdm.learners.layerwise import LayerwiseConfig
from lpdm.networks import CategoricalHead, GaussianHead, TrunkSpec, ValueHead, seeded_generators
from lpdm.runs import read_checkpoint, train, train_population


def layerwise(make_head, seeds=(0,), readout="last", sizes=(16, 8)):
    """A layerwise learner on 6 inputs, its acting readout, and a batch ``[K, 40, 6]``."""
    generators = seeded_generators(seeds)
    learner = make_learner("layerwise", 6, sizes, LocalConfig(), 1e-2, generators,
                           {"layerwise": LayerwiseConfig(readout)})
    head = make_head(sizes[-1], generators)
    learner.attach_head(head, make_head)
    torch.manual_seed(0)
    return learner, learner.acting_head(head), torch.randn(len(seeds), 40, 6)


def categorical(width, generators):
    return CategoricalHead(width, 3, generators)


def first_action_loss(head, features):
    """A per-member RL-like loss ``[K]``: minus the mean log-probability of action 0."""
    dist = head.distribution(features)
    loss = -head.log_prob(dist, torch.zeros(features.shape[:2])).mean(1)
    return loss, {"loss": loss.detach()}


def test_no_gradient_crosses_a_layer():
    learner, readout, obs = layerwise(categorical, sizes=(16, 8, 4))
    layers = learner.trunk.layers
    total, _ = learner.rl_loss(readout, learner.features(obs), first_action_loss)
    total.sum().backward()
    together = [layer.weight.grad.clone() for layer in layers]
    for i in range(len(layers)):
        for layer in layers:
            layer.weight.grad = None
        parts = readout.split(learner.trunk(obs))
        loss, _ = first_action_loss(readout.heads[i], parts[i])
        loss.sum().backward()
        # layer i's gradient is its own head's alone; no other layer gets one from it (the
        # concatenation hands the others zeros)
        assert torch.equal(layers[i].weight.grad, together[i]) and together[i].any()
        assert all(layer.weight.grad is None or not layer.weight.grad.any()
                   for j, layer in enumerate(layers) if j != i)


def test_the_trunk_and_every_head_are_trained_by_the_rl_optimizer():
    config = resolve(Config(env="CartPole-v1", algo="reinforce", learner="layerwise"), True)
    network = LearnedNetwork("policy", (4,), categorical, config, seeded_generators([0]))
    heads, trunk = network.param_groups(0.1, 0.2)
    assert {id(p) for p in heads["params"]} == {id(p) for p in network.head.parameters()}
    assert len(network.head.heads) == 2 and heads["lr"] == 0.1
    assert [id(p) for p in trunk["params"]] == [id(p) for p in network.trunk.parameters()]
    assert trunk["lr"] == 0.2


def test_the_layers_below_draw_nothing_from_the_members_generators():
    generators = seeded_generators([5])
    learner = make_learner("layerwise", 6, (16, 8), LocalConfig(), 1e-2, generators)
    head = categorical(8, generators)
    state = generators[0].get_state()
    learner.attach_head(head, categorical)
    assert torch.equal(generators[0].get_state(), state)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_the_acting_readout(readout):
    learner, acting, obs = layerwise(categorical, readout=readout)
    features = learner.trunk(obs)
    parts = acting.split(features)
    logits = [head.logits(x) for head, x in zip(acting.heads, parts, strict=True)]
    expected = logits[-1] if readout == "last" else torch.stack(logits).mean(0)
    probs = torch.softmax(expected, -1)
    torch.testing.assert_close(acting.distribution(features).probs, probs)
    assert torch.equal(acting.deterministic(features), probs.argmax(-1))

    learner, acting, obs = layerwise(ValueHead, readout=readout)
    features = learner.trunk(obs)
    values = [head(x) for head, x in zip(acting.heads, acting.split(features), strict=True)]
    expected = values[-1] if readout == "last" else torch.stack(values).mean(0)
    torch.testing.assert_close(acting(features), expected, rtol=0, atol=0)

    learner, acting, obs = layerwise(lambda w, g: GaussianHead(w, 2, g), readout=readout)
    with torch.no_grad():
        for i, head in enumerate(acting.heads):
            head.log_std.fill_(float(i))
    features = learner.trunk(obs)
    dists = [head.distribution(x) for head, x in zip(acting.heads, acting.split(features),
                                                       strict=True)]
    dist = acting.distribution(features)
    mean = dists[-1].mean if readout == "last" else torch.stack([d.mean for d in dists]).mean(0)
    torch.testing.assert_close(dist.mean, mean)
    torch.testing.assert_close(acting.deterministic(features), mean)
    assert torch.allclose(dist.stddev, torch.tensor(1.0 if readout == "last" else 0.5).exp())


def test_mean_readout_statistics_are_the_acting_readouts():
    learner, acting, obs = layerwise(categorical, readout="mean")
    features = learner.features(obs)
    _, stats = learner.rl_loss(acting, features, first_action_loss)
    expected, _ = first_action_loss(acting, features)
    assert torch.equal(stats["loss"], expected.detach())


def run_config(algo, learner, seed=0, **values):
    steps = {"reinforce": 800, "ppo": 1024, "dqn": 800}[algo]
    extra = {"learning_starts": 300} if algo == "dqn" else {}
    return with_values(Config(), {"env": "CartPole-v1", "algo": algo, "learner": learner,
                                  "seed": seed, "total_steps": steps, **extra, **values})


@pytest.mark.parametrize("algo", ["reinforce", "ppo", "dqn"])
def test_a_one_layer_trunk_trains_as_bp(tmp_path, algo):
    runs = {}
    for learner in ("bp", "layerwise"):
        config = run_config(algo, learner, hidden_sizes=(16,))
        assert train(config, tmp_path / learner, progress_bar=False)["status"] == "finished"
        runs[learner] = tmp_path / learner
    for name in ("metrics.csv", "evaluations.csv"):
        assert (runs["bp"] / name).read_bytes() == (runs["layerwise"] / name).read_bytes()
    states = [read_checkpoint(runs[n] / "checkpoint.pt")["algorithm"] for n in ("bp", "layerwise")]
    for a, b in zip(*(list(s["networks"].values()) for s in states), strict=True):
        assert torch.equal(a, b)


def test_a_conv_layer_is_read_out_by_its_own_head():
    spec = TrunkSpec((6, 6, 3), (16,), ((4, 3, 1),), channels_last=True)
    generators = seeded_generators([0])
    learner = make_learner("layerwise", spec, None, LocalConfig(), 1e-2, generators)
    learner.attach_head(categorical(16, generators), categorical)
    assert learner.trunk.widths == [4 * 4 * 4, 16]
    features = learner.features(torch.rand(1, 5, 6, 6, 3))
    assert features.shape == (1, 5, 64 + 16)
    assert learner.acting_head(None).distribution(features).probs.shape == (1, 5, 3)


def test_population_members_are_their_own(tmp_path):
    """Member 1 of two computes what it computes beside another co-member."""
    config = run_config("ppo", "layerwise", layerwise_readout="mean")
    runs = {}
    for name, seeds in (("a", (0, 1)), ("b", (2, 1))):
        outs = [tmp_path / name / f"s{s}" for s in seeds]
        train_population([with_values(config, {"seed": s}) for s in seeds], outs,
                         progress_bar=False)
        runs[name] = outs[1]
    assert (runs["a"] / "metrics.csv").read_bytes() == (runs["b"] / "metrics.csv").read_bytes()
    a, b = (read_checkpoint(r / "checkpoint.pt")["algorithm"]["networks"] for r in runs.values())
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(("algo", "readout"), [("ppo", "mean"), ("ppo", "last")])
def test_an_interrupted_run_resumes_exactly(tmp_path, monkeypatch, algo, readout):
    args = ["--env", "CartPole-v1", "--algo", algo, "--learner", "layerwise",
            "--layerwise-readout", readout, "--total-steps", "2048", "--checkpoint-every", "512",
            "--eval-every", "1024", "--eval-episodes", "2", "--no-progress"]
    if algo == "dqn":
        args += ["--learning-starts", "300"]
    assert main(["train", *args, "--out", str(tmp_path / "reference")]) == 0
    calls = {"n": 0}
    original = Algorithm.timed_update

    def interrupt(self):
        calls["n"] += 1
        if calls["n"] == (3 if algo == "ppo" else 100):
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Algorithm, "timed_update", interrupt)
    assert main(["train", *args, "--out", str(tmp_path / "interrupted")]) == 130
    monkeypatch.setattr(Algorithm, "timed_update", original)
    assert main(["train", "--resume", str(tmp_path / "interrupted"), "--no-progress"]) == 0
    for name in ("metrics.csv", "evaluations.csv"):
        assert (tmp_path / "reference" / name).read_bytes() == \
            (tmp_path / "interrupted" / name).read_bytes()
    a, b = (read_checkpoint(tmp_path / d / "checkpoint.pt")["algorithm"]
            for d in ("reference", "interrupted"))
    torch.testing.assert_close(a["networks"], b["networks"], rtol=0, atol=0)
    if algo == "dqn":
        torch.testing.assert_close(a["target"], b["target"], rtol=0, atol=0)


@pytest.mark.parametrize(("algo", "env", "extra"), [
    ("reinforce", "CartPole-v1", []),
    ("ppo", "Pendulum-v1", ["--num-steps", "256", "--layerwise-readout", "mean"]),
    ("dqn", "MinAtar/Breakout-v1", ["--learning-starts", "200", "--buffer-size", "1000"]),
])
def test_lpdm_train_layerwise(tmp_path, algo, env, extra):
    if env.startswith("MinAtar"):
        pytest.importorskip("minatar")
    out = tmp_path / algo
    assert main(["train", "--env", env, "--algo", algo, "--learner", "layerwise",
                 "--total-steps", "768", "--eval-every", "768", "--eval-episodes", "1",
                 "--no-progress", "--out", str(out), *extra]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["learner"] == "layerwise"


def test_layerwise_options_are_its_own(capsys):
    assert main(["train", "--learner", "bp", "--layerwise-readout", "mean", "--no-progress"]) == 2
    assert "layerwise" in capsys.readouterr().err
