"""examples/cleanrl_ppo_lpdm.py: the trunks learn locally, the RL loss trains the heads."""

import importlib.util
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cleanrl_ppo_lpdm.py"


def load_example():
    spec = importlib.util.spec_from_file_location("cleanrl_ppo_lpdm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_trains_on_hopper_and_its_trunks_learn_locally(monkeypatch):
    example = load_example()
    trunks = {}
    original = example.Agent.__init__

    def remember(self, envs, args):
        original(self, envs, args)
        trunks["before"] = [p.detach().clone() for p in self.actor_trunk.parameters()]
        trunks["agent"] = self

    monkeypatch.setattr(example.Agent, "__init__", remember)
    args = example.Args(env_id="Hopper-v4", total_timesteps=3072, num_steps=1024,
                        num_minibatches=8, update_epochs=2)
    returns = example.main(args)
    assert returns and all(r == r for r in returns)  # finished episodes, finite returns
    after = list(trunks["agent"].actor_trunk.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(trunks["before"], after, strict=True))


def test_only_a_handful_of_lines_differ_from_cleanrl():
    marked = [line for line in EXAMPLE.read_text().splitlines() if "# LPDM" in line]
    assert 5 <= len(marked) <= 25


def test_the_random_policy_floor_of_cartpole(capsys, monkeypatch):
    """A uniform random policy keeps CartPole up about 22 steps on average."""
    path = EXAMPLE.parent / "random_policy.py"
    spec = importlib.util.spec_from_file_location("random_policy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr("sys.argv", ["random_policy.py", "CartPole-v1", "--episodes", "50"])
    module.main()
    line = capsys.readouterr().out.strip()
    assert line.startswith("CartPole-v1: mean ") and line.endswith("50 episodes")
    assert 15 < float(line.split()[2]) < 30
