"""--init-trunk and --env-kwargs: transfer a trunk between runs, configure environments."""

import json

import pytest
import torch

from lpdm.cli import build_parser, main
from lpdm.envs import make_env, parse_env_kwargs
from lpdm.runs import RunDirectory, read_checkpoint
from lpdm.sweeps.command import spec_from_args
from lpdm.sweeps.grid import expand

BASE = ["--env", "CartPole-v1", "--algo", "ppo", "--total-steps", "1024", "--num-steps", "128",
        "--eval-every", "1024", "--eval-episodes", "1", "--no-progress"]


def trunk_weights(run, network=0):
    saved = read_checkpoint(RunDirectory(run).checkpoint)["algorithm"]["networks"]
    return {k: v for k, v in saved.items() if k.startswith(f"{network}.trunk.") and
            k.endswith(("weight", "bias"))}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("source") / "src"
    assert main(["train", *BASE, "--learner", "lpdm", "--seed", "0,1", "--out", str(out)]) == 0
    return out


def test_frozen_keeps_the_loaded_trunk_exactly(source, tmp_path, monkeypatch):
    from lpdm import runs

    loaded = {}
    original = runs.load_initial_trunks

    def spy(algo, members):
        original(algo, members)
        loaded.update({k: v.detach().clone() for k, v in algo.networks.state_dict().items()
                       if ".trunk." in k and k.endswith(("weight", "bias"))})

    monkeypatch.setattr(runs, "load_initial_trunks", spy)
    out = tmp_path / "head-only"
    assert main(["train", *BASE, "--learner", "frozen", "--seed", "1",
                 "--init-trunk", str(source), "--out", str(out)]) == 0
    expected = {**trunk_weights(source / "s1", 0), **trunk_weights(source / "s1", 1)}
    for key, value in expected.items():  # loaded exactly, from the member with the same seed
        assert torch.equal(loaded[key], value), key
    final = {**trunk_weights(out, 0), **trunk_weights(out, 1)}
    for key, value in expected.items():  # and never changed
        assert torch.equal(final[key], value), key
    config = json.loads((out / "config.json").read_text())
    assert config["network"]["init_trunk"] == str(source)


def test_fine_tuning_starts_from_the_loaded_trunk_and_moves(source, tmp_path):
    out = tmp_path / "fine-tuned"
    assert main(["train", *BASE, "--learner", "bp", "--seed", "0",
                 "--init-trunk", str(source / "s0"), "--out", str(out)]) == 0
    start, end = trunk_weights(source / "s0"), trunk_weights(out)
    assert any(not torch.equal(start[k], end[k]) for k in start)


@pytest.mark.parametrize(("extra", "message"), [
    (["--hidden-sizes", "64,64"], "trunk layers.0.weight is [128, 4], this run's [64, 4]"),
    (["--algo", "reinforce"], "trains actor, critic (ppo), this run policy (reinforce)"),
    (["--learner", "linear"], "has no trunk"),
])
def test_mismatched_sources_are_refused_in_one_line(source, tmp_path, capsys, extra, message):
    base = BASE if "reinforce" not in extra else [a for a in BASE if a not in ("--num-steps",
                                                                                   "128")]
    args = [*base, "--learner", "bp", "--init-trunk", str(source / "s0"),
            "--out", str(tmp_path / "x"), *extra]
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_env_kwargs_reach_gymnasium_and_the_config(tmp_path):
    assert parse_env_kwargs("forward_reward_weight=-1,ctrl_cost_weight=0.5,name=x") == {
        "forward_reward_weight": -1, "ctrl_cost_weight": 0.5, "name": "x"}
    env = make_env("CartPole-v1", env_kwargs="max_episode_steps=7")
    assert env.spec.max_episode_steps == 7
    env.close()
    out = tmp_path / "short"
    assert main(["train", "--env", "CartPole-v1", "--env-kwargs", "max_episode_steps=7",
                 "--total-steps", "200", "--out", str(out), "--no-progress"]) == 0
    lengths = [int(r["episodic_length"]) for r in RunDirectory(out).read_metrics()]
    assert lengths and max(lengths) <= 7
    assert json.loads((out / "config.json").read_text())["envs"]["env_kwargs"] == \
        "max_episode_steps=7"


def test_env_kwargs_are_sweepable_with_slashes():
    spec = spec_from_args(build_parser().parse_args(
        ["sweep", "--out", "x", "--env-kwargs", "max_episode_steps=7,sutton_barto_reward=True/"
         "max_episode_steps=9"]))
    configs = [c.config().envs.env_kwargs for c in expand(spec)]
    assert configs == ["max_episode_steps=7,sutton_barto_reward=True", "max_episode_steps=9"]


def test_bad_env_kwargs_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--env-kwargs", "no_such_argument=1", "--out",
                 str(tmp_path / "x")]) == 2
    assert "no_such_argument" in capsys.readouterr().err
    assert main(["train", "--env-kwargs", "=1", "--out", str(tmp_path / "y")]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(("learner", "finite"), [("bp", True), ("lpdm", True),
                                                 ("frozen", False)])
def test_gradient_norms_reaching_each_layer_are_logged(tmp_path, learner, finite):
    out = tmp_path / learner
    assert main(["train", *BASE, "--learner", learner, "--out", str(out)]) == 0
    rows = RunDirectory(out).read_metrics()
    values = [r["actor_l1_grad_norm"] for r in rows if r["actor_l1_grad_norm"] != ""]
    assert bool(values) == finite
    if finite:
        assert all(float(v) > 0 for v in values)
