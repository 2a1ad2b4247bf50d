"""The README runs as written: its "Use LPDM in your own agent" blocks (small budgets), and its
learner table lists every built-in learner."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Use LPDM in your own agent"


def blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_the_section_has_its_three_routes():
    assert len(blocks("python")) == 2 and len(blocks("bash")) == 1


def test_your_own_loop_block_runs():
    namespace: dict = {}
    exec(compile(blocks("python")[0], "README: your own loop", "exec"), namespace)
    assert namespace["features"].shape == (64, 256) and not namespace["features"].requires_grad


def test_stable_baselines3_block_runs():
    pytest.importorskip("stable_baselines3")
    namespace: dict = {}
    exec(compile(blocks("python")[1], "README: Stable-Baselines3", "exec"), namespace)
    assert namespace["model"].num_timesteps >= 512


def test_cleanrl_script_block_runs_with_a_small_budget():
    command = blocks("bash")[0].strip().split()
    assert command[:2] == ["python", "examples/cleanrl_ppo_lpdm.py"]
    # the documented command, its budget cut short (argparse keeps the last value)
    small = ["--total-timesteps", "2048", "--num-steps", "1024", "--num-minibatches", "8",
             "--update-epochs", "1"]
    result = subprocess.run([sys.executable, *command[1:], *small], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "episodic_return=" in result.stdout and "SPS:" in result.stdout


def test_the_learner_table_lists_every_registered_learner():
    from lpdm.learners.spec import BUILTIN, learner_specs

    text = (ROOT / "README.md").read_text()
    table = text[text.index("| learner | trunk trained by | heads trained by |"):]
    table = table[:table.index("\n\n")]
    listed = re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M)
    builtin = [name for name in learner_specs() if name.replace("-", "_") in BUILTIN]
    assert sorted(listed) == sorted(builtin)
