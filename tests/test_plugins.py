"""A learner is one module: registered from a module outside lpdm (``toy_learner.py``), it
is on the command line, in sweeps and their ``--dry-run``, and in reports, with no other
edit."""

import importlib

import pytest

from lpdm.cli import main
from lpdm.learners import spec as registry


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setenv(registry.PLUGINS_ENV, "toy_learner")  # sweep workers inherit it
    module = importlib.import_module("toy_learner")
    registry.register(module.SPEC)
    registry.reset_caches()
    yield module.SPEC
    registry._REGISTRY.pop("toy")
    registry.reset_caches()


def test_a_plugin_learner_trains_sweeps_and_is_reported(toy, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # whatever the terminal width
    assert "toy: the last trunk layer by the RL loss" in help_text and "--toy-trained-layers" \
        in help_text

    out = tmp_path / "run"
    assert main(["train", "--learner", "toy", "--toy-trained-layers", "2", "--total-steps",
                 "600", "--out", str(out), "--no-progress"]) == 0
    assert '"toy_trained_layers": 2' in (out / "config.json").read_text()

    sweep = ["sweep", "--env", "CartPole-v1", "--algo", "reinforce", "--learner", "bp,toy",
             "--seeds", "2", "--total-steps", "1500", "--hidden-sizes", "16",
             "--workers", "1", "--no-progress", "--out", str(tmp_path / "sweep")]
    assert main([*sweep, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "learners: bp, toy" in plan and "toy" in plan.splitlines()[-2]  # measured: toy's cost
    assert main(sweep) == 0
    assert (tmp_path / "sweep/CartPole-v1/reinforce/toy/s1/summary.json").exists()

    assert main(["report", str(tmp_path / "sweep")]) == 0
    report = (tmp_path / "sweep/report/report.md").read_text()
    assert "toy vs bp" in report


def test_an_unknown_plugin_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv(registry.PLUGINS_ENV, "no_such_module_here")
    registry.reset_caches(reload=True)
    try:
        assert main(["train", "--total-steps", "10", "--no-progress"]) == 2
        assert "LPDM_PLUGINS: cannot import 'no_such_module_here'" in capsys.readouterr().err
    finally:
        monkeypatch.delenv(registry.PLUGINS_ENV)
        registry.reset_caches(reload=True)


def test_built_in_learners_keep_their_order_whoever_imports_one_first():
    """Tables, help and the leaderboard list learners in the registry's order: importing
    one learner's module first (as its tests do) must not move it."""
    import subprocess
    import sys

    code = ("import lpdm.learners.layerwise, lpdm.learners.dfa\n"
            "from lpdm.learners.spec import BUILTIN, learner_names\n"
            "print(list(learner_names()) == [n.replace('_', '-') for n in BUILTIN])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"
