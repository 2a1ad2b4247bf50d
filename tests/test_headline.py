"""``lpdm headline``: the README's paragraph is the committed data's, and its tuned sentence
reads the tuned study's confirmed parts as they are committed."""

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest

from lpdm.cli import main
from lpdm.report.archive import write_archive
from lpdm.report.headline import (
    LONGER_PARTS,
    TUNED_ENVS,
    TUNED_PARTS,
    _frozen,
    _longer,
    _tuned,
    find_claim,
)
from lpdm.report.leaderboard import Board, compute
from lpdm.report.records import RunRecord

ROOT = Path(__file__).parents[1]


def test_the_readme_holds_the_headline_of_the_committed_data(capsys):
    assert main(["headline", "--check", str(ROOT / "README.md"), "--root", str(ROOT)]) == 0, \
        "run `lpdm headline --write README.md`"


def _run(env: str, learner: str, seed: int, final: float) -> RunRecord:
    return RunRecord(path=Path(f"/toy/{env}/{learner}/s{seed}"), env=env, algo="ppo",
                     learner=learner, variant="", seed=seed, status="finished",
                     final_score=final, max_score=final, eval_score=math.nan,
                     total_steps=1000, seconds_per_iteration=0.1,
                     update_seconds_per_iteration=math.nan, seconds_per_1k_steps=math.nan,
                     stored_options={}, stored_metrics={
                         "global_step": np.array([1000.0]), "episodic_return": np.array([final])})


def _confirmed_part(root: Path, lpdm_start: float, parts: str = TUNED_PARTS,
                    steps: int = 1000) -> Path:
    """A CartPole-v1 part of the tuned study: bp near 500, frozen from 100, lpdm from
    ``lpdm_start``, seeds 0-9 (scores rise by 1 per seed)."""
    runs = [dataclasses.replace(_run("CartPole-v1", learner, s, start + s), total_steps=steps)
            for learner, start in (("bp", 480.0), ("frozen", 100.0), ("lpdm", lpdm_start))
            for s in range(10)]
    archive = root / parts / "cartpole/archive.npz"
    archive.parent.mkdir(parents=True)
    write_archive(archive, runs, Path("/toy"))
    return archive


def test_the_tuned_sentence_names_the_confirmed_environments_and_those_to_come(tmp_path):
    assert _tuned(tmp_path).endswith("no environment is confirmed yet.")
    _confirmed_part(tmp_path, 200.0)
    text = _tuned(tmp_path)
    assert "confirmed so far on CartPole-v1 (seeds 0–9, the suite's budgets; Pendulum-v1, " \
        "InvertedDoublePendulum-v4, Hopper-v4, HalfCheetah-v4 to come)" in text
    # every lpdm run is above every frozen run and below every bp run
    assert "P(lpdm > bp) = 0.00 [0.00, 0.00], P(lpdm > frozen) = 1.00 [1.00, 1.00]." in text


def test_the_longer_budget_sentence_appears_once_its_parts_are_committed(tmp_path):
    assert _longer(tmp_path) == ""
    _confirmed_part(tmp_path, 480.0, LONGER_PARTS, steps=1_000_000)
    text = _longer(tmp_path)
    assert text.startswith("With the same tuned options at 1M steps on CartPole-v1 (seeds "
                           "0–9; objection O4")
    # lpdm's runs are bp's, seed for seed: a tie in every pair but its own seed
    assert "P(lpdm > bp) = 0.50" in text and text.endswith("[1.00, 1.00].")


@pytest.mark.parametrize("lpdm_start, reading", [
    (200.0, "above 0.5: better"), (50.0, "below 0.5: worse"),
    (100.0, "reaching 0.5: not told apart")])
def test_the_frozen_sentence_reads_the_interval_of_p_against_frozen(tmp_path, lpdm_start,
                                                                     reading):
    _confirmed_part(tmp_path, lpdm_start)
    board = compute(tmp_path, Board("ppo", (TUNED_PARTS,)))
    assert f"(its interval {reading})" in _frozen(board)


def test_the_tuned_environments_are_those_the_tuning_script_runs():
    script = (ROOT / "docs/results/tuned/run.sh").read_text()
    envs = re.search(r"for env in ([^;]+);", script).group(1).split()
    assert tuple(envs) == TUNED_ENVS


def test_a_claim_missing_from_the_claims_list_is_an_error():
    with pytest.raises(KeyError, match="no claim"):
        find_claim("LPDM solves Montezuma's Revenge")
