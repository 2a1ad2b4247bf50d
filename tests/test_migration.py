"""Run directories and sweeps written by lpdm before the configuration sections (format 1,
``tests/fixtures/format1``, written by ``make.py`` there with that lpdm) resume under this
one, and continue as they would have (the same episodes and scores)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lpdm.cli import main
from lpdm.config import FORMAT, from_dict, migrate, to_dict
from lpdm.rundir import RunDirectory

FIXTURE = Path(__file__).parent / "fixtures" / "format1"


@pytest.fixture
def old(tmp_path):
    copy = tmp_path / "format1"
    shutil.copytree(FIXTURE, copy)
    return copy


def test_format_1_configurations_migrate_to_sections():
    ppo = json.loads((FIXTURE / "population/s3/config.json").read_text())
    config = from_dict(ppo)
    assert (config.algo, config.ppo.lr, config.ppo.ent_coef, config.ppo.max_grad_norm) == \
        ("ppo", 0.00025, 0.01, 0.5)
    assert config.network.hidden_lr == 0.00025 and config.run.diagnostics
    assert config.learner_options == {}  # lpdm's guidance options were never used
    guided = json.loads((FIXTURE / "sweep/CartPole-v1/reinforce/lpdm-guided/s0/config.json")
                        .read_text())
    config = from_dict(guided)
    assert (config.reinforce.lr, config.reinforce.ent_coef, config.local.scale) == \
        (0.001, 0.0, "none")
    guidance = config.learner_options["guidance"]
    assert (guidance.guidance_strength, guidance.guidance_signal) == (0.3, "returns")
    assert to_dict(config)["format"] == FORMAT
    assert migrate(to_dict(config)) == to_dict(config)  # the current format is kept as it is


EXACT = ("global_step", "episodic_return", "episodic_length")


def same_metrics(got: Path, expected: Path) -> None:
    """The same episodes, evaluations and scores; per-layer diagnostics to float rounding
    (the fused l1 kernel of issue 24 rounds the local update differently from 94a6b83's)."""
    rows, reference = RunDirectory(got).read_metrics(), RunDirectory(expected).read_metrics()
    assert len(rows) == len(reference) and rows[0].keys() == reference[0].keys()
    for row, want in zip(rows, reference, strict=True):
        assert [row[k] for k in EXACT] == [want[k] for k in EXACT]
        other = [k for k in row if k not in EXACT and want[k]]
        assert np.allclose([float(row[k]) for k in other], [float(want[k]) for k in other],
                           rtol=1e-3, atol=1e-6)
    assert (got / "evaluations.csv").read_bytes() == (expected / "evaluations.csv").read_bytes()
    a, b = RunDirectory(got).read_summary(), RunDirectory(expected).read_summary()
    for key in ("status", "steps", "final_score", "max_score", "eval_score", "episodes"):
        assert a[key] == b[key], key


def test_an_old_population_resumes_as_it_would_have_continued(old):
    assert RunDirectory(old / "population/s3").read_summary()["status"] == "failed"
    assert main(["train", "--resume", str(old / "population"), "--no-progress"]) == 0
    for seed in ("s3", "s4"):
        same_metrics(old / "population" / seed, FIXTURE / "expected-population" / seed)


def test_an_old_sweep_resumes_with_its_own_command(old):
    grid = json.loads((old / "sweep/sweep.json").read_text())["grid"]
    assert grid["learners"] == ["bp", "lpdm-guided"]
    # the command make.py ran, on the copy
    rc = main(["sweep", "--out", str(old / "sweep"), "--algo", "reinforce", "--learner",
               "bp,lpdm-guided", "--seeds", "1", "--workers", "1", "--scale", "none", "--env",
               "CartPole-v1", "--hidden-sizes", "8", "--total-steps", "900",
               "--checkpoint-every", "300", "--eval-every", "300", "--eval-episodes", "1",
               "--no-progress"])
    assert rc == 0
    same_metrics(old / "sweep/CartPole-v1/reinforce/lpdm-guided/s0",
                 FIXTURE / "expected-sweep-cell")
